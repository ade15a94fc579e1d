"""Classification of what fal's realtime socket sends, and encoding of inputs."""

import json

import msgpack
import pytest

from fal_stream.errors import BadInputError
from fal_stream.messages import (
    IdleTimeoutMessage,
    MalformedMessage,
    ResultMessage,
    ServerErrorMessage,
    TimingsMessage,
    UnauthorizedMessage,
    classify,
    encode_input,
)


def test_classify_binary_result() -> None:
    """A binary msgpack map is a result, with bytes kept as bytes."""
    frame = msgpack.packb({"images": [{"content": b"\xff\xd8"}]}, use_bin_type=True)
    message = classify(frame)
    assert isinstance(message, ResultMessage)
    assert message.payload["images"][0]["content"] == b"\xff\xd8"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '{"type":"x-fal-message","action":"timings","timing":0.05}',
            TimingsMessage(0.05),
        ),
        (
            '{"type":"x-fal-error","error":"TIMEOUT","reason":"no inputs, reconnect"}',
            IdleTimeoutMessage("no inputs, reconnect"),
        ),
        (
            '{"type":"x-fal-error","error":"INTERNAL_ERROR","reason":"bad image"}',
            ServerErrorMessage("INTERNAL_ERROR", "bad image"),
        ),
        ('{"status":"error","error":"Unauthorized"}', UnauthorizedMessage()),
        (
            '{"status":"error","error":"no inputs, reconnect when needed!"}',
            IdleTimeoutMessage("no inputs, reconnect when needed!"),
        ),
        ('{"images": []}', ResultMessage({"images": []})),
    ],
)
def test_classify_text_control_messages(text: str, expected: object) -> None:
    """JSON text frames are sorted into fal's control messages."""
    assert classify(text) == expected


def test_classify_control_message_in_binary() -> None:
    """A control message is recognised whichever frame type carries it."""
    frame = msgpack.packb({"type": "x-fal-error", "error": "TIMEOUT", "reason": "r"})
    assert classify(frame) == IdleTimeoutMessage("r")


@pytest.mark.parametrize(
    "frame",
    [
        b"\xc1\xc1\xc1",
        msgpack.packb([1, 2, 3]),
        "not json",
        json.dumps([1]),
        '{"type":"x-fal-message","timing":"soon"}',
        b"",
    ],
)
def test_classify_malformed_never_raises(frame: bytes | str) -> None:
    """Garbage, lists and bad control messages become MalformedMessage."""
    assert isinstance(classify(frame), MalformedMessage)


def test_encode_input_round_trip() -> None:
    """Inputs are msgpack maps with binary kept as bin."""
    data = encode_input({"prompt": "a cat", "image_bytes": b"\x00\x01", "seed": 7})
    assert msgpack.unpackb(data, raw=False) == {
        "prompt": "a cat",
        "image_bytes": b"\x00\x01",
        "seed": 7,
    }


def test_encode_input_refuses_unencodable() -> None:
    """A value msgpack cannot carry is a BadInputError, not a crash."""
    with pytest.raises(BadInputError, match="cannot encode"):
        encode_input({"seed": 2**70})
    with pytest.raises(BadInputError):
        encode_input({"x": object()})
