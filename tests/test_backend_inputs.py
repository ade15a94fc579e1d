"""Reading inputs and building replies of the built-in backend, without a network."""

from __future__ import annotations

import base64
import json

import msgpack
import numpy as np
import pytest

from fal_stream.backend.inputs import (
    DEFAULT_STEPS,
    DEFAULT_STRENGTH,
    MAX_SIDE_PX,
    decode_image,
    parse_input,
)
from fal_stream.backend.replies import (
    GARBAGE_RESULT,
    HUGE_RESULT_BYTES,
    corrupt,
    error_message,
    result_payload,
    timings_message,
    unauthorized_message,
)
from fal_stream.errors import BadInputError

from .backend_helpers import encoded_image, packed_input


def _seed() -> int:
    return 77


def test_parse_input_defaults() -> None:
    """Missing optional fields take the model's defaults; the seed is drawn."""
    item = parse_input(packed_input(), _seed)

    assert item.prompt == "a red barn"
    assert item.strength == DEFAULT_STRENGTH
    assert item.steps == DEFAULT_STEPS
    assert item.seed == 77
    assert item.sync_mode is False
    assert item.enable_safety_checks is True
    assert item.request_id is None


def test_parse_input_reads_every_field() -> None:
    """Given fields are read, floats rounded where an integer is wanted."""
    frame = packed_input(
        strength=0.25,
        seed=12.0,
        num_inference_steps=2.6,
        guidance_scale=3,
        sync_mode=True,
        enable_safety_checks=False,
        request_id="frame-7",
        model_name="ignored",
    )

    item = parse_input(frame, _seed)

    assert (item.strength, item.seed, item.steps) == (0.25, 12, 3)
    assert item.guidance_scale == 3.0
    assert item.sync_mode is True
    assert item.enable_safety_checks is False
    assert item.request_id == "frame-7"


def test_parse_input_takes_a_data_uri() -> None:
    """image_url may carry the image as a base64 data URI."""
    png = encoded_image(fmt="PNG")
    uri = "data:image/png;base64," + base64.b64encode(png).decode()

    item = parse_input(packed_input(image_bytes=None, image_url=uri), _seed)

    assert item.image_data == png


@pytest.mark.parametrize(
    ("frame", "said"),
    [
        ('{"prompt": "x"}', "text"),
        (b"", "msgpack"),
        (msgpack.packb("just a string"), "map"),
        (packed_input(image_bytes=None), "no image"),
        (packed_input(image_bytes=None, image_url=5), "image_url"),
        (packed_input(image_bytes=None, image_url="data:image/png,raw"), "base64"),
        (packed_input(prompt=3), "prompt"),
        (packed_input(strength=float("nan")), "strength"),
        (packed_input(guidance_scale=[1]), "guidance_scale"),
        (packed_input(enable_safety_checks=1), "enable_safety_checks"),
    ],
)
def test_parse_input_refusals(frame: bytes | str, said: str) -> None:
    """Each kind of bad frame is refused with a reason that names it."""
    with pytest.raises(BadInputError, match=said):
        parse_input(frame, _seed)


def test_decode_image_scales_down_large_frames() -> None:
    """Frames beyond MAX_SIDE_PX are scaled down, keeping their aspect."""
    image = decode_image(encoded_image(MAX_SIDE_PX * 2, MAX_SIDE_PX))

    assert image.shape == (MAX_SIDE_PX // 2, MAX_SIDE_PX, 3)
    assert image.dtype == np.uint8


def test_decode_image_refuses_junk() -> None:
    """Bytes that are no image raise BadInputError."""
    with pytest.raises(BadInputError):
        decode_image(b"\x89PNG but not really")


def test_result_payload_content_and_url() -> None:
    """Results carry bytes under content, or a data URI with sync_mode."""
    common = {"seed": 1, "steps": 2, "inference_s": 0.5}
    as_bytes = result_payload(b"jpeg", 4, 3, sync_mode=False, **common)  # type: ignore[arg-type]
    as_url = result_payload(b"jpeg", 4, 3, sync_mode=True, nsfw=True, **common)  # type: ignore[arg-type]

    assert as_bytes["images"] == [
        {"width": 4, "height": 3, "content_type": "image/jpeg", "content": b"jpeg"}
    ]
    assert as_bytes["nsfw_content_detected"] == [False]
    assert as_url["images"][0]["url"] == "data:image/jpeg;base64,anBlZw=="
    assert as_url["has_nsfw_concepts"] == [True]
    assert as_url["timings"] == {"inference": 0.5}


def test_corrupt_each_fault() -> None:
    """Every result fault turns a good payload into its broken frame."""
    good = result_payload(b"x", 1, 1, seed=5, steps=1, inference_s=0.1, sync_mode=True)

    assert msgpack.unpackb(corrupt(good, "none")) == good
    assert corrupt(good, "silent") is None
    assert corrupt(good, "garbage") == GARBAGE_RESULT
    assert isinstance(msgpack.unpackb(corrupt(good, "not_a_map")), list)
    assert "images" not in msgpack.unpackb(corrupt(good, "no_image"))
    huge = msgpack.unpackb(corrupt(good, "huge"))
    assert len(huge["images"][0]["content"]) == HUGE_RESULT_BYTES
    assert "url" not in huge["images"][0]
    with pytest.raises(ValueError):
        msgpack.unpackb(GARBAGE_RESULT)


def test_control_messages_match_fal() -> None:
    """Control messages are fal's compact JSON text."""
    assert timings_message(0.25) == (
        '{"type":"x-fal-message","action":"timings","timing":0.25}'
    )
    assert json.loads(error_message("TIMEOUT", "idle")) == {
        "type": "x-fal-error",
        "error": "TIMEOUT",
        "reason": "idle",
    }
    assert unauthorized_message() == '{"status":"error","error":"Unauthorized"}'
