"""Relay cost per frame: our server's own work for one frame each way.

Inbound is what :meth:`fal_stream.relay.Relay.offer` does with the data URI
Gradio hands over (``WebcamFrames`` and the live sketch pass it undecoded):
``frames.to_model_jpeg``, then ``frames.is_blank`` on the result, then the
input map and ``messages.encode_input``. Outbound is what a result costs from
the socket to the data URI Gradio sends the browser: ``messages.classify``,
``frames.decode_result_image``, ``frames.sniff_content_type`` and
``frames.to_data_uri``. The floor is one Pillow JPEG encode plus one decode of
the same 512x512 frame. Also timed: a bench-local prototype of a cheaper blank
check, to show what it would save.

Run: ``.venv/bin/python bench/relay_cost.py [--iterations N]``.
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Callable
from typing import Any

import numpy as np
from common import report, summary_ms, time_calls
from PIL import Image

from bench.bench_codec import make_frame, pil_decode, pil_encode
from fal_stream import frames, messages
from fal_stream.backend.replies import pack, result_payload
from fal_stream.relay import Controls

BROWSER_QUALITY = 92  # canvas.toDataURL("image/jpeg") in Chromium
CASES = {
    "512x512 passthrough": (512, 512),
    "640x480 webcam": (640, 480),
    "1920x1440 webcam": (1920, 1440),
}


def jpeg_of(width: int, height: int, quality: int) -> bytes:
    """Encode a photo-like test frame as the browser would."""
    out = io.BytesIO()
    noise = 4.0 if width * height <= 512 * 512 else 1.5
    frame = make_frame(width, height, seed=width, noise=noise)
    Image.fromarray(frame).save(out, "JPEG", quality=quality)
    return out.getvalue()


def inbound_steps(uri: str) -> dict[str, Callable[[], object]]:
    """The inbound steps, each run on the output of the one before."""
    controls = Controls()
    jpeg = frames.to_model_jpeg(uri)
    inputs = controls.model_inputs(jpeg)
    return {
        "to_model_jpeg": lambda: frames.to_model_jpeg(uri),
        "is_blank": lambda: frames.is_blank(jpeg),
        "encode_input": lambda: messages.encode_input(controls.model_inputs(jpeg)),
        "total": lambda: _inbound(uri, controls),
        "total_without_is_blank": lambda: messages.encode_input(
            inputs | {"image_bytes": frames.to_model_jpeg(uri)}
        ),
    }


def _inbound(uri: str, controls: Controls) -> bytes | None:
    jpeg = frames.to_model_jpeg(uri)
    if frames.is_blank(jpeg):
        return None
    return messages.encode_input(controls.model_inputs(jpeg))


def outbound_steps(wire: bytes) -> dict[str, Callable[[], object]]:
    """The outbound steps for one result frame as read off the socket."""
    message = messages.classify(wire)
    assert isinstance(message, messages.ResultMessage)
    image = message.payload["images"][0]
    encoded = frames.decode_result_image(image)
    return {
        "classify": lambda: messages.classify(wire),
        "decode_result_image": lambda: frames.decode_result_image(image),
        "to_data_uri": lambda: frames.to_data_uri(
            encoded, frames.sniff_content_type(encoded)
        ),
        "total": lambda: _outbound(wire),
    }


def _outbound(wire: bytes) -> str:
    message = messages.classify(wire)
    assert isinstance(message, messages.ResultMessage)
    encoded = frames.decode_result_image(message.payload["images"][0])
    return frames.to_data_uri(encoded, frames.sniff_content_type(encoded))


def is_blank_draft(jpeg: bytes, min_level: int = 250) -> bool:
    """Prototype: the blank check on a 1/8-scale DCT decode (64x64 for 512)."""
    im = Image.open(io.BytesIO(jpeg))
    im.draft("RGB", (im.width // 8, im.height // 8))
    return bool(np.asarray(im.convert("RGB")).min() >= min_level)


def measure(fn: Callable[[], object], iterations: int) -> dict[str, float]:
    return summary_ms(time_calls(fn, iterations))


def run(iterations: int) -> dict[str, Any]:
    """Time every step of every case, the floor and the prototype."""
    base = make_frame(512, 512)
    floor_jpeg = pil_encode(Image.fromarray(base))
    floor_image = Image.fromarray(base)
    floor = {
        "encode": measure(lambda: pil_encode(floor_image), iterations),
        "decode": measure(lambda: pil_decode(floor_jpeg), iterations),
    }
    floor_ms = floor["encode"]["p50_ms"] + floor["decode"]["p50_ms"]

    # What the backend answers: a 512x512 JPEG at its quality, as msgpack bytes.
    result_jpeg = pil_encode(floor_image)
    wire = pack(
        result_payload(
            result_jpeg, 512, 512, seed=1, steps=4, inference_s=0.0, sync_mode=False
        )
    )
    outbound = {k: measure(f, iterations) for k, f in outbound_steps(wire).items()}

    cases: dict[str, Any] = {}
    for name, (width, height) in CASES.items():
        jpeg = jpeg_of(width, height, BROWSER_QUALITY)
        if (width, height) == (512, 512):
            # A frame of the model's size and quality passes through untouched.
            jpeg = floor_jpeg
        uri = frames.to_data_uri(jpeg)
        inbound = {k: measure(f, iterations) for k, f in inbound_steps(uri).items()}
        total = inbound["total"]["p50_ms"] + outbound["total"]["p50_ms"]
        cases[name] = {
            "input_bytes": len(jpeg),
            "inbound": inbound,
            "relay_total_p50_ms": round(total, 3),
            "ratio_to_floor": round(total / floor_ms, 3),
        }

    model_jpeg = frames.to_model_jpeg(floor_jpeg)
    white = frames.to_model_jpeg(np.full((512, 512, 3), 255, np.uint8))
    prototype = {
        "is_blank_full": measure(lambda: frames.is_blank(model_jpeg), iterations),
        "is_blank_draft_1_8": measure(lambda: is_blank_draft(model_jpeg), iterations),
        "agrees_on_photo": is_blank_draft(model_jpeg) == frames.is_blank(model_jpeg),
        "agrees_on_white": is_blank_draft(white) == frames.is_blank(white),
        "white_jpeg_bytes": len(white),
    }
    return {
        "iterations": iterations,
        "floor": floor,
        "floor_p50_ms": round(floor_ms, 3),
        "outbound": outbound,
        "cases": cases,
        "prototype_is_blank": prototype,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--out", help="write the JSON here too")
    args = parser.parse_args()
    result = run(args.iterations)

    rows: list[list[Any]] = []
    for name, case in result["cases"].items():
        inbound = case["inbound"]
        rows.append(
            [
                name,
                inbound["to_model_jpeg"]["p50_ms"],
                inbound["is_blank"]["p50_ms"],
                inbound["encode_input"]["p50_ms"],
                inbound["total"]["p50_ms"],
                result["outbound"]["total"]["p50_ms"],
                case["relay_total_p50_ms"],
                case["ratio_to_floor"],
            ]
        )
    floor_row = ["floor: 1 encode + 1 decode 512", "", "", "", "", ""]
    rows.append([*floor_row, result["floor_p50_ms"], 1.0])
    proto = result["prototype_is_blank"]
    rows.append(
        [
            "is_blank now / 1/8-scale prototype",
            "",
            proto["is_blank_full"]["p50_ms"],
            proto["is_blank_draft_1_8"]["p50_ms"],
            "",
            "",
            "",
            "",
        ]
    )
    report(
        "relay_cost",
        result,
        [
            "case (p50 ms)",
            "to_model_jpeg",
            "is_blank",
            "encode_input",
            "inbound",
            "outbound",
            "relay total",
            "x floor",
        ],
        rows,
        args.out,
    )


if __name__ == "__main__":
    main()
