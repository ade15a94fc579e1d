"""Throughput of one session against its pacing limit.

The model is a server in its own process that speaks fal's protocol and echoes
the input image (``bench/backend_proc.py --model echo``): first answering at
once, then taking ``--model-latency-s`` (0.05 s) per input, one input at a time
per connection as a model server does. Frames are offered far faster than any
setting lets out (``--offer-fps``, 1000), so results per second show the cap
each setting puts on a session: ``1 / min_interval_s`` when that binds, else
the offer rate (instant model) or the model (slow model). Frames lost and
errors are counted too.

Run: ``.venv/bin/python bench/throughput.py [--duration-s 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from common import BackendProcess, report
from PIL import Image

from bench.bench_codec import make_frame, pil_encode
from fal_stream import RealtimeSession, Result
from fal_stream.endpoints import AppId
from fal_stream.relay import Controls
from fal_stream.tokens import TokenManager

APP = AppId.parse("fal-ai/fast-lcm-diffusion/image-to-image")
# (min_interval_s, max_in_flight, max_buffering asked of the server)
SETTINGS: tuple[tuple[float, int, int | None], ...] = (
    (0.128, 2, None),
    (0.0, 1, None),
    (0.0, 2, None),
    (0.0, 4, None),
    (0.0, 4, 4),
)
WARMUP_S = 1.0


async def run_one(
    backend: BackendProcess,
    jpeg: bytes,
    setting: tuple[float, int, int | None],
    offer_fps: float,
    duration_s: float,
) -> dict[str, Any]:
    """Offer frames for ``duration_s`` and count results after a warm-up."""
    min_interval_s, max_in_flight, max_buffering = setting
    tokens = TokenManager(backend.key, rest_url=backend.rest_url)
    session = RealtimeSession(
        APP,
        tokens,
        run_host=backend.run_host,
        min_interval_s=min_interval_s,
        max_in_flight=max_in_flight,
        max_buffering=max_buffering,
    )
    inputs = Controls().model_inputs(jpeg)
    result_times: list[float] = []
    latencies: list[float] = []
    errors: list[str] = []

    async def consume() -> None:
        async for event in session.events():
            if isinstance(event, Result):
                result_times.append(time.monotonic())
                if event.latency_s is not None:
                    latencies.append(event.latency_s)
            else:
                errors.append(type(event).__name__)

    consumer = asyncio.create_task(consume())
    start = time.monotonic()
    offered = 0
    while time.monotonic() - start < duration_s:
        session.send(inputs)
        offered += 1
        await asyncio.sleep(1 / offer_fps)
    end = time.monotonic()
    stats = session.stats
    await session.aclose()
    consumer.cancel()
    await tokens.aclose()

    counted = [t for t in result_times if start + WARMUP_S <= t <= end]
    rate = len(counted) / (end - start - WARMUP_S)
    limit = 1 / min_interval_s if min_interval_s > 0 else float("inf")
    latencies.sort()
    return {
        "min_interval_s": min_interval_s,
        "max_in_flight": max_in_flight,
        "max_buffering": max_buffering,
        "offered_per_s": round(offered / (end - start), 1),
        "results_per_s": round(rate, 2),
        "pacing_limit_per_s": round(limit, 2) if limit != float("inf") else None,
        "share_of_limit": round(rate / limit, 3) if limit != float("inf") else None,
        "latency_p50_ms": round(latencies[len(latencies) // 2] * 1000, 1)
        if latencies
        else None,
        "frames_sent": stats.frames_sent,
        "frames_lost": stats.frames_lost,
        "errors": errors,
        "model_time_ms": round((stats.model_time_s or 0) * 1000, 2),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    jpeg = pil_encode(Image.fromarray(make_frame(512, 512)))
    rows = []
    for latency_s in (0.0, args.model_latency_s):
        with BackendProcess(model="echo", model_latency_s=latency_s) as backend:
            for setting in SETTINGS:
                row = await run_one(
                    backend, jpeg, setting, args.offer_fps, args.duration_s
                )
                rows.append({"model_latency_s": latency_s, **row})
    return {"offer_fps": args.offer_fps, "duration_s": args.duration_s, "runs": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=5.0)
    parser.add_argument("--model-latency-s", type=float, default=0.05)
    parser.add_argument("--offer-fps", type=float, default=1000.0)
    parser.add_argument("--out", help="write the JSON here too")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    rows = [
        [
            run["model_latency_s"],
            run["offered_per_s"],
            run["min_interval_s"],
            run["max_in_flight"],
            run["max_buffering"] or "1 (default)",
            run["results_per_s"],
            run["pacing_limit_per_s"] or "none",
            run["share_of_limit"] or "-",
            run["latency_p50_ms"],
            run["frames_lost"],
            len(run["errors"]),
        ]
        for run in result["runs"]
    ]
    report(
        "throughput",
        result,
        [
            "model s",
            "offered/s",
            "min_interval s",
            "in flight",
            "server buffer",
            "results/s",
            "limit/s",
            "x limit",
            "latency p50 ms",
            "lost",
            "errors",
        ],
        rows,
        args.out,
    )


if __name__ == "__main__":
    main()
