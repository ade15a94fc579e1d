"""Encoding of inputs and classification of what fal's realtime socket sends back.

fal's server reads inputs with ``receive_bytes`` and answers a text frame with an
error, so every input goes out as a binary msgpack map. Results come back as binary
msgpack maps; control messages (timings, idle timeout, errors) come as JSON text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import msgpack

from .errors import BadInputError

TIMEOUT_CODE = "TIMEOUT"


@dataclass(frozen=True)
class ResultMessage:
    """A model output, such as ``{"images": [...], "timings": {...}}``."""

    payload: dict[str, Any]


@dataclass(frozen=True)
class TimingsMessage:
    """Information about the model's time for the last input, in seconds."""

    timing_s: float


@dataclass(frozen=True)
class IdleTimeoutMessage:
    """The server closes an idle socket; reconnect when the next input comes."""

    reason: str


@dataclass(frozen=True)
class ServerErrorMessage:
    """The model failed on an input (``x-fal-error`` other than ``TIMEOUT``)."""

    code: str
    reason: str


@dataclass(frozen=True)
class UnauthorizedMessage:
    """The gateway refused the token after the socket opened."""


@dataclass(frozen=True)
class MalformedMessage:
    """A frame that is neither a result nor a known control message."""

    description: str


Message = (
    ResultMessage
    | TimingsMessage
    | IdleTimeoutMessage
    | ServerErrorMessage
    | UnauthorizedMessage
    | MalformedMessage
)


def encode_input(inputs: dict[str, Any]) -> bytes:
    """Encode a model input as the binary msgpack map fal expects.

    Raises:
        BadInputError: A value has a type msgpack cannot carry.
    """
    try:
        return msgpack.packb(inputs, use_bin_type=True)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError) as exc:
        raise BadInputError(f"cannot encode the model input: {exc}") from exc


def classify(frame: bytes | str) -> Message:
    """Sort one frame from the realtime socket into a :data:`Message`.

    Binary frames are msgpack and text frames JSON, but either may hold a control
    message: old apps answered in JSON text, and a custom codec may do the reverse.
    Never raises: what cannot be decoded becomes a :class:`MalformedMessage`.
    """
    try:
        if isinstance(frame, bytes):
            decoded = msgpack.unpackb(frame, raw=False, strict_map_key=False)
        else:
            decoded = json.loads(frame)
    except Exception as exc:  # msgpack raises several unrelated types
        kind = "binary" if isinstance(frame, bytes) else "text"
        return MalformedMessage(
            f"undecodable {kind} frame of {len(frame)} bytes ({type(exc).__name__})"
        )
    if not isinstance(decoded, dict):
        return MalformedMessage(f"expected a map, got {type(decoded).__name__}")
    return _classify_map(decoded)


def _classify_map(message: dict[Any, Any]) -> Message:
    kind = message.get("type")
    if kind == "x-fal-message":
        timing = message.get("timing")
        if isinstance(timing, int | float) and not isinstance(timing, bool):
            return TimingsMessage(float(timing))
        return MalformedMessage("x-fal-message without a numeric timing")
    if kind == "x-fal-error":
        code = str(message.get("error", "UNKNOWN"))
        reason = str(message.get("reason", ""))
        if code == TIMEOUT_CODE:
            return IdleTimeoutMessage(reason)
        return ServerErrorMessage(code, reason)
    if message.get("status") == "error":
        error = str(message.get("error", "UNKNOWN"))
        if error == "Unauthorized":
            return UnauthorizedMessage()
        # Apps of 2023 announced the idle timeout in this legacy form (fal-js#35).
        if error.startswith("no inputs"):
            return IdleTimeoutMessage(error)
        return ServerErrorMessage(error, "")
    return ResultMessage({str(key): value for key, value in message.items()})
