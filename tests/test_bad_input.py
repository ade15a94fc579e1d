"""Inputs nobody planned for, sent where a browser's would arrive: each gets a clear
message or a sane clamp, memory stays bounded, and nothing crashes.

Pictures go through a :class:`~fal_stream.relay.Relay` as the sketchpad's data URIs
do; controls go through the real app over Gradio's queue protocol, since Gradio's
own preprocessing is part of what they pass.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import numpy as np
import pytest
from PIL import Image

from fal_stream import frames
from fal_stream.backend import LocalBackend
from fal_stream.config import Settings
from fal_stream.errors import BadInputError
from fal_stream.relay import MAX_PROMPT_CHARS, MAX_SEED, Controls, Relay
from fal_stream.tokens import TokenManager

from .app_server import Browserless, RunningApp, browserless_sessions, serve_app

APP_ID = "fal-ai/fast-lcm-diffusion/image-to-image"
SETTINGS = Settings(min_interval_s=0.0, frame_size=128)
WAIT_S = 15.0
# Peak resident memory a single picture may add, whatever its size.
PICTURE_RSS_BOUND_MB = 100


def data_uri(image: Image.Image, fmt: str = "PNG", **save: Any) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    mime = "image/jpeg" if fmt == "JPEG" else f"image/{fmt.lower()}"
    return f"data:{mime};base64," + base64.b64encode(buffer.getvalue()).decode()


def rss_peak_mb() -> float:
    """The process's peak resident memory since the last reset, in MiB."""
    with open("/proc/self/status") as status:
        match = re.search(r"VmHWM:\s+(\d+) kB", status.read())
    assert match is not None
    return int(match.group(1)) / 1024


def reset_rss_peak() -> float:
    """Start a new peak (Linux's clear_refs) and return the memory in use now."""
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")
    return rss_peak_mb()


@pytest.fixture
async def relay(backend: LocalBackend) -> AsyncIterator[Relay]:
    tokens = TokenManager(backend.key, rest_url=backend.rest_url)
    running = Relay(
        SETTINGS, tokens, run_host=backend.run_host, backend_label="t", name="bad"
    )
    yield running
    await running.aclose()
    await tokens.aclose()


async def next_image(relay: Relay) -> np.ndarray:
    """The next image the relay shows, decoded."""

    async def scan() -> str:
        async for update in relay.updates():
            assert not update.message, update.message
            if update.image is not None:
                return update.image
        raise AssertionError("the relay closed")

    uri = await asyncio.wait_for(scan(), WAIT_S)
    return frames.to_array(base64.b64decode(uri.split(",", 1)[1]))


# Sizes.


async def test_bad_input_one_pixel_picture_is_scaled_up(relay: Relay) -> None:
    """A 1x1 picture is scaled to the frame size and answered."""
    await relay.offer(data_uri(Image.new("RGB", (1, 1), (200, 0, 0))))
    assert (await next_image(relay)).shape[:2] == (128, 128)


async def test_bad_input_10000_square_refused_without_decoding(
    relay: Relay, backend: LocalBackend
) -> None:
    """A 10000x10000 picture (100 MP, a small PNG) is refused by its header, with
    the limit in the message, and never decoded."""
    uri = data_uri(Image.new("1", (10_000, 10_000), 0), optimize=True)
    before = reset_rss_peak()
    with pytest.raises(BadInputError) as refused:
        await relay.offer(uri)
    assert rss_peak_mb() - before < PICTURE_RSS_BOUND_MB
    message = str(refused.value)
    assert message == (
        "the image has too many pixels to read; use an image under 50 megapixels"
    )
    assert backend.stats.inputs == 0


async def test_bad_input_48_megapixel_photo_decoded_at_reduced_scale(
    relay: Relay,
) -> None:
    """An 8000x6000 JPEG is accepted and decoded at a reduced scale: the peak
    memory stays far under its 144 MB of full-size pixels."""
    uri = data_uri(Image.new("RGB", (8000, 6000), (0, 0, 200)), "JPEG", quality=50)
    before = reset_rss_peak()
    await relay.offer(uri)
    assert rss_peak_mb() - before < PICTURE_RSS_BOUND_MB
    assert (await next_image(relay)).shape[:2] == (128, 128)


# Modes and formats.


def _in_mode(mode: str) -> Image.Image:
    base = Image.new("RGB", (64, 48), "white")
    base.paste((220, 30, 30), (10, 10, 54, 38))
    if mode == "I;16":
        return base.convert("L").convert("I").point(lambda v: v * 200).convert(mode)
    return base.convert(mode)


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [
        ("RGBA", "PNG"),
        ("LA", "PNG"),
        ("P", "PNG"),
        ("I;16", "PNG"),
        ("CMYK", "JPEG"),
        ("CMYK", "TIFF"),
        ("1", "PNG"),
    ],
)
async def test_bad_input_every_pillow_mode_is_answered(
    relay: Relay, mode: str, fmt: str
) -> None:
    """A picture in any Pillow mode is converted and answered with an image."""
    image = _in_mode(mode)
    assert image.mode == mode
    await relay.offer(data_uri(image, fmt))
    assert (await next_image(relay)).shape == (128, 128, 3)


async def test_bad_input_animated_gif_uses_its_first_frame(relay: Relay) -> None:
    """An animated GIF is answered for its first frame only."""
    red, blue = (Image.new("RGB", (64, 64), c) for c in ((220, 0, 0), (0, 0, 220)))
    await relay.offer(
        data_uri(red, "GIF", save_all=True, append_images=[blue], duration=100)
    )
    centre = (await next_image(relay))[40:88, 40:88].reshape(-1, 3).mean(axis=0)
    assert centre.argmax() == 0, centre


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "data:image/png;base64," + base64.b64encode(b"<html>hi</html>").decode(),
            "the input (15 bytes, b'<htm'...) is not an image PIL can read",
        ),
        (
            data_uri(Image.new("RGB", (64, 64), "red"))[:122],
            "the PNG data is damaged or truncated",
        ),
        ("data:image/png;base64,@@@@", "the data: URI holds malformed base64"),
        (
            "data:text/plain;base64,aGk=",
            "expected a data:image/...;base64, URI, got 'data:text/plain;base64",
        ),
        ("/etc/passwd", "file paths and remote URLs are not read"),
        ("https://example.invalid/a.png", "file paths and remote URLs are not read"),
        ({"path": "/etc/passwd"}, "no image: cannot read one from a dict"),
    ],
    ids=["html", "truncated", "base64", "text-uri", "path", "url", "dict"],
)
async def test_bad_input_non_image_refused_with_reason(
    relay: Relay, backend: LocalBackend, value: Any, message: str
) -> None:
    """Something that is not a picture is refused with what was wrong, nothing is
    read from disk or network, and the next picture works."""
    with pytest.raises(BadInputError) as refused:
        await relay.offer(value)
    assert message in str(refused.value)
    assert backend.stats.inputs == 0
    await relay.offer(data_uri(Image.new("RGB", (32, 32), (0, 150, 0))))
    await next_image(relay)


@pytest.mark.parametrize(
    "sketch",
    [
        data_uri(Image.new("RGBA", (512, 512), (0, 0, 0, 0))),
        data_uri(Image.new("RGB", (512, 512), "white"), "JPEG"),
        "",
        None,
    ],
    ids=["transparent", "white", "empty-string", "none"],
)
async def test_bad_input_empty_sketch_sends_nothing(
    relay: Relay, backend: LocalBackend, sketch: str | None
) -> None:
    """An empty canvas, in any form the sketchpad sends, reaches no model."""
    await relay.offer(sketch)
    await asyncio.sleep(0.1)
    assert backend.stats.inputs == 0
    assert relay.status() == "t · waiting for a picture"


# Controls, through the real app.


@pytest.fixture(scope="module")
def running() -> Iterator[RunningApp]:
    with serve_app(Settings(backend="local", min_interval_s=0.02)) as app:
        yield app


@pytest.fixture
def browser(running: RunningApp) -> Iterator[Callable[[str], Browserless]]:
    with browserless_sessions(running, load=True) as open_session:
        yield open_session


def _wait_until(predicate: Callable[[], object]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def _warnings(session: Browserless) -> list[str]:
    return [str(m.get("log", "")) for m in session.snapshot() if m.get("msg") == "log"]


def _picture() -> str:
    return data_uri(Image.new("RGB", (64, 64), (180, 40, 40)), "JPEG")


def _send_sketch(running: RunningApp, session: Browserless, *controls: Any) -> None:
    session.join(running.fn_index("sketch", "change"), [_picture(), *controls])


def test_bad_input_huge_prompt_with_control_characters_is_cleaned(
    running: RunningApp, browser: Callable[[str], Browserless]
) -> None:
    """A 100,000-character prompt with control characters and emoji reaches the
    model cut to 1000 characters, controls replaced by spaces, emoji kept."""
    session = browser("prompt")
    prompt = "a\x00red\x1b[2J\u202ecat 🐱\r\n" + "🎨x" * 50_000
    _send_sketch(running, session, prompt, 0.6, 42, 4, APP_ID)
    local = running.runtime.local
    assert local is not None
    _wait_until(lambda: (local.stats.last_prompt or "").startswith("a red [2J cat"))
    seen = local.stats.last_prompt or ""
    assert len(seen) == MAX_PROMPT_CHARS and seen.startswith("a red [2J cat 🐱 🎨x")
    assert not any(ord(ch) < 32 or ch == "\u202e" for ch in seen)


@pytest.mark.parametrize(
    ("strength", "seed", "steps", "error", "clamped"),
    [
        # Typed out of range: clamped into range, so the event still draws.
        (-5.0, 42, 4, "", (0.0, 42, 4)),
        (7.5, 42, 4, "", (1.0, 42, 4)),
        (0.6, 42, 1000, "", (0.6, 42, 8)),
        (0.6, -1, 4, "", (0.6, 0, 4)),
        (0.6, 2**70, 4, "", (0.6, MAX_SEED, 4)),
        # The slider lets NaN through; Controls.clean puts the default back.
        (float("nan"), 42, 4, "", (0.6, 42, 4)),
        # Not numbers at all: Gradio fails that one event in preprocessing.
        (float("inf"), 42, 4, "Value inf is greater than maximum value 1.", None),
        (0.6, float("nan"), 4, None, None),
        ("strong", 42, 4, None, None),
    ],
    ids=[
        "strength-below",
        "strength-above",
        "steps-above",
        "seed-below",
        "seed-beyond-64-bits",
        "strength-nan",
        "strength-inf",
        "seed-nan",
        "strength-text",
    ],
)
def test_bad_input_numbers_clamped_or_refused(
    running: RunningApp,
    browser: Callable[[str], Browserless],
    strength: Any,
    seed: Any,
    steps: Any,
    error: str | None,
    clamped: tuple[float, int, int] | None,
) -> None:
    """A control value out of range, beyond 64 bits or NaN is clamped and the
    frame still drawn; one that is infinite or not a number fails only that
    event with Gradio's message. Either way the next frame is answered."""
    session = browser("numbers")
    body = {
        "data": [_picture(), "a cat", strength, seed, steps, APP_ID],
        "fn_index": running.fn_index("sketch", "change"),
        "session_hash": session.session_hash,
        "event_data": None,
        "trigger_id": None,
    }
    # httpx refuses to encode NaN; a hostile client need not.
    response = session.http.post(
        "/gradio_api/queue/join",
        content=json.dumps(body),
        headers={"content-type": "application/json"},
    )
    event_id = response.json()["event_id"]
    _wait_until(lambda: _completion(session, event_id))
    done = _completion(session, event_id)
    assert done is not None
    if error == "":
        assert done["success"] is True
        relay = running.runtime.pool.find(session.session_hash)
        assert relay is not None
        controls = relay.controls
        assert (controls.strength, controls.seed, controls.steps) == clamped
    else:
        assert done["success"] is False and done["output"].get("error") == error

    local = running.runtime.local
    assert local is not None
    before = local.stats.results
    _send_sketch(running, session, "a cat", 0.6, 42, 4, APP_ID)
    _wait_until(lambda: local.stats.results > before)
    relay = running.runtime.pool.find(session.session_hash)
    assert relay is not None
    assert (relay.controls.strength, relay.controls.seed, relay.controls.steps) == (
        0.6,
        42,
        4,
    )


def _completion(session: Browserless, event_id: str) -> dict[str, Any] | None:
    for message in session.snapshot():
        if message.get("msg") == "process_completed" and (
            message.get("event_id") == event_id
        ):
            return message
    return None


@pytest.mark.parametrize(
    "app_id",
    ["not an app id!", "../../etc/passwd", "a/b?c=d#e", "fal-ai/x y"],
    ids=["spaces", "traversal", "query", "space-in-alias"],
)
def test_bad_input_nonsense_app_id_warns(
    running: RunningApp, browser: Callable[[str], Browserless], app_id: str
) -> None:
    """A nonsense app id typed into the model box is refused with a warning that
    shows what an app id looks like, and no socket is opened for it."""
    session = browser("app")
    _send_sketch(running, session, "a cat", 0.6, 42, 4, app_id)
    _wait_until(lambda: _warnings(session))
    assert "owner/app" in _warnings(session)[0]
    relay = running.runtime.pool.find(session.session_hash)
    assert relay is not None and relay.controls.app_id == Controls().app_id


def test_bad_input_overlong_app_id_stops_after_one_refusal(
    running: RunningApp, browser: Callable[[str], Browserless]
) -> None:
    """A well-formed app id of 5000 characters, which the socket host refuses
    with 414, is reported once and not retried in a loop."""
    session = browser("long-app")
    _send_sketch(running, session, "a cat", 0.6, 42, 4, "fal-ai/" + "x" * 5000)
    _wait_until(lambda: any("HTTP 414" in str(s) for s in _texts(session)))
    assert "⚠️ fal refused the connection (HTTP 414): check the app id" in _texts(
        session
    )
    relay = running.runtime.pool.find(session.session_hash)
    assert relay is not None
    _wait_until(lambda: "failed" in relay.status())
    time.sleep(1.0)
    assert "failed" in relay.status() and " 0 sent" in relay.status()


def _texts(session: Browserless) -> list[str]:
    """Every string the server pushed to the status and message outputs."""
    found: list[str] = []
    for message in session.snapshot():
        if message.get("msg") != "process_generating":
            continue
        for item in message["output"]["data"][1:]:
            if isinstance(item, str):
                found.append(item)
            elif isinstance(item, list):
                found += [str(op[2]) for op in item if len(op) > 2]
    return found
