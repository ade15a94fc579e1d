"""Send a picture to a realtime image model from a plain Python program.

    python examples/realtime_client.py examples/sketches/cat.png "a ginger cat" out.jpg

With ``FAL_KEY`` set it drives fal; without, it starts the built-in backend (a
local preview, not AI) so the example runs offline.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path

from fal_stream import RealtimeSession, Result, SessionState, Settings, TokenManager
from fal_stream.backend import LocalBackend
from fal_stream.frames import to_model_jpeg


async def redraw(picture: Path, prompt: str, out: Path) -> None:
    settings = Settings.from_env()
    async with contextlib.AsyncExitStack() as stack:
        if settings.uses_fal:
            key, rest_url, run_host = (
                settings.fal_key,
                settings.rest_url,
                settings.run_host,
            )
        else:
            local = await stack.enter_async_context(LocalBackend())
            key, rest_url, run_host = local.key, local.rest_url, local.run_host
        tokens = TokenManager(key, rest_url=rest_url)
        stack.push_async_callback(tokens.aclose)
        session = await stack.enter_async_context(
            RealtimeSession(settings.app_id, tokens, run_host=run_host)
        )

        jpeg = to_model_jpeg(picture.read_bytes(), size=settings.frame_size)
        session.send({"prompt": prompt, "image_bytes": jpeg, "strength": 0.6})
        async for event in session.events():
            if isinstance(event, Result):
                out.write_bytes(event.images[0]["content"])
                print(f"wrote {out} after {event.latency_s * 1000:.0f} ms")
                return
            print(f"problem: {event}", file=sys.stderr)  # says what to do
            if session.state is SessionState.FAILED:
                # Final until a new frame is sent: a refused key, say.
                raise SystemExit(1)


if __name__ == "__main__":
    picture, prompt, out = sys.argv[1:4]
    asyncio.run(redraw(Path(picture), prompt, Path(out)))
