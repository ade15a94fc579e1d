"""The built-in backend's realtime socket and its faults, over loopback."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging

import msgpack
import numpy as np
import pytest
from PIL import Image
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError

from fal_stream.backend import MAX_INPUT_BYTES, Faults, LocalBackend

from .backend_helpers import (
    encoded_image,
    mint,
    next_result,
    next_text,
    packed_input,
    socket_url,
)


async def _open(backend: LocalBackend, **query: str | int) -> ClientConnection:
    return await connect(socket_url(backend, mint(backend), **query), max_size=None)


async def _closed_with(ws: ClientConnection) -> int | None:
    """Wait for the server to close; return its close code (None: no frame)."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await ws.recv()
    received = closed.value.rcvd
    return received.code if received else None


async def _internal_error_then_close(ws: ClientConnection) -> str:
    message = await next_text(ws)
    assert message["type"] == "x-fal-error"
    assert message["error"] == "INTERNAL_ERROR"
    assert await _closed_with(ws) == 1000
    reason: str = message["reason"]
    return reason


async def test_socket_result_shape(backend: LocalBackend) -> None:
    """A result is a msgpack map with a JPEG of the input size, then timings."""
    async with await _open(backend) as ws:
        await ws.send(packed_input(seed=42, num_inference_steps=3))
        result = msgpack.unpackb(await ws.recv(), raw=False)
        timings = json.loads(await ws.recv())

    (image,) = result["images"]
    assert (image["width"], image["height"]) == (64, 48)
    assert image["content_type"] == "image/jpeg"
    assert Image.open(io.BytesIO(image["content"])).size == (64, 48)
    assert result["seed"] == 42
    assert result["num_inference_steps"] == 3
    assert result["nsfw_content_detected"] == [False]
    assert result["has_nsfw_concepts"] == [False]
    assert result["timings"]["inference"] >= 0
    assert timings["type"] == "x-fal-message"
    assert timings["action"] == "timings"
    assert timings["timing"] == result["timings"]["inference"]
    assert backend.stats.results == 1
    assert backend.stats.last_prompt == "a red barn"
    assert "request_id" not in result


async def test_socket_echoes_a_request_id(backend: LocalBackend) -> None:
    """A string request_id in an input comes back in its result."""
    async with await _open(backend) as ws:
        await ws.send(packed_input(request_id="frame-12"))
        assert (await next_result(ws))["request_id"] == "frame-12"


async def test_socket_sync_mode_returns_a_data_uri(backend: LocalBackend) -> None:
    """With sync_mode the image comes as a base64 data URI under ``url``."""
    async with await _open(backend) as ws:
        await ws.send(packed_input(sync_mode=True))
        (image,) = (await next_result(ws))["images"]

    assert "content" not in image
    header, _, payload = image["url"].partition(",")
    assert header == "data:image/jpeg;base64"
    assert Image.open(io.BytesIO(base64.b64decode(payload))).format == "JPEG"


async def test_socket_reads_an_image_url_data_uri(backend: LocalBackend) -> None:
    """An input may carry its image as a PNG data URI in ``image_url``."""
    png = encoded_image(30, 20, "blue", fmt="PNG")
    uri = "data:image/png;base64," + base64.b64encode(png).decode()
    async with await _open(backend) as ws:
        await ws.send(packed_input(image_bytes=None, image_url=uri))
        (image,) = (await next_result(ws))["images"]

    assert (image["width"], image["height"]) == (30, 20)


async def test_socket_without_timings() -> None:
    """send_timings=False leaves out the timings message."""
    with LocalBackend(send_timings=False) as backend:
        async with await _open(backend) as ws:
            # One input at a time: a second sent at once may replace the first
            # while it is still pending, and then only one answer comes.
            await ws.send(packed_input(seed=1))
            first = await ws.recv()
            await ws.send(packed_input(seed=2))
            second = await ws.recv()

    assert isinstance(first, bytes)
    assert isinstance(second, bytes)


async def test_socket_refuses_text_frames(backend: LocalBackend) -> None:
    """A text frame gets INTERNAL_ERROR and a close with 1000, as on fal."""
    async with await _open(backend) as ws:
        await ws.send(json.dumps({"prompt": "x"}))
        reason = await _internal_error_then_close(ws)

    assert "binary" in reason
    assert backend.stats.errors_sent == 1


@pytest.mark.parametrize(
    ("frame", "said"),
    [
        (b"\xc1\xc1 not msgpack", "msgpack"),
        (msgpack.packb([1, 2, 3]), "map"),
        (msgpack.packb({"prompt": "x"}), "no image"),
        (packed_input(image_bytes=b"not an image"), "image"),
        (packed_input(image_bytes=None, image_url="https://example.com/a.png"), "data"),
        (
            packed_input(image_bytes=None, image_url="data:image/png;base64,@@"),
            "base64",
        ),
        (packed_input(image_bytes="text"), "image_bytes"),
        (packed_input(prompt=None), "prompt"),
        (packed_input(strength="high"), "strength"),
        (packed_input(seed=True), "seed"),
        (packed_input(sync_mode="yes"), "sync_mode"),
    ],
)
async def test_socket_refuses_bad_inputs(
    backend: LocalBackend, frame: bytes, said: str
) -> None:
    """A bad input gets INTERNAL_ERROR with a reason naming the problem."""
    async with await _open(backend) as ws:
        await ws.send(frame)
        reason = await _internal_error_then_close(ws)

    assert said in reason


async def test_socket_clamps_out_of_range_numbers(backend: LocalBackend) -> None:
    """Numbers out of range are clamped, not refused; unknown fields are ignored."""
    async with await _open(backend) as ws:
        await ws.send(
            packed_input(strength=7, num_inference_steps=99, seed=-5, extra="x")
        )
        result = await next_result(ws)

    assert result["num_inference_steps"] == 8
    assert result["seed"] == 0


async def test_socket_idle_timeout(backend: LocalBackend) -> None:
    """Without input for idle_timeout_s, fal's TIMEOUT comes, then close 1000."""
    backend.faults.idle_timeout_s = 0.3
    async with await _open(backend) as ws:
        await ws.send(packed_input())
        await next_result(ws)
        message = await next_text(ws)
        code = await _closed_with(ws)

    assert message == {
        "type": "x-fal-error",
        "error": "TIMEOUT",
        "reason": "no inputs, reconnect when needed!",
    }
    assert code == 1000
    assert backend.stats.timeouts_sent == 1


async def test_socket_model_time_is_not_idle_time(backend: LocalBackend) -> None:
    """An input that takes longer than the idle timeout still gets its result."""
    backend.faults.idle_timeout_s = 0.2
    backend.faults.model_latency_s = 0.5
    async with await _open(backend) as ws:
        await ws.send(packed_input(seed=9))
        assert (await next_result(ws))["seed"] == 9


async def _results_of_burst(ws: ClientConnection, seeds: list[int]) -> list[int]:
    for seed in seeds:
        await ws.send(packed_input(seed=seed))
    answered = []
    while not answered or answered[-1] != seeds[-1]:
        answered.append((await next_result(ws))["seed"])
    return answered


async def test_socket_newest_pending_input_wins(backend: LocalBackend) -> None:
    """A burst during a slow input keeps only the newest pending one."""
    backend.faults.model_latency_s = 0.3
    seeds = [11, 12, 13, 14, 15]
    async with await _open(backend) as ws:
        answered = await _results_of_burst(ws, seeds)

    # The model may have started on an early input before the rest arrived;
    # after that only the newest pending one is answered.
    assert answered[-1] == 15 and len(answered) <= 2
    assert answered == sorted(answered)
    assert backend.stats.inputs == 5
    assert backend.stats.inputs_dropped == 5 - len(answered)


async def test_socket_max_buffering_keeps_more(backend: LocalBackend) -> None:
    """With max_buffering=3 the three newest pending inputs are all answered."""
    backend.faults.model_latency_s = 0.2
    seeds = [1, 2, 3, 4, 5, 6]
    async with await _open(backend, max_buffering=3) as ws:
        answered = await _results_of_burst(ws, seeds)

    assert answered[-3:] == [4, 5, 6]
    assert len(answered) <= 4 and answered == sorted(answered)


async def test_socket_serves_connections_concurrently(backend: LocalBackend) -> None:
    """Several sockets with a slow model each get their own results."""
    backend.faults.model_latency_s = 0.2

    async def one(seed: int) -> int:
        async with await _open(backend) as ws:
            await ws.send(packed_input(seed=seed))
            return int((await next_result(ws))["seed"])

    assert await asyncio.gather(*(one(seed) for seed in range(6))) == list(range(6))
    assert backend.stats.connections == 6


async def test_fault_drop_aborts_without_close_frame(backend: LocalBackend) -> None:
    """drop_after_inputs aborts TCP with no close frame, then clears by itself."""
    backend.faults.drop_after_inputs = 2
    backend.faults.drop_times = 1
    async with await _open(backend) as ws:
        await ws.send(packed_input(seed=1))
        await next_result(ws)
        await ws.send(packed_input(seed=2))
        with pytest.raises(ConnectionClosedError) as dropped:
            await next_result(ws)
        assert dropped.value.rcvd is None

    async with await _open(backend) as ws:
        await ws.send(packed_input(seed=3))
        await ws.send(packed_input(seed=4))
        assert (await next_result(ws))["seed"] in (3, 4)


async def test_fault_close_code(backend: LocalBackend) -> None:
    """close_code closes the socket with that code once the inputs arrived."""
    backend.faults.close_code = 1011
    backend.faults.close_after_inputs = 1
    backend.faults.close_times = 1
    async with await _open(backend) as ws:
        await ws.send(packed_input())
        assert await _closed_with(ws) == 1011


async def test_fault_unauthorized_after_open(backend: LocalBackend) -> None:
    """unauthorized_times sends fal's legacy Unauthorized message, then 1000."""
    backend.faults.unauthorized_times = 1
    async with await _open(backend) as ws:
        assert await next_text(ws) == {"status": "error", "error": "Unauthorized"}
        assert await _closed_with(ws) == 1000


async def test_fault_internal_error(backend: LocalBackend) -> None:
    """internal_error_times answers an input with INTERNAL_ERROR and closes."""
    backend.faults.internal_error_times = 1
    async with await _open(backend) as ws:
        await ws.send(packed_input())
        assert "injected" in await _internal_error_then_close(ws)


async def test_fault_nsfw_black_image(backend: LocalBackend) -> None:
    """nsfw_times flags the result and blacks out its image."""
    backend.faults.nsfw_times = 1
    async with await _open(backend) as ws:
        await ws.send(packed_input(seed=1))
        flagged = await next_result(ws)
        await ws.send(packed_input(seed=2))
        clean = await next_result(ws)

    assert flagged["nsfw_content_detected"] == [True]
    pixels = np.asarray(Image.open(io.BytesIO(flagged["images"][0]["content"])))
    assert pixels.max() <= 8
    assert clean["nsfw_content_detected"] == [False]


@pytest.mark.parametrize("fault", ["huge", "not_a_map", "garbage", "no_image"])
async def test_fault_corrupt_results(backend: LocalBackend, fault: str) -> None:
    """Result faults replace one result with a broken one, then clear."""
    backend.faults.result = fault  # type: ignore[assignment]
    backend.faults.result_times = 1
    async with await _open(backend) as ws:
        await ws.send(packed_input(seed=1))
        frame = await ws.recv()
        assert isinstance(frame, bytes)
        await ws.send(packed_input(seed=2))
        assert (await next_result(ws))["seed"] == 2

    if fault == "garbage":
        with pytest.raises(ValueError):
            msgpack.unpackb(frame, raw=False)
        return
    decoded = msgpack.unpackb(frame, raw=False)
    if fault == "not_a_map":
        assert isinstance(decoded, list)
    elif fault == "no_image":
        assert "images" not in decoded
        assert decoded["seed"] == 1
    else:
        assert len(frame) > 32 * 2**20
        assert len(decoded["images"][0]["content"]) > 32 * 2**20


async def test_fault_silent_result(backend: LocalBackend) -> None:
    """A silent result sends nothing at all for that input."""
    backend.faults.result = "silent"
    backend.faults.result_times = 1
    async with await _open(backend) as ws:
        await ws.send(packed_input(seed=1))
        while backend.faults.result_times:
            await asyncio.sleep(0.01)
        await ws.send(packed_input(seed=2))
        assert (await next_result(ws))["seed"] == 2


async def test_socket_survives_client_misbehaviour(
    backend: LocalBackend, caplog: pytest.LogCaptureFixture
) -> None:
    """Oversized frames and abrupt disconnects leave no errors and no damage."""
    caplog.set_level(logging.INFO)
    backend.faults.model_latency_s = 0.1
    # No `async with`: closing again a client whose peer cut it off mid-send
    # trips over its own dead transport (websockets 17.4, client side).
    ws = await _open(backend)
    await ws.send(bytes(MAX_INPUT_BYTES + 1))
    assert await _closed_with(ws) == 1009

    ws = await _open(backend)
    await ws.send(packed_input())
    ws.transport.abort()
    await ws.wait_closed()

    async with await _open(backend) as ws:
        await ws.send(packed_input(seed=5))
        assert (await next_result(ws))["seed"] == 5
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_faults_fresh_per_backend(backend: LocalBackend) -> None:
    """The fixture's backend starts with no faults, which can be swapped."""
    assert backend.faults == Faults(idle_timeout_s=30.0)
    backend.faults = Faults(idle_timeout_s=5)
    assert backend.faults.idle_timeout_s == 5
