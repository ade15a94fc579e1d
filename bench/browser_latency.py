"""In the browser: pen-move-to-output and camera-to-output latency, in Chromium.

Headless Debian Chromium (Playwright, ``executable_path=/usr/bin/chromium``,
the flags of ``tests/browser_support.py``) opens two apps served in-process:

* ours: the real app (``tests/app_server.serve_app``) on the built-in backend,
  whose CPU preview model paints each frame;
* plain: a Gradio app that echoes the frame back: the same live sketch canvas
  wired by ``.change`` to an image output, and a stock
  ``gr.Image(sources=["webcam"], streaming=True)`` streamed into a plain
  ``gr.Image`` (file output).

Pen: with the button held on ``#sketch canvas``, the mouse moves once, then
the page is left alone until ``#output img`` changes; the time from the
``pointermove`` event to the change (both ``performance.now()`` in the page,
a MutationObserver on the output) is one sample. Camera: the fake webcam
plays moving colour bars; for each change of the output image, the time since
the newest frame POST before it (``fetch`` wrapped in the page) is one sample:
a lower bound when an output answers an older frame. Nothing is screenshotted.

Run: ``.venv/bin/python bench/browser_latency.py [--probes 20] [--camera-s 10]``.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import argparse
import contextlib
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
from common import ROOT, percentile, report

from fal_stream.config import Settings
from fal_stream.ui import live_sketch
from fal_stream.ui.components import DataURLImage
from tests.app_server import serve_app
from tests.browser_support import chromium, serve, write_y4m

warnings.filterwarnings("ignore")  # Gradio's own deprecation noise
assert ROOT

INSTRUMENT = """
() => {
  window.__moves = [];
  window.__outs = [];
  window.__posts = [];
  const canvas = document.querySelector("#sketch canvas");
  if (canvas) {
    canvas.addEventListener("pointermove", () => {
      window.__moves.push(performance.now());
    }, { capture: true });
  }
  const root = document.querySelector("#output");
  let last = null;
  const note = () => {
    const img = root.querySelector("img");
    const src = img ? img.getAttribute("src") : null;
    if (src && src !== last) {
      last = src;
      window.__outs.push(performance.now());
    }
  };
  new MutationObserver(note).observe(root, {
    subtree: true, childList: true, attributes: true, attributeFilter: ["src"],
  });
  note();
  const original = window.fetch;
  window.fetch = function (input, init) {
    const url = typeof input === "string" ? input : input.url;
    if (url.includes("/gradio_api/stream/") || url.includes("/queue/join")) {
      window.__posts.push(performance.now());
    }
    return original.apply(this, arguments);
  };
}
"""


def plain_app() -> gr.Blocks:
    """The baseline: sketch and webcam echoed back with no model."""
    with gr.Blocks() as demo:
        sketch = live_sketch(size=512)
        webcam = gr.Image(
            sources=["webcam"],
            streaming=True,
            elem_id="webcam",
            webcam_options=gr.WebcamOptions(mirror=False),
        )
        output = DataURLImage(elem_id="output")
        sketch.change(
            lambda uri: uri,
            sketch,
            output,
            concurrency_limit=None,
            show_progress="hidden",
        )
        webcam.stream(
            lambda frame: frame,
            webcam,
            output,
            stream_every=0.1,
            time_limit=None,
            concurrency_limit=None,
            show_progress="hidden",
        )
    demo.queue(default_concurrency_limit=None)
    return demo


@contextlib.contextmanager
def served(app: str) -> Iterator[str]:
    if app == "ours":
        with serve_app(Settings(backend="local")) as running:
            yield running.url + "/"
    else:
        with serve(plain_app()) as url:
            yield url


def pen_probes(page: Any, probes: int) -> list[float]:
    """Move the pen once per probe and time the output's change."""
    page.wait_for_selector("#sketch .fs-sketch[data-ready]", timeout=30_000)
    page.evaluate(INSTRUMENT)
    box = page.locator("#sketch canvas").bounding_box()
    assert box is not None
    x, y = box["x"] + 0.2 * box["width"], box["y"] + 0.2 * box["height"]
    page.mouse.move(x, y)
    page.mouse.down()
    page.wait_for_timeout(600)  # the dot from pointerdown reaches the output
    samples = []
    for probe in range(probes):
        outs = page.evaluate("window.__outs.length")
        x += 0.6 * box["width"] / probes
        y += (0.3 if probe % 2 else -0.1) * box["height"] / probes * 4
        page.mouse.move(x, y)
        try:
            page.wait_for_function(f"window.__outs.length > {outs}", timeout=5_000)
        except Exception:  # a probe with no output is skipped
            continue
        moved = page.evaluate("window.__moves.at(-1)")
        changed = page.evaluate(f"window.__outs[{outs}]")
        samples.append((changed - moved) / 1000)
        page.wait_for_timeout(300)  # let the pipeline go quiet
    page.mouse.up()
    return samples


def camera_samples(page: Any, seconds: float) -> tuple[list[float], float]:
    """Stream the fake webcam for ``seconds``; time outputs after frame posts."""
    page.evaluate(INSTRUMENT)
    webcam = page.locator("#webcam")
    with contextlib.suppress(Exception):
        webcam.get_by_text("Click to Access Webcam").click(timeout=5_000)
    page.locator("#webcam [title='start recording']").first.click(timeout=15_000)
    page.wait_for_function("window.__outs.length > 3", timeout=30_000)
    page.wait_for_timeout(1000)
    first_out = page.evaluate("window.__outs.length")
    page.wait_for_timeout(seconds * 1000)
    outs = page.evaluate(f"window.__outs.slice({first_out})")
    posts = page.evaluate("window.__posts")
    samples = []
    for out in outs:
        before = [p for p in posts if p <= out]
        if before:
            samples.append((out - before[-1]) / 1000)
    return samples, len(outs) / seconds


def measure(app: str, probes: int, camera_s: float, video: Path) -> dict[str, Any]:
    with served(app) as url, chromium(video) as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        pen = pen_probes(page, probes)
        if app == "ours":
            page.get_by_role("tab", name="Webcam").click()
        camera, out_fps = camera_samples(page, camera_s)
        page.close()
    return {
        "pen_move_to_output": _ms(pen),
        "camera_post_to_output": _ms(camera),
        "camera_outputs_per_s": round(out_fps, 1),
    }


def _ms(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {
        "p50_ms": round(percentile(ms, 0.5), 1),
        "p95_ms": round(percentile(ms, 0.95), 1),
        "n": len(ms),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--camera-s", type=float, default=10.0)
    parser.add_argument("--out", help="write the JSON here too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        video = write_y4m(Path(folder) / "bars.y4m", 640, 480, frames=30)
        result = {
            app: measure(app, args.probes, args.camera_s, video)
            for app in ("plain", "ours")
        }
    result["pen_ratio_p50"] = round(
        result["ours"]["pen_move_to_output"]["p50_ms"]
        / result["plain"]["pen_move_to_output"]["p50_ms"],
        2,
    )
    rows = [
        [
            app,
            result[app]["pen_move_to_output"]["p50_ms"],
            result[app]["pen_move_to_output"]["p95_ms"],
            result[app]["camera_post_to_output"]["p50_ms"],
            result[app]["camera_post_to_output"]["p95_ms"],
        ]
        for app in ("plain", "ours")
    ]
    report(
        "browser_latency",
        {**result, "probes": args.probes, "camera_s": args.camera_s},
        ["app", "pen p50 ms", "pen p95 ms", "cam p50 ms", "cam p95 ms"],
        rows,
        args.out,
    )


if __name__ == "__main__":
    main()
