"""The fal proxy routes over loopback: refusals, forwarding, and real tokens.

The proxy is served by uvicorn on 127.0.0.1 and mints either at the built-in
backend, whose tokens then open its realtime socket, or at a small recording
token host that shows exactly what was forwarded.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from websockets.asyncio.client import connect

from fal_stream.backend import LocalBackend
from fal_stream.config import Settings
from fal_stream.proxy import FalProxy, Upstream, proxy_routes
from fal_stream.proxy_policy import ProxyConfig
from fal_stream.runtime import Runtime

from .backend_helpers import ALIAS, APP_ID, next_result, packed_input, socket_url
from .fakes import FakeClock

TOKEN_URL = "https://rest.fal.ai/tokens/"
BODY = {"allowed_apps": [ALIAS], "token_expiration": 60}
KEY = "test-key-id:test-key-secret-0123456789"
ON = ProxyConfig(enabled=True)


@contextlib.contextmanager
def serving(routes: list[BaseRoute]) -> Iterator[str]:
    """Serve ``routes`` with uvicorn on a free loopback port, in a thread.

    Yields:
        The base URL, such as ``http://127.0.0.1:41234``.
    """
    config = uvicorn.Config(
        Starlette(routes=routes),
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="proxy-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, (
            "uvicorn did not start"
        )
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@dataclass
class TokenHost:
    """A token host that records each request and answers as told."""

    status: int = 201
    body: bytes = b'"header.payload.signature"'
    headers: dict[str, str] = field(
        default_factory=lambda: {"content-type": "application/json"}
    )
    seen: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def handle(self, request: Request) -> Response:
        self.seen.append((dict(request.headers), await request.body()))
        return Response(self.body, status_code=self.status, headers=self.headers)

    def routes(self) -> list[BaseRoute]:
        return [Route("/tokens/", self.handle, methods=["POST"])]


@pytest.fixture
def token_host() -> Iterator[tuple[TokenHost, str]]:
    """A recording token host on loopback, and its base URL."""
    host = TokenHost()
    with serving(host.routes()) as url:
        yield host, url


def _serve_proxy(
    upstream: Upstream, config: ProxyConfig = ON, **kwargs: Any
) -> contextlib.AbstractContextManager[str]:
    proxy = FalProxy(upstream, config, apps=[APP_ID], **kwargs)
    return serving(proxy.routes())


@pytest.fixture
def local_proxy(backend: LocalBackend) -> Iterator[str]:
    """The proxy, minting at the built-in backend; yields its base URL."""
    with _serve_proxy(Upstream(backend.key, backend.rest_url)) as url:
        yield url


@pytest.fixture(scope="module")
def _recording_pair() -> Iterator[tuple[str, TokenHost]]:
    host = TokenHost()
    config = ProxyConfig(enabled=True, rate_per_min=10_000)
    with (
        serving(host.routes()) as host_url,
        _serve_proxy(Upstream(KEY, host_url), config) as url,
    ):
        yield url, host


@pytest.fixture
def recorded_proxy(
    _recording_pair: tuple[str, TokenHost],
) -> tuple[str, TokenHost]:
    """The proxy, minting at a recording token host with :data:`KEY`; the host
    starts each test with no requests seen and its default answer."""
    url, host = _recording_pair
    fresh = TokenHost()
    host.status, host.body, host.headers = fresh.status, fresh.body, fresh.headers
    host.seen.clear()
    return url, host


def _proxy(
    base: str,
    body: Any = None,
    *,
    target: str | None = TOKEN_URL,
    method: str = "POST",
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
) -> httpx.Response:
    sent = dict(headers or {})
    if target is not None:
        sent["x-fal-target-url"] = target
    if content is None and method != "GET":
        content = json.dumps(BODY if body is None else body).encode()
    return httpx.request(method, f"{base}/api/fal/proxy", headers=sent, content=content)


def _refused(response: httpx.Response, status: int, words: str) -> None:
    """Assert a JSON refusal with ``status`` whose message contains ``words``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert words in body["detail"]
    assert body["message"] == body["detail"]


# Happy paths against the built-in backend.


async def test_proxy_token_opens_the_backend_socket(
    backend: LocalBackend, local_proxy: str
) -> None:
    """A token minted through the proxy opens the realtime socket and gets results."""
    response = _proxy(local_proxy, {"allowed_apps": [ALIAS], "token_expiration": 90})

    assert response.status_code == 201
    assert response.headers["cache-control"] == "no-store"
    token = response.json()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["allowed_apps"] == [ALIAS]
    assert claims["exp"] - claims["iat"] == pytest.approx(90)
    async with connect(socket_url(backend, token)) as ws:
        await ws.send(packed_input(seed=7))
        result = await next_result(ws)
    assert result["images"][0]["content"]


async def test_token_route_opens_the_backend_socket(
    backend: LocalBackend, local_proxy: str
) -> None:
    """The tokenProvider route answers a plain-text JWT that opens the socket."""
    response = httpx.post(
        f"{local_proxy}/api/fal/realtime-token",
        json={"app": f"{APP_ID}/realtime", "token_expiration": 30},
    )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.headers["cache-control"] == "no-store"
    claims = jwt.decode(response.text, options={"verify_signature": False})
    assert claims["allowed_apps"] == [ALIAS]
    assert claims["exp"] - claims["iat"] == pytest.approx(30)
    async with connect(socket_url(backend, response.text)) as ws:
        await ws.send(packed_input())
        assert (await next_result(ws))["images"]


def test_token_route_reads_the_app_from_the_query(local_proxy: str) -> None:
    """``?app=`` works with an empty body, and the lifetime is fal's 120 s."""
    response = httpx.post(
        f"{local_proxy}/api/fal/realtime-token", params={"app": APP_ID}
    )

    assert response.status_code == 200
    claims = jwt.decode(response.text, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == pytest.approx(120)


def test_proxy_caps_the_token_lifetime(local_proxy: str) -> None:
    """A longer lifetime than the cap is cut to it, not refused."""
    for route, payload in [
        ("proxy", {"allowed_apps": [ALIAS], "token_expiration": 86_400}),
        ("realtime-token", {"app": APP_ID, "token_expiration": 86_400}),
    ]:
        if route == "proxy":
            token = _proxy(local_proxy, payload).json()
        else:
            token = httpx.post(
                f"{local_proxy}/api/fal/realtime-token", json=payload
            ).text
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims["exp"] - claims["iat"] == pytest.approx(120)


# What is forwarded and what is not.


def test_proxy_forwards_only_fal_headers_with_the_server_key(
    recorded_proxy: tuple[str, TokenHost],
) -> None:
    """The caller's authorization, cookies and secret stay here; x-fal-* go on."""
    base, host = recorded_proxy
    response = _proxy(
        base,
        {**BODY, "allowed_paths": ["/x"]},
        headers={
            "Authorization": "Key caller-own-key-123456",
            "Cookie": "session=abc",
            "X-Fal-Request-Timeout": "30",
            "x-fal-stream-secret": "not-needed-here",
            "x-fal-client-proxy": "spoofed",
            "X-Other": "dropped",
        },
    )

    assert response.status_code == 201
    assert response.json() == "header.payload.signature"
    (headers, body) = host.seen[-1]
    assert headers["authorization"] == f"Key {KEY}"
    assert headers["x-fal-client-proxy"].startswith("fal_stream/")
    assert headers["x-fal-request-timeout"] == "30"
    assert headers["x-fal-target-url"] == TOKEN_URL
    assert headers["content-type"] == "application/json"
    for name in ("cookie", "x-other", "x-fal-stream-secret"):
        assert name not in headers
    assert "caller-own-key" not in json.dumps(headers)
    assert json.loads(body) == BODY


def test_proxy_returns_upstream_status_and_headers_less_hop_ones(
    recorded_proxy: tuple[str, TokenHost],
) -> None:
    """Status, body and headers come back, less length, encoding and cookies."""
    base, host = recorded_proxy
    host.status = 422
    host.body = json.dumps({"detail": f"bad request for Key {KEY}"}).encode()
    host.headers = {
        "content-type": "application/json",
        "x-fal-request-id": "req-1",
        "set-cookie": "tracking=1",
        "content-encoding": "identity",
    }

    response = _proxy(base)

    assert response.status_code == 422
    assert response.headers["x-fal-request-id"] == "req-1"
    assert "set-cookie" not in response.headers
    assert "content-encoding" not in response.headers
    assert KEY not in response.text
    assert response.json()["detail"] == "bad request for Key [redacted]"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308, 300])
def test_proxy_refuses_upstream_redirects(
    recorded_proxy: tuple[str, TokenHost], status: int
) -> None:
    """A redirect from the token host is not followed but answered 502."""
    base, host = recorded_proxy
    host.status = status
    host.headers = {"location": "https://evil.com/tokens/"}

    _refused(_proxy(base), 502, f"HTTP {status}, a redirect")
    assert len(host.seen) == 1
    _refused(
        httpx.post(f"{base}/api/fal/realtime-token", json={"app": APP_ID}),
        502,
        "a redirect",
    )


@pytest.mark.parametrize(
    ("status", "body", "words"),
    [
        (401, b'{"detail": "no"}', "refused this server's key (HTTP 401)"),
        (500, b"oops", "answered HTTP 500"),
        (201, b"not json", "without a token"),
        (201, b'{"other": 1}', "without a token"),
    ],
)
def test_token_route_maps_upstream_failures_to_502(
    recorded_proxy: tuple[str, TokenHost], status: int, body: bytes, words: str
) -> None:
    """A failed or odd mint is a 502 that says what the token host did."""
    base, host = recorded_proxy
    host.status, host.body = status, body

    response = httpx.post(f"{base}/api/fal/realtime-token", json={"app": APP_ID})

    _refused(response, 502, words)


def test_proxy_unreachable_token_host_is_502() -> None:
    """A token host that refuses connections gives 502 naming the failure."""
    with serving([]) as dead_url:
        pass
    with _serve_proxy(Upstream(KEY, dead_url)) as base:
        _refused(_proxy(base), 502, "could not reach the token host")


# Refusals, each with its status and message.


@pytest.mark.parametrize(
    "target",
    [
        "https://fal.run/fal-ai/fast-lcm-diffusion",
        "https://queue.fal.run/fal-ai/flux/dev",
        "https://rest.fal.ai.evil.com/tokens/",
        "https://evilfal.ai/tokens/",
        "https://rest.fal.ai@evil.com/tokens/",
        "https://rest.fal.ai%2eevil.com/tokens/",
        "https://rest.fal.ai\\@evil.com/tokens/",
        "https://REST.FAL.AI/tokens/",
        "https://rest.fal.ai:8443/tokens/",
        "http://rest.fal.ai/tokens/",
        "ftp://rest.fal.ai/tokens/",
        "javascript:alert(1)",
        "https://rest.fal.ai/tokens/../admin",
        "https://rest.fal.ai/tokens/?next=x",
    ],
)
def test_proxy_refuses_other_targets(
    recorded_proxy: tuple[str, TokenHost], target: str
) -> None:
    """Other hosts, look-alikes, schemes and paths are 403 and reach nothing."""
    base, host = recorded_proxy

    _refused(_proxy(base, target=target), 403, "is not allowed")
    assert host.seen == []


def test_proxy_refuses_a_missing_target(recorded_proxy: tuple[str, TokenHost]) -> None:
    """Without x-fal-target-url the answer is 400 naming the header."""
    base, _ = recorded_proxy

    _refused(_proxy(base, target=None), 400, "missing the x-fal-target-url header")


@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_proxy_token_url_takes_post_only(
    recorded_proxy: tuple[str, TokenHost], method: str
) -> None:
    """GET and PUT are routed but the token URL answers 405 to them."""
    base, host = recorded_proxy

    response = _proxy(base, method=method)

    _refused(response, 405, f"takes POST, not {method}")
    assert response.headers["allow"] == "POST"
    assert host.seen == []


@pytest.mark.parametrize(
    ("content", "status", "words"),
    [
        (b"{not json", 400, "the body must be JSON"),
        (b"[]", 400, "the body must be a JSON object"),
        (b'{"allowed_apps": ["flux"]}', 403, "does not mint tokens for 'flux'"),
        (b"x" * 70_000, 413, "the body is over"),
    ],
)
def test_proxy_refuses_bad_bodies(
    recorded_proxy: tuple[str, TokenHost], content: bytes, status: int, words: str
) -> None:
    """Malformed bodies, unserved apps and huge bodies are refused."""
    base, host = recorded_proxy

    _refused(_proxy(base, content=content), status, words)
    assert host.seen == []


@pytest.mark.parametrize(
    ("payload", "params", "status", "words"),
    [
        (None, None, 400, "name the app"),
        ({"app": "fal-ai/flux/dev"}, None, 403, "does not mint tokens for 'flux'"),
        (None, {"app": "fal-ai/flux/dev/realtime"}, 403, "does not mint"),
        ({"app": "flux"}, None, 400, "is not of the form"),
        ({"app": APP_ID, "token_expiration": -1}, None, 400, "token_expiration"),
    ],
)
def test_token_route_refusals(
    recorded_proxy: tuple[str, TokenHost],
    payload: Any,
    params: dict[str, str] | None,
    status: int,
    words: str,
) -> None:
    """The token route refuses a missing, malformed or unserved app."""
    base, host = recorded_proxy

    response = httpx.post(f"{base}/api/fal/realtime-token", json=payload, params=params)

    _refused(response, status, words)
    assert host.seen == []


def test_routes_refuse_other_origins(token_host: tuple[TokenHost, str]) -> None:
    """Another page's origin is 403 on both routes; same and listed origins pass."""
    host, host_url = token_host
    config = ProxyConfig(enabled=True, origins=("https://app.example.com",))
    with _serve_proxy(Upstream(KEY, host_url), config) as base:
        for origin in ("https://evil.com", "null", "http://localhost:1"):
            _refused(_proxy(base, headers={"Origin": origin}), 403, "origin")
            _refused(
                httpx.post(
                    f"{base}/api/fal/realtime-token",
                    json={"app": APP_ID},
                    headers={"Origin": origin},
                ),
                403,
                "FAL_STREAM_PROXY_ORIGINS",
            )
        assert host.seen == []

        assert _proxy(base, headers={"Origin": base}).status_code == 201
        listed = _proxy(base, headers={"Origin": "https://app.example.com"})
        assert listed.status_code == 201
        assert (
            listed.headers["access-control-allow-origin"] == "https://app.example.com"
        )
        preflight = httpx.options(
            f"{base}/api/fal/proxy",
            headers={
                "Origin": "https://app.example.com",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-fal-target-url",
            },
        )
        assert preflight.status_code == 204
        assert "x-fal-target-url" in preflight.headers["access-control-allow-headers"]
        evil = httpx.options(
            f"{base}/api/fal/proxy", headers={"Origin": "https://evil.com"}
        )
        _refused(evil, 403, "origin")


def test_routes_need_the_shared_secret(token_host: tuple[TokenHost, str]) -> None:
    """With a secret set, a missing or wrong header is 401 and the right one passes."""
    host, host_url = token_host
    config = ProxyConfig(enabled=True, secret="the-shared-secret-42")
    with _serve_proxy(Upstream(KEY, host_url), config) as base:
        for headers in ({}, {"x-fal-stream-secret": "wrong"}):
            response = _proxy(base, headers=headers)
            _refused(response, 401, "x-fal-stream-secret")
            assert "the-shared-secret-42" not in response.text
            _refused(
                httpx.post(
                    f"{base}/api/fal/realtime-token",
                    json={"app": APP_ID},
                    headers=headers,
                ),
                401,
                "FAL_STREAM_PROXY_SECRET",
            )
        assert host.seen == []

        good = {"x-fal-stream-secret": "the-shared-secret-42"}
        assert _proxy(base, headers=good).status_code == 201
        assert "x-fal-stream-secret" not in host.seen[-1][0]


def test_routes_rate_limit_per_client(token_host: tuple[TokenHost, str]) -> None:
    """Past the rate a mint is 429 with Retry-After, until the clock moves on."""
    host, host_url = token_host
    clock = FakeClock()
    config = ProxyConfig(enabled=True, rate_per_min=2)
    with _serve_proxy(Upstream(KEY, host_url), config, clock=clock) as base:
        assert _proxy(base).status_code == 201
        assert (
            httpx.post(
                f"{base}/api/fal/realtime-token", json={"app": APP_ID}
            ).status_code
            == 200
        )

        limited = _proxy(base)
        _refused(limited, 429, "too many token requests")
        assert limited.headers["retry-after"] == "30"
        _refused(
            httpx.post(f"{base}/api/fal/realtime-token", json={"app": APP_ID}),
            429,
            "retry in 30 s",
        )
        assert len(host.seen) == 2

        clock.now += 30
        assert _proxy(base).status_code == 201


def test_routes_without_a_key_answer_503(token_host: tuple[TokenHost, str]) -> None:
    """No key and no built-in backend: 503 telling to set FAL_KEY."""
    host, host_url = token_host
    with _serve_proxy(Upstream("", host_url)) as base:
        _refused(_proxy(base), 503, "the server has no fal key; set FAL_KEY")
        _refused(
            httpx.post(f"{base}/api/fal/realtime-token", json={"app": APP_ID}),
            503,
            "set FAL_KEY",
        )
    assert host.seen == []


def test_routes_keep_the_key_out_of_logs(
    recorded_proxy: tuple[str, TokenHost], caplog: pytest.LogCaptureFixture
) -> None:
    """Neither the key nor the token appears in any log record."""
    base, host = recorded_proxy
    token = jwt.encode({"sub": "x"}, "a test signing secret of 32 bytes", "HS256")
    host.body = json.dumps(token).encode()
    caplog.set_level(logging.DEBUG)

    _proxy(base)
    _proxy(base, target="https://evil.com/")
    httpx.post(f"{base}/api/fal/realtime-token", json={"app": APP_ID})

    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "proxy: minted for" in logged
    assert KEY not in logged
    assert token.rsplit(".", 1)[1] not in logged


# Built from a Runtime.


def test_proxy_routes_empty_when_disabled() -> None:
    """Off by default: no routes, so the paths are 404."""
    runtime = Runtime(Settings(fal_key=KEY, rest_url="http://127.0.0.1:9"))
    assert proxy_routes(runtime, ProxyConfig()) == []


def test_proxy_routes_mint_at_the_configured_rest_url(
    token_host: tuple[TokenHost, str],
) -> None:
    """With a key, tokens are minted at FAL_REST_URL with it, whichever fal URL is
    named, and FAL_REST_URL's own token URL may be named too."""
    host, host_url = token_host
    runtime = Runtime(
        Settings(fal_key=KEY, rest_url=host_url, app_id="fal-ai/lcm-sd15-i2i")
    )
    routes = proxy_routes(runtime, ON, apps=[APP_ID])
    with serving(routes) as base:
        for target in (TOKEN_URL, f"{host_url}/tokens/"):
            for alias in ("lcm-sd15-i2i", ALIAS):
                body = {"allowed_apps": [alias]}
                assert _proxy(base, body, target=target).status_code == 201
        _refused(_proxy(base, {"allowed_apps": ["flux"]}), 403, "flux")
    assert len(host.seen) == 4
    assert all(h["authorization"] == f"Key {KEY}" for h, _ in host.seen)


# Mounted on a Gradio app, as app.py does.


@contextlib.contextmanager
def gradio_app(routes: list[BaseRoute]) -> Iterator[str]:
    """Launch a throwaway Blocks on loopback with ``routes`` mounted beside it."""
    import gradio as gr

    with gr.Blocks() as demo:
        gr.Markdown("proxy test")
    _, url, _ = demo.launch(
        server_name="127.0.0.1",
        server_port=_free_port(),
        prevent_thread_lock=True,
        quiet=True,
        app_kwargs={"routes": routes},
    )
    try:
        yield url.rstrip("/")
    finally:
        demo.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_gradio_mount_serves_both_routes() -> None:
    """Passed as launch(app_kwargs={"routes": ...}), the routes work beside the UI,
    minting at the runtime's built-in backend."""
    runtime = Runtime(Settings(backend="local"))
    assert runtime.local is not None
    try:
        with gradio_app(proxy_routes(runtime, ON)) as base:
            assert httpx.get(base + "/").status_code == 200
            proxied = _proxy(base, headers={"Origin": base})
            assert proxied.status_code == 201
            from_route = httpx.post(
                f"{base}/api/fal/realtime-token",
                json={"app": f"{APP_ID}/realtime"},
                headers={"Origin": base},
            )
            assert from_route.status_code == 200
            _refused(
                _proxy(base, headers={"Origin": "https://evil.com"}), 403, "origin"
            )
            for token in (proxied.json(), from_route.text):
                async with connect(socket_url(runtime.local, token)) as ws:
                    await ws.send(packed_input())
                    assert (await next_result(ws))["images"]
    finally:
        await runtime.aclose()
        runtime.stop_backend()


async def test_gradio_mount_disabled_has_no_routes() -> None:
    """With the proxy off, both paths are 404 on the Gradio app."""
    # Async only so that Gradio finds a running loop rather than making one that
    # nothing closes.
    runtime = Runtime(Settings(fal_key=KEY, rest_url="http://127.0.0.1:9"))
    with gradio_app(
        proxy_routes(runtime, ProxyConfig.from_env({}, dotenv_path=None))
    ) as base:
        assert _proxy(base).status_code == 404
        assert httpx.post(f"{base}/api/fal/realtime-token").status_code == 404
