"""The baseline: a stock Gradio app that echoes webcam frames, as users write it.

``gr.Image(sources=["webcam"], streaming=True)`` streamed every 0.1 s into a
handler that returns the frame, shown by a plain ``gr.Image`` (default file
output). ``concurrency_limit=None`` so that every user streams at once, as the
Gradio guide for streaming says. Not one of our components is used.

Run: ``.venv/bin/python bench/stock_echo_app.py --port 7861 [--max-threads N]``.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import argparse
from typing import Any

import gradio as gr


def echo(frame: Any) -> Any:
    """Return the frame unchanged."""
    return frame


def build_demo() -> gr.Blocks:
    """The echo app: webcam in, the same frame out."""
    with gr.Blocks() as demo:
        webcam = gr.Image(sources=["webcam"], streaming=True, elem_id="webcam")
        output = gr.Image(elem_id="output")
        webcam.stream(
            echo,
            webcam,
            output,
            stream_every=0.1,
            time_limit=None,
            concurrency_limit=None,
            show_progress="hidden",
        )
    return demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--max-threads", type=int, default=40, help="Gradio's queue slots"
    )
    args = parser.parse_args()
    demo = build_demo()
    demo.queue(default_concurrency_limit=None)
    demo.launch(
        server_name="127.0.0.1",
        server_port=args.port,
        max_threads=args.max_threads,
        quiet=True,
    )


if __name__ == "__main__":
    main()
