"""Soak the real app: many browser sessions drawing for minutes, with figures.

Starts the app (built-in backend, loopback only) in this process and opens
``--sessions`` sessions that speak Gradio's queue protocol as a browser does: each
joins the page's output stream, then posts its own sketch ``--fps`` times a
second. Every result pushed back is decoded and checked to be the session's own
picture. Memory (RSS), open file descriptors, sockets and threads of this process
are printed at the start, every ``--report-every`` seconds and at the end.

Run from the repository root::

    .venv/bin/python scripts/soak.py --sessions 20 --duration 600 | tee soak.log

The figures count the clients too (they live in this process): 20 sessions hold
about two sockets each besides the server's. What matters is that the figures
level off rather than grow.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import argparse
import base64
import contextlib
import io
import json
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import app as app_module
from fal_stream.config import Settings
from fal_stream.runtime import Limits, Runtime

APP_ID = "fal-ai/fast-lcm-diffusion/image-to-image"
GRID = (4, 5)  # rows, columns: up to 20 sessions tell apart by their block
FRAME_SIDE = 256


def session_picture(index: int, side: int = FRAME_SIDE, shift: int = 0) -> np.ndarray:
    """White paper with one dark block in the grid cell of session ``index``.

    The preview model repaints colours but keeps where the dark parts are, so
    the cell identifies the session a result belongs to. ``shift`` moves the
    block a few pixels, so that successive frames (and results) differ.
    """
    rows, cols = GRID
    image = np.full((side, side, 3), 255, np.uint8)
    row, col = divmod(index % (rows * cols), cols)
    cell_h, cell_w = side // rows, side // cols
    image[
        row * cell_h + cell_h // 8 : (row + 1) * cell_h - cell_h // 8,
        col * cell_w + cell_w // 8 : (col + 1) * cell_w - cell_w // 8,
    ] = 20
    return np.roll(image, shift, axis=1)


def identify(image: np.ndarray) -> int:
    """The session index whose block is darkest in ``image`` (any square side)."""
    rows, cols = GRID
    luma = image.astype(np.float32).mean(axis=2)
    side_h, side_w = luma.shape
    cell_h, cell_w = side_h // rows, side_w // cols
    means = [
        luma[
            r * cell_h + cell_h // 8 : (r + 1) * cell_h - cell_h // 8,
            c * cell_w + cell_w // 8 : (c + 1) * cell_w - cell_w // 8,
        ].mean()
        for r in range(rows)
        for c in range(cols)
    ]
    return int(np.argmin(means))


def picture_uri(index: int, side: int = FRAME_SIDE, shift: int = 0) -> str:
    """The session's picture as the sketchpad sends it: a JPEG data URI."""
    buffer = io.BytesIO()
    picture = session_picture(index, side, shift)
    Image.fromarray(picture).save(buffer, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def uri_image(uri: str) -> np.ndarray:
    """Decode a ``data:`` URI to an RGB array."""
    data = base64.b64decode(uri.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def pushed_images(message: dict[str, Any]) -> list[str]:
    """The data URIs a queue message pushes into the output image."""
    if message.get("msg") != "process_generating":
        return []
    first = message["output"]["data"][0]
    if isinstance(first, dict) and str(first.get("url", "")).startswith("data:"):
        return [first["url"]]
    if isinstance(first, list):  # a diff against the previous yield
        return [
            op[2]
            for op in first
            if len(op) > 2 and op[1] == ["url"] and str(op[2]).startswith("data:")
        ]
    return []


def process_figures() -> dict[str, float]:
    """RSS (MiB), open fds, sockets among them, and threads of this process."""
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status if ":" in line)
    fds = os.listdir("/proc/self/fd")
    sockets = 0
    for fd in fds:
        with contextlib.suppress(OSError):
            sockets += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return {
        "rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
        "fds": len(fds),
        "sockets": sockets,
        "threads": int(fields["Threads"]),
    }


@dataclass
class SessionClient:
    """One browser session: an output stream read in a thread, frames posted."""

    url: str
    index: int
    config: dict[str, Any]
    results: int = 0
    crossed: int = 0
    undecodable: int = 0
    messages: list[str] = field(default_factory=list)
    posts: int = 0
    post_errors: int = 0

    def __post_init__(self) -> None:
        self.session_hash = f"soak-{self.index}-{time.monotonic_ns()}"
        self.http = httpx.Client(base_url=self.url, timeout=30)
        self.stop = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        # Two pictures in turn: Gradio sends nothing for an unchanged output.
        self.uris = [picture_uri(self.index, shift=shift) for shift in (0, 3)]

    def fn_index(self, elem_id: str | None, event: str) -> int:
        target = None
        if elem_id is not None:
            target = next(
                c["id"]
                for c in self.config["components"]
                if c.get("props", {}).get("elem_id") == elem_id
            )
        for index, dependency in enumerate(self.config["dependencies"]):
            for target_id, name in dependency["targets"]:
                if name == event and (target is None or target_id == target):
                    return index
        raise LookupError(f"{elem_id}.{event}")

    def join(self, fn_index: int, data: list[Any]) -> None:
        body = {
            "data": data,
            "fn_index": fn_index,
            "session_hash": self.session_hash,
            "event_data": None,
            "trigger_id": None,
        }
        self.posts += 1
        try:
            self.http.post("/gradio_api/queue/join", json=body).raise_for_status()
        except httpx.HTTPError:
            self.post_errors += 1

    def open(self) -> None:
        self.join(self.fn_index(None, "load"), [])
        self.reader.start()

    def draw(self) -> None:
        controls = ["a quiet lake", 0.6, self.index, 4, APP_ID]
        uri = self.uris[self.posts % 2]
        self.join(self.fn_index("sketch", "change"), [uri, *controls])

    def close(self) -> None:
        self.stop.set()
        self.http.close()
        self.reader.join(timeout=5)

    def _read(self) -> None:
        params = {"session_hash": self.session_hash}
        with (
            contextlib.suppress(httpx.HTTPError, RuntimeError),
            self.http.stream("GET", "/gradio_api/queue/data", params=params) as sse,
        ):
            for line in sse.iter_lines():
                if self.stop.is_set():
                    return
                if line.startswith("data:"):
                    self._take(json.loads(line[5:]))

    def _take(self, message: dict[str, Any]) -> None:
        if message.get("msg") == "log":
            self.messages.append(str(message.get("log")))
        for uri in pushed_images(message):
            try:
                owner = identify(uri_image(uri))
            except Exception:  # a broken image is counted, not fatal to the soak
                self.undecodable += 1
                continue
            self.results += 1
            self.crossed += owner != self.index


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _line(label: str, started: float, figures: dict[str, float], extra: str) -> str:
    return (
        f"{label:>6} t={time.monotonic() - started:6.0f}s "
        f"rss={figures['rss_mb']:7.1f}MiB fds={figures['fds']:4.0f} "
        f"sockets={figures['sockets']:4.0f} threads={figures['threads']:3.0f} {extra}"
    )


def run(sessions: int, duration_s: float, fps: float, report_every_s: float) -> int:
    """Run the soak; return 0 when no result crossed sessions, else 1."""
    if not 1 <= sessions <= GRID[0] * GRID[1]:
        raise SystemExit(f"--sessions must be 1 to {GRID[0] * GRID[1]}")
    settings = Settings(backend="local", frame_size=FRAME_SIDE)
    runtime = Runtime(settings, Limits(max_sessions=sessions + 4))
    demo = app_module.build_demo(runtime)
    demo.queue(default_concurrency_limit=None)
    port = _free_port()
    demo.launch(
        server_name="127.0.0.1",
        server_port=port,
        prevent_thread_lock=True,
        quiet=True,
        max_threads=max(40, 2 * sessions + 8),
    )
    url = f"http://127.0.0.1:{port}"
    config = httpx.get(f"{url}/config", timeout=10).json()
    started = time.monotonic()
    first = process_figures()
    print(_line("start", started, first, "(app up, no sessions)"), flush=True)

    clients = [SessionClient(url, i, config) for i in range(sessions)]
    for client in clients:
        client.open()
    stop = threading.Event()

    def draw_forever(client: SessionClient) -> None:
        # Spread the sessions over the frame interval, as real users would be.
        stop.wait(client.index / max(sessions, 1) / fps)
        while not stop.wait(1 / fps):
            client.draw()

    drawers = [
        threading.Thread(target=draw_forever, args=(c,), daemon=True) for c in clients
    ]
    for thread in drawers:
        thread.start()

    last_results, last_report = 0, started
    deadline = started + duration_s
    while (now := time.monotonic()) < deadline:
        time.sleep(min(report_every_s, deadline - now))
        results = sum(c.results for c in clients)
        rate = (results - last_results) / max(time.monotonic() - last_report, 1e-3)
        last_results, last_report = results, time.monotonic()
        crossed = sum(c.crossed for c in clients)
        extra = (
            f"results={results} ({rate:.1f}/s) crossed={crossed} "
            f"live={len(runtime.pool)} backend_inputs={_inputs(runtime)}"
        )
        print(_line("", started, process_figures(), extra), flush=True)

    stop.set()
    for thread in drawers:
        thread.join(timeout=5)
    during = process_figures()
    for client in clients:
        client.close()
    time.sleep(2.0)
    after = process_figures()

    results = sum(c.results for c in clients)
    crossed = sum(c.crossed for c in clients)
    posts = sum(c.posts for c in clients)
    print(_line("end", started, during, "(sessions still open)"), flush=True)
    print(_line("closed", started, after, "(clients closed)"), flush=True)
    print(
        f"summary: sessions={sessions} duration={duration_s:.0f}s posts={posts} "
        f"post_errors={sum(c.post_errors for c in clients)} results={results} "
        f"crossed={crossed} undecodable={sum(c.undecodable for c in clients)} "
        f"per-session results min={min(c.results for c in clients)} "
        f"max={max(c.results for c in clients)} "
        f"warnings={sum(len(c.messages) for c in clients)} "
        f"rss_growth={during['rss_mb'] - first['rss_mb']:+.1f}MiB",
        flush=True,
    )
    demo.close()
    runtime.stop_backend()
    return 1 if crossed else 0


def _inputs(runtime: Runtime) -> int:
    return runtime.local.stats.inputs if runtime.local is not None else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds")
    parser.add_argument("--fps", type=float, default=4.0, help="frames per session")
    parser.add_argument("--report-every", type=float, default=60.0, help="seconds")
    args = parser.parse_args()
    raise SystemExit(run(args.sessions, args.duration, args.fps, args.report_every))


if __name__ == "__main__":
    main()
