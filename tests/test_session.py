"""The realtime session against the built-in backend, over real loopback sockets.

Faults are injected by the backend, as fal's servers would show them; nothing of
the session is patched.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import pytest
from PIL import Image

from fal_stream import Event, RealtimeSession, Result, SessionState
from fal_stream.backend import LocalBackend
from fal_stream.errors import (
    AuthError,
    ConnectionLostError,
    FalStreamError,
    RealtimeError,
)
from fal_stream.tokens import TokenManager

APP = "fal-ai/fast-lcm-diffusion/image-to-image"


def jpeg(color: tuple[int, int, int] = (200, 40, 40), size: int = 64) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, "JPEG")
    return buffer.getvalue()


FRAME = jpeg()


def inputs(seed: int = 1) -> dict[str, object]:
    return {"prompt": "a red square", "image_bytes": FRAME, "seed": seed}


@pytest.fixture
async def session(
    backend: LocalBackend, tokens: TokenManager
) -> AsyncIterator[RealtimeSession]:
    async with RealtimeSession(
        APP, tokens, run_host=backend.run_host, min_interval_s=0.0
    ) as running:
        yield running


async def next_events(
    session: RealtimeSession, count: int, timeout_s: float = 10.0
) -> list[Event]:
    """Collect ``count`` events, failing the test if they do not come."""
    got: list[Event] = []

    async def collect() -> None:
        async for event in session.events():
            got.append(event)
            if len(got) == count:
                return

    await asyncio.wait_for(collect(), timeout_s)
    return got


async def wait_for_state(
    session: RealtimeSession, state: SessionState, timeout_s: float = 10.0
) -> None:
    async def poll() -> None:
        while session.state is not state:
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout_s)


async def test_session_frame_out_result_in(
    session: RealtimeSession, backend: LocalBackend
) -> None:
    """One frame is minted for, connected, sent, and answered with an image."""
    seq = session.send(inputs(seed=7))
    (event,) = await next_events(session, 1)
    assert isinstance(event, Result)
    assert event.seq == seq and event.payload["seed"] == 7
    content = event.images[0]["content"]
    assert Image.open(io.BytesIO(content)).size[0] > 0
    assert event.latency_s is not None and event.latency_s > 0
    assert session.state is SessionState.OPEN
    assert (session.stats.frames_sent, session.stats.results) == (1, 1)
    assert backend.stats.tokens_minted == 1


async def test_session_idle_timeout_then_silent_resume(
    session: RealtimeSession, backend: LocalBackend
) -> None:
    """fal's idle TIMEOUT closes quietly and the next frame reconnects."""
    backend.faults.idle_timeout_s = 0.3
    session.send(inputs(seed=1))
    first = await next_events(session, 1)
    await wait_for_state(session, SessionState.IDLE)
    session.send(inputs(seed=2))
    second = await next_events(session, 1)
    assert [type(e) for e in first + second] == [Result, Result]
    assert isinstance(second[0], Result) and second[0].payload["seed"] == 2
    assert session.stats.connects == 2 and session.stats.errors == 0
    assert backend.stats.timeouts_sent >= 1
    # The token was still fresh, so the reconnect did not mint.
    assert backend.stats.tokens_minted == 1


async def test_session_short_token_lifetime_refreshed_in_background(
    backend: LocalBackend, tokens: TokenManager
) -> None:
    """With 2 s tokens over a 7 s run of bursts and idle closes, tokens are
    refreshed ahead of time and every connection is accepted."""
    backend.faults.token_lifetime_cap_s = 2.0
    backend.faults.idle_timeout_s = 0.25
    async with RealtimeSession(
        APP, tokens, run_host=backend.run_host, min_interval_s=0.0
    ) as session:
        for burst in range(10):
            for i in range(3):
                session.send(inputs(seed=burst * 10 + i))
                await asyncio.sleep(0.05)
            events = await next_events(session, 1)
            assert all(isinstance(e, Result) for e in events), events
            await asyncio.sleep(0.6)  # past the idle timeout: the socket closes
        assert session.stats.errors == 0
        assert session.stats.connects >= 5
        assert backend.stats.tokens_minted >= 3
        assert tokens.discards == 0  # no connection was refused its token


async def test_session_dropped_connection_recovered(
    session: RealtimeSession, backend: LocalBackend
) -> None:
    """A connection cut with no close frame is reported and the frame still gets
    its result on a new connection."""
    backend.faults.drop_after_inputs = 1
    backend.faults.drop_times = 1
    seq = session.send(inputs(seed=3))
    lost, result = await next_events(session, 2)
    assert isinstance(lost, ConnectionLostError) and lost.close_code != 1000
    assert "reconnecting" in str(lost)
    assert isinstance(result, Result) and result.seq == seq
    assert session.stats.connects == 2


async def test_session_close_1011_recovered(
    session: RealtimeSession, backend: LocalBackend
) -> None:
    """A server close with 1011 is reported with its code and recovered."""
    backend.faults.close_code = 1011
    backend.faults.close_times = 1
    session.send(inputs())
    lost, result = await next_events(session, 2)
    assert isinstance(lost, ConnectionLostError) and lost.close_code == 1011
    assert isinstance(result, Result)


@pytest.mark.parametrize("status", [401, 403])
async def test_session_refused_token_reminted_once(
    session: RealtimeSession, backend: LocalBackend, status: int
) -> None:
    """A token refused at the upgrade is replaced once without the user noticing."""
    backend.faults.upgrade_status = status
    backend.faults.upgrade_times = 1
    session.send(inputs())
    (event,) = await next_events(session, 1)
    assert isinstance(event, Result)
    assert backend.stats.tokens_minted == 2 and session.stats.errors == 0


async def test_session_refused_twice_reported_then_recovers(
    session: RealtimeSession, backend: LocalBackend
) -> None:
    """A token refused again after a re-mint is reported, not retried in a loop;
    a frame offered after the fault clears works."""
    backend.faults.upgrade_status = 401
    backend.faults.upgrade_times = 100
    session.send(inputs())
    (event,) = await next_events(session, 1)
    assert isinstance(event, AuthError) and "refused the token" in str(event)
    assert backend.key not in str(event)
    await wait_for_state(session, SessionState.FAILED)
    assert backend.faults.upgrade_times == 98  # one attempt and one retry

    backend.faults.upgrade_times = 0
    session.send(inputs(seed=9))
    (event,) = await next_events(session, 1)
    assert isinstance(event, Result) and event.payload["seed"] == 9


async def test_session_unauthorized_message_reminted(
    session: RealtimeSession, backend: LocalBackend
) -> None:
    """fal's legacy Unauthorized message after open also leads to one re-mint."""
    backend.faults.unauthorized_times = 1
    session.send(inputs())
    (event,) = await next_events(session, 1)
    assert isinstance(event, Result)
    assert backend.stats.tokens_minted == 2


async def test_session_internal_error_reported_next_frame_works(
    session: RealtimeSession,
    backend: LocalBackend,
) -> None:
    """INTERNAL_ERROR reaches the caller with fal's reason; the next frame works."""
    backend.faults.internal_error_times = 1
    session.send(inputs(seed=1))
    (error,) = await next_events(session, 1)
    assert isinstance(error, RealtimeError) and error.code == "INTERNAL_ERROR"
    await wait_for_state(session, SessionState.IDLE)
    session.send(inputs(seed=2))
    (event,) = await next_events(session, 1)
    assert isinstance(event, Result) and event.payload["seed"] == 2


async def test_session_bad_input_gets_internal_error(session: RealtimeSession) -> None:
    """An input the model cannot use is answered with INTERNAL_ERROR, not a hang."""
    session.send({"prompt": "no image at all"})
    (error,) = await next_events(session, 1)
    assert isinstance(error, RealtimeError) and error.code == "INTERNAL_ERROR"
    assert error.reason


async def test_session_slow_model_latency_never_grows(
    backend: LocalBackend, tokens: TokenManager
) -> None:
    """Frames offered at 30 per second to a 200 ms model: results come in frame
    order, far fewer than frames, the last answers the last frame, and nothing
    queues at the server."""
    backend.faults.model_latency_s = 0.2
    async with RealtimeSession(
        APP, tokens, run_host=backend.run_host, min_interval_s=0.0, max_in_flight=1
    ) as session:
        results: list[Result] = []

        async def read() -> None:
            async for event in session.events():
                assert isinstance(event, Result), event
                results.append(event)

        reader = asyncio.create_task(read())
        last = 0
        for i in range(60):
            last = session.send(inputs(seed=i))
            await asyncio.sleep(1 / 30)
        await asyncio.wait_for(_until(lambda: results and results[-1].seq == last), 5)
        reader.cancel()

    seqs = [r.seq for r in results]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    # 2 s of frames through a 0.2 s model: about ten answered, not sixty.
    assert 5 <= len(results) <= 15
    assert session.stats.frames_replaced >= 60 - 15
    # The answer to each frame carries that frame's seed: no result is stale.
    assert all(r.payload["seed"] == r.seq - 1 for r in results)
    assert backend.stats.inputs_dropped == 0


async def test_session_closed_refuses_frames(session: RealtimeSession) -> None:
    """A closed session says so instead of silently dropping frames."""
    await session.aclose()
    with pytest.raises(FalStreamError, match="closed"):
        session.send(inputs())


async def _until(predicate: object) -> None:
    while not predicate():  # type: ignore[operator]
        await asyncio.sleep(0.01)


async def test_session_aclose_right_after_a_result(
    backend: LocalBackend, tokens: TokenManager
) -> None:
    """Closing as soon as a result is read ends every task of the session."""
    for attempt in range(5):
        session = RealtimeSession(APP, tokens, run_host=backend.run_host)
        session.send(inputs(seed=attempt))
        async for event in session.events():
            assert isinstance(event, Result)
            break
        await asyncio.wait_for(session.aclose(), 5)
        assert session.state is SessionState.CLOSED
