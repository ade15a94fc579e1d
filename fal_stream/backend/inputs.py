"""Reading the inputs that reach the built-in backend's socket, with no I/O.

Inputs follow ``fal-ai/fast-lcm-diffusion/image-to-image``: a binary msgpack map
with a prompt and an image, either as bytes (``image_bytes``) or as a base64
data URI (``image_url``). Anything else is refused with a reason that says what
was wrong, which the socket sends back as fal's ``INTERNAL_ERROR``.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
from PIL import Image

from ..errors import BadInputError
from ..frames import to_array
from .model import MAX_STEPS, MIN_STEPS, ImageArray

DEFAULT_STRENGTH = 0.6
DEFAULT_STEPS = 4
DEFAULT_GUIDANCE_SCALE = 1.5
MAX_GUIDANCE_SCALE = 20.0
MAX_SEED = 2**32 - 1
# Frames are scaled down to this longest side, as a hosted model resizes its input.
MAX_SIDE_PX = 1024


@dataclass(frozen=True)
class ModelInput:
    """One validated input.

    Attributes:
        prompt: What to paint.
        image_data: The encoded image (JPEG, PNG or another format Pillow reads).
        strength: 0 to 1, how far the output may move from the input.
        seed: 0 to 2**32 - 1; echoed in the result.
        steps: 1 to 8; echoed as ``num_inference_steps``.
        guidance_scale: 0 to 20; accepted for fidelity, unused by the preview.
        sync_mode: Return the image as a data URI rather than bytes.
        enable_safety_checks: Accepted for fidelity; safety flags come from faults.
        request_id: A client's own id for the input, echoed in its result as the
            hosted LCM apps did; ``None`` when absent or not a string.
    """

    prompt: str
    image_data: bytes
    strength: float
    seed: int
    steps: int
    guidance_scale: float
    sync_mode: bool
    enable_safety_checks: bool
    request_id: str | None = None


def parse_input(frame: bytes | str, random_seed: Callable[[], int]) -> ModelInput:
    """Decode and check one frame from a client.

    Args:
        frame: The frame as received.
        random_seed: Gives the seed of an input that names none.

    Raises:
        BadInputError: The frame is text, not msgpack, not a map, or an input
            field is missing or of the wrong type. Out-of-range numbers are
            clamped, not refused; unknown fields are ignored.
    """
    # fal's server template reads inputs with receive_bytes(), so a text frame
    # fails there too; we say why instead of echoing a KeyError.
    if isinstance(frame, str):
        raise BadInputError("inputs must be binary msgpack frames, not text frames")
    try:
        decoded = msgpack.unpackb(frame, raw=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise BadInputError(
            f"the frame of {len(frame)} bytes is not msgpack ({type(exc).__name__})"
        ) from exc
    if not isinstance(decoded, dict):
        raise BadInputError(f"the input must be a map, not {type(decoded).__name__}")

    prompt = decoded.get("prompt")
    if not isinstance(prompt, str):
        raise BadInputError(f"'prompt' must be a string, not {_kind(prompt)}")
    seed = decoded.get("seed")
    request_id = decoded.get("request_id")
    return ModelInput(
        prompt=prompt,
        image_data=_image_data(decoded),
        strength=_number(decoded, "strength", DEFAULT_STRENGTH, 0.0, 1.0),
        seed=random_seed()
        if seed is None
        else round(_number(decoded, "seed", 0, 0, MAX_SEED)),
        steps=round(
            _number(decoded, "num_inference_steps", DEFAULT_STEPS, MIN_STEPS, MAX_STEPS)
        ),
        guidance_scale=_number(
            decoded, "guidance_scale", DEFAULT_GUIDANCE_SCALE, 0.0, MAX_GUIDANCE_SCALE
        ),
        sync_mode=_flag(decoded, "sync_mode", default=False),
        enable_safety_checks=_flag(decoded, "enable_safety_checks", default=True),
        request_id=request_id if isinstance(request_id, str) else None,
    )


def decode_image(data: bytes) -> ImageArray:
    """Decode an encoded image to RGB, scaled down to :data:`MAX_SIDE_PX`.

    Raises:
        BadInputError: The bytes are not an image, or too large a one.
    """
    image = to_array(data)
    if max(image.shape[:2]) <= MAX_SIDE_PX:
        return image
    smaller = Image.fromarray(image)
    smaller.thumbnail((MAX_SIDE_PX, MAX_SIDE_PX))
    return np.asarray(smaller, dtype=np.uint8)


def _image_data(fields: dict[Any, Any]) -> bytes:
    raw = fields.get("image_bytes")
    if raw is not None:
        if not isinstance(raw, bytes | bytearray):
            raise BadInputError(f"'image_bytes' must be binary, not {_kind(raw)}")
        return bytes(raw)
    url = fields.get("image_url")
    if url is None:
        raise BadInputError("the input has no image: send 'image_bytes' or 'image_url'")
    if not isinstance(url, str):
        raise BadInputError(f"'image_url' must be a string, not {_kind(url)}")
    # The backend never fetches URLs: it stays off the network by design.
    header, comma, payload = url.partition(",")
    if not header.startswith("data:") or not header.endswith(";base64") or not comma:
        raise BadInputError(
            "'image_url' must be a base64 data URI (data:image/...;base64,...)"
        )
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadInputError("'image_url' holds invalid base64") from exc


def _number(
    fields: dict[Any, Any], name: str, default: float, low: float, high: float
) -> float:
    value = fields.get(name, default)
    if value is None:
        return default
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or math.isnan(value)
    ):
        raise BadInputError(f"{name!r} must be a number, not {_kind(value)}")
    return float(min(max(value, low), high))


def _flag(fields: dict[Any, Any], name: str, *, default: bool) -> bool:
    value = fields.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise BadInputError(f"{name!r} must be true or false, not {_kind(value)}")
    return value


def _kind(value: object) -> str:
    return "nothing" if value is None else type(value).__name__
