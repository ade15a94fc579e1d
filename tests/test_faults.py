"""Every fault the built-in backend can inject, seen as the user sees it.

Each case drives a :class:`~fal_stream.relay.Relay` (or, where the relay's fixed
result timeout would make the test slow, a session read through
:func:`~fal_stream.relay.explain`) against a loopback backend, asserts the message
the user is shown, bounds every wait, and checks that the next picture works once
the fault has cleared.
"""

from __future__ import annotations

import asyncio
import io
import socket
from collections.abc import AsyncIterator, Callable

import numpy as np
import pytest
from PIL import Image

from fal_stream import RealtimeSession, Result, SessionState
from fal_stream.backend import LocalBackend
from fal_stream.backend.faults import ResultFault
from fal_stream.config import Settings
from fal_stream.errors import FalStreamError
from fal_stream.relay import Relay, Update, explain
from fal_stream.tokens import TokenManager

from .test_session import next_events

APP = "fal-ai/fast-lcm-diffusion/image-to-image"
SETTINGS = Settings(min_interval_s=0.0, frame_size=128)
WAIT_S = 15.0


def picture(shade: int) -> np.ndarray:
    """A white picture with a coloured square, different for each ``shade``."""
    image = np.full((96, 128, 3), 255, np.uint8)
    image[20:80, 30:100] = (shade, 40, 200 - shade)
    return image


@pytest.fixture
async def relay(backend: LocalBackend, tokens: TokenManager) -> AsyncIterator[Relay]:
    running = Relay(
        SETTINGS, tokens, run_host=backend.run_host, backend_label="t", name="faults"
    )
    yield running
    await running.aclose()


async def first_update(
    relay: Relay, wanted: Callable[[Update], bool], timeout_s: float = WAIT_S
) -> Update:
    """The first update that ``wanted`` accepts; fails if none comes in time."""

    async def scan() -> Update:
        async for update in relay.updates():
            if wanted(update):
                return update
        raise AssertionError("the relay closed")

    return await asyncio.wait_for(scan(), timeout_s)


async def message_of(relay: Relay) -> str:
    """The next problem the relay reports."""
    return (await first_update(relay, lambda u: bool(u.message))).message


async def image_of(relay: Relay) -> str:
    """The next image the relay shows."""
    update = await first_update(relay, lambda u: u.image is not None)
    assert update.image is not None and update.image.startswith("data:image/")
    return update.image


async def works_again(relay: Relay, shade: int = 90) -> None:
    """A new picture gets an image, and the problem message is cleared."""
    await relay.offer(picture(shade))
    await image_of(relay)
    assert not (await first_update(relay, lambda u: True)).message


# The socket.


async def test_fault_dropped_socket_says_retrying(
    relay: Relay, backend: LocalBackend
) -> None:
    """A socket cut with no close frame says it retries, and the picture still
    gets its result."""
    backend.faults.drop_after_inputs, backend.faults.drop_times = 1, 1
    await relay.offer(picture(10))
    assert (await message_of(relay)).startswith("Connection lost (code 1006); ")
    await image_of(relay)
    await works_again(relay)


async def test_fault_close_1011_says_retrying(
    relay: Relay, backend: LocalBackend
) -> None:
    """A server close with 1011 says it retries and recovers by itself."""
    backend.faults.close_code, backend.faults.close_times = 1011, 1
    await relay.offer(picture(20))
    assert (await message_of(relay)).startswith(
        "Connection lost (code 1011); retrying in "
    )
    await image_of(relay)
    await works_again(relay)


async def test_fault_idle_timeout_is_silent(
    relay: Relay, backend: LocalBackend
) -> None:
    """fal's idle TIMEOUT closes the socket without troubling the user, and the
    next picture reconnects."""
    backend.faults.idle_timeout_s = 0.2
    await relay.offer(picture(30))
    await image_of(relay)
    await asyncio.wait_for(_until(lambda: backend.stats.timeouts_sent >= 1), WAIT_S)
    await works_again(relay, 31)
    assert backend.stats.connections == 2


async def test_fault_internal_error_names_the_reason(
    relay: Relay, backend: LocalBackend
) -> None:
    """INTERNAL_ERROR tells the user the model failed on this picture, with fal's
    reason."""
    backend.faults.internal_error_times = 1
    await relay.offer(picture(40))
    assert await message_of(relay) == (
        "The model failed on this picture (injected failure: the model raised an "
        "exception); change it or try again."
    )
    await works_again(relay)


async def test_fault_unauthorized_once_is_reminted(
    relay: Relay, backend: LocalBackend
) -> None:
    """One Unauthorized message after the socket opens costs a re-mint, no
    message."""
    backend.faults.unauthorized_times = 1
    await relay.offer(picture(50))
    update = await first_update(relay, lambda u: u.image is not None or bool(u.message))
    assert update.image is not None and not update.message
    assert backend.stats.tokens_minted == 2


async def test_fault_unauthorized_twice_blames_the_key(
    relay: Relay, backend: LocalBackend
) -> None:
    """Unauthorized again after a re-mint tells the owner to check FAL_KEY."""
    backend.faults.unauthorized_times = 2
    await relay.offer(picture(55))
    assert await message_of(relay) == (
        "fal refused the token for fast-lcm-diffusion twice (Unauthorized): check "
        "that FAL_KEY belongs to an account that may use this app (a Space owner "
        "sets it as the FAL_KEY secret)."
    )
    await works_again(relay)


@pytest.mark.parametrize("status", [401, 403])
async def test_fault_upgrade_refused_twice_blames_the_key(
    relay: Relay, backend: LocalBackend, status: int
) -> None:
    """An upgrade refused with 401 or 403 even after a re-mint says so, with the
    status."""
    backend.faults.upgrade_status, backend.faults.upgrade_times = status, 2
    await relay.offer(picture(60))
    message = await message_of(relay)
    assert message.startswith(
        f"fal refused the token for fast-lcm-diffusion twice (HTTP {status}): "
    )
    assert backend.faults.upgrade_times == 0
    await works_again(relay)


async def test_fault_upgrade_refused_500_says_retrying(
    relay: Relay, backend: LocalBackend
) -> None:
    """An upgrade refused with 500 is a lost connection, retried by itself."""
    backend.faults.upgrade_status, backend.faults.upgrade_times = 500, 1
    await relay.offer(picture(65))
    assert (await message_of(relay)).startswith("Connection lost; retrying in ")
    await image_of(relay)
    await works_again(relay)


# The token endpoint.


@pytest.mark.parametrize("status", [401, 403])
async def test_fault_token_refused_blames_the_key(
    relay: Relay, backend: LocalBackend, status: int
) -> None:
    """A token endpoint refusing the key tells the owner to check FAL_KEY."""
    backend.faults.token_status, backend.faults.token_times = status, 1
    await relay.offer(picture(70))
    assert await message_of(relay) == (
        f"fal refused the key (HTTP {status}): check that FAL_KEY is a valid key "
        "of your fal account (a Space owner sets it as the FAL_KEY secret)."
    )
    await works_again(relay)


@pytest.mark.parametrize("status", [429, 500])
async def test_fault_token_busy_once_is_retried(
    relay: Relay, backend: LocalBackend, status: int
) -> None:
    """One 429 or 500 from the token endpoint is retried without a message."""
    backend.faults.token_status, backend.faults.token_times = status, 1
    await relay.offer(picture(75))
    update = await first_update(relay, lambda u: u.image is not None or bool(u.message))
    assert update.image is not None and not update.message
    assert backend.stats.tokens_minted == 1


@pytest.mark.parametrize("status", [429, 500])
async def test_fault_token_busy_for_long_says_so_and_recovers(
    relay: Relay, backend: LocalBackend, status: int
) -> None:
    """A token endpoint failing every retry is reported with its status, and the
    waiting picture goes out by itself once it answers again."""
    backend.faults.token_status, backend.faults.token_times = status, 4
    await relay.offer(picture(80))
    message = await message_of(relay)
    assert message == (
        f"fal's token service answered HTTP {status}; the next picture tries again "
        "(if it keeps failing, check FAL_REST_URL and fal's status page)."
    )
    assert backend.faults.token_times == 0
    await image_of(relay)


async def test_fault_token_endpoint_unreachable_says_where_to_look() -> None:
    """A token host that is down names FAL_REST_URL, and the waiting picture goes
    out once the host is up."""
    port, ws_port = _free_port(), _free_port()
    manager = TokenManager("k", rest_url=f"http://127.0.0.1:{port}")
    backend = LocalBackend(key="k", port=port, ws_port=ws_port)
    relay = Relay(
        SETTINGS,
        manager,
        run_host=f"ws://127.0.0.1:{ws_port}",
        backend_label="t",
        name="down",
    )
    try:
        await relay.offer(picture(85))
        assert await message_of(relay) == (
            "fal's token service did not answer; the next picture tries again "
            "(if it keeps failing, check FAL_REST_URL and fal's status page)."
        )
        await backend.open()
        await image_of(relay)
    finally:
        await relay.aclose()
        await manager.aclose()
        await backend.close()


async def test_fault_slow_token_endpoint_only_delays(
    relay: Relay, backend: LocalBackend
) -> None:
    """A token endpoint that takes a second delays the first result, no more."""
    backend.faults.token_delay_s = 1.0
    await relay.offer(picture(95))
    update = await first_update(relay, lambda u: u.image is not None or bool(u.message))
    assert update.image is not None and not update.message


async def test_fault_token_expired_while_idle_is_replaced(
    backend: LocalBackend,
) -> None:
    """A token that expired while the socket was idle is not reused: the next
    picture mints a new one and works, with no message."""
    backend.faults.token_lifetime_cap_s = 1.0
    backend.faults.idle_timeout_s = 0.2
    manager = TokenManager(backend.key, rest_url=backend.rest_url, refresh=False)
    relay = Relay(
        SETTINGS, manager, run_host=backend.run_host, backend_label="t", name="exp"
    )
    try:
        await relay.offer(picture(100))
        await image_of(relay)
        await asyncio.sleep(1.2)  # the backend's token really expires
        await works_again(relay, 101)
        assert backend.stats.tokens_minted == 2 and manager.discards == 0
    finally:
        await relay.aclose()
        await manager.aclose()


# Results.


async def test_fault_huge_result_is_refused_once(
    relay: Relay, backend: LocalBackend
) -> None:
    """A 40 MiB reply is cut off at 16 MiB with a clear message, and the same
    picture is not sent again to fetch another one."""
    backend.faults.result, backend.faults.result_times = "huge", 100
    await relay.offer(picture(110))
    assert await message_of(relay) == (
        "The model sent a reply over 16 MiB, more than any image needs; the next "
        "picture tries again."
    )
    await asyncio.sleep(0.5)
    assert backend.stats.inputs == 1
    backend.faults.result_times = 0
    await works_again(relay)


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (
            "not_a_map",
            "The model sent a reply that cannot be read (expected a map, got "
            "list); the next picture tries again.",
        ),
        (
            "garbage",
            "The model sent a reply that cannot be read (undecodable binary frame "
            "of 15 bytes (FormatError)); the next picture tries again.",
        ),
        ("no_image", "The model answered without a usable image."),
    ],
)
async def test_fault_unusable_result_says_why(
    relay: Relay, backend: LocalBackend, fault: ResultFault, message: str
) -> None:
    """A reply that is a list, undecodable bytes, or a map without an image is
    reported as such, and the next picture works."""
    backend.faults.result, backend.faults.result_times = fault, 1
    await relay.offer(picture(120))
    assert await message_of(relay) == message
    await works_again(relay)


async def test_fault_silent_model_times_out(
    backend: LocalBackend, tokens: TokenManager
) -> None:
    """A model that never answers is given up on after the result timeout, and
    the next frame is answered on a new connection."""
    backend.faults.result, backend.faults.result_times = "silent", 1
    async with RealtimeSession(
        APP, tokens, run_host=backend.run_host, min_interval_s=0.0,
        result_timeout_s=0.5,
    ) as session:  # fmt: skip
        session.send({"prompt": "p", "image_bytes": _jpeg(), "seed": 1})
        (error,) = await next_events(session, 1, WAIT_S)
        assert isinstance(error, FalStreamError)
        assert explain(error) == "The model did not answer in time; reconnecting."
        await asyncio.wait_for(
            _until(lambda: session.state is SessionState.IDLE), WAIT_S
        )
        session.send({"prompt": "p", "image_bytes": _jpeg(), "seed": 2})
        (result,) = await next_events(session, 1, WAIT_S)
        assert isinstance(result, Result) and result.payload["seed"] == 2
        assert session.stats.frames_lost == 1 and session.stats.connects == 2


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 40, 40)).save(buffer, "JPEG")
    return buffer.getvalue()


async def _until(predicate: Callable[[], bool]) -> None:
    while not predicate():
        await asyncio.sleep(0.02)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
