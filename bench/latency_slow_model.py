"""Latency under a slow model: newest-frame-wins pacing against a naive FIFO relay.

The built-in backend, in its own process, answers each input after
``--model-latency-s`` (0.2 s) and frames are offered at ``--fps`` (30) for
``--duration-s`` (60). Each frame
carries its number as the seed, which the backend echoes, so every result is
matched to the frame it answers. The age of a result is the time from offering
that frame to receiving its answer.

* ours: :class:`fal_stream.session.RealtimeSession` with the app's defaults
  (0.128 s between sends, 2 in flight); age is ``Result.latency_s``.
* naive FIFO: a plain websockets client that sends every frame as it comes and
  asks the backend to buffer 60 inputs (``max_buffering=60``), as a client
  that trusts the server's queue would.

Also run: ours with one frame in flight instead of two, to show what the second
costs when the model, not the network, is the bottleneck.

Run: ``.venv/bin/python bench/latency_slow_model.py [--duration-s 60]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import msgpack
import websockets
from common import BackendProcess, percentile, report, slope_per_minute
from PIL import Image

from bench.bench_codec import make_frame, pil_encode
from fal_stream import RealtimeSession, Result
from fal_stream.endpoints import AppId, realtime_url
from fal_stream.relay import Controls
from fal_stream.tokens import TokenManager

APP = AppId.parse("fal-ai/fast-lcm-diffusion/image-to-image")


def frame_inputs(jpeg: bytes, number: int) -> dict[str, Any]:
    """The model input for frame ``number``; the seed identifies the frame."""
    return Controls(seed=number).model_inputs(jpeg)


def summarize(ages: list[tuple[float, float]], offered: int) -> dict[str, Any]:
    """Figures of ``(t_since_start_s, age_s)`` points."""
    values = [age * 1000 for _, age in ages]
    half = len(ages) // 2
    return {
        "frames_offered": offered,
        "results": len(ages),
        "age_p50_ms": round(percentile(values, 0.5), 1),
        "age_p95_ms": round(percentile(values, 0.95), 1),
        "age_max_ms": round(max(values), 1) if values else float("nan"),
        "age_trend_ms_per_min": round(
            slope_per_minute([(t, a * 1000) for t, a in ages]), 1
        ),
        "age_trend_second_half_ms_per_min": round(
            slope_per_minute([(t, a * 1000) for t, a in ages[half:]]), 1
        ),
    }


async def run_ours(
    backend: BackendProcess,
    jpeg: bytes,
    fps: float,
    duration_s: float,
    max_in_flight: int = 2,
) -> dict[str, Any]:
    """Offer frames to a RealtimeSession and record the age of every result."""
    tokens = TokenManager(backend.key, rest_url=backend.rest_url)
    session = RealtimeSession(
        APP, tokens, run_host=backend.run_host, max_in_flight=max_in_flight
    )
    offered_at: dict[int, float] = {}
    ages: list[tuple[float, float]] = []
    mismatched = 0
    start = time.monotonic()

    async def consume() -> None:
        nonlocal mismatched
        async for event in session.events():
            if not isinstance(event, Result) or event.latency_s is None:
                continue
            seed = int(event.payload["seed"])
            if seed != event.seq:
                mismatched += 1
            now = time.monotonic()
            # The seed says which frame this is, whatever the pacer believes.
            age = now - offered_at[seed]
            ages.append((now - start, age))

    consumer = asyncio.create_task(consume())
    count = int(duration_s * fps)
    for number in range(1, count + 1):
        await _sleep_until(start + number / fps)
        offered_at[number] = time.monotonic()
        seq = session.send(frame_inputs(jpeg, number))
        assert seq == number, (seq, number)
    await asyncio.sleep(1.0)  # let the last answer land
    await session.aclose()
    consumer.cancel()
    await tokens.aclose()
    figures = summarize(ages, count)
    figures["seed_mismatches"] = mismatched
    figures["frames_sent"] = session.stats.frames_sent
    figures["latency_s_agrees_with_seed"] = mismatched == 0
    return figures


async def run_fifo(
    backend: BackendProcess, jpeg: bytes, fps: float, duration_s: float
) -> dict[str, Any]:
    """Send every frame at once over a plain socket; read results in order."""
    tokens = TokenManager(backend.key, rest_url=backend.rest_url, refresh=False)
    token = await tokens.token(APP)
    await tokens.aclose()
    url = realtime_url(APP, token, run_host=backend.run_host, max_buffering=60)
    sent_at: dict[int, float] = {}
    ages: list[tuple[float, float]] = []
    start = time.monotonic()
    count = int(duration_s * fps)
    dropped_before = backend.stats()["inputs_dropped"]
    async with websockets.connect(url, max_size=2**24, compression=None) as ws:

        async def read() -> None:
            async for message in ws:
                if not isinstance(message, bytes):
                    continue  # timings
                seed = int(msgpack.unpackb(message)["seed"])
                now = time.monotonic()
                ages.append((now - start, now - sent_at[seed]))

        reader = asyncio.create_task(read())
        for number in range(1, count + 1):
            await _sleep_until(start + number / fps)
            sent_at[number] = time.monotonic()
            await ws.send(msgpack.packb(frame_inputs(jpeg, number)))
        await asyncio.sleep(1.0)
        reader.cancel()
    figures = summarize(ages, count)
    dropped = backend.stats()["inputs_dropped"] - dropped_before
    figures["inputs_dropped_by_backend"] = dropped
    return figures


async def _sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    jpeg = pil_encode(Image.fromarray(make_frame(512, 512)))
    with BackendProcess(model_latency_s=args.model_latency_s) as backend:
        ours = await run_ours(backend, jpeg, args.fps, args.duration_s)
        fifo = await run_fifo(backend, jpeg, args.fps, args.duration_s)
        # Not the default: shows what the second frame in flight costs here.
        one = await run_ours(backend, jpeg, args.fps, args.duration_s, 1)
    return {
        "model_latency_s": args.model_latency_s,
        "fps_offered": args.fps,
        "duration_s": args.duration_s,
        "ours": ours,
        "naive_fifo": fifo,
        "ours_max_in_flight_1": one,
        "p95_ratio_fifo_over_ours": round(fifo["age_p95_ms"] / ours["age_p95_ms"], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--model-latency-s", type=float, default=0.2)
    parser.add_argument("--out", help="write the JSON here too")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    rows = [
        [
            name,
            figures["results"],
            figures["age_p50_ms"],
            figures["age_p95_ms"],
            figures["age_max_ms"],
            figures["age_trend_ms_per_min"],
        ]
        for name, figures in (
            ("ours (newest wins)", result["ours"]),
            ("naive FIFO (max_buffering=60)", result["naive_fifo"]),
            ("ours, max_in_flight=1 (not default)", result["ours_max_in_flight_1"]),
        )
    ]
    report(
        "latency_slow_model",
        result,
        ["relay", "results", "age p50 ms", "age p95 ms", "age max ms", "trend ms/min"],
        rows,
        args.out,
    )


if __name__ == "__main__":
    main()
