"""Shared helpers for the browser tests: Chromium, an in-process app, input.

Browser tests drive Debian's ``/usr/bin/chromium`` through Playwright's sync API
(``playwright install`` is never run). Mark them ``@pytest.mark.browser`` and
call :func:`require_chromium` first: without the browser they are skipped, or
fail when ``FAL_STREAM_REQUIRE_BROWSER=1``.
"""

from __future__ import annotations

import os

# Gradio reports usage to its servers unless this is set before it is imported.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import contextlib
import gc
import hashlib
import socket
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
import pytest

if TYPE_CHECKING:
    import gradio as gr
    from playwright.sync_api import Browser, BrowserContext, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
)
REQUIRE_BROWSER_ENV = "FAL_STREAM_REQUIRE_BROWSER"

# Warnings Gradio 6.31 raises by itself, for tests that build or serve an app
# (pytest turns warnings into errors). Apply with
# ``pytestmark = [pytest.mark.filterwarnings(f) for f in GRADIO_WARNING_FILTERS]``.
# - Its queue summarises run statistics with pandas after every event, using
#   options pandas 3 deprecates (gradio/queueing.py _get_df).
# - It makes a new asyncio loop whenever it needs a lock outside a running
#   loop and never closes the one it replaces (gradio/utils.py safe_get_lock);
#   the orphans warn, with their AF_UNIX self-pipes, when collected.
# TODO(gradio > 6.31): drop the entries a newer Gradio no longer needs.
GRADIO_WARNING_FILTERS = (
    "ignore::pandas.errors.Pandas4Warning",
    "ignore:unclosed event loop:ResourceWarning",
    "ignore:Exception ignored in. <function BaseEventLoop.__del__"
    ":pytest.PytestUnraisableExceptionWarning",
    "ignore:Exception ignored in. <socket.socket fd=[0-9]+, family=1,"
    ":pytest.PytestUnraisableExceptionWarning",
)
SCREENSHOT_DIR = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"

Plane = npt.NDArray[np.uint8]

# Colour bars left to right, as RGB: white, yellow, cyan, green, magenta, red, blue.
BARS_RGB = np.array(
    [
        (255, 255, 255),
        (255, 255, 0),
        (0, 255, 255),
        (0, 255, 0),
        (255, 0, 255),
        (255, 0, 0),
        (0, 0, 255),
    ],
    dtype=np.uint8,
)


def require_chromium() -> None:
    """Skip the calling test when Chromium is missing, or fail if it is required.

    Raises:
        pytest.skip.Exception: Chromium is missing and not required.
        pytest.fail.Exception: Chromium is missing and ``FAL_STREAM_REQUIRE_BROWSER``
            is ``1``.
    """
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is missing (apt-get install chromium)"
    if os.environ.get(REQUIRE_BROWSER_ENV) == "1":
        pytest.fail(f"{reason}, and {REQUIRE_BROWSER_ENV}=1 requires it")
    pytest.skip(reason)


@contextlib.contextmanager
def chromium(fake_video: Path | None = None) -> Iterator[Browser]:
    """Run headless Debian Chromium for the duration of the block.

    Args:
        fake_video: A ``.y4m`` file the fake webcam plays (see :func:`write_y4m`);
            without it Chromium's own test pattern is the webcam.

    Yields:
        The browser; open pages with ``browser.new_page()``.
    """
    from playwright.sync_api import sync_playwright

    args = list(CHROMIUM_ARGS)
    if fake_video is not None:
        args.append(f"--use-file-for-fake-video-capture={fake_video}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=args, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def serve(demo: gr.Blocks) -> Iterator[str]:
    """Serve a Blocks app on 127.0.0.1 from this process for the block.

    Yields:
        The app's base URL, such as ``http://127.0.0.1:41234/``.
    """
    port = free_port()
    demo.launch(
        server_name="127.0.0.1",
        server_port=port,
        prevent_thread_lock=True,
        quiet=True,
    )
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()
        # Collect Gradio's orphaned event loops now, while their warnings are
        # known to be Gradio's, instead of in whichever test runs gc next.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "unclosed", ResourceWarning)
            gc.collect()


def open_app(browser: Browser, url: str, ready: str) -> Page:
    """Open ``url`` in a new page and wait until ``ready`` (a selector) is visible."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(url)
    page.wait_for_selector(ready, state="visible", timeout=30_000)
    return page


def draw_stroke(
    page: Page,
    selector: str,
    points: Sequence[tuple[float, float]],
    steps: int = 1,
    *,
    duration_ms: float = 0,
    release: bool = True,
) -> None:
    """Press the mouse on an element, drag it through ``points``, and let go.

    Args:
        page: The page holding the element.
        selector: The element to draw on, such as a canvas.
        points: Positions as fractions of the element's box, (0, 0) top left and
            (1, 1) bottom right; the first is where the button goes down.
        steps: Mouse-move events Playwright sends between two points.
        duration_ms: Spread the moves evenly over this many milliseconds, to
            draw slowly; 0 moves as fast as Playwright can.
        release: Release the button at the end; pass False to release it
            yourself with ``page.mouse.up()``.
    """
    positions = _on_page(page, selector, points)
    page.mouse.move(*positions[0])
    page.mouse.down()
    started = time.monotonic()
    for index, position in enumerate(positions[1:], start=1):
        page.mouse.move(*position, steps=steps)
        # Wait for the wall-clock schedule, since each move itself takes time.
        due_s = started + duration_ms / 1000 * index / (len(positions) - 1)
        if (ahead_s := due_s - time.monotonic()) > 0:
            page.wait_for_timeout(ahead_s * 1000)
    if release:
        page.mouse.up()


def draw_stroke_with(
    page: Page,
    selector: str,
    points: Sequence[tuple[float, float]],
    pointer: Literal["touch", "pen"],
) -> None:
    """Draw one stroke through ``points`` with a finger or a pen.

    Playwright's own input API has no pen and no touch drag, so this goes
    through the Chrome DevTools Protocol. Arguments are as for
    :func:`draw_stroke`; at least two points.
    """
    positions = _on_page(page, selector, points)
    cdp = page.context.new_cdp_session(page)
    try:
        if pointer == "touch":
            kinds = ["touchStart"] + ["touchMove"] * (len(positions) - 1)
            for kind, (x, y) in zip(kinds, positions, strict=True):
                touch = {"type": kind, "touchPoints": [{"x": x, "y": y}]}
                cdp.send("Input.dispatchTouchEvent", touch)
            cdp.send(
                "Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []}
            )
            return
        kinds = ["mousePressed"] + ["mouseMoved"] * (len(positions) - 2)
        kinds.append("mouseReleased")
        for kind, (x, y) in zip(kinds, positions, strict=True):
            pen = {
                "type": kind,
                "x": x,
                "y": y,
                "button": "left",
                "buttons": 0 if kind == "mouseReleased" else 1,
                "clickCount": 1,
                "pointerType": "pen",
                "force": 0.5,
            }
            cdp.send("Input.dispatchMouseEvent", pen)
    finally:
        cdp.detach()


def _on_page(
    page: Page, selector: str, points: Sequence[tuple[float, float]]
) -> list[tuple[float, float]]:
    """Turn fractions of an element's box into page coordinates."""
    box = page.locator(selector).bounding_box()
    assert box is not None, f"{selector} is not visible"
    return [
        (box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in points
    ]


# SHA-256 of a string, as hex: keys for matching big data URLs between the
# page and Python (their tails repeat: the bottom of a sketch is often white).
_KEY_JS = """
async (text) => {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0"))
    .join("");
}
"""

# Records every canvas.toDataURL() result, with its Date.now() time.
_RECORD_CANVAS_EXPORTS = f"""
(() => {{
  const key = {_KEY_JS};
  const original = HTMLCanvasElement.prototype.toDataURL;
  window.__canvasExports = [];
  HTMLCanvasElement.prototype.toDataURL = function (...args) {{
    const url = original.apply(this, args);
    const entry = {{ t: Date.now(), length: url.length, key: null }};
    window.__canvasExports.push(entry);
    key(url).then((hex) => (entry.key = hex));
    return url;
  }};
}})();
"""

# Records every src an <img> inside the watched element takes, whether Gradio
# changes the attribute or swaps the element, with Date.now() times.
_WATCH_IMG_SRC = f"""
(selector) => {{
  const key = {_KEY_JS};
  const root = document.querySelector(selector);
  const log = (window.__srcChanges = window.__srcChanges || {{}});
  const changes = (log[selector] = []);
  let last = null;
  const note = () => {{
    const img = root.querySelector("img");
    const src = img ? img.getAttribute("src") : null;
    if (src && src !== last) {{
      last = src;
      const entry = {{ t: Date.now(), length: src.length, key: null }};
      changes.push(entry);
      key(src).then((hex) => (entry.key = hex));
    }}
  }};
  new MutationObserver(note).observe(root, {{
    subtree: true,
    childList: true,
    attributes: true,
    attributeFilter: ["src"],
  }});
  note();
}}
"""


def value_key(value: str) -> str:
    """Return the key the page-side recorders give ``value``: its SHA-256, hex."""
    return hashlib.sha256(value.encode()).hexdigest()


def record_canvas_exports(context: BrowserContext) -> None:
    """Record each ``canvas.toDataURL()`` in the context's pages from now on.

    Read them with :func:`canvas_exports`; call before opening the page.
    """
    context.add_init_script(_RECORD_CANVAS_EXPORTS)


def canvas_exports(page: Page) -> list[dict[str, Any]]:
    """Return the recorded canvas exports, oldest first.

    Each is ``{"t": epoch ms, "length": len(url), "key": value_key(url)}``; the
    key is ``None`` for a moment after the export.
    """
    exports: list[dict[str, Any]] = page.evaluate("window.__canvasExports || []")
    return exports


def watch_img_src(page: Page, selector: str) -> None:
    """Start recording ``src`` changes of the ``<img>`` inside ``selector``.

    Read them with :func:`img_src_changes`.
    """
    page.evaluate(_WATCH_IMG_SRC, selector)


def img_src_changes(page: Page, selector: str) -> list[dict[str, Any]]:
    """Return the recorded ``src`` changes, oldest first.

    Each is ``{"t": epoch ms, "length": len(src), "key": value_key(src)}``; the
    key is ``None`` for a moment after the change.
    """
    changes: list[dict[str, Any]] = page.evaluate(
        "(selector) => (window.__srcChanges || {})[selector] || []", selector
    )
    return changes


def screenshot(page: Page, name: str) -> Path:
    """Save a PNG of the page as ``artifacts/screenshots/<name>.png``."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOT_DIR / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def wait_until(
    page: Page, predicate: Callable[[], object], timeout_s: float = 10.0, what: str = ""
) -> None:
    """Poll ``predicate()`` every 20 ms until it is true, letting ``page`` run.

    Waiting through the page (not ``time.sleep``) matters: Playwright's sync API
    only delivers events such as ``page.on("request")`` while it is called.

    Raises:
        AssertionError: It stayed false for ``timeout_s`` seconds.
    """
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        page.wait_for_timeout(20)


def color_bars(width: int, height: int, shift: int = 0) -> npt.NDArray[np.uint8]:
    """Return an RGB uint8 frame of vertical colour bars rolled ``shift`` px right."""
    columns = (np.arange(width) * len(BARS_RGB)) // width
    row = BARS_RGB[columns]
    frame = np.broadcast_to(row, (height, width, 3))
    return np.roll(frame, shift, axis=1)


def write_y4m(
    path: Path, width: int = 320, height: int = 240, frames: int = 30, fps: int = 30
) -> Path:
    """Write a fake-webcam video of :data:`BARS_RGB` moving 2 px right a frame.

    The file is YUV4MPEG2 with 4:2:0 chroma, the format Chromium's
    ``--use-file-for-fake-video-capture`` plays in a loop.

    Args:
        path: Where to write; parent folders must exist.
        width: Frame width in pixels (even).
        height: Frame height in pixels (even).
        frames: Number of frames in the loop.
        fps: Frame rate written into the header.

    Returns:
        ``path``.
    """
    header = f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n"
    with path.open("wb") as out:
        out.write(header.encode("ascii"))
        for index in range(frames):
            y, u, v = _to_yuv420(color_bars(width, height, shift=2 * index))
            out.write(b"FRAME\n")
            out.write(y.tobytes() + u.tobytes() + v.tobytes())
    return path


def _to_yuv420(rgb: npt.NDArray[np.uint8]) -> tuple[Plane, Plane, Plane]:
    """Convert RGB to BT.601 limited-range planes, chroma averaged over 2x2.

    Limited range (Y 16..235) because that is how Chromium reads y4m files:
    the camera then shows the RGB colours that went in.
    """
    r, g, b = (rgb[..., i].astype(np.float64) / 255 for i in range(3))
    y = 16 + 65.481 * r + 128.553 * g + 24.966 * b
    u = 128 - 37.797 * r - 74.203 * g + 112.0 * b
    v = 128 + 112.0 * r - 93.786 * g - 18.214 * b

    def half(plane: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        h, w = plane.shape
        halved: npt.NDArray[np.float64] = plane.reshape(h // 2, 2, w // 2, 2).mean(
            axis=(1, 3)
        )
        return halved

    def to_bytes(plane: npt.NDArray[np.float64]) -> Plane:
        return np.clip(np.rint(plane), 0, 255).astype(np.uint8)

    return to_bytes(y), to_bytes(half(u)), to_bytes(half(v))
