"""fal_stream: draw or film, and watch a realtime image model redraw it live.

Run ``python app.py --help`` for the options. With no ``FAL_KEY`` the app runs on
a built-in local preview that speaks fal's protocol, so it works offline.
"""

from __future__ import annotations

import os

# Gradio reports usage to its servers unless told not to; a user may opt back in.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import argparse
import dataclasses
import json
import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gradio as gr
from dotenv import load_dotenv

from fal_stream import frames
from fal_stream.config import Settings
from fal_stream.errors import FalStreamError
from fal_stream.proxy import proxy_routes
from fal_stream.proxy_policy import ProxyConfig
from fal_stream.redact import install_redaction
from fal_stream.relay import MAX_SEED, Controls
from fal_stream.runtime import Limits, Runtime
from fal_stream.ui import live_sketch
from fal_stream.ui.components import ClampedSlider, DataURLImage, WebcamFrames
from fal_stream.ui.handlers import SessionHandlers

logger = logging.getLogger("fal_stream.app")

HERE = Path(__file__).parent
EXAMPLES_DIR = HERE / "examples" / "sketches"
REALTIME_APPS = [
    "fal-ai/fast-lcm-diffusion/image-to-image",
    "fal-ai/fast-turbo-diffusion/image-to-image",
    "fal-ai/lcm-sd15-i2i",
]
EXAMPLES = [
    ("house.png", "a cosy cottage in a snowy forest, warm light, oil painting"),
    ("cat.png", "a ginger cat, studio portrait, soft fur, highly detailed"),
    ("mountains.png", "alpine mountains at sunset, watercolor, golden light"),
]
WEBCAM_NOTE = (
    "The webcam works on **https** or **localhost** only: browsers hide cameras "
    "from plain-http pages. Share links and Spaces are https."
)
LOCAL_NOTE = (
    "**Local preview, not AI.** No `FAL_KEY` is set, so a built-in effect that "
    "speaks fal's protocol stands in for the model. Set `FAL_KEY` to use fal.ai."
)
# The camera is asked for a modest size; Gradio's default asks for 1920x1440.
CAMERA = {"video": {"width": {"ideal": 640}, "height": {"ideal": 480}}}


def build_demo(runtime: Runtime) -> gr.Blocks:
    """Lay out the app and wire its events to ``runtime``."""
    settings = runtime.settings
    handlers = SessionHandlers(runtime)

    demo: gr.Blocks
    with gr.Blocks(title="fal_stream: live sketch to image") as demo:
        gr.Markdown(
            "# fal_stream\nDraw or turn on your webcam, type a prompt, and "
            "watch the model redraw it as you go."
        )
        if runtime.local is not None:
            gr.Markdown(LOCAL_NOTE, elem_id="backend-note")
        with gr.Row(equal_height=False):
            with gr.Column(), gr.Tabs():
                with gr.Tab("Sketch", id="sketch-tab"):
                    sketch = live_sketch(size=settings.frame_size)
                with gr.Tab("Webcam", id="webcam-tab"):
                    webcam = WebcamFrames(
                        sources=["webcam"],
                        streaming=True,
                        label="Webcam",
                        elem_id="webcam",
                        webcam_options=gr.WebcamOptions(
                            mirror=False, constraints=CAMERA
                        ),
                    )
                    gr.Markdown(WEBCAM_NOTE)
            with gr.Column():
                output = DataURLImage(
                    label=f"Output · {runtime.label}",
                    interactive=False,
                    format="jpeg",
                    elem_id="output",
                    buttons=["download", "fullscreen"],
                )
                status = gr.Textbox(
                    label="Status", interactive=False, elem_id="status", lines=1
                )
                message = gr.Markdown(elem_id="message")
        with gr.Row():
            prompt = gr.Textbox(
                label="Prompt",
                value=Controls().prompt,
                scale=4,
                elem_id="prompt",
                max_length=2000,
            )
            app_id = gr.Dropdown(
                REALTIME_APPS
                if settings.app_id in REALTIME_APPS
                else [settings.app_id, *REALTIME_APPS],
                value=settings.app_id,
                label="Model (fal app id)",
                allow_custom_value=True,
                scale=2,
                elem_id="app-id",
            )
        with gr.Row():
            strength = ClampedSlider(
                0, 1, value=0.6, step=0.05, label="Strength", elem_id="strength"
            )
            steps = ClampedSlider(1, 8, value=4, step=1, label="Steps", elem_id="steps")
            # No bounds here: Gradio would refuse a typed -1 before the handler
            # runs; Controls.clean brings any number into 0..2**32-1.
            seed = gr.Number(value=42, precision=0, label="Seed", elem_id="seed")
            dice = gr.Button("New seed", size="sm", elem_id="new-seed")
        with gr.Row():
            for file_name, example_prompt in EXAMPLES:
                button = gr.Button(
                    f"Example: {Path(file_name).stem}", size="sm", variant="secondary"
                )
                uri = _example_uri(file_name)
                button.click(
                    lambda uri=uri, text=example_prompt: (uri, text),
                    outputs=[sketch, prompt],
                    api_visibility="private",
                )

        # Gradio attaches events at run time, so they are not on the static types.
        controls: list[Any] = [prompt, strength, seed, steps, app_id]
        frame_options: dict[str, Any] = {
            "concurrency_limit": None,
            "show_progress": "hidden",
            "api_visibility": "private",
        }
        sketch.change(
            handlers.frame,
            [sketch, *controls],
            None,
            **frame_options,
            trigger_mode="always_last",
        )
        webcam.stream(
            handlers.frame,
            [webcam, *controls],
            None,
            stream_every=0.1,
            time_limit=None,
            **frame_options,
        )
        for control in controls:
            control.change(
                handlers.controls,
                controls,
                None,
                **frame_options,
                trigger_mode="always_last",
            )
        dice.click(
            lambda: random.randint(0, MAX_SEED), None, seed, api_visibility="private"
        )
        demo.load(
            handlers.stream_output, None, [output, status, message], **frame_options
        )
        demo.unload(handlers.unload)
    return demo


def _example_uri(file_name: str) -> str:
    path = EXAMPLES_DIR / file_name
    return frames.to_data_uri(path.read_bytes(), "image/png") if path.exists() else ""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--host",
        default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        help="address to listen on; 0.0.0.0 for every interface (GRADIO_SERVER_NAME)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        help="port to listen on (GRADIO_SERVER_PORT)",
    )
    parser.add_argument(
        "--share",
        action="store_true",
        help="open a public https link through Gradio's tunnel",
    )
    parser.add_argument("--app-id", help="fal app id (FAL_STREAM_APP_ID)")
    parser.add_argument(
        "--backend",
        choices=["auto", "fal", "local"],
        help="fal, the built-in local preview, or auto: fal when "
        "a key is set (FAL_STREAM_BACKEND)",
    )
    parser.add_argument(
        "--max-sessions", type=int, help="live browser sessions at most"
    )
    parser.add_argument(
        "--proxy",
        action="store_true",
        help="serve /api/fal/proxy and /api/fal/realtime-token for fal's JS and "
        "Swift clients (FAL_STREAM_PROXY=1)",
    )
    parser.add_argument(
        "--auth",
        default=os.environ.get("FAL_STREAM_AUTH"),
        metavar="USER:PASSWORD",
        help="ask for this login before the app opens (FAL_STREAM_AUTH)",
    )
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    # The app's own flags read the environment too, so .env fills it first.
    load_dotenv(override=False)
    args = parse_args(argv)
    overrides = {
        name: value
        for name, value in (("app_id", args.app_id), ("backend", args.backend))
        if value is not None
    }
    try:
        settings = Settings.from_env(**overrides)
        proxy = ProxyConfig.from_env()
    except FalStreamError as exc:
        raise SystemExit(f"fal_stream: {exc}") from None
    if args.proxy:
        proxy = dataclasses.replace(proxy, enabled=True)
    auth = None
    if args.auth:
        user, _, password = args.auth.partition(":")
        if not (user and password):
            raise SystemExit("fal_stream: --auth takes USER:PASSWORD, both non-empty")
        auth = (user, password)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    install_redaction(settings.fal_key, proxy.secret, auth[1] if auth else "")

    limits = Limits.for_environment()
    if args.max_sessions:
        limits = dataclasses.replace(limits, max_sessions=args.max_sessions)
    runtime = Runtime(settings, limits)
    shown = {
        **settings.describe(),
        "backend in use": runtime.label,
        "token host": runtime.rest_url,
        "realtime host": runtime.run_host,
        "fal proxy": proxy.enabled,
        "login required": auth is not None,
        "max_sessions": limits.max_sessions,
        "host": args.host,
        "port": args.port,
        "share": args.share,
    }
    print("fal_stream settings:\n" + json.dumps(shown, indent=2, default=str))

    demo = build_demo(runtime)
    demo.queue(default_concurrency_limit=None)
    try:
        demo.launch(
            server_name=args.host,
            server_port=args.port,
            share=args.share,
            auth=auth,
            # Each session's output stream holds a worker for its whole life.
            max_threads=max(40, 2 * limits.max_sessions + 8),
            footer_links=["gradio", "settings"],
            app_kwargs={"routes": proxy_routes(runtime, proxy, apps=REALTIME_APPS)},
        )
    except OSError as exc:
        # Gradio's own text tells the reader to edit a launch() call.
        why = exc.strerror or "the port is in use"
        raise SystemExit(
            f"fal_stream: cannot listen on {args.host}:{args.port} ({why}); "
            "choose another with --port or GRADIO_SERVER_PORT"
        ) from None
    finally:
        runtime.stop_backend()


if __name__ == "__main__":
    main()
