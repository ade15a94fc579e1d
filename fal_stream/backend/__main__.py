"""Run the built-in backend on its own: ``python -m fal_stream.backend``.

Useful to point the app, fal's own clients or a browser demo at a local server
speaking fal's realtime protocol. Stop it with Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import secrets
import signal
import sys
from collections.abc import Sequence

from ..redact import install_redaction
from .faults import Faults
from .server import BackendError, LocalBackend


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m fal_stream.backend",
        description="Serve fal's token and realtime APIs locally, with a CPU "
        "preview model instead of a diffusion model.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument(
        "--port", type=int, default=0, help="REST port (default: a free one)"
    )
    parser.add_argument(
        "--ws-port",
        type=int,
        default=None,
        help="realtime socket port (default: --port + 1, or a free one)",
    )
    parser.add_argument(
        "--key", default=None, help="key clients must send (default: a random one)"
    )
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="extra model time per input"
    )
    parser.add_argument(
        "--idle-timeout-s",
        type=float,
        default=Faults.idle_timeout_s,
        help="seconds without input before a socket is closed with TIMEOUT",
    )
    parser.add_argument(
        "--token-lifetime-cap-s",
        type=float,
        default=None,
        help="issue tokens valid for at most this long",
    )
    args = parser.parse_args(argv)
    if args.ws_port is None:
        args.ws_port = args.port + 1 if args.port else 0
    return args


async def serve(backend: LocalBackend, generated_key: bool) -> None:
    """Serve until cancelled, after printing how to reach the backend."""
    stop = asyncio.Event()
    # SIGTERM (from a process manager) stops as cleanly as Ctrl-C does.
    with contextlib.suppress(NotImplementedError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with backend:
        _print_banner(backend, generated_key)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the backend until Ctrl-C; return the exit status."""
    args = parse_args(argv)
    key = args.key or secrets.token_urlsafe(24)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    install_redaction(key)
    faults = Faults(
        model_latency_s=args.latency_ms / 1000,
        idle_timeout_s=args.idle_timeout_s,
        token_lifetime_cap_s=args.token_lifetime_cap_s,
    )
    backend = LocalBackend(
        key, host=args.host, port=args.port, ws_port=args.ws_port, faults=faults
    )
    try:
        asyncio.run(serve(backend, generated_key=args.key is None))
    except KeyboardInterrupt:
        print("\nstopped", file=sys.stderr)
    except BackendError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _print_banner(backend: LocalBackend, generated_key: bool) -> None:
    # The key goes to the terminal only, never through logging; it is a key for
    # this local server, worthless anywhere else.
    key_line = (
        f"  key:       {backend.key}\n"
        "             (generated for this run: a local-only key, not a fal key)"
        if generated_key
        else "  key:       the one you passed with --key"
    )
    fal_key = backend.key if generated_key else "<the key you passed>"
    print(
        "fal_stream built-in backend (local preview model, not AI)\n"
        f"  REST URL:  {backend.rest_url}\n"
        f"  run host:  {backend.run_host}\n"
        f"{key_line}\n"
        "Point the app at it with:\n"
        f"  FAL_REST_URL={backend.rest_url} FAL_RUN_HOST={backend.run_host} "
        f"FAL_KEY={fal_key}\n"
        "Press Ctrl-C to stop.",
        flush=True,
    )
    if not _is_loopback(backend.rest_url):
        print("warning: listening beyond this machine", file=sys.stderr)


def _is_loopback(url: str) -> bool:
    host = url.split("://", 1)[1].rsplit(":", 1)[0].strip("[]")
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host).is_loopback
    return host == "localhost"


if __name__ == "__main__":
    sys.exit(main())
