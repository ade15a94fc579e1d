"""What one browser session holds: its controls, its last frame, its realtime session.

The UI hands each browser session's frames and control changes to its own
:class:`Relay`, and shows what :meth:`Relay.updates` yields. Nothing here is shared
between browser sessions except the token manager, so one user's frames cannot
reach another user's output.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import unicodedata
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from . import frames
from .config import DEFAULT_APP_ID, Settings
from .endpoints import AppId
from .errors import (
    AuthError,
    BadInputError,
    BadMessageError,
    ConnectionLostError,
    FalStreamError,
    RealtimeError,
    TokenError,
)
from .events import Result, SessionState
from .session import RealtimeSession
from .tokens import TokenSource

logger = logging.getLogger(__name__)

MAX_PROMPT_CHARS = 1000
MAX_SEED = 2**32 - 1
STEPS_RANGE = (1, 8)
STATUS_EVERY_S = 1.0
FPS_WINDOW_S = 3.0
DEFAULT_PROMPT = "a watercolor landscape, soft light, highly detailed"


@dataclass(frozen=True)
class Controls:
    """What the user set besides the picture. Build it with :meth:`clean`."""

    prompt: str = DEFAULT_PROMPT
    strength: float = 0.6
    seed: int = 42
    steps: int = 4
    app_id: str = DEFAULT_APP_ID

    @classmethod
    def clean(
        cls,
        prompt: object = DEFAULT_PROMPT,
        strength: object = 0.6,
        seed: object = 42,
        steps: object = 4,
        app_id: object = DEFAULT_APP_ID,
    ) -> Controls:
        """Return controls from raw UI values, clamped into range.

        Control characters are removed from the prompt and it is cut to
        ``MAX_PROMPT_CHARS``; numbers out of range, NaN or of the wrong type fall
        back to the nearest sane value.

        Raises:
            BadInputError: The app id is malformed.
        """
        text = "".join(
            ch if unicodedata.category(ch)[0] != "C" else " " for ch in str(prompt)
        )
        text = " ".join(text.split())[:MAX_PROMPT_CHARS]
        app = str(AppId.parse(str(app_id or DEFAULT_APP_ID)))
        return cls(
            prompt=text,
            strength=_clamp_float(strength, 0.6, 0.0, 1.0),
            seed=int(_clamp_float(seed, 42, 0, MAX_SEED)),
            steps=int(_clamp_float(steps, 4, *STEPS_RANGE)),
            app_id=app,
        )

    def model_inputs(self, image: bytes) -> dict[str, Any]:
        """The input map for fal's image-to-image realtime apps."""
        return {
            "prompt": self.prompt,
            "image_bytes": image,
            "strength": self.strength,
            "seed": self.seed,
            "num_inference_steps": self.steps,
            "guidance_scale": 1.0,
            "sync_mode": False,
            "enable_safety_checks": True,
        }


@dataclass(frozen=True)
class Update:
    """What the output should show now.

    Attributes:
        image: A data URI for the output image, ``""`` to clear it, or ``None``
            to keep the current one.
        status: One line on the backend, connection, rate and latency.
        message: A short problem and what to do about it, or ``""``.
    """

    image: str | None
    status: str
    message: str = ""


class Relay:
    """One browser session's link to the model.

    Args:
        settings: Frame size, quality and pacing.
        tokens: Shared token source.
        run_host: Where realtime sockets go.
        backend_label: Named in the status line, e.g. ``"fal"``.
        name: Label for log lines.
    """

    def __init__(
        self,
        settings: Settings,
        tokens: TokenSource,
        *,
        run_host: str,
        backend_label: str,
        name: str = "relay",
    ) -> None:
        self.settings = settings
        self.name = name
        self._tokens = tokens
        self._run_host = run_host
        self._label = backend_label
        self.controls = Controls.clean(app_id=settings.app_id)
        self._frame: bytes | None = None
        self._session: RealtimeSession | None = None
        self._forwarder: asyncio.Task[None] | None = None
        self._latest: Update | None = None
        self._ready = asyncio.Event()
        self._results_at: deque[float] = deque(maxlen=120)
        self._message = ""
        self.started_at = self.last_active = time.monotonic()
        self.closed = False

    async def offer(self, image: frames.ImageInput) -> None:
        """Convert a picture from the UI and send it with the current controls.

        A blank picture is not sent. Conversion runs in a worker thread.

        Raises:
            BadInputError: The picture cannot be used; the message says why.
        """
        self.last_active = time.monotonic()
        if image is None or (isinstance(image, str) and not image):
            return
        size, quality = self.settings.frame_size, self.settings.jpeg_quality
        jpeg = await asyncio.to_thread(
            frames.to_model_jpeg, image, size=size, quality=quality
        )
        if frames.is_blank(jpeg):
            # A cleared sketch clears the output too, instead of leaving the last
            # picture there; nothing goes to the model.
            if self._frame is not None:
                self._frame = None
                self._latest = Update("", self.status())
                self._ready.set()
            return
        self._frame = jpeg
        self._send()

    async def set_controls(self, controls: Controls) -> None:
        """Use new controls and re-send the last picture with them."""
        self.last_active = time.monotonic()
        if controls == self.controls:
            return
        app_changed = controls.app_id != self.controls.app_id
        self.controls = controls
        if app_changed and self._session is not None:
            await self._drop_session()
        if self._frame is not None:
            self._send()

    async def updates(self) -> AsyncIterator[Update]:
        """Yield what to show, as results arrive and at least once a second."""
        shown = Update(None, self.status(), self._message)
        yield shown
        while not self.closed:
            self._ready.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STATUS_EVERY_S):
                    await self._ready.wait()
            latest, self._latest = self._latest, None
            update = latest or Update(None, self.status(), self._message)
            if update != shown:
                shown = update
                yield update
        yield Update(None, "closed", self._message)

    def status(self) -> str:
        """The status line: backend, state, results per second and latencies."""
        parts = [self._label]
        session = self._session
        if session is None:
            parts.append("waiting for a picture")
            return " · ".join(parts)
        stats = session.stats
        parts.append(session.state.value)
        now = time.monotonic()
        recent = [t for t in self._results_at if now - t <= FPS_WINDOW_S]
        if len(recent) >= 2 and session.state is SessionState.OPEN:
            parts.append(f"{(len(recent) - 1) / max(now - recent[0], 1e-3):.1f} fps")
        if stats.last_latency_s is not None:
            parts.append(f"latency {stats.last_latency_s * 1000:.0f} ms")
        if stats.model_time_s is not None:
            parts.append(f"model {stats.model_time_s * 1000:.0f} ms")
        parts.append(f"{stats.frames_sent} sent · {stats.results} results")
        return " · ".join(parts)

    async def suspend(self) -> None:
        """Let go of the realtime session; the next frame opens a new one."""
        await self._drop_session()

    async def aclose(self, reason: str = "") -> None:
        """Close the realtime session and end :meth:`updates`.

        Args:
            reason: Shown to the user as the last message, if given.
        """
        self.closed = True
        self._message = reason or self._message
        self._ready.set()
        await self._drop_session()

    def _send(self) -> None:
        if self._frame is None or self.closed:
            return
        if self._session is None:
            self._session = RealtimeSession(
                self.controls.app_id,
                self._tokens,
                run_host=self._run_host,
                min_interval_s=self.settings.min_interval_s,
                max_in_flight=self.settings.max_in_flight,
                name=self.name,
            )
            self._forwarder = asyncio.create_task(self._forward(self._session))
        self._session.send(self.controls.model_inputs(self._frame))

    async def _drop_session(self) -> None:
        session, forwarder = self._session, self._forwarder
        self._session = self._forwarder = None
        if session is not None:
            await session.aclose()
        if forwarder is not None:
            forwarder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await forwarder

    async def _forward(self, session: RealtimeSession) -> None:
        """Turn the session's events into updates, newest wins."""
        async for event in session.events():
            if isinstance(event, Result):
                update = self._show(event)
            else:
                self._message = explain(event)
                update = Update(None, self.status(), self._message)
            self._latest = update
            self._ready.set()

    def _show(self, result: Result) -> Update:
        self._results_at.append(time.monotonic())
        if result.nsfw:
            self._message = "The result was flagged as unsafe; keeping the last one."
            return Update(None, self.status(), self._message)
        try:
            encoded = frames.decode_result_image(result.images[0])
        except (IndexError, BadInputError) as exc:
            self._message = "The model answered without a usable image" + (
                f": {exc}" if isinstance(exc, BadInputError) else "."
            )
            return Update(None, self.status(), self._message)
        self._message = ""
        content_type = frames.sniff_content_type(encoded)
        return Update(frames.to_data_uri(encoded, content_type), self.status())


def explain(error: FalStreamError) -> str:
    """A short message for the user: what happened and what to do."""
    if isinstance(error, AuthError):
        return f"{error} (a Space owner sets it as the FAL_KEY secret)."
    if isinstance(error, TokenError) and error.status == 402:
        return "Out of credit on fal: top up your fal account, then draw again."
    if isinstance(error, TokenError):
        how = f"answered HTTP {error.status}" if error.status else "did not answer"
        return (
            f"fal's token service {how}; the next picture tries again "
            "(if it keeps failing, check FAL_REST_URL and fal's status page)."
        )
    if isinstance(error, ConnectionLostError):
        code = f" (code {error.close_code})" if error.close_code else ""
        return f"Connection lost{code}; retrying in {error.retry_in_s:.1f} s."
    if isinstance(error, RealtimeError) and error.code == "NO_RESULT":
        return "The model did not answer in time; reconnecting."
    if isinstance(error, BadMessageError):
        text = str(error)
        return f"{text[:1].upper()}{text[1:]}; the next picture tries again."
    if isinstance(error, RealtimeError):
        return (
            f"The model failed on this picture ({error.reason or error.code}); "
            "change it or try again."
        )
    return str(error)


def _clamp_float(value: object, default: float, low: float, high: float) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return default
    if math.isnan(number):
        return default
    return min(high, max(low, number))
