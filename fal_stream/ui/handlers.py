"""The app's event handlers: each browser session's frames, controls and output.

Every handler finds the session's own relay through Gradio's ``session_hash``;
nothing per user lives anywhere else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import gradio as gr

from ..errors import BadInputError
from ..pool import BusyError
from ..relay import Controls, Relay
from ..runtime import Runtime

# What the output stream yields: the image (or gr.skip()), status, message.
Outputs = tuple[Any, str, str]


class SessionHandlers:
    """Gradio handlers bound to one :class:`~fal_stream.runtime.Runtime`."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.pool = runtime.pool

    async def stream_output(self, request: gr.Request) -> AsyncIterator[Outputs]:
        """Push this session's results into the output as they come (page load)."""
        try:
            relay = self.pool.get(request.session_hash or "")
        except BusyError as exc:
            yield gr.skip(), self.runtime.label, _warn(str(exc))
            return
        async for update in relay.updates():
            image: Any = gr.skip() if update.image is None else update.image or None
            yield image, update.status, _warn(update.message)

    async def frame(
        self,
        image: Any,
        prompt: str,
        strength: float,
        seed: float,
        steps: float,
        app_id: str,
        request: gr.Request,
    ) -> None:
        """Send a sketch or webcam frame with the controls it was drawn under."""
        relay = await self._apply(request, prompt, strength, seed, steps, app_id)
        if relay is None:
            return
        try:
            await relay.offer(image)
        except BadInputError as exc:
            gr.Warning(str(exc))

    async def controls(
        self,
        prompt: str,
        strength: float,
        seed: float,
        steps: float,
        app_id: str,
        request: gr.Request,
    ) -> None:
        """Apply changed controls; the last picture is re-sent with them."""
        await self._apply(request, prompt, strength, seed, steps, app_id)

    async def unload(self, request: gr.Request) -> None:
        """Close the session's relay when its tab goes away."""
        await self.pool.close(request.session_hash or "")

    async def _apply(self, request: gr.Request, *controls: Any) -> Relay | None:
        """Find the session's relay and give it the controls, or warn why not."""
        try:
            relay = self.pool.get(request.session_hash or "")
            await relay.set_controls(Controls.clean(*controls))
        except (BusyError, BadInputError) as exc:
            gr.Warning(str(exc))
            return None
        return relay


def _warn(text: str) -> str:
    return f"⚠️ {text}" if text else ""
