"""Run the real app in-process on a free loopback port, and speak Gradio's queue
protocol to it the way the browser does."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

import app as app_module
from fal_stream.config import Settings
from fal_stream.runtime import Limits, Runtime


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningApp:
    """The app under test: its URL, runtime and Gradio config."""

    url: str
    runtime: Runtime
    config: dict[str, Any] = field(default_factory=dict)

    def component_id(self, elem_id: str) -> int:
        for component in self.config["components"]:
            if component.get("props", {}).get("elem_id") == elem_id:
                return int(component["id"])
        raise LookupError(elem_id)

    def fn_index(self, elem_id: str | None, event: str) -> int:
        """The index of the event handler for ``event`` on ``elem_id``
        (``None`` for the page's own load event)."""
        target = None if elem_id is None else self.component_id(elem_id)
        for index, dependency in enumerate(self.config["dependencies"]):
            for target_id, name in dependency["targets"]:
                if name == event and (target is None or target_id == target):
                    return index
        raise LookupError(f"{elem_id}.{event}")


@contextlib.contextmanager
def serve_app(settings: Settings, limits: Limits | None = None) -> Iterator[RunningApp]:
    """Start the app on 127.0.0.1 and stop it afterwards."""
    runtime = Runtime(settings, limits or Limits())
    demo = app_module.build_demo(runtime)
    demo.queue(default_concurrency_limit=None)
    port = free_port()
    demo.launch(
        server_name="127.0.0.1",
        server_port=port,
        prevent_thread_lock=True,
        quiet=True,
        max_threads=80,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        config = httpx.get(f"{url}/config", timeout=10).json()
        yield RunningApp(url, runtime, config)
    finally:
        demo.close()
        runtime.stop_backend()


class Browserless:
    """One browser session spoken over HTTP: join events, read the SSE stream."""

    def __init__(self, running: RunningApp, session_hash: str) -> None:
        self.running = running
        self.session_hash = session_hash
        self.http = httpx.Client(base_url=running.url, timeout=30)
        self.messages: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None
        self._stop = threading.Event()

    def join(self, fn_index: int, data: list[Any]) -> str:
        body = {
            "data": data,
            "fn_index": fn_index,
            "session_hash": self.session_hash,
            "event_data": None,
            "trigger_id": None,
        }
        response = self.http.post("/gradio_api/queue/join", json=body)
        response.raise_for_status()
        if self._reader is None:
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()
        return str(response.json()["event_id"])

    def _read(self) -> None:
        params = {"session_hash": self.session_hash}
        path = "/gradio_api/queue/data"
        # close() shuts the client under this read; that ends the thread.
        with (
            contextlib.suppress(httpx.HTTPError, RuntimeError),
            self.http.stream("GET", path, params=params) as sse,
        ):
            for line in sse.iter_lines():
                if self._stop.is_set():
                    return
                if line.startswith("data:"):
                    with self._lock:
                        self.messages.append(json.loads(line[5:]))

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self._stop.set()
        self.http.close()
        if self._reader is not None:
            self._reader.join(timeout=5)


@contextlib.contextmanager
def browserless_sessions(
    running: RunningApp, *, load: bool = False
) -> Iterator[Callable[[str], Browserless]]:
    """Open named browser sessions on demand; close them all at the end.

    Args:
        load: Join the page's load event on opening, as a browser does, which
            starts the session's output stream.
    """
    opened: list[Browserless] = []

    def open_session(name: str) -> Browserless:
        session = Browserless(running, f"{name}-{time.monotonic_ns()}")
        if load:
            session.join(running.fn_index(None, "load"), [])
        opened.append(session)
        return session

    try:
        yield open_session
    finally:
        for session in opened:
            session.close()
