"""What the built-in backend's socket sends back, with no I/O.

Results are binary msgpack maps shaped like ``fal-ai/fast-lcm-diffusion``'s
output; control messages are compact JSON text, as fal's server template sends
them. The corrupted results of :class:`~fal_stream.backend.faults.Faults` are
built here too.
"""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import msgpack
from PIL import Image

from .faults import ResultFault
from .model import ImageArray

JPEG_QUALITY = 85
TIMEOUT_REASON = "no inputs, reconnect when needed!"
# Larger than any sane image (a 4096x4096 RGB bitmap is 48 MiB raw, far less as a
# JPEG), so that a client's frame size limit is what stops it.
HUGE_RESULT_BYTES = 40 * 2**20
# 0xc1 is the one byte msgpack never uses, so no decoder can read this.
GARBAGE_RESULT = b"\xc1\xc1not msgpack\xff\x00"


def encode_jpeg(image: ImageArray) -> bytes:
    """Encode an RGB frame as a JPEG."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def result_payload(
    jpeg: bytes,
    width: int,
    height: int,
    *,
    seed: int,
    steps: int,
    inference_s: float,
    sync_mode: bool,
    nsfw: bool = False,
    request_id: str | None = None,
) -> dict[str, Any]:
    """Build the output map of one input.

    With ``sync_mode`` the image travels as a data URI under ``url``, as fal
    returns it; otherwise as bytes under ``content``. A ``request_id`` is echoed.
    """
    image: dict[str, Any] = {
        "width": width,
        "height": height,
        "content_type": "image/jpeg",
    }
    if sync_mode:
        image["url"] = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
    else:
        image["content"] = jpeg
    payload: dict[str, Any] = {
        "images": [image],
        "timings": {"inference": inference_s},
        "seed": seed,
        "num_inference_steps": steps,
        "nsfw_content_detected": [nsfw],
        "has_nsfw_concepts": [nsfw],
    }
    if request_id is not None:
        payload["request_id"] = request_id
    return payload


def pack(payload: object) -> bytes:
    """Encode a result as the binary msgpack frame fal sends."""
    return msgpack.packb(payload, use_bin_type=True)  # type: ignore[no-any-return]


def corrupt(payload: dict[str, Any], fault: ResultFault) -> bytes | None:
    """Return the frame to send in place of ``payload`` under ``fault``.

    ``None`` means send nothing (``silent``); ``"none"`` packs ``payload`` as is.
    """
    if fault == "silent":
        return None
    if fault == "garbage":
        return GARBAGE_RESULT
    if fault == "not_a_map":
        return pack([payload.get("seed"), "not", "a", "map"])
    if fault == "no_image":
        return pack({key: value for key, value in payload.items() if key != "images"})
    if fault == "huge":
        image = dict(payload["images"][0])
        image.pop("url", None)
        image["content"] = bytes(HUGE_RESULT_BYTES)
        return pack({**payload, "images": [image]})
    return pack(payload)


def timings_message(inference_s: float) -> str:
    """fal's JSON text note of the model's time for the last input."""
    return _compact(
        {"type": "x-fal-message", "action": "timings", "timing": inference_s}
    )


def error_message(code: str, reason: str) -> str:
    """fal's JSON text error, such as ``INTERNAL_ERROR`` or ``TIMEOUT``."""
    return _compact({"type": "x-fal-error", "error": code, "reason": reason})


def unauthorized_message() -> str:
    """The JSON text fal's gateway sent when it refused a token after opening."""
    return _compact({"status": "error", "error": "Unauthorized"})


def _compact(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))
