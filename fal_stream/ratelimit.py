"""Per-client request budgets, with no I/O: who a request counts against, and
whether it may go ahead."""

from __future__ import annotations

import math
import time

from .tokens import Clock

MAX_TRACKED_CLIENTS = 10_000


def client_address(peer: str | None, forwarded_for: str | None, hops: int) -> str:
    """Return the address a request is counted against.

    With ``hops`` reverse proxies in front, the entry the outermost of them
    appended to ``X-Forwarded-For`` is trusted, and nothing to its left, which
    the client itself may have written.

    Args:
        peer: The address the connection came from.
        forwarded_for: The ``X-Forwarded-For`` header, if any.
        hops: How many reverse proxies stand in front of this server.
    """
    if hops > 0 and forwarded_for:
        entries = [e.strip() for e in forwarded_for.split(",") if e.strip()]
        if len(entries) >= hops:
            return entries[-hops]
    return peer or "unknown"


class RateLimiter:
    """A token bucket per client: ``per_min`` requests a minute, in bursts of at
    most ``per_min``.

    Args:
        per_min: Requests allowed per client per minute.
        clock: Monotonic clock in seconds.
        max_clients: Clients tracked at most; full buckets are forgotten first.
    """

    def __init__(
        self,
        per_min: int,
        clock: Clock = time.monotonic,
        max_clients: int = MAX_TRACKED_CLIENTS,
    ) -> None:
        self._capacity = float(per_min)
        self._per_s = per_min / 60.0
        self._clock = clock
        self._max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}

    def acquire(self, client: str) -> int | None:
        """Spend one request of ``client``'s budget.

        Returns:
            ``None`` when the request may go ahead, else the whole seconds to wait
            before the next one will (nothing is spent then).
        """
        now = self._clock()
        level, then = self._buckets.get(client, (self._capacity, now))
        level = min(self._capacity, level + (now - then) * self._per_s)
        if level < 1.0:
            return math.ceil((1.0 - level) / self._per_s)
        if client not in self._buckets and len(self._buckets) >= self._max_clients:
            self._forget_idle(now)
        self._buckets[client] = (level - 1.0, now)
        return None

    def _forget_idle(self, now: float) -> None:
        """Drop clients whose bucket has refilled, or the oldest half if none."""
        full_after_s = self._capacity / self._per_s
        idle = [c for c, (_, t) in self._buckets.items() if now - t >= full_after_s]
        if not idle:
            by_age = sorted(self._buckets, key=lambda c: self._buckets[c][1])
            idle = by_age[: len(by_age) // 2 + 1]
        for client in idle:
            del self._buckets[client]
