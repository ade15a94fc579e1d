"""Test doubles: a clock that only moves when told, and a sleep that moves it."""

from __future__ import annotations

import asyncio


class FakeClock:
    """A monotonic clock that advances only through :meth:`sleep` or ``now``."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Advance the clock by ``seconds`` at once, then let other tasks run."""
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)
