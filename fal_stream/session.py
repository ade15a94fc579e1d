"""One realtime session with a fal app: frames out, results in, reconnects inside.

A session opens its socket with the first frame, lets fal close it when idle, and
opens it again with the next frame. A connection that drops is reopened with capped
exponential backoff; a refused token is replaced once and then reported. Everything
the caller should know (results, errors, reconnects) comes out of :meth:`events`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import math
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.frames import CloseCode

from .endpoints import DEFAULT_REALTIME_PATH, DEFAULT_RUN_HOST, AppId, realtime_url
from .errors import (
    AuthError,
    BadInputError,
    BadMessageError,
    ConnectionLostError,
    FalStreamError,
    RealtimeError,
)
from .events import Event, Result, SessionState, SessionStats
from .messages import (
    IdleTimeoutMessage,
    ResultMessage,
    ServerErrorMessage,
    TimingsMessage,
    UnauthorizedMessage,
    classify,
    encode_input,
)
from .pacing import Pacer, Pending, Sent
from .redact import RedactingFilter
from .tokens import TokenSource

logger = logging.getLogger(__name__)

# websockets logs the handshake path, which carries the token, at DEBUG.
_ws_logger = logging.getLogger("fal_stream.session.ws")
_ws_logger.addFilter(RedactingFilter())

MAX_MESSAGE_BYTES = 16 * 2**20
OPEN_TIMEOUT_S = 15.0
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 8.0
EVENTS_KEPT = 32
# Refusals of an upgrade that may succeed when tried again.
_RETRYABLE_STATUS = frozenset({408, 425, 429})
_session_ids = itertools.count(1)


class _Closing(enum.Enum):
    """Why a connection ended, as learnt from its last messages."""

    UNKNOWN = enum.auto()
    IDLE = enum.auto()
    INPUT_ERROR = enum.auto()
    UNAUTHORIZED = enum.auto()
    WEDGED = enum.auto()
    TOO_BIG = enum.auto()


class RealtimeSession:
    """A realtime session with one fal app.

    Use it inside one event loop: ``send`` frames from anywhere in that loop and
    read ``events()`` from one consumer.

    Args:
        app: The app id, such as ``"fal-ai/fast-lcm-diffusion/image-to-image"``.
        tokens: Where tokens come from, usually a shared
            :class:`~fal_stream.tokens.TokenManager`.
        run_host: fal's realtime host, or the built-in backend's ``ws://`` URL.
        path: Endpoint path after the app id.
        min_interval_s: Least time between two sends (fal's clients use 0.128).
        max_in_flight: Most frames sent and not yet answered.
        max_buffering: Asks fal to keep at most this many pending inputs, 1 to 60.
        result_timeout_s: A frame unanswered this long is counted lost and the
            connection, which must be stuck, is closed.
        name: A label for log lines.

    Raises:
        BadInputError: The app id or ``max_buffering`` is malformed.
    """

    def __init__(
        self,
        app: str | AppId,
        tokens: TokenSource,
        *,
        run_host: str = DEFAULT_RUN_HOST,
        path: str = DEFAULT_REALTIME_PATH,
        min_interval_s: float = 0.128,
        max_in_flight: int = 2,
        max_buffering: int | None = None,
        result_timeout_s: float = 10.0,
        name: str | None = None,
    ) -> None:
        self.app = app if isinstance(app, AppId) else AppId.parse(app)
        realtime_url(self.app, "", max_buffering=max_buffering)  # validates early
        self._tokens = tokens
        self._run_host = run_host
        self._path = path
        self._max_buffering = max_buffering
        self.name = name or f"session-{next(_session_ids)}"
        self.stats = SessionStats()
        self._pacer: Pacer[bytes] = Pacer(
            min_interval_s, max_in_flight, result_timeout_s
        )
        self._state = SessionState.IDLE
        self._events: deque[Event] = deque(maxlen=EVENTS_KEPT)
        self._event_ready = asyncio.Event()
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._last_sent: Pending[bytes] | None = None
        self._token = ""
        self._failures = 0
        self._refusals = 0
        self._parked_seq = 0
        self._failed_seq = 0
        self._closed = False

    @property
    def state(self) -> SessionState:
        """The session's state at this moment."""
        return self._state

    def send(self, inputs: Mapping[str, Any]) -> int:
        """Offer a model input; it replaces any input not sent yet.

        Never blocks: the input is encoded here and sent when pacing allows.

        Returns:
            The frame's number, which the :class:`Result` answering it carries.

        Raises:
            BadInputError: The input cannot be encoded.
            FalStreamError: The session is closed.
        """
        if self._closed:
            raise FalStreamError(f"{self.name} is closed; open a new session")
        seq = self._pacer.offer(encode_input(dict(inputs)), time.monotonic())
        self.stats.frames_offered += 1
        self.stats.frames_replaced = self._pacer.replaced
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name=self.name)
        self._wake.set()
        return seq

    async def events(self) -> AsyncIterator[Event]:
        """Yield results and errors as they come, until the session is closed.

        A result not read before a newer one arrives is dropped: a slow reader
        sees the newest picture, not a backlog.
        """
        while True:
            while self._events:
                yield self._events.popleft()
            if self._closed:
                return
            self._event_ready.clear()
            await self._event_ready.wait()

    async def aclose(self) -> None:
        """Close the connection and end :meth:`events`. Safe to call twice."""
        self._closed = True
        self._state = SessionState.CLOSED
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        self._event_ready.set()

    async def __aenter__(self) -> RealtimeSession:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # The runner: one task per session, alive from the first frame to aclose().

    async def _run(self) -> None:
        while True:
            pending = self._pacer.pending
            # After a final failure only a frame offered since tries again.
            if pending is None or pending.seq <= self._parked_seq:
                self._wake.clear()
                await self._wake.wait()
                continue
            connection = await self._open()
            if connection is not None:
                await self._serve(connection)

    async def _open(self) -> ClientConnection | None:
        """Open a connection, or report why not and wait out the backoff."""
        self._state = SessionState.CONNECTING
        token = ""
        try:
            token = await self._tokens.token(self.app)
            url = realtime_url(
                self.app,
                token,
                run_host=self._run_host,
                path=self._path,
                max_buffering=self._max_buffering,
            )
            connection = await connect(
                url,
                max_size=MAX_MESSAGE_BYTES,
                open_timeout=OPEN_TIMEOUT_S,
                logger=_ws_logger,
                compression=None,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403):
                await self._refused(token, status)
            elif status == 404:
                await self._fail(_unknown_app(self.app), final=True)
            elif 400 <= status < 500 and status not in _RETRYABLE_STATUS:
                # The same request would be refused again (a 414 for an app id
                # too long, say): wait for a new frame, do not retry in a loop.
                await self._fail(
                    BadInputError(
                        f"fal refused the connection (HTTP {status}): check the app id"
                    ),
                    final=True,
                )
            else:
                await self._fail(
                    ConnectionLostError(
                        f"the model's server refused the connection (HTTP {status})"
                    )
                )
            return None
        except AuthError as exc:
            await self._fail(exc, final=True)
            return None
        except FalStreamError as exc:
            await self._fail(exc)
            return None
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            await self._fail(
                ConnectionLostError(
                    f"could not connect to the model ({type(exc).__name__}); "
                    "check the network and FAL_RUN_HOST"
                )
            )
            return None
        self._token = token
        self.stats.connects += 1
        self._state = SessionState.OPEN
        logger.info("%s: connected to %s", self.name, self.app)
        return connection

    async def _refused(self, token: str, status: int | None) -> None:
        """Drop a refused token; retry once with a new one, then report."""
        self._tokens.discard(self.app, token)
        self._refusals += 1
        if self._refusals == 1:
            logger.info("%s: token refused; minting a new one", self.name)
            self._state = SessionState.IDLE
            return
        self._refusals = 0
        how = f"HTTP {status}" if status else "Unauthorized"
        error = AuthError(
            f"fal refused the token for {self.app.alias} twice ({how}): check that "
            "FAL_KEY belongs to an account that may use this app",
            status=status,
        )
        await self._fail(error, final=True)

    async def _serve(self, connection: ClientConnection) -> None:
        """Send and receive on one connection until it closes."""
        ending = [_Closing.UNKNOWN]
        reader = asyncio.create_task(self._read(connection, ending))
        sender = asyncio.create_task(self._send_loop(connection, ending))
        try:
            await asyncio.wait({reader, sender}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, sender):
                task.cancel()
            await asyncio.gather(reader, sender, return_exceptions=True)
            await connection.close()
        for task in (reader, sender):
            if not task.cancelled() and (exc := task.exception()) is not None:
                logger.error("%s: unexpected failure", self.name, exc_info=exc)
        await self._after_close(connection, ending[0])

    async def _send_loop(
        self, connection: ClientConnection, ending: list[_Closing]
    ) -> None:
        pacer = self._pacer
        while True:
            now = time.monotonic()
            if lost := pacer.expire(now):
                self.stats.frames_lost += len(lost)
                self._report(
                    RealtimeError(
                        "NO_RESULT",
                        f"no result within {pacer.result_timeout_s:g} s; reconnecting",
                    )
                )
                ending[0] = _Closing.WEDGED
                return
            wait = pacer.wait_s(now)
            if wait == 0.0:
                pending = pacer.take(now)
                self._last_sent = pending
                try:
                    await connection.send(pending.frame)
                except ConnectionClosed:
                    return
                self.stats.frames_sent += 1
                logger.debug("%s: sent frame %d", self.name, pending.seq)
                continue
            expiry = pacer.next_expiry_s(now)
            timeout = min(t for t in (wait, expiry, math.inf) if t is not None)
            self._wake.clear()
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow
            # a cancellation that lands as the wait ends, and the task lives on.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(None if math.isinf(timeout) else timeout):
                    await self._wake.wait()

    async def _read(self, connection: ClientConnection, ending: list[_Closing]) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for frame in connection:
                message = classify(frame)
                if isinstance(message, ResultMessage):
                    self._deliver(message.payload, self._pacer.answer())
                elif isinstance(message, TimingsMessage):
                    self.stats.model_time_s = message.timing_s
                    self._pacer.note_model_time(message.timing_s)
                elif isinstance(message, IdleTimeoutMessage):
                    ending[0] = _Closing.IDLE
                elif isinstance(message, ServerErrorMessage):
                    ending[0] = _Closing.INPUT_ERROR
                    if (failed := self._pacer.answer()) is not None:
                        self._failed_seq = failed.seq
                    self._report(RealtimeError(message.code, message.reason))
                elif isinstance(message, UnauthorizedMessage):
                    ending[0] = _Closing.UNAUTHORIZED
                    return
                else:
                    self._pacer.answer()
                    self._report(
                        BadMessageError(
                            "the model sent a reply that cannot be read "
                            f"({message.description})"
                        )
                    )
                self._wake.set()

    async def _after_close(
        self, connection: ClientConnection, ending: _Closing
    ) -> None:
        lost = self._pacer.forget_in_flight()
        self.stats.frames_lost += len(lost)
        # websockets fails a connection whose message is over max_size by sending
        # 1009 itself; the server, busy sending, rarely answers with a close frame.
        sent = connection.protocol.close_sent
        if sent is not None and sent.code == CloseCode.MESSAGE_TOO_BIG:
            ending = _Closing.TOO_BIG
            if lost:
                self._failed_seq = lost[0].seq
            self._report(
                BadMessageError(
                    f"the model sent a reply over {MAX_MESSAGE_BYTES // 2**20} MiB, "
                    "more than any image needs"
                )
            )
        # The newest frame goes back in the slot, so the picture still gets its
        # result, unless it is the input the model failed on: a frame sent after
        # that one, before the server closed, is still owed an answer.
        last = self._last_sent
        failed = ending in (_Closing.INPUT_ERROR, _Closing.TOO_BIG)
        if lost and last is not None and (not failed or last.seq > self._failed_seq):
            self._pacer.restore(last)
        code = connection.close_code
        if ending is _Closing.UNAUTHORIZED:
            await self._refused(self._token, None)
        elif ending in (_Closing.IDLE, _Closing.INPUT_ERROR, _Closing.TOO_BIG) or (
            code == 1000 and ending is _Closing.UNKNOWN
        ):
            self._state = SessionState.IDLE
            logger.info("%s: connection closed (%s)", self.name, ending.name.lower())
        elif ending is _Closing.WEDGED:
            await self._fail(None)
        else:
            reason = connection.close_reason or (
                "no close frame" if code in (None, 1006) else "no reason given"
            )
            await self._fail(
                ConnectionLostError(
                    f"lost the connection to the model (code {code}: {reason}); "
                    "reconnecting",
                    close_code=code,
                )
            )

    def _deliver(self, payload: dict[str, Any], sent: Sent | None) -> None:
        now = time.monotonic()
        timings = payload.get("timings")
        model_time = timings.get("inference") if isinstance(timings, dict) else None
        if isinstance(model_time, int | float):
            self.stats.model_time_s = float(model_time)
            self._pacer.note_model_time(float(model_time))
        latency = now - sent.offered_at if sent is not None else None
        self.stats.results += 1
        self.stats.last_latency_s = latency
        self._failures = self._refusals = 0
        result = Result(
            payload, sent.seq if sent else None, latency, self.stats.model_time_s
        )
        # Newest wins here too: an unread older result is replaced.
        stale = [event for event in self._events if isinstance(event, Result)]
        for old in stale:
            self._events.remove(old)
        self.stats.results_dropped += len(stale)
        self._push(result)

    def _report(self, error: FalStreamError) -> None:
        self.stats.errors += 1
        logger.warning("%s: %s", self.name, error)
        self._push(error)

    def _push(self, event: Event) -> None:
        self._events.append(event)
        self._event_ready.set()

    async def _fail(self, error: FalStreamError | None, *, final: bool = False) -> None:
        """Report ``error`` and wait out the backoff before the next attempt.

        A final failure leaves the session FAILED until a new frame is offered.
        """
        delay = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2.0**self._failures)
        delay *= 0.5 + random.random() / 2
        self._failures += 1
        if isinstance(error, ConnectionLostError):
            error.retry_in_s = delay
        # The state changes first, so a caller reading the error sees it final.
        if final:
            self._state = SessionState.FAILED
            self._parked_seq = self._pacer.last_seq
        else:
            self._state = SessionState.BACKING_OFF
        if error is not None:
            self._report(error)
        await asyncio.sleep(delay)
        if not final:
            self._state = SessionState.IDLE


def _unknown_app(app: AppId) -> BadInputError:
    return BadInputError(
        f"fal has no realtime app {str(app)!r} (HTTP 404): check the app id"
    )
