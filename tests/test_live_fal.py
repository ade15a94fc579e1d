"""One frame through fal itself. Opt-in: it needs a real key and the network.

Run with ``FAL_KEY=... FAL_STREAM_LIVE=1 python -m pytest tests/test_live_fal.py``.
Skipped everywhere else, CI included: no machine here reaches fal.
"""

from __future__ import annotations

import asyncio
import io
import os

import numpy as np
import pytest
from PIL import Image

from fal_stream import RealtimeSession, Result, Settings, TokenManager
from fal_stream.frames import to_model_jpeg

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(
        not (os.environ.get("FAL_KEY") and os.environ.get("FAL_STREAM_LIVE") == "1"),
        reason="talks to fal.ai: set FAL_KEY and FAL_STREAM_LIVE=1 to run it",
    ),
]


async def test_live_fal_answers_a_frame_with_an_image() -> None:
    """fal's realtime app answers one sketch with a decodable image."""
    settings = Settings.from_env(backend="fal")
    tokens = TokenManager(settings.fal_key, rest_url=settings.rest_url)
    sketch = np.full((512, 512, 3), 255, np.uint8)
    sketch[150:360, 150:360] = (30, 30, 30)
    try:
        async with RealtimeSession(
            settings.app_id, tokens, run_host=settings.run_host
        ) as session:
            session.send(
                {"prompt": "a black cat", "image_bytes": to_model_jpeg(sketch)}
            )

            async def first() -> Result:
                async for event in session.events():
                    assert isinstance(event, Result), event
                    return event
                raise AssertionError("the session closed without a result")

            result = await asyncio.wait_for(first(), 60)
    finally:
        await tokens.aclose()
    content = result.images[0].get("content")
    assert isinstance(content, bytes)
    assert Image.open(io.BytesIO(content)).size[0] > 0
