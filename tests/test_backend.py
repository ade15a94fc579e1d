"""The built-in backend's REST host, socket handshake and lifecycle, over loopback."""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

import httpx
import jwt
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from fal_stream.backend import BackendError, Faults, LocalBackend

from .backend_helpers import ALIAS, mint, next_result, packed_input, socket_url


def _post_token(
    backend: LocalBackend,
    body: Any = None,
    *,
    authorization: str | None = "",
    **kwargs: Any,
) -> httpx.Response:
    headers = {}
    if authorization is not None:
        headers["Authorization"] = authorization or f"Key {backend.key}"
    if body is None:
        body = {"allowed_apps": [ALIAS], "token_expiration": 60}
    return httpx.post(
        f"{backend.rest_url}/tokens/", json=body, headers=headers, **kwargs
    )


def _claims(token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return decoded


def test_tokens_bare_json_string_by_default(backend: LocalBackend) -> None:
    """A token comes back as a bare JSON string naming the asked apps."""
    response = _post_token(backend)

    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    token = response.json()
    assert isinstance(token, str)
    claims = _claims(token)
    assert claims["allowed_apps"] == [ALIAS]
    assert claims["exp"] - claims["iat"] == pytest.approx(60)
    assert claims["jti"]
    assert backend.stats.tokens_minted == 1


@pytest.mark.parametrize("form", ["token", "detail"])
def test_tokens_other_forms(backend: LocalBackend, form: str) -> None:
    """The token_form fault wraps the token in the object form fal's clients read."""
    backend.faults.token_form = form  # type: ignore[assignment]

    body = _post_token(backend).json()

    assert set(body) == {form}
    assert _claims(body[form])["allowed_apps"] == [ALIAS]


@pytest.mark.parametrize(
    "authorization",
    [None, "Key wrong-key-value", "Bearer some-access-token", "wrong"],
)
def test_tokens_refuse_a_wrong_or_missing_key(
    backend: LocalBackend, authorization: str | None
) -> None:
    """Without the right key the answer is 401 with a detail free of secrets."""
    response = _post_token(backend, authorization=authorization)

    assert response.status_code == 401
    assert response.json()["detail"]
    assert backend.key not in response.text
    assert backend.stats.tokens_minted == 0


def test_tokens_accept_an_id_and_secret_key() -> None:
    """A key of the ``id:secret`` form works as one opaque string."""
    with LocalBackend("key-id:key-secret") as backend:
        response = _post_token(backend, authorization="Key key-id:key-secret")

    assert response.status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        [ALIAS],
        {"token_expiration": 60},
        {"allowed_apps": [], "token_expiration": 60},
        {"allowed_apps": [f"app{i}" for i in range(11)], "token_expiration": 60},
        {"allowed_apps": [""], "token_expiration": 60},
        {"allowed_apps": [3], "token_expiration": 60},
        {"allowed_apps": ALIAS, "token_expiration": 60},
        {"allowed_apps": [ALIAS]},
        {"allowed_apps": [ALIAS], "token_expiration": 0},
        {"allowed_apps": [ALIAS], "token_expiration": 86_401},
        {"allowed_apps": [ALIAS], "token_expiration": "60"},
        {"allowed_apps": [ALIAS], "token_expiration": True},
    ],
)
def test_tokens_refuse_a_bad_body(backend: LocalBackend, body: Any) -> None:
    """A body that is not a valid token request gets 422 and a JSON detail."""
    response = _post_token(backend, body)

    assert response.status_code == 422
    assert isinstance(response.json()["detail"], str)


def test_tokens_refuse_a_body_that_is_not_json(backend: LocalBackend) -> None:
    """A body that is not JSON at all gets 422 too."""
    response = httpx.post(
        f"{backend.rest_url}/tokens/",
        content=b"\xff{",
        headers={"Authorization": f"Key {backend.key}"},
    )

    assert response.status_code == 422


@pytest.mark.parametrize("status", [401, 403, 429, 500, 503])
def test_tokens_injected_status(backend: LocalBackend, status: int) -> None:
    """token_status answers that many requests with the status, then recovers."""
    backend.faults.token_status = status
    backend.faults.token_times = 1

    failed = _post_token(backend)
    recovered = _post_token(backend)

    assert failed.status_code == status
    assert "detail" in failed.json()
    assert (failed.headers.get("retry-after") == "1") == (status == 429)
    assert recovered.status_code == 201
    assert backend.stats.token_requests == 2


def test_tokens_injected_delay(backend: LocalBackend) -> None:
    """token_delay_s holds the answer back, so a short client timeout fires."""
    backend.faults.token_delay_s = 1.0

    with pytest.raises(httpx.ReadTimeout):
        _post_token(backend, timeout=0.1)


def test_tokens_lifetime_cap(backend: LocalBackend) -> None:
    """token_lifetime_cap_s shortens tokens whatever lifetime was asked."""
    backend.faults.token_lifetime_cap_s = 5

    claims = _claims(mint(backend, lifetime_s=600))

    assert claims["exp"] - claims["iat"] == pytest.approx(5)


async def _refusal(url: str, headers: dict[str, str] | None = None) -> int:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, additional_headers=headers):
            pass
    return refused.value.response.status_code


async def test_upgrade_refuses_a_missing_token(backend: LocalBackend) -> None:
    """A socket without a token or a key is refused with 401."""
    assert await _refusal(socket_url(backend)) == 401


async def test_upgrade_refuses_an_expired_token(backend: LocalBackend) -> None:
    """A token past its expiry is refused with 401."""
    backend.faults.token_lifetime_cap_s = 0.05
    token = mint(backend)
    time.sleep(0.1)

    assert await _refusal(socket_url(backend, token)) == 401


async def test_upgrade_refuses_a_forged_token(backend: LocalBackend) -> None:
    """A token signed by another backend is refused with 401."""
    with LocalBackend() as other:
        foreign = mint(other)

    assert await _refusal(socket_url(backend, foreign)) == 401
    assert await _refusal(socket_url(backend, "not-a-jwt")) == 401


async def test_upgrade_refuses_a_token_for_another_app(backend: LocalBackend) -> None:
    """A token minted for another alias is refused with 403."""
    token = mint(backend, "some-other-app")

    assert await _refusal(socket_url(backend, token)) == 403


async def test_upgrade_accepts_a_key_header(backend: LocalBackend) -> None:
    """``Authorization: Key`` on the upgrade opens the socket without a token."""
    headers = {"Authorization": f"Key {backend.key}"}
    async with connect(socket_url(backend), additional_headers=headers) as ws:
        await ws.send(packed_input(seed=7))
        assert (await next_result(ws))["seed"] == 7

    wrong = {"Authorization": "Key not-the-key"}
    assert await _refusal(socket_url(backend), wrong) == 401


async def test_upgrade_accepts_namespaced_ids(backend: LocalBackend) -> None:
    """A workflows/... id needs a token for its third segment, the alias."""
    token = mint(backend, "my-flow")
    url = socket_url(backend, token, app_id="workflows/someone/my-flow/step")
    async with connect(url) as ws:
        await ws.send(packed_input())
        assert (await next_result(ws))["images"]


@pytest.mark.parametrize("value", ["0", "61", "two", "-1", ""])
async def test_upgrade_refuses_a_bad_max_buffering(
    backend: LocalBackend, value: str
) -> None:
    """max_buffering outside 1..60 is refused with 400."""
    url = socket_url(backend, mint(backend), max_buffering=value)

    assert await _refusal(url) == 400


@pytest.mark.parametrize(
    "path", ["/fal-ai/fast-lcm-diffusion/ws", "/lonely/realtime", "/realtime"]
)
async def test_upgrade_refuses_other_paths(backend: LocalBackend, path: str) -> None:
    """Only /<owner>/<app>[/...]/realtime is a socket; the rest is 404."""
    url = f"{backend.run_host}{path}?fal_jwt_token={mint(backend)}"

    assert await _refusal(url) == 404


@pytest.mark.parametrize("status", [401, 403, 500])
async def test_upgrade_injected_status(backend: LocalBackend, status: int) -> None:
    """upgrade_status refuses that many upgrades, then sockets open again."""
    backend.faults.upgrade_status = status
    backend.faults.upgrade_times = 1
    url = socket_url(backend, mint(backend))

    assert await _refusal(url) == status
    async with connect(url) as ws:
        await ws.send(packed_input())
        assert (await next_result(ws))["images"]


async def test_backend_serves_in_the_running_loop() -> None:
    """``async with`` serves from the test's own event loop."""
    async with LocalBackend(faults=Faults()) as backend:
        headers = {"Authorization": f"Key {backend.key}"}
        async with httpx.AsyncClient() as client:
            response = await client.post(
                f"{backend.rest_url}/tokens/",
                json={"allowed_apps": [ALIAS], "token_expiration": 30},
                headers=headers,
            )
        async with connect(socket_url(backend, response.json())) as ws:
            await ws.send(packed_input(seed=3))
            assert (await next_result(ws))["seed"] == 3
    assert not backend.running


def test_backend_refuses_to_start_twice(backend: LocalBackend) -> None:
    """Starting a running backend raises; stopping twice is harmless."""
    with pytest.raises(BackendError):
        backend.start()
    backend.stop()
    backend.stop()
    assert not backend.running


def test_backend_reports_a_port_in_use() -> None:
    """A port that cannot be bound raises BackendError from start()."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(BackendError, match=str(port)):
            LocalBackend(port=port).start()


def test_backend_urls_and_repr_hide_the_key() -> None:
    """The URLs name loopback ports and the repr does not show the key."""
    with LocalBackend("a-very-secret-local-key") as backend:
        assert backend.rest_url.startswith("http://127.0.0.1:")
        assert backend.run_host.startswith("ws://127.0.0.1:")
        assert "a-very-secret-local-key" not in repr(backend)


async def test_backend_logs_no_key_or_token(
    backend: LocalBackend, caplog: pytest.LogCaptureFixture
) -> None:
    """At DEBUG, nothing the backend logs holds the key or a token."""
    caplog.set_level(logging.DEBUG)
    token = mint(backend)
    async with connect(socket_url(backend, token)) as ws:
        await ws.send(packed_input())
        await next_result(ws)
    headers = {"Authorization": f"Key {backend.key}"}
    async with connect(socket_url(backend), additional_headers=headers) as ws:
        await ws.send(packed_input())
        await next_result(ws)

    # The test's own clients (websockets.client, httpx) are not the backend.
    served = [
        record.getMessage()
        for record in caplog.records
        if not record.name.startswith(("websockets.client", "httpx", "httpcore"))
    ]
    assert any("realtime" in line for line in served)
    assert not [line for line in served if token in line or backend.key in line]
