"""Sessions under load: no result crosses to another session, and the limits on
sessions, idle time, session time and frame rate hold. Also the optional login.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from fal_stream.backend import LocalBackend
from fal_stream.config import Settings
from fal_stream.relay import Relay
from fal_stream.runtime import Limits
from fal_stream.tokens import TokenManager
from scripts.soak import identify, picture_uri, pushed_images, session_picture

from .app_server import Browserless, RunningApp, free_port, serve_app

APP_ID = "fal-ai/fast-lcm-diffusion/image-to-image"
ROOT = Path(__file__).resolve().parent.parent
WAIT_S = 30.0


def wait_until(predicate: Callable[[], object], timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def images(session: Browserless) -> list[str]:
    return [uri for m in session.snapshot() for uri in pushed_images(m)]


def texts(session: Browserless) -> str:
    """Everything pushed to the status and message outputs, joined."""
    found = []
    for message in session.snapshot():
        if message.get("msg") == "process_generating":
            found.append(repr(message["output"]["data"][1:]))
    return "\n".join(found)


def decoded(uri: str) -> np.ndarray:
    from scripts.soak import uri_image

    return uri_image(uri)


def open_sessions(app: RunningApp, count: int, tag: str) -> list[Browserless]:
    sessions = [
        Browserless(app, f"{tag}-{i}-{time.monotonic_ns()}") for i in range(count)
    ]
    with ThreadPoolExecutor(count) as pool:
        list(pool.map(lambda s: s.join(app.fn_index(None, "load"), []), sessions))
    return sessions


def close_all(sessions: list[Browserless]) -> None:
    """Close the sessions at once: each waits up to a second for its stream."""
    with ThreadPoolExecutor(len(sessions)) as pool:
        list(pool.map(Browserless.close, sessions))


def draw(app: RunningApp, session: Browserless, index: int, shift: int = 0) -> None:
    controls = ["a quiet lake", 0.6, index, 4, APP_ID]
    uri = picture_uri(index, shift=shift)
    session.join(app.fn_index("sketch", "change"), [uri, *controls])


def test_isolation_twenty_sessions_never_cross() -> None:
    """Twenty sessions drawing at once, each its own picture, each receive only
    results of their own picture: every image is checked."""
    settings = Settings(backend="local", frame_size=256, min_interval_s=0.05)
    with serve_app(settings, Limits(max_sessions=20)) as app:
        sessions = open_sessions(app, 20, "iso")
        try:

            def strokes(index: int) -> None:
                for frame in range(6):
                    draw(app, sessions[index], index, shift=3 * (frame % 2))
                    time.sleep(0.1)

            with ThreadPoolExecutor(20) as pool:
                list(pool.map(strokes, range(20)))
            wait_until(lambda: all(len(images(s)) >= 2 for s in sessions))
            checked = 0
            for index, session in enumerate(sessions):
                for uri in images(session):
                    assert identify(decoded(uri)) == index, session.session_hash
                    checked += 1
            assert checked >= 40
            assert len(app.runtime.pool) == 20
        finally:
            close_all(sessions)


def test_isolation_identify_tells_every_session_apart() -> None:
    """The soak's picture of each session is recognised as that session's."""
    assert [identify(session_picture(i)) for i in range(20)] == list(range(20))


def test_isolation_session_limit_holds_under_a_rush() -> None:
    """Eight visitors arriving at once against a limit of five: five get a
    session, three are told it is busy, and the pool never passes five."""
    with serve_app(Settings(backend="local"), Limits(max_sessions=5)) as app:
        sessions = open_sessions(app, 8, "rush")
        try:
            wait_until(
                lambda: (
                    sum("in use" in texts(s) for s in sessions) == 3
                    and len(app.runtime.pool) == 5
                )
            )
            busy = [s for s in sessions if "in use" in texts(s)]
            assert (
                "All 5 live sessions are in use; try again in a few minutes."
                in texts(busy[0])
            )
            served = [s for s in sessions if s not in busy]
            for index, session in enumerate(served):
                draw(app, session, index)
            wait_until(lambda: all(images(s) for s in served))
            assert len(app.runtime.pool) == 5
        finally:
            close_all(sessions)


def test_isolation_idle_session_lets_go_and_comes_back() -> None:
    """A session idle past the limit drops its model connection (the status says
    it waits for a picture) and the next stroke reconnects."""
    limits = Limits(max_sessions=4, idle_close_s=0.5)
    with serve_app(Settings(backend="local"), limits) as app:
        (session,) = open_sessions(app, 1, "idle")
        try:
            draw(app, session, 0)
            wait_until(lambda: images(session))
            local = app.runtime.local
            assert local is not None
            # The pool reaps every few seconds; then the backend sees the close.
            relay = app.runtime.pool.find(session.session_hash)
            assert relay is not None
            wait_until(lambda: relay.status().endswith("waiting for a picture"))
            before = len(images(session))
            draw(app, session, 0, shift=3)
            wait_until(lambda: len(images(session)) > before)
            assert local.stats.connections == 2
        finally:
            session.close()


def test_isolation_session_time_limit_closes_with_reason() -> None:
    """A session past its time limit is closed and told to reload the page."""
    limits = Limits(max_sessions=4, session_limit_s=1.2)
    with serve_app(Settings(backend="local"), limits) as app:
        (session,) = open_sessions(app, 1, "limit")
        try:
            draw(app, session, 1)
            wait_until(
                lambda: (
                    "reached its 0.02-minute limit; reload the page" in texts(session)
                )
            )
            wait_until(lambda: app.runtime.pool.find(session.session_hash) is None)
        finally:
            session.close()


def test_isolation_spaces_get_tighter_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a Hugging Face Space (SPACE_ID set) fewer, shorter sessions are allowed."""
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert Limits.for_environment() == Limits(20, 120.0, None, 600.0)
    monkeypatch.setenv("SPACE_ID", "someone/fal_stream")
    assert Limits.for_environment() == Limits(8, 60.0, 900.0, 300.0)


async def test_isolation_frame_rate_cap_per_session(backend: LocalBackend) -> None:
    """Five sessions offered frames at about 60 a second each send no more than
    one per min_interval each; the rest are replaced, newest wins."""
    interval_s, run_s = 0.25, 1.5
    tokens = TokenManager(backend.key, rest_url=backend.rest_url)
    settings = Settings(min_interval_s=interval_s, frame_size=64, max_in_flight=8)
    relays = [
        Relay(settings, tokens, run_host=backend.run_host, backend_label="t", name=n)
        for n in "abcde"
    ]
    pictures = [session_picture(i, 64, shift) for i in range(5) for shift in (0, 3)]
    try:

        async def flood(index: int, relay: Relay) -> int:
            offered = 0
            deadline = asyncio.get_running_loop().time() + run_s
            while asyncio.get_running_loop().time() < deadline:
                await relay.offer(pictures[2 * index + offered % 2])
                offered += 1
                await asyncio.sleep(1 / 60)
            return offered

        offered = await asyncio.gather(*(flood(i, r) for i, r in enumerate(relays)))
        await asyncio.sleep(interval_s)
        cap = int(run_s / interval_s) + 2
        for relay, count in zip(relays, offered, strict=True):
            match = re.search(r"(\d+) sent", relay.status())
            assert match is not None, relay.status()
            sent = int(match.group(1))
            assert 2 <= sent <= cap < count, (relay.name, sent, count)
        assert backend.stats.inputs <= 5 * cap
    finally:
        for relay in relays:
            await relay.aclose()
        await tokens.aclose()


def test_isolation_auth_asks_for_a_login(tmp_path: Path) -> None:
    """`app.py --auth user:pass` keeps the app's config and queue behind a login,
    and the right login opens them."""
    port = str(free_port())
    env = {
        **os.environ,
        "GRADIO_ANALYTICS_ENABLED": "False",
        "FAL_STREAM_BACKEND": "local",
        "FAL_KEY": "",
    }
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py"), "--port", port, "--auth", "ann:s3cret"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(url), 60)
        assert httpx.get(f"{url}/config", timeout=10).status_code == 401
        page = httpx.get(f"{url}/", timeout=10)
        assert "fal_stream: live sketch" not in page.text
        wrong = httpx.post(
            f"{url}/login", data={"username": "ann", "password": "nope"}, timeout=10
        )
        assert wrong.status_code >= 400
        with httpx.Client(base_url=url, timeout=10) as client:
            login = client.post(
                "/login", data={"username": "ann", "password": "s3cret"}
            )
            assert login.status_code == 200
            assert client.get("/config").status_code == 200
    finally:
        process.terminate()
        try:
            output, _ = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
    assert "s3cret" not in output
    assert '"login required": true' in output


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=1)
    except httpx.HTTPError:
        return False
    return True
