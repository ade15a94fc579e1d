"""The key never leaves the server: not to a browser, not to a log line.

``app.py`` runs as a subprocess at ``--log-level DEBUG`` (every logger, third-party
ones included) with a sentinel key, pointed at a built-in backend that holds the
same key as if it were fal. Every feature is driven over HTTP as a browser would,
faults included, and everything a browser could receive and everything logged
is searched for the key and for JWTs.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import urljoin

import httpx
import pytest

from fal_stream import RealtimeSession, Result
from fal_stream.backend import Faults, LocalBackend
from fal_stream.tokens import TokenManager
from scripts.soak import picture_uri

from .app_server import Browserless, RunningApp, free_port

KEY_ID, KEY_SECRET = "sentinelKEYid7f3a", "sentinelKEYsecret9c1e"
KEY = f"{KEY_ID}:{KEY_SECRET}"
APP_ID = "fal-ai/fast-lcm-diffusion/image-to-image"
ROOT = Path(__file__).resolve().parent.parent
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
FILE_URL = re.compile(r"/gradio_api/file=[^\s'\"\\]+")
ASSET = re.compile(r"""(?:src|href)=["']([^"']+\.(?:js|css|json|webmanifest))["']""")
WAIT_S = 20.0


def assert_no_secret(text: str, where: str) -> None:
    """Neither the key nor either half of it is in ``text``."""
    for secret in (KEY, KEY_ID, KEY_SECRET):
        assert secret not in text, f"the key ({secret[:8]}...) is in {where}"


def wait_until(
    predicate: Callable[[], object], timeout_s: float = WAIT_S, what: str = ""
) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"not in time: {what}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def backend() -> Iterator[LocalBackend]:
    """A built-in backend that knows the sentinel key, standing in for fal."""
    with LocalBackend(key=KEY, faults=Faults(idle_timeout_s=30.0)) as running:
        yield running


@dataclass
class Exercised:
    """What one run of the app showed a browser and wrote to its log.

    Attributes:
        seen: Everything a browser received, as (where, text).
        tokens: The proxy's token answers, where a JWT belongs.
        logs: The app's whole output at DEBUG.
    """

    seen: list[tuple[str, str]] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    logs: str = ""


@pytest.fixture(scope="module")
def exercised(
    backend: LocalBackend, tmp_path_factory: pytest.TempPathFactory
) -> Exercised:
    """Run ``app.py --proxy --log-level DEBUG`` with the key set as on a Space,
    drive every feature, stop it, and return what it showed and logged."""
    port = str(free_port())
    env = {
        **os.environ,
        "GRADIO_ANALYTICS_ENABLED": "False",
        "FAL_KEY": KEY,
        "FAL_STREAM_BACKEND": "fal",
        "FAL_REST_URL": backend.rest_url,
        "FAL_RUN_HOST": backend.run_host,
        "FAL_STREAM_MIN_INTERVAL_MS": "20",
    }
    command = [sys.executable, str(ROOT / "app.py"), "--port", port, "--proxy"]
    process = subprocess.Popen(
        [*command, "--log-level", "DEBUG"],
        cwd=tmp_path_factory.mktemp("app"),  # no .env of the developer's
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    result = Exercised()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(url), 60)
        _visit(url, backend, result)
    finally:
        process.terminate()
        try:
            result.logs, _ = process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            result.logs, _ = process.communicate()
    return result


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _visit(url: str, backend: LocalBackend, result: Exercised) -> None:
    """Fetch what a browser fetches and use every feature, faults included."""
    seen = result.seen
    with httpx.Client(base_url=url, timeout=30) as http:
        # The page, its scripts and styles, the config and the API description.
        page = http.get("/").text
        seen.append(("/", page))
        for asset in sorted(set(ASSET.findall(page))):
            address = urljoin(url + "/", asset)
            if address.startswith(url):
                seen.append((asset, http.get(address).text))
        for path in ("/config", "/gradio_api/info", "/theme.css", "/manifest.json"):
            seen.append((path, http.get(path).text))
        config = http.get("/config").json()

        # The proxy routes: the JWT they hand out is the one place it may be.
        minted = http.post("/api/fal/realtime-token", json={"app": APP_ID})
        assert minted.status_code == 200, minted.text
        result.tokens.append(minted.text)
        proxied = http.post(
            "/api/fal/proxy",
            headers={"x-fal-target-url": "https://rest.fal.ai/tokens/"},
            json={"allowed_apps": ["fast-lcm-diffusion"], "token_expiration": 60},
        )
        assert proxied.status_code in (200, 201), proxied.text
        result.tokens.append(proxied.text)
        # Refusals of every kind reach browsers too.
        for response in (
            http.post("/api/fal/realtime-token", json={"app": "someone/else"}),
            http.post(
                "/api/fal/proxy",
                headers={"x-fal-target-url": "https://evil.invalid/tokens/"},
                json={},
            ),
            http.get("/api/fal/proxy", headers={"x-fal-target-url": "x"}),
            http.post("/api/fal/realtime-token", content=b"{not json"),
        ):
            assert response.status_code >= 400
            seen.append((f"refusal {response.status_code}", response.text))

    running = RunningApp(url, cast(Any, None), config)
    session = Browserless(running, f"hygiene-{time.monotonic_ns()}")
    try:
        _drive_everything(running, session, backend)
    finally:
        session.close()
    messages = session.snapshot()
    seen.append(("queue messages", repr(messages)))
    # Any file a message points at is fetched as a browser would.
    with httpx.Client(base_url=url, timeout=30) as http:
        for path in sorted(set(FILE_URL.findall(repr(messages)))):
            seen.append((path, http.get(path).text))


def test_key_hygiene_nothing_reaches_a_browser(exercised: Exercised) -> None:
    """Pages, assets, config, queue messages, files and proxy answers from an app
    driven through every feature show the key nowhere, and a JWT only in the
    proxy's token answers."""
    assert len(exercised.seen) > 8
    for where, text in exercised.seen:
        assert_no_secret(text, where)
        assert not JWT.search(text), f"a JWT is in {where}"
    assert len(exercised.tokens) == 2
    for text in exercised.tokens:
        assert_no_secret(text, "a token answer")
        assert JWT.search(text), "the proxy handed out no JWT"


def test_key_hygiene_nothing_in_the_debug_log(exercised: Exercised) -> None:
    """The app's whole DEBUG output, every library's loggers included, holds
    neither the key nor a JWT, though websockets logs the socket URL that carries
    one and the proxy handed JWTs out."""
    logs = exercised.logs
    assert "GET /fal-ai/fast-lcm-diffusion/image-to-image/realtime?" in logs
    for library in ("httpcore", "httpx", "fal_stream.session.ws", "fal_stream.proxy"):
        assert f" {library}" in logs, f"nothing from {library} was logged"
    assert_no_secret(logs, "the app's log")
    leaked = JWT.findall(logs)
    assert not leaked, f"{len(leaked)} JWTs in the app's log"


def _drive_everything(
    running: RunningApp, session: Browserless, backend: LocalBackend
) -> None:
    faults = backend.faults

    def results() -> int:
        return backend.stats.results

    def draw(shift: int, controls: list[Any] | None = None) -> None:
        session.join(
            running.fn_index("sketch", "change"),
            [picture_uri(1, shift=shift), *(controls or list(CONTROLS))],
        )

    session.join(running.fn_index(None, "load"), [])
    before = results()
    draw(0)
    wait_until(lambda: results() > before)

    # Every control, as its own change event.
    values: list[Any]
    for elem_id, text in (
        ("prompt", "a blue ocean"),
        ("app-id", "fal-ai/fast-turbo-diffusion/image-to-image"),
        ("app-id", APP_ID),
    ):
        values = list(CONTROLS)
        values[{"prompt": 0, "app-id": 4}[elem_id]] = text
        session.join(running.fn_index(elem_id, "change"), values)
    for index, number in ((1, 0.3), (2, 7), (3, 2)):
        values = list(CONTROLS)
        values[index] = number
        dependency = _change_of_input(running, index)
        session.join(dependency, values)
    session.join(running.fn_index("new-seed", "click"), [])
    for dependency in _example_clicks(running):
        session.join(dependency, [])

    # The webcam's stream.
    chunk = {"url": picture_uri(2), "meta": {"_type": "gradio.FileData"}}
    fn_index = running.fn_index("webcam", "stream")
    event_id = session.join(fn_index, [chunk, *CONTROLS])
    body = {
        "data": [{**chunk, "url": picture_uri(2, shift=3)}, *CONTROLS],
        "fn_index": fn_index,
        "session_hash": session.session_hash,
        "event_data": None,
    }
    session.http.post(f"/gradio_api/stream/{event_id}", json=body)

    # Errors: the model failing, tokens refused at the socket, the token host
    # failing, then a dropped socket, a bad picture and a bad app id. A change of app
    # makes a new connection (and, for an app not used yet, a new mint), so each
    # fault meets the step it breaks. Each stays on until the user is told.
    def session_settled() -> bool:
        # Out of the refusal and backoff steps the fault set off.
        state = repr(session.snapshot()[-3:])
        return "connecting" not in state and "backing off" not in state

    def app(app_id: str) -> list[Any]:
        return [*CONTROLS[:4], app_id]

    turbo, sd15 = "fal-ai/fast-turbo-diffusion/image-to-image", "fal-ai/lcm-sd15-i2i"
    for setting, controls in (
        ({"internal_error_times": 1}, app(APP_ID)),
        ({"upgrade_status": 401, "upgrade_times": 2}, app(turbo)),
        ({"unauthorized_times": 2}, app(APP_ID)),
        ({"token_status": 500, "token_times": 4}, app(sd15)),
    ):
        for name, amount in setting.items():
            setattr(faults, name, amount)
        draw(3 + len(setting), controls)
        # The fault has struck once its counter is used; the message it caused
        # may be replaced by a newer result before it is shown, fine here.
        counter = next(name for name in setting if name.endswith("_times"))

        def struck(counter: str = counter, left: int = setting[counter]) -> bool:
            return bool(getattr(faults, counter) < left and session_settled())

        wait_until(struck, what=counter)
        for name in setting:
            setattr(faults, name, getattr(Faults(), name))
    # A dropped socket recovers so fast that its message is often replaced by
    # the next result before it is shown: wait for that result.
    faults.drop_after_inputs, faults.drop_times = 1, 1
    before = results()
    draw(5, app(APP_ID))
    wait_until(lambda: faults.drop_times == 0 and results() > before, what="drop")
    faults.drop_after_inputs = None
    session.join(
        running.fn_index("sketch", "change"),
        ["data:image/png;base64,JVBERi0xLjc=", *CONTROLS],
    )
    bad_app = [*CONTROLS[:4], "not an app id!"]
    session.join(running.fn_index("sketch", "change"), [picture_uri(4), *bad_app])
    before = results()
    draw(6)
    wait_until(lambda: results() > before)
    wait_until(lambda: sum(m.get("msg") == "log" for m in session.snapshot()) >= 2)
    time.sleep(1.5)  # one more status push of the output stream


CONTROLS = ("a red cat", 0.6, 42, 4, APP_ID)


def _change_of_input(running: RunningApp, position: int) -> int:
    """The change handler of the control at ``position`` in the controls list."""
    components = {c["id"]: c for c in running.config["components"]}
    found = []
    for index, dependency in enumerate(running.config["dependencies"]):
        for target_id, name in dependency["targets"]:
            kind = components.get(target_id, {}).get("type")
            if name == "change" and kind in ("slider", "number"):
                found.append((target_id, index))
    # Strength, seed and steps, in the order the layout creates them.
    by_control = dict(sorted(found))
    ordered = [by_control[t] for t in sorted(by_control)]
    strength, steps, seed = ordered
    return int({1: strength, 2: seed, 3: steps}[position])


def _example_clicks(running: RunningApp) -> list[int]:
    components = {c["id"]: c for c in running.config["components"]}
    clicks = []
    for index, dependency in enumerate(running.config["dependencies"]):
        for target_id, name in dependency["targets"]:
            value = str(components.get(target_id, {}).get("props", {}).get("value"))
            if name == "click" and value.startswith("Example:"):
                clicks.append(index)
    assert len(clicks) == 3
    return clicks


async def test_key_hygiene_library_logs_clean_without_the_app(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A program using the session and token manager directly, with every logger
    at DEBUG and no redaction installed, logs neither the key nor the token."""
    async with LocalBackend(key=KEY) as backend:
        tokens = TokenManager(backend.key, rest_url=backend.rest_url)
        buffer = io.StringIO()
        handler = logging.StreamHandler(buffer)
        handler.setLevel(logging.DEBUG)
        root = logging.getLogger()
        old_level = root.level
        root.addHandler(handler)
        root.setLevel(logging.DEBUG)
        try:
            async with RealtimeSession(
                APP_ID, tokens, run_host=backend.run_host, min_interval_s=0.0
            ) as session:
                session.send({"prompt": "p", "image_bytes": b"\xff\xd8\xff", "seed": 1})
                session.send({"prompt": "p", "image_bytes": _jpeg(), "seed": 2})

                async def result() -> None:
                    async for event in session.events():
                        if isinstance(event, Result):
                            return

                await asyncio.wait_for(result(), WAIT_S)
        finally:
            root.removeHandler(handler)
            root.setLevel(old_level)
            await tokens.aclose()
    logs = buffer.getvalue() + caplog.text
    assert "realtime?fal_jwt_token=[redacted]" in logs
    assert_no_secret(logs, "the library's log")
    assert not JWT.search(logs)


def _jpeg() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 20, 20)).save(buffer, "JPEG")
    return buffer.getvalue()
