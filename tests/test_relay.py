"""Per-browser-session relays and their pool, against the built-in backend."""

from __future__ import annotations

import asyncio
import base64
import math

import numpy as np
import pytest

from fal_stream import frames
from fal_stream.backend import LocalBackend
from fal_stream.config import Settings
from fal_stream.errors import BadInputError
from fal_stream.pool import BusyError, RelayPool
from fal_stream.relay import MAX_PROMPT_CHARS, MAX_SEED, Controls, Relay, Update
from fal_stream.tokens import TokenManager

SETTINGS = Settings(min_interval_s=0.0, frame_size=128)


def picture(color: tuple[int, int, int]) -> np.ndarray:
    image = np.full((96, 128, 3), 255, np.uint8)
    image[20:80, 30:100] = color
    return image


def make_relay(backend: LocalBackend, tokens: TokenManager, name: str) -> Relay:
    return Relay(
        SETTINGS, tokens, run_host=backend.run_host, backend_label="test", name=name
    )


async def next_image(relay: Relay, timeout_s: float = 10.0) -> Update:
    async def first() -> Update:
        async for update in relay.updates():
            if update.image is not None or update.message:
                return update
        raise AssertionError("updates ended")

    return await asyncio.wait_for(first(), timeout_s)


def test_controls_clean_clamps_and_sanitises() -> None:
    """Out-of-range, NaN and odd values become sane ones instead of errors."""
    controls = Controls.clean(
        prompt="a\x00cat\n\x1b[31m" + "🐱" * 10 + "x" * 200_000,
        strength=math.nan,
        seed=2**80,
        steps=-3,
    )
    assert "\x00" not in controls.prompt and "\x1b" not in controls.prompt
    assert controls.prompt.startswith("a cat [31m🐱")
    assert len(controls.prompt) == MAX_PROMPT_CHARS
    assert (controls.strength, controls.seed, controls.steps) == (0.6, MAX_SEED, 1)
    assert Controls.clean(strength="1e9", steps="12", seed=-5).strength == 1.0
    assert Controls.clean(steps=12).steps == 8 and Controls.clean(seed=-5).seed == 0
    assert Controls.clean(strength=None, seed="x").seed == 42


def test_controls_clean_refuses_nonsense_app_id() -> None:
    """A nonsense app id is refused with what a good one looks like."""
    with pytest.raises(BadInputError, match="owner/app"):
        Controls.clean(app_id="not an app id!")


async def test_relay_result_reaches_updates(
    backend: LocalBackend, tokens: TokenManager
) -> None:
    """A picture offered comes back as a data URI update with a status line."""
    relay = make_relay(backend, tokens, "a")
    await relay.offer(picture((200, 0, 0)))
    update = await next_image(relay)
    assert update.image is not None and update.image.startswith("data:image/jpeg")
    assert "test" in update.status and "results" in update.status
    await relay.aclose()


async def test_relays_never_cross(backend: LocalBackend, tokens: TokenManager) -> None:
    """Two sessions drawing different colours each see only their own."""
    red, blue = make_relay(backend, tokens, "red"), make_relay(backend, tokens, "blue")
    await red.offer(picture((220, 0, 0)))
    await blue.offer(picture((0, 0, 220)))
    for relay, channel in ((red, 0), (blue, 2)):
        update = await next_image(relay)
        assert update.image is not None
        array = frames.to_array(base64.b64decode(update.image.split(",", 1)[1]))
        assert array.shape[:2] == (128, 128)
        # The backend's preview keeps the picture's dominant hue.
        centre = array[40:88, 40:88].reshape(-1, 3).mean(axis=0)
        assert centre.argmax() == channel, centre
        await relay.aclose()


async def test_relay_control_change_resends_last_picture(
    backend: LocalBackend, tokens: TokenManager
) -> None:
    """Changing the prompt re-sends the last picture without a new stroke."""
    relay = make_relay(backend, tokens, "c")
    await relay.offer(picture((0, 150, 0)))
    await next_image(relay)
    await relay.set_controls(Controls.clean(prompt="a blue ocean"))
    await next_image(relay)
    assert backend.stats.last_prompt == "a blue ocean"
    await relay.aclose()


async def test_relay_blank_picture_not_sent(
    backend: LocalBackend, tokens: TokenManager
) -> None:
    """An empty sketch sends nothing."""
    relay = make_relay(backend, tokens, "blank")
    await relay.offer(np.full((64, 64, 3), 255, np.uint8))
    await relay.offer("")
    await asyncio.sleep(0.2)
    assert backend.stats.inputs == 0
    await relay.aclose()


async def test_relay_unsafe_result_keeps_previous_frame(
    backend: LocalBackend, tokens: TokenManager
) -> None:
    """A result flagged unsafe shows no image and says why."""
    backend.faults.nsfw_times = 1
    relay = make_relay(backend, tokens, "nsfw")
    await relay.offer(picture((10, 10, 10)))
    update = await next_image(relay)
    assert update.image is None and "unsafe" in update.message
    await relay.aclose()


async def test_relay_bad_picture_raises_clear_error(
    backend: LocalBackend, tokens: TokenManager
) -> None:
    """A non-image is refused with a message, and the relay keeps working."""
    relay = make_relay(backend, tokens, "bad")
    with pytest.raises(BadInputError):
        await relay.offer(b"%PDF-1.7 not an image")
    await relay.offer(picture((0, 0, 200)))
    assert (await next_image(relay)).image is not None
    await relay.aclose()


async def test_pool_busy_when_full(backend: LocalBackend, tokens: TokenManager) -> None:
    """One session more than the limit gets a clear busy message."""
    pool = RelayPool(lambda sid: make_relay(backend, tokens, sid), max_sessions=2)
    a, b = pool.get("a"), pool.get("b")
    assert pool.get("a") is a and len(pool) == 2
    with pytest.raises(BusyError, match="try again"):
        pool.get("c")
    await pool.close("a")
    assert pool.get("c") is not b
    await pool.aclose()


async def test_pool_reap_idle_and_time_limit(
    backend: LocalBackend, tokens: TokenManager
) -> None:
    """Idle sessions let go of their connection; old ones are closed with a
    message that says to reload."""
    pool = RelayPool(
        lambda sid: make_relay(backend, tokens, sid),
        idle_close_s=10,
        session_limit_s=100,
    )
    relay = pool.get("x")
    await relay.offer(picture((100, 100, 0)))
    await next_image(relay)
    now = relay.last_active
    assert await pool.reap(now + 11) == [] and pool.find("x") is relay
    assert relay.status().endswith("waiting for a picture")
    assert await pool.reap(relay.started_at + 100) == ["x"]
    assert relay.closed and pool.find("x") is None
    updates = [u async for u in relay.updates()]
    assert "reload" in updates[-1].message
    await pool.aclose()


async def test_pool_closes_abandoned_sessions(
    backend: LocalBackend, tokens: TokenManager
) -> None:
    """A session that never sends anything (a script with no heartbeat) loses its
    place after the abandon time, so it cannot hold the app busy for ever."""
    pool = RelayPool(
        lambda sid: make_relay(backend, tokens, sid),
        max_sessions=1,
        idle_close_s=10,
        abandon_s=50,
    )
    squatter = pool.get("squatter")
    with pytest.raises(BusyError):
        pool.get("visitor")
    assert await pool.reap(squatter.last_active + 49) == []
    assert await pool.reap(squatter.last_active + 50) == ["squatter"]
    updates = [u async for u in squatter.updates()]
    assert "idle for" in updates[-1].message and "reload" in updates[-1].message
    assert pool.get("visitor") is not None
    await pool.aclose()


async def test_relay_cleared_sketch_clears_output(
    backend: LocalBackend, tokens: TokenManager
) -> None:
    """Clearing the sketch clears the output instead of leaving the last result."""
    relay = make_relay(backend, tokens, "clear")
    await relay.offer(picture((0, 0, 200)))
    assert (await next_image(relay)).image

    async def cleared() -> Update:
        async for update in relay.updates():
            if update.image == "":
                return update
        raise AssertionError("updates ended")

    waiter = asyncio.create_task(cleared())
    await asyncio.sleep(0.05)
    await relay.offer(np.full((64, 64, 3), 255, np.uint8))
    assert (await asyncio.wait_for(waiter, 5)).image == ""
    await relay.aclose()
