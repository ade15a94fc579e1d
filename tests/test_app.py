"""The app's server, driven over Gradio's own HTTP queue protocol as a browser
would, with the built-in backend behind it."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from fal_stream import frames
from fal_stream.config import Settings
from fal_stream.runtime import Limits

from .app_server import Browserless, RunningApp, browserless_sessions, serve_app

APP_ID = "fal-ai/fast-lcm-diffusion/image-to-image"
CONTROLS = ["a red cat", 0.6, 42, 4, APP_ID]


@pytest.fixture(scope="module")
def running() -> Iterator[RunningApp]:
    with serve_app(Settings(backend="local", min_interval_s=0.02)) as app:
        yield app


@pytest.fixture
def browser(running: RunningApp) -> Iterator[Callable[[str], Browserless]]:
    with browserless_sessions(running) as open_session:
        yield open_session


def picture_uri(color: tuple[int, int, int]) -> str:
    image = np.full((512, 512, 3), 255, np.uint8)
    image[96:416, 96:416] = color
    return frames.to_data_uri(frames.to_model_jpeg(image))


def output_images(session: Browserless) -> list[str]:
    """Every data URI the server pushed into the output image, in order."""
    images = []
    for message in session.snapshot():
        if message.get("msg") != "process_generating":
            continue
        first = message["output"]["data"][0]
        if isinstance(first, dict) and str(first.get("url", "")).startswith("data:"):
            images.append(first["url"])
        elif isinstance(first, list):  # a diff against the previous yield
            images += [
                op[2]
                for op in first
                if op[1] == ["url"] and str(op[2] or "").startswith("data:")
            ]
    return images


def statuses(session: Browserless) -> list[Any]:
    found = []
    for message in session.snapshot():
        if message.get("msg") == "process_generating":
            data = message["output"]["data"]
            found += [item for item in data[1:] if isinstance(item, str)]
            found += [
                op[2] for item in data[1:] if isinstance(item, list) for op in item
            ]
    return found


def wait_until(predicate: Callable[[], object], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def dominant_channel(uri: str) -> int:
    array = frames.to_array(base64.b64decode(uri.split(",", 1)[1]))
    return int(array[200:312, 200:312].reshape(-1, 3).mean(axis=0).argmax())


def start(session: Browserless, running: RunningApp) -> None:
    session.join(running.fn_index(None, "load"), [])


def test_app_sketch_frame_reaches_output(
    running: RunningApp, browser: Callable[[str], Browserless]
) -> None:
    """A sketch frame comes back into the output image as a data URI."""
    session = browser("sketch")
    start(session, running)
    session.join(
        running.fn_index("sketch", "change"), [picture_uri((220, 0, 0)), *CONTROLS]
    )
    wait_until(lambda: output_images(session))
    assert output_images(session)[0].startswith("data:image/jpeg;base64,")
    wait_until(lambda: any("results" in str(s) for s in statuses(session)))


def test_app_sessions_isolated(
    running: RunningApp, browser: Callable[[str], Browserless]
) -> None:
    """Two sessions drawing different colours each get only their own results."""
    red, blue = browser("red"), browser("blue")
    for session, color in ((red, (220, 0, 0)), (blue, (0, 0, 220))):
        start(session, running)
        for _ in range(3):
            session.join(
                running.fn_index("sketch", "change"), [picture_uri(color), *CONTROLS]
            )
    wait_until(lambda: output_images(red) and output_images(blue))
    assert {dominant_channel(uri) for uri in output_images(red)} == {0}
    assert {dominant_channel(uri) for uri in output_images(blue)} == {2}


def test_app_control_change_updates_output(
    running: RunningApp, browser: Callable[[str], Browserless]
) -> None:
    """Changing the prompt re-renders the last picture without a new stroke."""
    session = browser("controls")
    start(session, running)
    session.join(
        running.fn_index("sketch", "change"), [picture_uri((0, 160, 0)), *CONTROLS]
    )
    wait_until(lambda: output_images(session))
    before = len(output_images(session))
    session.join(running.fn_index("prompt", "change"), ["a blue ocean", *CONTROLS[1:]])
    wait_until(lambda: len(output_images(session)) > before)
    assert running.runtime.local is not None
    assert running.runtime.local.stats.last_prompt == "a blue ocean"


def test_app_webcam_stream_frames(
    running: RunningApp, browser: Callable[[str], Browserless]
) -> None:
    """Webcam chunks posted to a .stream event keep producing outputs."""
    session = browser("webcam")
    start(session, running)
    fn_index = running.fn_index("webcam", "stream")
    chunk = {"url": picture_uri((200, 200, 0)), "meta": {"_type": "gradio.FileData"}}
    event_id = session.join(fn_index, [chunk, *CONTROLS])
    wait_until(lambda: output_images(session))
    first = len(output_images(session))
    for color in ((0, 200, 200), (200, 0, 200)):
        body = {
            "data": [{**chunk, "url": picture_uri(color)}, *CONTROLS],
            "fn_index": fn_index,
            "session_hash": session.session_hash,
            "event_data": None,
        }
        session.http.post(f"/gradio_api/stream/{event_id}", json=body)
        time.sleep(0.3)
    wait_until(lambda: len(output_images(session)) >= first + 2)


def test_app_out_of_range_controls_are_clamped_not_refused(
    running: RunningApp, browser: Callable[[str], Browserless]
) -> None:
    """A typed strength of 5, steps of 99 and a seed of -1 still draw: the values
    are clamped instead of failing every event until corrected."""
    session = browser("clamp")
    start(session, running)
    controls = ["a red cat", 5, -1, 99, APP_ID]
    session.join(
        running.fn_index("sketch", "change"), [picture_uri((200, 0, 0)), *controls]
    )
    wait_until(lambda: output_images(session))
    assert not any(
        m.get("msg") == "process_completed" and not m.get("success", True)
        for m in session.snapshot()
    )


def test_app_bad_picture_warns(
    running: RunningApp, browser: Callable[[str], Browserless]
) -> None:
    """A non-image from the sketchpad becomes a warning that says what to do."""
    session = browser("bad")
    start(session, running)
    junk = "data:image/png;base64," + base64.b64encode(b"%PDF-1.7").decode()
    session.join(running.fn_index("sketch", "change"), [junk, *CONTROLS])
    wait_until(
        lambda: any(
            m.get("msg") == "log" and "not an image" in m.get("log", "")
            for m in session.snapshot()
        )
    )


def test_app_unload_closes_session(
    running: RunningApp, browser: Callable[[str], Browserless]
) -> None:
    """When the tab's heartbeat goes away, the session's relay is closed."""
    session = browser("unload")
    start(session, running)
    session.join(
        running.fn_index("sketch", "change"), [picture_uri((9, 9, 9)), *CONTROLS]
    )
    wait_until(lambda: running.runtime.pool.find(session.session_hash) is not None)
    stop = threading.Event()

    def heartbeat() -> None:
        url = f"{running.url}/gradio_api/heartbeat/{session.session_hash}"
        with httpx.stream("GET", url, timeout=30) as stream:
            for _ in stream.iter_raw():
                if stop.is_set():
                    return

    thread = threading.Thread(target=heartbeat, daemon=True)
    thread.start()
    time.sleep(0.5)
    stop.set()
    wait_until(lambda: running.runtime.pool.find(session.session_hash) is None, 30)


def test_app_busy_when_sessions_exhausted(
    browser: Callable[[str], Browserless],
) -> None:
    """Past the session limit a new visitor is told the app is busy."""
    with serve_app(Settings(backend="local"), Limits(max_sessions=1)) as app:
        first, second = Browserless(app, "first"), Browserless(app, "second")
        try:
            start(first, app)
            wait_until(lambda: app.runtime.pool.find("first") is not None)
            start(second, app)
            wait_until(
                lambda: any(
                    "busy" in str(s) or "in use" in str(s) for s in statuses(second)
                )
            )
        finally:
            first.close()
            second.close()


def test_app_main_prints_settings_without_key(tmp_path: Any) -> None:
    """`python app.py` starts, says which backend it uses, and hides the key."""
    sentinel = "sentinel-key-1234567890"
    env = {
        **os.environ,
        "FAL_KEY": sentinel,
        "FAL_STREAM_BACKEND": "local",
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    port = str(__import__("tests.app_server", fromlist=["free_port"]).free_port())
    process = subprocess.Popen(
        [sys.executable, "app.py", "--port", port, "--log-level", "DEBUG"],
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(lambda: _ready(port), 60)
        page = httpx.get(f"http://127.0.0.1:{port}/config", timeout=10).text
        assert sentinel not in page
    finally:
        process.terminate()
        try:
            output, _ = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
    assert "Local preview (not AI)" in output
    assert "(set, hidden)" in output and sentinel not in output


def _ready(port: str) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_example_realtime_client_runs_offline(tmp_path: Any) -> None:
    """The README's package example redraws a sketch with no key and no UI."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = tmp_path / "out.jpg"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAL_")}
    result = subprocess.run(
        [
            sys.executable,
            "examples/realtime_client.py",
            "examples/sketches/cat.png",
            "a ginger cat",
            str(out),
        ],
        cwd=root,
        env={**env, "PYTHONPATH": root},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert frames.to_array(out.read_bytes()).shape == (512, 512, 3)


def test_example_realtime_client_stops_on_refused_key(tmp_path: Any) -> None:
    """With a key the token host refuses, the example says so and exits instead
    of waiting for ever."""
    from fal_stream.backend import LocalBackend

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAL_")}
    with LocalBackend(key="the-right-key") as backend:
        result = subprocess.run(
            [
                sys.executable,
                "examples/realtime_client.py",
                "examples/sketches/cat.png",
                "a cat",
                str(tmp_path / "out.jpg"),
            ],
            cwd=root,
            env={
                **env,
                "PYTHONPATH": root,
                "FAL_KEY": "a-wrong-key",
                "FAL_REST_URL": backend.rest_url,
                "FAL_RUN_HOST": backend.run_host,
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert "fal refused the key (HTTP 401)" in result.stderr
    assert "a-wrong-key" not in result.stderr
