"""Token mints and reconnects: our token manager against one mint per connection.

Mints: one session streams in bursts (``--burst-s`` at 10 frames a second,
then ``--pause-s`` idle) for ``--duration-s`` against the built-in backend,
which closes an idle socket with fal's TIMEOUT after 2 s and caps tokens at
``--lifetime-s`` (30 s, so that a short run shows several refreshes). Our
:class:`~fal_stream.tokens.TokenManager` mints once per alias and refreshes at
90% of a token's life while in use; fal's Python client mints once per
connection, so its mints are the connections counted over the same run. Both
are scaled to an hour by multiplying by ``3600 / duration``; ours is also
stated for the app's default 120 s lifetime by scaling with the lifetime
ratio (mints while streaming are one per 0.9 lifetimes).

Reconnects: the time from the first frame after an idle TIMEOUT to its result
(token cached, socket opened again), against a cold start (a new token manager
and session: mint, connect, answer), with the mint answered at once and, to
stand in for a remote REST call, after ``--mint-delay-s`` (0.15 s).

Run: ``.venv/bin/python bench/tokens_reconnect.py [--duration-s 120]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from common import BackendProcess, report, summary_ms
from PIL import Image

from bench.bench_codec import make_frame, pil_encode
from fal_stream import RealtimeSession, Result, SessionState
from fal_stream.endpoints import AppId
from fal_stream.relay import Controls
from fal_stream.tokens import TokenManager

APP = AppId.parse("fal-ai/fast-lcm-diffusion/image-to-image")
IDLE_TIMEOUT_S = 2.0
DEFAULT_LIFETIME_S = 120.0


async def first_result(session: RealtimeSession, inputs: dict[str, Any]) -> float:
    """Send one frame and return the seconds from offering it to its result."""
    events = session.events()
    session.send(inputs)
    async for event in events:
        if isinstance(event, Result) and event.latency_s is not None:
            return event.latency_s
    raise RuntimeError("the session closed before its result")


async def mints(args: argparse.Namespace, inputs: dict[str, Any]) -> dict[str, Any]:
    """Stream in bursts and count mints against connections."""
    with BackendProcess(
        idle_timeout_s=IDLE_TIMEOUT_S, token_lifetime_cap_s=args.lifetime_s
    ) as backend:
        tokens = TokenManager(
            backend.key, rest_url=backend.rest_url, lifetime_s=args.lifetime_s
        )
        session = RealtimeSession(APP, tokens, run_host=backend.run_host)
        start = time.monotonic()
        bursts = 0
        while time.monotonic() - start < args.duration_s:
            bursts += 1
            burst_end = time.monotonic() + args.burst_s
            while time.monotonic() < burst_end:
                session.send(inputs)
                await asyncio.sleep(0.1)
            await asyncio.sleep(args.pause_s)
        elapsed = time.monotonic() - start
        connects = session.stats.connects
        await session.aclose()
        ours = tokens.mints
        await tokens.aclose()
        served = backend.stats()
    per_hour = 3600 / elapsed
    ours_default = ours * per_hour * args.lifetime_s / DEFAULT_LIFETIME_S
    return {
        "duration_s": round(elapsed, 1),
        "bursts": bursts,
        "burst_s": args.burst_s,
        "pause_s": args.pause_s,
        "token_lifetime_s": args.lifetime_s,
        "ours_mints": ours,
        "connections": connects,
        "backend_tokens_minted": served["tokens_minted"],
        "backend_connections": served["connections"],
        "backend_timeouts_sent": served["timeouts_sent"],
        "ours_mints_per_hour": round(ours * per_hour, 1),
        "per_connection_mints_per_hour": round(connects * per_hour, 1),
        "ours_mints_per_hour_at_120s_lifetime": round(ours_default, 1),
        "ratio_per_connection_over_ours": round(connects / max(ours, 1), 1),
    }


async def reconnects(
    inputs: dict[str, Any], repeats: int, mint_delay_s: float
) -> dict[str, Any]:
    """Time first results after an idle TIMEOUT and after a cold start."""
    with BackendProcess(
        idle_timeout_s=IDLE_TIMEOUT_S, token_delay_s=mint_delay_s
    ) as backend:
        tokens = TokenManager(backend.key, rest_url=backend.rest_url)
        session = RealtimeSession(APP, tokens, run_host=backend.run_host)
        await first_result(session, inputs)
        after_idle = []
        for _ in range(repeats):
            # Wait for the backend's TIMEOUT to close the socket.
            await asyncio.sleep(IDLE_TIMEOUT_S + 0.3)
            while session.state is not SessionState.IDLE:
                await asyncio.sleep(0.05)
            after_idle.append(await first_result(session, inputs))
        mints_during = tokens.mints
        await session.aclose()
        await tokens.aclose()

        cold = []
        for _ in range(repeats):
            fresh = TokenManager(backend.key, rest_url=backend.rest_url)
            started = RealtimeSession(APP, fresh, run_host=backend.run_host)
            cold.append(await first_result(started, inputs))
            await started.aclose()
            await fresh.aclose()
    idle, cold_ms = summary_ms(after_idle), summary_ms(cold)
    return {
        "mint_delay_s": mint_delay_s,
        "after_idle_timeout": idle,
        "cold_mint_and_connect": cold_ms,
        "mints_during_idle_cycles": mints_during,
        "ratio_cold_over_idle_p50": round(cold_ms["p50_ms"] / idle["p50_ms"], 2),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    jpeg = pil_encode(Image.fromarray(make_frame(512, 512)))
    inputs = Controls().model_inputs(jpeg)
    return {
        "mints": await mints(args, inputs),
        "reconnect": [
            await reconnects(inputs, args.repeats, delay)
            for delay in (0.0, args.mint_delay_s)
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=120.0)
    parser.add_argument("--burst-s", type=float, default=2.0)
    parser.add_argument("--pause-s", type=float, default=4.0)
    parser.add_argument("--lifetime-s", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--mint-delay-s", type=float, default=0.15)
    parser.add_argument("--out", help="write the JSON here too")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    m = result["mints"]
    rows: list[list[Any]] = [
        [
            "mints per hour (30 s tokens)",
            m["ours_mints_per_hour"],
            m["per_connection_mints_per_hour"],
            m["ratio_per_connection_over_ours"],
        ],
        [
            "mints per hour, scaled to 120 s tokens",
            m["ours_mints_per_hour_at_120s_lifetime"],
            m["per_connection_mints_per_hour"],
            "",
        ],
    ]
    for r in result["reconnect"]:
        rows.append(
            [
                f"first result p50 ms, mint delay {r['mint_delay_s']:g} s",
                r["after_idle_timeout"]["p50_ms"],
                r["cold_mint_and_connect"]["p50_ms"],
                r["ratio_cold_over_idle_p50"],
            ]
        )
    report(
        "tokens_reconnect",
        result,
        ["figure", "ours", "per connection / cold", "ratio"],
        rows,
        args.out,
    )


if __name__ == "__main__":
    main()
