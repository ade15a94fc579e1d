"""Scale on one process: many webcam sessions through Gradio's queue protocol.

``--sessions`` (10, 50, 100) sessions each post a 512x512 JPEG at 10 frames a
second through the webcam ``.stream`` event, as the browser does: the first
frame joins the queue, the rest are POSTed to ``/gradio_api/stream/<event>``,
and outputs come back on the session's SSE stream. Two servers take the load,
each started fresh for every count:

* ours: ``python app.py --max-sessions 110`` (which launches with
  ``max_threads = 2 * 110 + 8``), pointed at an echo model in its own process
  (``bench/backend_proc.py --model echo``) through ``FAL_RUN_HOST``, so that
  the server's work is the relay's and not a painter's;
* stock: ``bench/stock_echo_app.py``, Gradio's own webcam echo (numpy in, file
  out), launched with the same ``max_threads``; the client fetches each output
  file as the browser would.

The server runs alone on CPU 0; the load generator (this process, a bare
asyncio HTTP/1.1 client) and the echo model share CPU 1. Server CPU is read
from ``/proc`` over the measurement window, RSS at its end. Latency is from
posting a frame to the SSE message carrying its output: each of the 50 frames
in rotation is told apart by a JPEG comment (ours, whose output is the echoed
frame itself) or by the cache-file hash Gradio gives its re-encoding (stock).
A frame newest-wins replaced before it was sent has no output and no latency.

Run: ``.venv/bin/python bench/scale.py [--sessions 10 50 100] [--window-s 15]``.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import argparse
import asyncio
import base64
import contextlib
import io
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from common import (
    ROOT,
    BackendProcess,
    cpu_percent,
    free_port,
    percentile,
    report,
    sample_process,
)
from PIL import Image

from bench.bench_codec import make_frame

POOL = 50
FPS = 10.0
MAX_SESSIONS = 110
MAX_THREADS = 2 * MAX_SESSIONS + 8
SERVER_CPU = 0
CLIENT_CPU = 1
CONTROLS = [
    "a watercolor landscape",
    0.6,
    42,
    4,
    "fal-ai/fast-lcm-diffusion/image-to-image",
]
_URL = re.compile(rb'"url":\s*"([^"]+/gradio_api/file=[^"]+)"')
_HASH = re.compile(r"/([0-9a-f]{64})/")


def frame_pool() -> list[bytes]:
    """Fifty distinct 512x512 JPEGs, each carrying its number in a comment."""
    frames = []
    for number in range(POOL):
        out = io.BytesIO()
        Image.fromarray(make_frame(512, 512, seed=number)).save(out, "JPEG", quality=80)
        jpeg = out.getvalue()
        text = f"fsbench-{number:04d}".encode()
        comment = b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text
        frames.append(jpeg[:2] + comment + jpeg[2:])
    return frames


def our_keys(frames: list[bytes]) -> dict[bytes, int]:
    """Map the first 24 base64 characters of each frame (SOI + comment) to it."""
    return {base64.b64encode(f[:18]): n for n, f in enumerate(frames)}


def stock_keys(frames: list[bytes]) -> dict[str, int]:
    """Map the cache-file hash stock Gradio gives each frame's echo to the frame."""
    import gradio as gr
    from gradio.data_classes import ImageData

    webcam, output = gr.Image(sources=["webcam"], streaming=True), gr.Image()
    keys = {}
    for number, jpeg in enumerate(frames):
        uri = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
        saved = output.postprocess(webcam.preprocess(ImageData(url=uri)))
        assert saved is not None and saved.path is not None
        keys[Path(saved.path).parent.name] = number
    return keys


class Connection:
    """One keep-alive HTTP/1.1 connection, one request at a time."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def request(self, method: str, path: str, body: bytes = b"") -> bytes:
        """Send a request and return the body of the answer."""
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        status, headers = await read_head(self.reader)
        if headers.get("transfer-encoding") == "chunked":
            data = b""
            async for chunk in read_chunks(self.reader):
                data += chunk
        else:
            data = await self.reader.readexactly(int(headers.get("content-length", 0)))
        if status >= 400:
            raise RuntimeError(f"{method} {path}: HTTP {status} {data[:200]!r}")
        return data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """Read a status line and headers."""
    status = int((await reader.readline()).split()[1])
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip().lower()
    return status, headers


async def read_chunks(reader: asyncio.StreamReader) -> Any:
    """Yield the chunks of a chunked body until its end."""
    while True:
        size = int((await reader.readline()).split(b";")[0], 16)
        if size == 0:
            await reader.readline()
            return
        chunk = await reader.readexactly(size)
        await reader.readline()
        yield chunk


@dataclass
class Tally:
    """What one run saw, shared by all sessions."""

    measuring: bool = False
    latencies: list[float] = field(default_factory=list)
    outputs: int = 0
    unmatched: int = 0
    posts: int = 0
    late_posts: int = 0
    errors: list[str] = field(default_factory=list)
    sessions_with_output: set[str] = field(default_factory=set)


class Session:
    """One simulated browser tab streaming its webcam."""

    def __init__(
        self, app: str, port: int, config: dict[str, Any], name: str, tally: Tally
    ) -> None:
        self.app, self.port, self.name, self.tally = app, port, name, tally
        self.fn_stream = fn_index(config, "webcam", "stream")
        self.fn_load = fn_index(config, None, "load") if app == "ours" else None
        self.posted_at: dict[int, float] = {}
        self.post = Connection("127.0.0.1", port)
        self.sse = Connection("127.0.0.1", port)
        self.fetch = Connection("127.0.0.1", port)

    def body(self, frames: list[bytes], number: int) -> bytes:
        uri = "data:image/jpeg;base64," + base64.b64encode(frames[number]).decode()
        data: list[Any] = [{"url": uri, "meta": {"_type": "gradio.FileData"}}]
        if self.app == "ours":
            data += CONTROLS
        body = {
            "data": data,
            "fn_index": self.fn_stream,
            "session_hash": self.name,
            "event_data": None,
            "trigger_id": None,
        }
        return json.dumps(body).encode()

    async def run(
        self, frames: list[bytes], keys: dict[Any, int], start: float, stop: float
    ) -> None:
        tally = self.tally
        if self.fn_load is not None:
            load = {"data": [], "fn_index": self.fn_load, "session_hash": self.name}
            await self.post.request(
                "POST", "/gradio_api/queue/join", json.dumps(load).encode()
            )
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        self.posted_at[0] = time.monotonic()
        answer = await self.post.request(
            "POST", "/gradio_api/queue/join", self.body(frames, 0)
        )
        event_id = json.loads(answer)["event_id"]
        reader = asyncio.create_task(self.read_sse(keys))
        number = 0
        try:
            while True:
                number += 1
                due = start + number / FPS
                if due > stop:
                    break
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif delay < -1 / FPS:
                    tally.late_posts += 1
                    continue  # a browser skips ticks it missed, too
                frame = number % POOL
                self.posted_at[frame] = time.monotonic()
                await self.post.request(
                    "POST", f"/gradio_api/stream/{event_id}", self.body(frames, frame)
                )
                if tally.measuring:
                    tally.posts += 1
        except (OSError, RuntimeError, asyncio.IncompleteReadError) as exc:
            tally.errors.append(f"{self.name}: {exc}"[:200])
        finally:
            reader.cancel()
            for connection in (self.post, self.sse, self.fetch):
                connection.close()

    async def read_sse(self, keys: dict[Any, int]) -> None:
        """Read the session's event stream; time every output to its frame."""
        await self.sse.open()
        assert self.sse.reader is not None and self.sse.writer is not None
        path = f"/gradio_api/queue/data?session_hash={self.name}"
        self.sse.writer.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n\r\n".encode()
        )
        status, _ = await read_head(self.sse.reader)
        if status != 200:
            self.tally.errors.append(f"{self.name}: SSE HTTP {status}")
            return
        buffer = b""
        async for chunk in read_chunks(self.sse.reader):
            buffer += chunk
            while b"\n\n" in buffer:
                message, buffer = buffer.split(b"\n\n", 1)
                await self.on_message(message, keys, time.monotonic())

    async def on_message(
        self, message: bytes, keys: dict[Any, int], now: float
    ) -> None:
        frame: int | None = None
        if self.app == "ours":
            at = message.find(b"data:image/jpeg;base64,")
            if at < 0:
                return
            start = at + len(b"data:image/jpeg;base64,")
            frame = keys.get(message[start : start + 24])
        else:
            if b"process_streaming" not in message:
                return
            found = _URL.search(message)
            if found is None:
                return
            url = found.group(1).decode()
            digest = _HASH.search(url)
            frame = keys.get(digest.group(1)) if digest else None
            # The browser fetches every output file; so does this client.
            path = "/" + url.split("/", 3)[3]
            with contextlib.suppress(RuntimeError, OSError):
                await self.fetch.request("GET", path)
        tally = self.tally
        if not tally.measuring:
            return
        tally.outputs += 1
        tally.sessions_with_output.add(self.name)
        if frame is None or frame not in self.posted_at:
            tally.unmatched += 1
            return
        tally.latencies.append(now - self.posted_at[frame])


def fn_index(config: dict[str, Any], elem_id: str | None, event: str) -> int:
    """The index of ``event`` on the component with ``elem_id`` (None: the page)."""
    target = None
    if elem_id is not None:
        target = next(
            c["id"]
            for c in config["components"]
            if c.get("props", {}).get("elem_id") == elem_id
        )
    for index, dependency in enumerate(config["dependencies"]):
        for target_id, name in dependency["targets"]:
            if name == event and (target is None or target_id == target):
                return index
    raise LookupError(f"{elem_id}.{event}")


@contextlib.contextmanager
def server(
    app: str, workdir: str
) -> Iterator[tuple[subprocess.Popen[bytes], int, Any]]:
    """Start ``app`` on a free port, pinned to SERVER_CPU; yield it, port, model."""
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    model = None
    if app == "ours":
        model = BackendProcess(model="echo", cpu=CLIENT_CPU)
        env.update(
            FAL_KEY=model.key,
            FAL_STREAM_BACKEND="fal",
            FAL_REST_URL=model.rest_url,
            FAL_RUN_HOST=model.run_host,
        )
        argv = [str(ROOT / "app.py"), "--port", str(port)]
        argv += ["--max-sessions", str(MAX_SESSIONS), "--log-level", "WARNING"]
    else:
        argv = [str(Path(__file__).with_name("stock_echo_app.py"))]
        argv += ["--port", str(port), "--max-threads", str(MAX_THREADS)]
    process = subprocess.Popen(
        [sys.executable, *argv],
        cwd=workdir,  # away from any .env in the checkout
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: os.sched_setaffinity(0, {SERVER_CPU}),
    )
    try:
        config = wait_ready(port)
        yield process, port, config
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if model is not None:
            model.close()


def wait_ready(port: int, timeout_s: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            response = httpx.get(f"http://127.0.0.1:{port}/config", timeout=2)
            if response.status_code == 200:
                config: dict[str, Any] = response.json()
                return config
        time.sleep(0.3)
    raise RuntimeError(f"the server on port {port} did not start")


async def load(
    app: str,
    port: int,
    config: dict[str, Any],
    pid: int,
    sessions: int,
    frames: list[bytes],
    keys: dict[Any, int],
    warmup_s: float,
    window_s: float,
) -> dict[str, Any]:
    tally = Tally()
    start = time.monotonic() + 1.0
    window_start = start + warmup_s
    stop = window_start + window_s
    runs = [
        Session(app, port, config, f"bench{app}{n:03d}{int(start)}", tally)
        for n in range(sessions)
    ]
    # Phases spread over one frame interval, as independent users would be.
    tasks = [
        asyncio.create_task(s.run(frames, keys, start + n / sessions / FPS, stop))
        for n, s in enumerate(runs)
    ]
    await asyncio.sleep(max(0.0, window_start - time.monotonic()))
    first, client_first = sample_process(pid), resource.getrusage(resource.RUSAGE_SELF)
    tally.measuring = True
    await asyncio.sleep(max(0.0, stop - time.monotonic()))
    tally.measuring = False
    last, client_last = sample_process(pid), resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.gather(*tasks, return_exceptions=True)
    elapsed = last.at - first.at
    client_cpu = (
        client_last.ru_utime
        + client_last.ru_stime
        - client_first.ru_utime
        - client_first.ru_stime
    )
    ms = [x * 1000 for x in tally.latencies]
    return {
        "app": app,
        "sessions": sessions,
        "sessions_with_output": len(tally.sessions_with_output),
        "server_cpu_pct": round(cpu_percent(first, last), 1),
        "server_rss_mb": round(last.rss_mb, 1),
        "posts_per_s": round(tally.posts / elapsed, 1),
        "outputs_per_s": round(tally.outputs / elapsed, 1),
        "latency_p50_ms": round(percentile(ms, 0.5), 1),
        "latency_p95_ms": round(percentile(ms, 0.95), 1),
        "unmatched_outputs": tally.unmatched,
        "late_posts_skipped": tally.late_posts,
        "client_cpu_pct": round(100 * client_cpu / elapsed, 1),
        "errors": tally.errors[:5],
        "error_count": len(tally.errors),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    frames = frame_pool()
    keys: dict[str, dict[Any, int]] = {
        "ours": our_keys(frames),
        "stock": stock_keys(frames),
    }
    original = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {CLIENT_CPU})
    rows = []
    try:
        with tempfile.TemporaryDirectory() as workdir:
            for count in args.sessions:
                for app in ("stock", "ours"):
                    with server(app, workdir) as (process, port, config):
                        time.sleep(1.0)  # let startup work settle
                        row = asyncio.run(
                            load(
                                app,
                                port,
                                config,
                                process.pid,
                                count,
                                frames,
                                keys[app],
                                args.warmup_s,
                                args.window_s,
                            )
                        )
                    print(json.dumps(row), file=sys.stderr)
                    rows.append(row)
    finally:
        os.sched_setaffinity(0, original)
    return {
        "fps_per_session": FPS,
        "frame": "512x512 JPEG, quality 80, ~30 KB",
        "warmup_s": args.warmup_s,
        "window_s": args.window_s,
        "max_threads": MAX_THREADS,
        "runs": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--warmup-s", type=float, default=5.0)
    parser.add_argument("--window-s", type=float, default=15.0)
    parser.add_argument("--out", help="write the JSON here too")
    args = parser.parse_args()
    result = run(args)
    rows = [
        [
            r["sessions"],
            r["app"],
            r["sessions_with_output"],
            r["server_cpu_pct"],
            r["server_rss_mb"],
            r["posts_per_s"],
            r["outputs_per_s"],
            r["latency_p50_ms"],
            r["latency_p95_ms"],
            r["error_count"],
        ]
        for r in result["runs"]
    ]
    report(
        "scale",
        result,
        [
            "sessions",
            "app",
            "served",
            "server CPU %",
            "RSS MB",
            "posts/s",
            "outputs/s",
            "p50 ms",
            "p95 ms",
            "errors",
        ],
        rows,
        args.out,
    )


if __name__ == "__main__":
    main()
