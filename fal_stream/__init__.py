"""fal_stream: drive fal.ai's realtime image models from Python, with the key kept
on the server.

The pieces a program needs::

    tokens = TokenManager(key, rest_url=settings.rest_url)
    async with RealtimeSession(app_id, tokens, run_host=settings.run_host) as session:
        session.send({"prompt": "a cat", "image_bytes": jpeg})
        async for event in session.events():
            ...
"""

from .config import Settings
from .endpoints import AppId
from .errors import (
    AuthError,
    BadInputError,
    BadMessageError,
    ConfigError,
    ConnectionLostError,
    FalStreamError,
    RealtimeError,
    TokenError,
)
from .events import Event, Result, SessionState, SessionStats
from .session import RealtimeSession
from .tokens import TokenManager

__all__ = [
    "AppId",
    "AuthError",
    "BadInputError",
    "BadMessageError",
    "ConfigError",
    "ConnectionLostError",
    "Event",
    "FalStreamError",
    "RealtimeError",
    "RealtimeSession",
    "Result",
    "SessionState",
    "SessionStats",
    "Settings",
    "TokenError",
    "TokenManager",
]
