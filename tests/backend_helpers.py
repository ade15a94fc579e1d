"""Helpers for tests that talk to the built-in backend over loopback sockets."""

from __future__ import annotations

import io
import json
from typing import Any
from urllib.parse import urlencode

import httpx
import msgpack
from PIL import Image
from websockets.asyncio.client import ClientConnection

from fal_stream.backend import LocalBackend

APP_ID = "fal-ai/fast-lcm-diffusion/image-to-image"
ALIAS = "fast-lcm-diffusion"


def encoded_image(
    width: int = 64, height: int = 48, colour: str = "white", fmt: str = "JPEG"
) -> bytes:
    """Return a plain image of ``colour`` encoded as ``fmt``."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format=fmt)
    return buffer.getvalue()


def mint(backend: LocalBackend, *apps: str, lifetime_s: float = 60) -> str:
    """Mint a token for ``apps`` (the default alias when none) with the key."""
    response = httpx.post(
        f"{backend.rest_url}/tokens/",
        json={"allowed_apps": list(apps or [ALIAS]), "token_expiration": lifetime_s},
        headers={"Authorization": f"Key {backend.key}"},
    )
    response.raise_for_status()
    token: str = response.json()
    return token


def socket_url(
    backend: LocalBackend,
    token: str | None = None,
    app_id: str = APP_ID,
    **query: str | int,
) -> str:
    """Build the realtime URL of ``app_id`` on ``backend``."""
    params: dict[str, str | int] = {}
    if token is not None:
        params["fal_jwt_token"] = token
    params.update(query)
    suffix = f"?{urlencode(params)}" if params else ""
    return f"{backend.run_host}/{app_id}/realtime{suffix}"


def packed_input(**fields: Any) -> bytes:
    """Pack an input map: a prompt and a small JPEG unless overridden."""
    inputs: dict[str, Any] = {"prompt": "a red barn", "image_bytes": encoded_image()}
    inputs.update(fields)
    return msgpack.packb(inputs, use_bin_type=True)  # type: ignore[no-any-return]


async def next_result(ws: ClientConnection) -> dict[str, Any]:
    """Receive frames until a binary result comes; fail on a text error."""
    while True:
        frame = await ws.recv()
        if isinstance(frame, bytes):
            result: dict[str, Any] = msgpack.unpackb(frame, raw=False)
            return result
        message = json.loads(frame)
        assert message.get("type") == "x-fal-message", message


async def next_text(ws: ClientConnection) -> dict[str, Any]:
    """Receive the next frame, which must be JSON text, skipping timings."""
    while True:
        frame = await ws.recv()
        assert isinstance(frame, str), f"expected text, got {len(frame)} bytes"
        message: dict[str, Any] = json.loads(frame)
        if message.get("type") != "x-fal-message":
            return message
