"""A model server for the benchmarks, run in its own process like fal's would be.

Two models:

* ``preview``: the built-in backend (:class:`fal_stream.backend.LocalBackend`)
  with its CPU preview model and the faults given on the command line;
* ``echo``: the built-in backend mints the tokens, and a bare socket server
  speaking fal's realtime protocol answers every input with the input image
  itself, at once or after ``--model-latency-s``, so that a load test measures
  the relay and not a painter.

The key comes from ``BENCH_BACKEND_KEY`` (never the command line). The process
prints one JSON line ``{"rest_url": ..., "run_host": ...}`` when ready, prints
a JSON line of counters for every ``stats`` line on stdin, and exits at EOF.
Started by :class:`common.BackendProcess`; not meant to be run by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import threading
from dataclasses import asdict
from typing import Any

import msgpack
from common import ROOT  # noqa: F401  (puts the checkout on sys.path)
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from fal_stream.backend import Faults, LocalBackend

ECHO_STATS = {"connections": 0, "inputs": 0, "results": 0}
ECHO_LATENCY_S = [0.0]


async def echo(connection: ServerConnection) -> None:
    """Answer each input with a result holding the input image, as fal would."""
    ECHO_STATS["connections"] += 1
    # Like fal, report the model's own time, which pacing learns from.
    model_s = ECHO_LATENCY_S[0]
    timings = json.dumps(
        {"type": "x-fal-message", "action": "timings", "timing": model_s}
    )
    try:
        async for frame in connection:
            if not isinstance(frame, bytes):
                continue
            ECHO_STATS["inputs"] += 1
            if ECHO_LATENCY_S[0] > 0:
                # One input at a time per connection, as a model server works.
                await asyncio.sleep(ECHO_LATENCY_S[0])
            inputs = msgpack.unpackb(frame)
            image = {
                "content": inputs["image_bytes"],
                "content_type": "image/jpeg",
                "width": 512,
                "height": 512,
            }
            result = {
                "images": [image],
                "seed": inputs.get("seed"),
                "timings": {"inference": model_s},
                "nsfw_content_detected": [False],
                "has_nsfw_concepts": [False],
            }
            await connection.send(msgpack.packb(result, use_bin_type=True))
            await connection.send(timings)
            ECHO_STATS["results"] += 1
    except ConnectionClosed:
        pass


async def serve_forever(args: argparse.Namespace) -> None:
    faults = Faults(
        model_latency_s=args.model_latency_s,
        idle_timeout_s=args.idle_timeout_s,
        token_lifetime_cap_s=args.token_lifetime_cap_s,
        token_delay_s=args.token_delay_s,
    )
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    async with LocalBackend(os.environ["BENCH_BACKEND_KEY"], faults=faults) as local:
        run_host = local.run_host
        server = None
        if args.model == "echo":
            ECHO_LATENCY_S[0] = args.model_latency_s
            server = await serve(echo, "127.0.0.1", 0, compression=None, max_size=2**24)
            port = next(iter(server.sockets)).getsockname()[1]
            run_host = f"ws://127.0.0.1:{port}"

        def stats() -> dict[str, Any]:
            counters = asdict(local.stats)
            counters["app_ids"] = sorted(counters["app_ids"])
            if args.model == "echo":
                counters.update(ECHO_STATS)
            return counters

        def read_stdin() -> None:
            for line in sys.stdin:
                if line.strip() == "stats":
                    loop.call_soon_threadsafe(
                        lambda: print(json.dumps(stats()), flush=True)
                    )
            loop.call_soon_threadsafe(done.set)

        threading.Thread(target=read_stdin, daemon=True).start()
        print(json.dumps({"rest_url": local.rest_url, "run_host": run_host}))
        sys.stdout.flush()
        await done.wait()
        if server is not None:
            server.close()
            await server.wait_closed()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["preview", "echo"], default="preview")
    parser.add_argument("--model-latency-s", type=float, default=0.0)
    parser.add_argument("--idle-timeout-s", type=float, default=30.0)
    parser.add_argument("--token-lifetime-cap-s", type=float, default=None)
    parser.add_argument("--token-delay-s", type=float, default=0.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(serve_forever(args))


if __name__ == "__main__":
    main()
