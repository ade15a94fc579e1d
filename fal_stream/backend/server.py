"""The built-in backend: fal's two hosts, served locally from one event loop.

fal mints tokens on a REST host and runs models on a socket host; so does
:class:`LocalBackend`, on two loopback ports: a Starlette app under uvicorn for
``POST /tokens/`` and a ``websockets`` server for ``/<app id>/realtime``. Using
websockets directly, rather than a framework, is what lets faults abort a TCP
connection with no close frame or refuse an upgrade with any HTTP status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import threading
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

import uvicorn
from websockets.asyncio.server import Server, serve

from ..errors import FalStreamError
from ..redact import scrub
from .faults import Faults
from .realtime import RealtimeService
from .rest import TokenRoute, token_app
from .signing import TokenSigner
from .stats import BackendStats

logger = logging.getLogger(__name__)

# Inputs larger than this close the socket with 1009; a 1024x1024 PNG is ~3 MiB.
MAX_INPUT_BYTES = 16 * 2**20
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


class BackendError(FalStreamError):
    """The built-in backend could not start or stop."""


class LocalBackend:
    """A local server speaking fal's realtime protocol, for offline use and tests.

    Run it in the current event loop with ``async with LocalBackend() as backend``,
    or in a background thread with ``with LocalBackend() as backend`` (or
    :meth:`start` and :meth:`stop`). Point a client at :attr:`rest_url` and
    :attr:`run_host` with :attr:`key` as its fal key.

    Args:
        key: The key clients must present; a random one when ``None``.
        host: The loopback address to bind.
        port: The REST port; 0 picks a free one.
        ws_port: The socket port; 0 picks a free one.
        faults: Fault settings, shared and live; fresh defaults when ``None``.
        send_timings: Whether each result is followed by fal's timings message.
    """

    def __init__(
        self,
        key: str | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ws_port: int = 0,
        faults: Faults | None = None,
        send_timings: bool = True,
    ) -> None:
        self._key = key if key is not None else secrets.token_urlsafe(24)
        self._host = host
        self._ports = (port, ws_port)
        self._faults = faults if faults is not None else Faults()
        self._stats = BackendStats()
        signer = TokenSigner()
        self._tokens = TokenRoute(self._key, signer, self._faults, self._stats)
        self._sockets = RealtimeService(
            self._key, signer, self._faults, self._stats, send_timings=send_timings
        )
        self._bound: tuple[int, int] | None = None
        self._uvicorn: uvicorn.Server | None = None
        self._uvicorn_task: asyncio.Task[None] | None = None
        self._ws_server: Server | None = None
        # Set only while running in a background thread.
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None

    def __repr__(self) -> str:
        # Never the key: a repr can end up in a log line.
        return f"LocalBackend(rest_url={self._url('http', 0)!r})"

    @property
    def key(self) -> str:
        """The key that mints tokens and opens sockets."""
        return self._key

    @property
    def rest_url(self) -> str:
        """Base URL of the REST host, such as ``http://127.0.0.1:8700``."""
        return self._url("http", 0)

    @property
    def run_host(self) -> str:
        """Base URL of the socket host, such as ``ws://127.0.0.1:8701``."""
        return self._url("ws", 1)

    @property
    def faults(self) -> Faults:
        """The live fault settings; change fields at any time."""
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        self._faults = self._tokens.faults = self._sockets.faults = faults

    @property
    def stats(self) -> BackendStats:
        """Counters of what the backend has served."""
        return self._stats

    @property
    def running(self) -> bool:
        """Whether both hosts are serving."""
        return self._bound is not None

    # Serving in the current event loop.

    async def __aenter__(self) -> LocalBackend:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Bind both ports and start serving in the running event loop.

        Raises:
            BackendError: A port cannot be bound or uvicorn does not start.
        """
        if self._bound is not None:
            raise BackendError("the backend is already running")
        rest_sock = _bind(self._host, self._ports[0])
        try:
            ws_sock = _bind(self._host, self._ports[1])
        except BackendError:
            rest_sock.close()
            raise
        try:
            self._ws_server = await serve(
                self._sockets.handle,
                sock=ws_sock,
                process_request=self._sockets.process_request,
                max_size=MAX_INPUT_BYTES,
                # JPEG frames do not compress; deflate would only cost CPU.
                compression=None,
                logger=_SocketLogger(
                    logging.getLogger(f"{__name__}.socket"), self._key
                ),
            )
            await self._start_uvicorn(rest_sock)
        except BaseException:
            rest_sock.close()
            ws_sock.close()
            await self._shutdown()
            raise
        self._bound = (rest_sock.getsockname()[1], ws_sock.getsockname()[1])
        logger.info("backend serving at %s and %s", self.rest_url, self.run_host)

    async def close(self) -> None:
        """Close every socket and stop both hosts. Does nothing if not running."""
        if self._bound is None:
            return
        self._bound = None
        await self._shutdown()
        logger.info("backend stopped")

    # Serving in a background thread.

    def __enter__(self) -> LocalBackend:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Serve from a daemon thread with its own event loop.

        Blocks until both ports are bound and serving.

        Raises:
            BackendError: The backend is running, or it failed to start.
        """
        if self._thread is not None or self._bound is not None:
            raise BackendError("the backend is already running")
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=asyncio.run,
            args=(self._serve_in_thread(ready, failure),),
            name="fal_stream-backend",
            daemon=True,
        )
        self._thread.start()
        if not ready.wait(START_TIMEOUT_S):
            raise BackendError(f"the backend did not start in {START_TIMEOUT_S} s")
        if failure:
            self._thread.join()
            self._thread = None
            raise BackendError(f"the backend failed to start: {failure[0]}") from (
                failure[0]
            )

    def stop(self) -> None:
        """Stop the background thread started by :meth:`start`; blocks until done."""
        thread, loop, stop_event = self._thread, self._loop, self._stop_event
        if thread is None:
            return
        if loop is not None and stop_event is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stop_event.set)
        thread.join(STOP_TIMEOUT_S)
        self._thread = None
        if thread.is_alive():
            raise BackendError(f"the backend did not stop in {STOP_TIMEOUT_S} s")

    async def _serve_in_thread(
        self, ready: threading.Event, failure: list[BaseException]
    ) -> None:
        try:
            await self.open()
        except BaseException as exc:
            failure.append(exc)
            ready.set()
            return
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        ready.set()
        try:
            await self._stop_event.wait()
        finally:
            await self.close()
            self._loop = self._stop_event = None

    # Helpers.

    async def _start_uvicorn(self, sock: socket.socket) -> None:
        config = uvicorn.Config(
            token_app(self._tokens),
            log_config=None,
            # Access logs would hold nothing secret, but they add noise per frame
            # of a token-refreshing client; errors still go to uvicorn.error.
            access_log=False,
            lifespan="off",
            ws="none",
            timeout_graceful_shutdown=1,
        )
        server = _ThreadFriendlyServer(config)
        self._uvicorn = server
        self._uvicorn_task = asyncio.create_task(server.serve(sockets=[sock]))
        deadline = asyncio.get_running_loop().time() + START_TIMEOUT_S
        while not server.started:
            if self._uvicorn_task.done():
                self._uvicorn_task.result()
                raise BackendError("uvicorn stopped while starting")
            if asyncio.get_running_loop().time() > deadline:
                raise BackendError(f"uvicorn did not start in {START_TIMEOUT_S} s")
            await asyncio.sleep(0.005)

    async def _shutdown(self) -> None:
        if self._ws_server is not None:
            self._ws_server.close()
            await self._ws_server.wait_closed()
            self._ws_server = None
        if self._uvicorn is not None and self._uvicorn_task is not None:
            self._uvicorn.should_exit = True
            await self._uvicorn_task
        self._uvicorn = self._uvicorn_task = None

    def _url(self, scheme: str, index: int) -> str:
        port = self._bound[index] if self._bound else self._ports[index]
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{scheme}://{host}:{port}"


class _ThreadFriendlyServer(uvicorn.Server):
    """uvicorn without its signal handlers, which belong to the host program."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


if TYPE_CHECKING:
    _LoggerAdapter = logging.LoggerAdapter[logging.Logger]
else:  # LoggerAdapter is subscriptable at run time from Python 3.11 only.
    _LoggerAdapter = logging.LoggerAdapter


class _SocketLogger(_LoggerAdapter):
    """Hands websockets a logger that scrubs tokens and the key from records.

    websockets logs the request line at DEBUG, and the token is in its query.
    """

    def __init__(self, target: logging.Logger, key: str) -> None:
        super().__init__(target, {})
        self._key = key

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            text = str(msg) % args if args else str(msg)
            self.logger.log(level, "%s", scrub(text, self._key), **kwargs)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        raise BackendError(f"cannot listen on {host} port {port}: {exc}") from exc
