"""Exceptions raised by fal_stream.

Every error derives from :class:`FalStreamError`. Messages say what went wrong and
what to do about it, and never contain a key or a token.
"""

from __future__ import annotations


class FalStreamError(Exception):
    """Root of every error raised by fal_stream."""


class ConfigError(FalStreamError):
    """A setting is missing or invalid."""


class AuthError(FalStreamError):
    """fal refused the key or the token.

    Attributes:
        status: The HTTP status that carried the refusal, when there was one.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class TokenError(FalStreamError):
    """A token could not be minted for a reason other than a refused key.

    Attributes:
        status: The HTTP status of the last attempt, or ``None`` for a transport
            failure.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RealtimeError(FalStreamError):
    """The model's realtime endpoint reported an error for an input.

    Attributes:
        code: fal's error code, such as ``"INTERNAL_ERROR"``.
        reason: fal's explanation, as sent.
    """

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"the model reported {code}: {reason}")
        self.code = code
        self.reason = reason


class ConnectionLostError(FalStreamError):
    """The realtime connection dropped; the session will reconnect by itself.

    Attributes:
        close_code: The WebSocket close code, or ``None`` when no close frame came.
        retry_in_s: Seconds until the next attempt.
    """

    def __init__(
        self, message: str, close_code: int | None = None, retry_in_s: float = 0.0
    ) -> None:
        super().__init__(message)
        self.close_code = close_code
        self.retry_in_s = retry_in_s


class BadInputError(FalStreamError, ValueError):
    """An input (an image, a prompt, a control value) cannot be used as given."""


class BadMessageError(FalStreamError):
    """A message from the model could not be understood."""
