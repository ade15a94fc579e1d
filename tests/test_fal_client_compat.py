"""fal's official Python client, fal_client 1.0.3, against the built-in backend.

fal_client reads its REST and socket base URLs from module globals at call time;
pointing them at the backend is the way fal's own client reaches it.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator
from typing import Any

import fal_client
import fal_client.client
import pytest
from PIL import Image

from fal_stream.backend import LocalBackend

from .backend_helpers import APP_ID, encoded_image


@pytest.fixture
def pointed(backend: LocalBackend, monkeypatch: pytest.MonkeyPatch) -> LocalBackend:
    """The backend, with fal_client's URLs and FAL_KEY pointing at it."""
    monkeypatch.setattr(fal_client.client, "REST_URL", backend.rest_url)
    monkeypatch.setattr(
        fal_client.client, "REALTIME_URL_FORMAT", backend.run_host + "/"
    )
    monkeypatch.setenv("FAL_KEY", backend.key)
    monkeypatch.delenv("FAL_KEY_ID", raising=False)
    monkeypatch.delenv("FAL_KEY_SECRET", raising=False)
    return backend


@pytest.fixture
def sync_client(pointed: LocalBackend) -> Iterator[fal_client.SyncClient]:
    """A fal_client sync client, reading FAL_KEY from the environment."""
    client = fal_client.SyncClient()
    yield client
    # fal_client 1.0.3 has no close(); shut its cached httpx client here so that
    # its keep-alive socket to the token host does not leak.
    if "_client" in vars(client):
        client._client.close()


@pytest.fixture
async def async_client(
    pointed: LocalBackend,
) -> AsyncIterator[fal_client.AsyncClient]:
    """A fal_client async client, reading FAL_KEY from the environment."""
    client = fal_client.AsyncClient()
    yield client
    # As for the sync client: nothing else closes its cached httpx client.
    await (await client._client).aclose()


def _inputs(seed: int) -> dict[str, Any]:
    return {"prompt": "a blue boat", "image_bytes": encoded_image(80, 60), "seed": seed}


def _check(result: dict[str, Any] | None, seed: int) -> None:
    assert result is not None
    assert result["seed"] == seed
    (image,) = result["images"]
    assert Image.open(io.BytesIO(image["content"])).size == (80, 60)


def test_fal_client_sync_realtime(
    pointed: LocalBackend, sync_client: fal_client.SyncClient
) -> None:
    """The sync client mints a token, connects and gets a result."""
    with sync_client.realtime(APP_ID) as connection:
        connection.send(_inputs(seed=21))
        _check(connection.recv(), seed=21)
    assert pointed.stats.tokens_minted == 1


def test_fal_client_sync_realtime_with_key_header(
    pointed: LocalBackend, sync_client: fal_client.SyncClient
) -> None:
    """use_jwt=False sends the key on the upgrade instead of a token."""
    with sync_client.realtime(APP_ID, use_jwt=False, max_buffering=2) as connection:
        connection.send(_inputs(seed=22))
        _check(connection.recv(), seed=22)
    assert pointed.stats.tokens_minted == 0


def test_fal_client_sees_the_idle_timeout(
    pointed: LocalBackend, sync_client: fal_client.SyncClient
) -> None:
    """fal_client raises its RealtimeError for TIMEOUT, then reports the close."""
    pointed.faults.idle_timeout_s = 0.2
    with sync_client.realtime(APP_ID) as connection:
        with pytest.raises(fal_client.client.RealtimeError) as raised:
            connection.recv()
        assert raised.value.error == "TIMEOUT"
        assert connection.recv() is None


def test_fal_client_sees_input_errors(sync_client: fal_client.SyncClient) -> None:
    """An input without an image comes back as RealtimeError INTERNAL_ERROR."""
    with sync_client.realtime(APP_ID) as connection:
        connection.send({"prompt": "no image"})
        with pytest.raises(fal_client.client.RealtimeError) as raised:
            connection.recv()
    assert raised.value.error == "INTERNAL_ERROR"


async def test_fal_client_async_realtime(
    pointed: LocalBackend, async_client: fal_client.AsyncClient
) -> None:
    """The async client mints a token, connects and gets a result."""
    async with async_client.realtime(APP_ID) as connection:
        await connection.send(_inputs(seed=23))
        _check(await connection.recv(), seed=23)
    assert pointed.stats.tokens_minted == 1
