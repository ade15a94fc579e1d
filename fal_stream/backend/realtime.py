"""The built-in backend's realtime socket: fal's unary server template, locally.

Each connection runs a reader and a worker. The reader takes binary msgpack
inputs into a pending queue of ``max_buffering`` slots (one by default) where a
new input pushes out the oldest, as fal's template does; the worker paints the
pending inputs in order and sends one result per input, followed by a timings
message. A bad input ends the connection with ``INTERNAL_ERROR`` and close 1000,
and so does ``idle_timeout_s`` without input, with ``TIMEOUT``.

Every close the backend makes on its own uses code 1000, as fal's template does,
the injected ``Unauthorized`` message included: the JSON message before the close
says why. Only the ``close_code`` fault (any code) and the ``drop`` fault (no close
frame at all, 1006 for the client) differ.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import random
from collections import deque
from contextlib import suppress
from weakref import WeakKeyDictionary

import numpy as np
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ..errors import BadInputError
from .faults import Faults, spend
from .inputs import MAX_SEED, ModelInput, decode_image, parse_input
from .model import preview
from .replies import (
    TIMEOUT_REASON,
    corrupt,
    encode_jpeg,
    error_message,
    result_payload,
    timings_message,
    unauthorized_message,
)
from .signing import TokenSigner
from .stats import BackendStats
from .upgrade import Refusal, SocketGrant, check_upgrade

logger = logging.getLogger(__name__)

# The shortest wait between two looks at the idle clock while the model works.
IDLE_RECHECK_S = 0.05


class RealtimeService:
    """Checks upgrades and serves accepted sockets.

    Args:
        key: The backend's key, accepted in an ``Authorization`` header.
        signer: Verifies tokens.
        faults: Live fault settings, read at every event.
        stats: Counters to update.
        send_timings: Whether to follow each result with a timings message.
    """

    def __init__(
        self,
        key: str,
        signer: TokenSigner,
        faults: Faults,
        stats: BackendStats,
        *,
        send_timings: bool = True,
    ) -> None:
        self._key = key
        self._signer = signer
        self.faults = faults
        self.stats = stats
        self.send_timings = send_timings
        self._grants: WeakKeyDictionary[ServerConnection, SocketGrant] = (
            WeakKeyDictionary()
        )
        self._ids = itertools.count(1)

    def process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        """Refuse the upgrade with an HTTP status, or return ``None`` to accept."""
        faults = self.faults
        if faults.upgrade_status is not None and spend(faults, "upgrade_times"):
            status = faults.upgrade_status
            logger.info("refusing an upgrade with %d (injected)", status)
            return connection.respond(status, f"injected failure: {status}\n")
        decision = check_upgrade(
            request.path,
            request.headers.get("Authorization"),
            key=self._key,
            signer=self._signer,
        )
        if isinstance(decision, Refusal):
            logger.info(
                "refusing an upgrade with %d: %s", decision.status, decision.reason
            )
            return connection.respond(decision.status, decision.reason + "\n")
        self._grants[connection] = decision
        return None

    async def handle(self, connection: ServerConnection) -> None:
        """Serve one accepted socket until it closes."""
        grant = self._grants.pop(connection)
        self.stats.connections += 1
        self.stats.app_ids.add(str(grant.app_id))
        session = _Session(self, connection, grant, next(self._ids))
        await session.run()


class _Session:
    """One connection: a reader filling the pending queue, a worker emptying it."""

    def __init__(
        self,
        service: RealtimeService,
        connection: ServerConnection,
        grant: SocketGrant,
        number: int,
    ) -> None:
        self.service = service
        self.connection = connection
        self.name = f"socket {number} ({grant.app_id})"
        self.pending: deque[ModelInput] = deque(maxlen=grant.max_buffering or 1)
        self.wakeup = asyncio.Event()
        self.busy = False
        self.inputs_seen = 0
        self.loop = asyncio.get_running_loop()
        self.last_activity = self.loop.time()

    @property
    def faults(self) -> Faults:
        return self.service.faults

    async def run(self) -> None:
        logger.info("%s opened", self.name)
        worker = asyncio.create_task(self._work())
        try:
            if spend(self.faults, "unauthorized_times"):
                # Close with 1000: the message, not the code, carries the refusal.
                await self._send_and_close(unauthorized_message())
            elif not await self._fault_on_arrival():
                await self._read()
        except ConnectionClosed:
            pass
        finally:
            worker.cancel()
            with suppress(asyncio.CancelledError, ConnectionClosed):
                await worker
            logger.info("%s closed (%s)", self.name, self.connection.close_code)

    async def _read(self) -> None:
        """Take inputs until the socket closes, an input is bad, or it idles."""
        stats = self.service.stats
        while True:
            frame = await self._receive_or_idle()
            if frame is None:
                stats.timeouts_sent += 1
                logger.info("%s idle, sending TIMEOUT", self.name)
                await self._send_and_close(error_message("TIMEOUT", TIMEOUT_REASON))
                return
            stats.inputs += 1
            self.inputs_seen += 1
            if await self._fault_on_arrival():
                return
            try:
                item = parse_input(frame, _random_seed)
            except BadInputError as exc:
                await self._fail(str(exc))
                return
            if len(self.pending) == self.pending.maxlen:
                stats.inputs_dropped += 1
            self.pending.append(item)
            self.last_activity = self.loop.time()
            self.wakeup.set()

    async def _receive_or_idle(self) -> bytes | str | None:
        """Return the next frame, or ``None`` once idle for ``idle_timeout_s``.

        The model's own time does not count as idle: the clock only runs while
        nothing is pending or being painted.
        """
        while True:
            idle_timeout_s = self.faults.idle_timeout_s
            wait_s: float | None = None
            if math.isfinite(idle_timeout_s):
                wait_s = max(self.last_activity + idle_timeout_s - self.loop.time(), 0)
                if self.busy or self.pending:
                    # The worker moves last_activity when it is done; look again
                    # after a whole timeout at the latest.
                    wait_s = max(idle_timeout_s, IDLE_RECHECK_S)
            try:
                # websockets' recv() is safe to cancel: no frame is lost.
                async with asyncio.timeout(wait_s):
                    return await self.connection.recv()
            except TimeoutError:
                idle_s = self.loop.time() - self.last_activity
                if not self.busy and not self.pending and idle_s >= idle_timeout_s:
                    return None

    async def _fault_on_arrival(self) -> bool:
        """Apply the drop and close faults due at this input count."""
        faults = self.faults
        if (
            faults.drop_after_inputs is not None
            and self.inputs_seen >= faults.drop_after_inputs
            and spend(faults, "drop_times")
        ):
            logger.info("%s dropped with no close frame (injected)", self.name)
            self.connection.transport.abort()
            return True
        if (
            faults.close_code is not None
            and self.inputs_seen >= faults.close_after_inputs
            and spend(faults, "close_times")
        ):
            logger.info("%s closing with %d (injected)", self.name, faults.close_code)
            await self.connection.close(faults.close_code, "injected failure")
            return True
        return False

    async def _work(self) -> None:
        """Paint pending inputs in order, until one fails."""
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            while self.pending:
                item = self.pending.popleft()
                self.busy = True
                try:
                    answered = await self._answer(item)
                finally:
                    self.busy = False
                    self.last_activity = self.loop.time()
                if not answered:
                    return

    async def _answer(self, item: ModelInput) -> bool:
        """Send the result of one input; say whether the connection lives on."""
        faults, stats = self.faults, self.service.stats
        if spend(faults, "internal_error_times"):
            await self._fail("injected failure: the model raised an exception")
            return False
        started = self.loop.time()
        if faults.model_latency_s > 0:
            await asyncio.sleep(faults.model_latency_s)
        nsfw = spend(faults, "nsfw_times")
        try:
            # Off the event loop, so that other sockets are served meanwhile.
            jpeg, width, height = await asyncio.to_thread(_render, item, nsfw)
        except BadInputError as exc:
            await self._fail(str(exc))
            return False
        except Exception as exc:
            # A bug of ours, not the client's: log it in full, but answer as
            # fal's template does for any exception in the model.
            logger.exception("%s: the preview model failed", self.name)
            await self._fail(f"the model failed: {type(exc).__name__}")
            return False
        stats.last_prompt = item.prompt

        inference_s = self.loop.time() - started
        payload = result_payload(
            jpeg,
            width,
            height,
            seed=item.seed,
            steps=item.steps,
            inference_s=inference_s,
            sync_mode=item.sync_mode,
            nsfw=nsfw,
            request_id=item.request_id,
        )
        fault = faults.result
        if fault == "none" or not spend(faults, "result_times"):
            fault = "none"
        frame = corrupt(payload, fault)
        if frame is None:
            logger.info("%s swallowed a result (injected)", self.name)
            return True
        await self.connection.send(frame)
        stats.results += 1
        if self.service.send_timings:
            await self.connection.send(timings_message(inference_s))
        logger.debug("%s sent a %dx%d result", self.name, width, height)
        return True

    async def _fail(self, reason: str) -> None:
        """Send fal's INTERNAL_ERROR with ``reason``, then close with 1000."""
        self.service.stats.errors_sent += 1
        logger.info("%s failed an input: %s", self.name, reason)
        await self._send_and_close(error_message("INTERNAL_ERROR", reason))

    async def _send_and_close(self, message: str) -> None:
        with suppress(ConnectionClosed):
            await self.connection.send(message)
            await self.connection.close(1000)


def _render(item: ModelInput, nsfw: bool) -> tuple[bytes, int, int]:
    """Decode, paint and encode one input; runs in a worker thread."""
    image = decode_image(item.image_data)
    height, width = image.shape[:2]
    if nsfw:
        # fal's safety checker answers with a black image of the same size.
        painted = np.zeros_like(image)
    else:
        painted = preview(image, item.prompt, item.strength, item.seed, item.steps)
    return encode_jpeg(painted), width, height


def _random_seed() -> int:
    return random.randint(0, MAX_SEED)
