"""When the newest frame may go out: a one-slot buffer with pacing, and no I/O.

The newest frame wins. A frame not sent yet is replaced by a newer one instead of
waiting behind it, so the age of what the model works on never grows with the
model's slowness. Frames go out no closer together than ``min_interval_s`` and with
at most ``max_in_flight`` unanswered at once; fal's protocol carries no request id,
so results are matched to frames in the order the frames were sent. While a frame
is in flight the next one waits a little over the model's own time per frame, so
that it reaches the server as the model frees up rather than queueing there.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

FrameT = TypeVar("FrameT")

# Weight of the newest model time in the running estimate.
MODEL_TIME_SMOOTHING = 0.3
# With a frame in flight the next waits this many model times: overlapping with
# the network round trip without queueing behind the model.
PIPELINE_SLACK = 1.25


@dataclass(frozen=True)
class Sent:
    """A frame that went out and awaits its result.

    Attributes:
        seq: The frame's number, counted from 1 in the order frames were offered.
        offered_at: When it was offered, in seconds of the pacer's clock.
        sent_at: When it was sent.
    """

    seq: int
    offered_at: float
    sent_at: float


@dataclass(frozen=True)
class Pending(Generic[FrameT]):
    """The frame waiting in the slot, with its number and when it was offered."""

    seq: int
    frame: FrameT
    offered_at: float


class Pacer(Generic[FrameT]):
    """Decides which frame goes out next and when.

    The pacer holds no clock of its own: every method that needs the time is
    given it, so the decisions can be tested without sleeping.

    Args:
        min_interval_s: Least time between two sends.
        max_in_flight: Most frames sent and not yet answered.
        result_timeout_s: After this long without its result a sent frame is
            counted lost, so a model that never answers cannot stall the session.
    """

    def __init__(
        self,
        min_interval_s: float = 0.128,
        max_in_flight: int = 2,
        result_timeout_s: float = 10.0,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, not {max_in_flight}")
        self.min_interval_s = min_interval_s
        self.max_in_flight = max_in_flight
        self.result_timeout_s = result_timeout_s
        self._pending: Pending[FrameT] | None = None
        self._in_flight: deque[Sent] = deque()
        self._last_sent_at = -math.inf
        self._last_seq = 0
        self.replaced = 0
        self.model_s = 0.0

    @property
    def pending(self) -> Pending[FrameT] | None:
        """The frame waiting to be sent, if any."""
        return self._pending

    @property
    def last_seq(self) -> int:
        """The number of the newest frame offered, or 0."""
        return self._last_seq

    @property
    def in_flight(self) -> int:
        """How many sent frames await their result."""
        return len(self._in_flight)

    def offer(self, frame: FrameT, now: float) -> int:
        """Put ``frame`` in the slot at ``now``, replacing any frame not sent yet.

        Returns:
            The frame's number.
        """
        if self._pending is not None:
            self.replaced += 1
        self._last_seq += 1
        self._pending = Pending(self._last_seq, frame, now)
        return self._last_seq

    def wait_s(self, now: float) -> float | None:
        """Say how long until the pending frame may be sent.

        Returns:
            ``None`` when nothing is pending, ``0.0`` when it may go now, a number
            of seconds when the interval is not over, or ``math.inf`` while the
            frames in flight are at their limit (a result or a timeout frees one).
        """
        if self._pending is None:
            return None
        if len(self._in_flight) >= self.max_in_flight:
            return math.inf
        interval = self.min_interval_s
        if self._in_flight:
            # A frame sent sooner would only queue at the server behind the one
            # in flight, and age there. A little slack keeps an underestimate
            # of the model's time from building a queue frame after frame.
            interval = max(interval, self.model_s * PIPELINE_SLACK)
        return max(0.0, self._last_sent_at + interval - now)

    def note_model_time(self, seconds: float) -> None:
        """Learn the model's own time per frame from a result (smoothed)."""
        if math.isfinite(seconds) and seconds >= 0:
            self.model_s += MODEL_TIME_SMOOTHING * (seconds - self.model_s)

    def take(self, now: float) -> Pending[FrameT]:
        """Remove the pending frame from the slot and count it as sent at ``now``.

        Raises:
            LookupError: Nothing is pending.
        """
        if self._pending is None:
            raise LookupError("no frame is pending")
        taken, self._pending = self._pending, None
        self._in_flight.append(Sent(taken.seq, taken.offered_at, now))
        self._last_sent_at = now
        return taken

    def answer(self) -> Sent | None:
        """Match a result to the oldest frame in flight and free its place.

        Returns:
            The frame answered, or ``None`` when no frame was in flight (a late
            answer to a frame already counted lost).
        """
        return self._in_flight.popleft() if self._in_flight else None

    def expire(self, now: float) -> list[Sent]:
        """Count as lost the frames in flight for longer than the result timeout."""
        lost = []
        while self._in_flight and now - self._in_flight[0].sent_at >= (
            self.result_timeout_s
        ):
            lost.append(self._in_flight.popleft())
        return lost

    def next_expiry_s(self, now: float) -> float | None:
        """Seconds until the oldest frame in flight times out, if one is in flight."""
        if not self._in_flight:
            return None
        return max(0.0, self._in_flight[0].sent_at + self.result_timeout_s - now)

    def forget_in_flight(self) -> list[Sent]:
        """Drop every frame in flight, as when their connection closes."""
        lost = list(self._in_flight)
        self._in_flight.clear()
        return lost

    def restore(self, pending: Pending[FrameT]) -> bool:
        """Put back a frame whose connection was lost, unless a newer one waits.

        Returns:
            Whether the frame went back into the slot.
        """
        if self._pending is not None or pending.seq != self._last_seq:
            return False
        self._pending = pending
        return True
