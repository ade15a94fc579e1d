"""The live relays of all browser sessions, with limits on how many and how long."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from .errors import FalStreamError
from .relay import Relay

logger = logging.getLogger(__name__)

REAP_EVERY_S = 5.0


class BusyError(FalStreamError):
    """Every session slot is taken."""


class RelayPool:
    """Creates, finds and closes one :class:`Relay` per browser session.

    Args:
        make_relay: Builds the relay for a new session id.
        max_sessions: Live sessions at most; one more gets :class:`BusyError`.
        idle_close_s: A session without frames or control changes this long is
            closed (its tab may have been left open).
        abandon_s: A session idle this long is closed and its place freed;
            by default five times ``idle_close_s``.
        session_limit_s: A session is closed this long after it started, or never
            with ``None``.
    """

    def __init__(
        self,
        make_relay: Callable[[str], Relay],
        *,
        max_sessions: int = 20,
        idle_close_s: float = 300.0,
        abandon_s: float | None = None,
        session_limit_s: float | None = None,
    ) -> None:
        self._make = make_relay
        self.max_sessions = max_sessions
        self.idle_close_s = idle_close_s
        self.abandon_s = 5 * idle_close_s if abandon_s is None else abandon_s
        self.session_limit_s = session_limit_s
        self._relays: dict[str, Relay] = {}
        self._reaper: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._relays)

    def get(self, session_id: str) -> Relay:
        """Return the session's relay, creating it on first use.

        Raises:
            BusyError: ``max_sessions`` relays are live already.
        """
        relay = self._relays.get(session_id)
        if relay is not None and not relay.closed:
            return relay
        if len(self._relays) >= self.max_sessions:
            raise BusyError(
                f"All {self.max_sessions} live sessions are in use; "
                "try again in a few minutes."
            )
        relay = self._make(session_id)
        self._relays[session_id] = relay
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.create_task(self._reap_forever())
        logger.info("opened %s (%d live)", relay.name, len(self._relays))
        return relay

    def find(self, session_id: str) -> Relay | None:
        """Return the session's relay if it is live, without creating one."""
        return self._relays.get(session_id)

    async def close(self, session_id: str, reason: str = "") -> None:
        """Close the session's relay, if any, telling its user ``reason``.

        Safe to call twice.
        """
        relay = self._relays.pop(session_id, None)
        if relay is not None:
            await relay.aclose(reason)
            logger.info("closed %s (%d live)", relay.name, len(self._relays))

    async def reap(self, now: float | None = None) -> list[str]:
        """Suspend idle relays; close abandoned ones and those past the limit.

        A suspended relay lets go of its realtime connection and takes it up again
        with the next frame; a closed one ends its session's output stream.

        Returns:
            The ids of the sessions closed.
        """
        now = time.monotonic() if now is None else now
        expired = []
        for session_id, relay in list(self._relays.items()):
            limit = self.session_limit_s
            if limit is not None and now - relay.started_at >= limit:
                expired.append(session_id)
                await self.close(
                    session_id,
                    f"This session reached its {limit / 60:g}-minute limit; "
                    "reload the page to start a new one.",
                )
            elif now - relay.last_active >= self.abandon_s:
                # Only a tab's heartbeat ending closes a session on its own, and
                # a script may never open one: free its place after a long idle.
                expired.append(session_id)
                await self.close(
                    session_id,
                    f"This session was idle for {self.abandon_s / 60:g} minutes and "
                    "was closed to free its place; reload the page to start again.",
                )
            elif now - relay.last_active >= self.idle_close_s:
                await relay.suspend()
        return expired

    async def aclose(self) -> None:
        """Close every relay and stop reaping."""
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        for session_id in list(self._relays):
            await self.close(session_id)

    async def _reap_forever(self) -> None:
        while self._relays:
            await asyncio.sleep(REAP_EVERY_S)
            await self.reap()
