"""Everything one server process shares: settings, tokens, backend and relays."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from .backend import LocalBackend
from .config import Settings
from .pool import RelayPool
from .relay import Relay
from .tokens import TokenManager

logger = logging.getLogger(__name__)

LOCAL_LABEL = "Local preview (not AI)"
FAL_LABEL = "fal.ai"


@dataclass(frozen=True)
class Limits:
    """How many sessions a process serves and for how long, in seconds.

    Attributes:
        max_sessions: Live browser sessions at most.
        idle_close_s: A session without input this long loses its connection.
        session_limit_s: A session ends this long after it started (``None``:
            never).
        abandon_s: A session without input this long is closed, freeing its
            place.
    """

    max_sessions: int = 20
    idle_close_s: float = 120.0
    session_limit_s: float | None = None
    abandon_s: float = 600.0

    @classmethod
    def for_environment(cls) -> Limits:
        """Tighter limits on a public Hugging Face Space, where ``SPACE_ID`` is set."""
        if os.environ.get("SPACE_ID"):
            return cls(8, idle_close_s=60.0, session_limit_s=900.0, abandon_s=300.0)
        return cls()


class Runtime:
    """The shared parts of a running app.

    With no key, or with ``backend="local"``, a built-in fal-protocol backend is
    started on loopback and everything goes to it.

    Args:
        settings: The effective settings.
        limits: Session limits.
    """

    def __init__(self, settings: Settings, limits: Limits | None = None) -> None:
        self.settings = settings
        self.limits = limits or Limits.for_environment()
        self.local: LocalBackend | None = None
        if settings.uses_fal:
            key, self.rest_url, self.run_host = (
                settings.fal_key,
                settings.rest_url,
                settings.run_host,
            )
            self.label = FAL_LABEL
        else:
            self.local = LocalBackend()
            self.local.start()
            key, self.rest_url, self.run_host = (
                self.local.key,
                self.local.rest_url,
                self.local.run_host,
            )
            self.label = LOCAL_LABEL
        self.tokens = TokenManager(
            key, rest_url=self.rest_url, lifetime_s=settings.token_lifetime_s
        )
        self.pool = RelayPool(
            self._make_relay,
            max_sessions=self.limits.max_sessions,
            idle_close_s=self.limits.idle_close_s,
            abandon_s=self.limits.abandon_s,
            session_limit_s=self.limits.session_limit_s,
        )

    def _make_relay(self, session_id: str) -> Relay:
        return Relay(
            self.settings,
            self.tokens,
            run_host=self.run_host,
            backend_label=self.label,
            name=f"browser-{session_id[:10]}",
        )

    async def aclose(self) -> None:
        """Close every session and the token manager (in the serving loop)."""
        await self.pool.aclose()
        await self.tokens.aclose()

    def stop_backend(self) -> None:
        """Stop the built-in backend, if one was started."""
        if self.local is not None:
            self.local.stop()
