"""What a realtime session reports: results, its state and its running figures."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from .errors import FalStreamError


class SessionState(enum.Enum):
    """Where a session stands; read it from :attr:`RealtimeSession.state`."""

    IDLE = "idle"
    CONNECTING = "connecting"
    OPEN = "open"
    BACKING_OFF = "backing off"
    FAILED = "failed"
    CLOSED = "closed"


@dataclass
class SessionStats:
    """Running figures of a session. Times are in seconds.

    Attributes:
        frames_offered: Frames given to :meth:`RealtimeSession.send`.
        frames_sent: Frames that went out on a socket.
        frames_replaced: Frames replaced by a newer one before they went out.
        frames_lost: Frames sent whose result never came.
        results: Results received.
        results_dropped: Results replaced by a newer one before the caller read
            them.
        errors: Errors reported through :meth:`RealtimeSession.events`.
        connects: Connections opened.
        last_latency_s: From offering the frame to its result, for the last result.
        model_time_s: The model's own time for the last result, when fal says.
    """

    frames_offered: int = 0
    frames_sent: int = 0
    frames_replaced: int = 0
    frames_lost: int = 0
    results: int = 0
    results_dropped: int = 0
    errors: int = 0
    connects: int = 0
    last_latency_s: float | None = None
    model_time_s: float | None = None


@dataclass(frozen=True)
class Result:
    """A model output and what is known of the frame it answers.

    Attributes:
        payload: The model's output map, as fal sent it.
        seq: Number of the frame it answers, or ``None`` for a late answer to a
            frame already counted lost.
        latency_s: From offering that frame to receiving this result.
        model_time_s: The model's own time, when the result says.
    """

    payload: dict[str, Any]
    seq: int | None
    latency_s: float | None
    model_time_s: float | None

    @property
    def images(self) -> list[Mapping[str, Any]]:
        """The result's image entries (each with ``content`` or ``url``)."""
        images = self.payload.get("images")
        if isinstance(images, list):
            return [image for image in images if isinstance(image, Mapping)]
        image = self.payload.get("image")
        return [image] if isinstance(image, Mapping) else []

    @property
    def nsfw(self) -> bool:
        """Whether fal's safety checker flagged the first image."""
        flags = self.payload.get("nsfw_content_detected") or self.payload.get(
            "has_nsfw_concepts"
        )
        return isinstance(flags, list) and bool(flags) and flags[0] is True


Event: TypeAlias = Result | FalStreamError
