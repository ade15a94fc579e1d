"""fal's server proxy and a realtime token route, to mount beside the Gradio app.

fal's JavaScript client, configured with ``proxyUrl``, sends each REST request to
``/api/fal/proxy`` with the real URL in ``x-fal-target-url``; for realtime that is
one request, ``POST https://rest.fal.ai/tokens/``. Its ``tokenProvider`` option
calls an endpoint of the app's own instead, here ``/api/fal/realtime-token``.
Both mint a short-lived JWT with the key this server holds, so the page never
sees the key and opens the model's socket itself.

Only the token URL is served. The target only selects that action: the request
is always sent to this server's own token host (``FAL_REST_URL``, or the built-in
backend when no key is set), never to the URL the caller wrote, so no caller can
aim the key at another host.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from .endpoints import token_url
from .errors import TokenError
from .proxy_policy import (
    FAL_TOKEN_URLS,
    SECRET_HEADER,
    ProxyConfig,
    Refusal,
    allowed_aliases,
    capped_lifetime,
    check_origin,
    check_secret,
    check_target,
    normalize_origin,
    token_app,
    token_body,
)
from .ratelimit import RateLimiter, client_address
from .redact import scrub
from .runtime import Runtime
from .tokens import Clock, parse_token_response

logger = logging.getLogger(__name__)

PROXY_PATH = "/api/fal/proxy"
TOKEN_PATH = "/api/fal/realtime-token"
TARGET_HEADER = "x-fal-target-url"
CLIENT_PROXY_HEADER = "x-fal-client-proxy"
MAX_BODY_BYTES = 64 * 1024
UPSTREAM_TIMEOUT_S = 10.0
# Never copied from the token host's answer: they describe that hop, or would
# set cookies of another site on ours.
_DROPPED_RESPONSE_HEADERS = frozenset(
    [
        "content-length",
        "content-encoding",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "upgrade",
        "set-cookie",
        "date",
        "server",
    ]
)
_NOT_FORWARDED = frozenset({SECRET_HEADER, CLIENT_PROXY_HEADER})


def _version() -> str:
    try:
        return metadata.version("fal_stream")
    except metadata.PackageNotFoundError:
        return "dev"


CLIENT_PROXY_ID = f"fal_stream/{_version()}"


@dataclass(frozen=True)
class Upstream:
    """The token host the proxy mints at, and the key it mints with.

    Attributes:
        key: The fal key, or the built-in backend's; ``""`` means none, and every
            mint is answered 503.
        rest_url: Base URL of the token host.
    """

    key: str = field(repr=False)
    rest_url: str

    @classmethod
    def of(cls, runtime: Runtime) -> Upstream:
        """Return where ``runtime`` mints: the built-in backend when it runs one."""
        if runtime.local is not None:
            return cls(runtime.local.key, runtime.local.rest_url)
        return cls(runtime.settings.fal_key, runtime.settings.rest_url)


class FalProxy:
    """The two routes' handlers, sharing one policy and one rate limit.

    Args:
        upstream: Where and with which key tokens are minted.
        config: Origins, secret, rate and lifetime cap.
        apps: App ids tokens may be minted for (``config.apps`` are added).
        target_urls: Token URLs a proxied request may name; all of them mint at
            ``upstream``.
        clock: Monotonic clock for the rate limit.
    """

    def __init__(
        self,
        upstream: Upstream,
        config: ProxyConfig,
        *,
        apps: Iterable[str] = (),
        target_urls: Iterable[str] = FAL_TOKEN_URLS,
        clock: Clock = time.monotonic,
    ) -> None:
        self._upstream = upstream
        self._config = config
        self._aliases = allowed_aliases([*apps, *config.apps])
        self._targets = tuple(dict.fromkeys(target_urls))
        self._limiter = RateLimiter(config.rate_per_min, clock)

    def routes(self) -> list[BaseRoute]:
        """Return the Starlette routes at :data:`PROXY_PATH` and :data:`TOKEN_PATH`."""
        return [
            Route(PROXY_PATH, self.proxy, methods=["GET", "POST", "PUT", "OPTIONS"]),
            Route(TOKEN_PATH, self.realtime_token, methods=["POST", "OPTIONS"]),
        ]

    async def proxy(self, request: Request) -> Response:
        """Answer fal's proxy contract for the realtime token URL only."""
        try:
            if request.method == "OPTIONS":
                return self._preflight(request)
            self._admit(request)
            check_target(request.headers.get(TARGET_HEADER), self._targets)
            if request.method != "POST":
                raise Refusal(
                    405,
                    f"the token URL takes POST, not {request.method}",
                    {"Allow": "POST"},
                )
            body = token_body(
                await _json_body(request), self._aliases, self._config.max_token_s
            )
            self._spend(request)
            response = await self._mint(body, _forwarded_headers(request))
            _refuse_redirect(response)
        except Refusal as refusal:
            return self._refuse(request, refusal)
        logger.info(
            "proxy: minted for %s, HTTP %d", body["allowed_apps"], response.status_code
        )
        headers = {
            name: value
            for name, value in response.headers.items()
            if name.lower() not in _DROPPED_RESPONSE_HEADERS
        }
        return self._with_cors(
            request,
            Response(
                self._scrubbed(response.content),
                status_code=response.status_code,
                headers=headers | {"cache-control": "no-store"},
            ),
        )

    async def realtime_token(self, request: Request) -> Response:
        """Mint a token for the app named by ``app`` and answer it as plain text."""
        try:
            if request.method == "OPTIONS":
                return self._preflight(request)
            self._admit(request)
            asked = await _json_body(request, required=False)
            fields = asked if isinstance(asked, dict) else {}
            app = token_app(
                fields.get("app", request.query_params.get("app")), self._aliases
            )
            lifetime_s = capped_lifetime(
                fields.get("token_expiration"), self._config.max_token_s
            )
            self._spend(request)
            body = {"allowed_apps": [app.alias], "token_expiration": lifetime_s}
            response = await self._mint(body, {})
            token = _token_from(response)
        except Refusal as refusal:
            return self._refuse(request, refusal)
        logger.info("token route: minted for %s, %d s", app.alias, lifetime_s)
        return self._with_cors(
            request,
            PlainTextResponse(token, headers={"cache-control": "no-store"}),
        )

    # The checks every request passes.

    def _admit(self, request: Request) -> None:
        check_origin(
            request.headers.get("origin"),
            request.headers.get("host"),
            self._config.origins,
        )
        check_secret(request.headers.get(SECRET_HEADER), self._config.secret)

    def _spend(self, request: Request) -> None:
        if not self._upstream.key:
            raise Refusal(
                503,
                "the server has no fal key; set FAL_KEY, or run without one to use "
                "the built-in backend",
            )
        peer = request.client.host if request.client else None
        address = client_address(
            peer, request.headers.get("x-forwarded-for"), self._config.forwarded_hops
        )
        wait_s = self._limiter.acquire(address)
        if wait_s is not None:
            raise Refusal(
                429,
                f"too many token requests from this address; retry in {wait_s} s",
                {"Retry-After": str(wait_s)},
            )

    async def _mint(
        self, body: dict[str, Any], headers: dict[str, str]
    ) -> httpx.Response:
        """POST ``body`` to the token host with the key; redirects are returned."""
        headers = headers | {
            "authorization": f"Key {self._upstream.key}",
            "content-type": "application/json",
            "accept": "application/json",
            CLIENT_PROXY_HEADER: CLIENT_PROXY_ID,
        }
        url = token_url(self._upstream.rest_url)
        try:
            async with httpx.AsyncClient(
                follow_redirects=False, timeout=UPSTREAM_TIMEOUT_S
            ) as client:
                return await client.post(
                    url, content=json.dumps(body).encode(), headers=headers
                )
        except httpx.TimeoutException:
            raise Refusal(504, "the token host did not answer in time") from None
        except httpx.HTTPError as exc:
            raise Refusal(
                502, f"could not reach the token host ({type(exc).__name__})"
            ) from None

    # Answers.

    def _refuse(self, request: Request, refusal: Refusal) -> Response:
        message = self._scrubbed_text(str(refusal))
        logger.info(
            "%s %s refused with %d: %s",
            request.method,
            request.url.path,
            refusal.status,
            message,
        )
        # fal's JavaScript client shows "message"; FastAPI-style clients "detail".
        return self._with_cors(
            request,
            JSONResponse(
                {"detail": message, "message": message},
                status_code=refusal.status,
                headers=refusal.headers,
            ),
        )

    def _preflight(self, request: Request) -> Response:
        """Answer a CORS preflight when this app has no CORS layer (Gradio has)."""
        check_origin(
            request.headers.get("origin"),
            request.headers.get("host"),
            self._config.origins,
        )
        headers = {
            "access-control-allow-methods": "GET, POST, PUT",
            "access-control-allow-headers": request.headers.get(
                "access-control-request-headers", ""
            ),
            "access-control-max-age": "600",
        }
        return self._with_cors(request, Response(status_code=204, headers=headers))

    def _with_cors(self, request: Request, response: Response) -> Response:
        origin = request.headers.get("origin")
        if origin is not None and normalize_origin(origin) in self._config.origins:
            response.headers["access-control-allow-origin"] = origin
            response.headers["vary"] = "Origin"
        return response

    def _scrubbed(self, content: bytes) -> bytes:
        # The token host has no reason to echo the key; make sure it never would.
        key = self._upstream.key.encode()
        return content.replace(key, b"[redacted]") if key else content

    def _scrubbed_text(self, text: str) -> str:
        return scrub(text, self._upstream.key, self._config.secret)


def proxy_routes(
    runtime: Runtime,
    config: ProxyConfig,
    *,
    apps: Iterable[str] = (),
    clock: Clock = time.monotonic,
) -> list[BaseRoute]:
    """Return the proxy routes for ``runtime``, or none when ``config`` is off.

    Tokens are minted for the runtime's app, ``apps`` and ``config.apps``, at the
    runtime's token host: the built-in backend when it has one, else
    ``FAL_REST_URL``. A proxied request may name ``https://rest.fal.ai/tokens/``,
    the older ``rest.alpha.fal.ai`` one, or ``FAL_REST_URL``'s.

    Args:
        runtime: The running app's shared parts.
        config: The proxy settings, usually :meth:`ProxyConfig.from_env`.
        apps: More app ids to mint for, such as the app's model menu.
        clock: Monotonic clock for the rate limit.
    """
    if not config.enabled:
        return []
    settings = runtime.settings
    service = FalProxy(
        Upstream.of(runtime),
        config,
        apps=[settings.app_id, *apps],
        target_urls=[*FAL_TOKEN_URLS, token_url(settings.rest_url)],
        clock=clock,
    )
    logger.info(
        "fal proxy on at %s and %s; extra origins: %s",
        PROXY_PATH,
        TOKEN_PATH,
        ", ".join(config.origins) or "none",
    )
    return service.routes()


def _forwarded_headers(request: Request) -> dict[str, str]:
    """The caller's ``x-fal-*`` headers, lower-cased, less our own."""
    return {
        name.lower(): value
        for name, value in request.headers.items()
        if name.lower().startswith("x-fal-") and name.lower() not in _NOT_FORWARDED
    }


async def _json_body(request: Request, *, required: bool = True) -> Any:
    """Read a small JSON body; ``None`` for an empty one unless ``required``."""
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise Refusal(413, f"the body is over {MAX_BODY_BYTES} bytes")
    if not raw.strip() and not required:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise Refusal(400, "the body must be JSON") from None


def _token_from(response: httpx.Response) -> str:
    """Take the JWT out of a token host answer, or refuse with 502."""
    _refuse_redirect(response)
    if response.status_code in (401, 403):
        raise Refusal(
            502,
            f"the token host refused this server's key (HTTP {response.status_code}); "
            "check FAL_KEY",
        )
    if not response.is_success:
        raise Refusal(502, f"the token host answered HTTP {response.status_code}")
    try:
        return parse_token_response(response.json())
    except (ValueError, TokenError):
        raise Refusal(502, "the token host answered without a token") from None


def _refuse_redirect(response: httpx.Response) -> None:
    # Following a redirect would carry the key wherever it points.
    if 300 <= response.status_code < 400:
        raise Refusal(
            502,
            f"the token host answered HTTP {response.status_code}, a redirect, "
            "which this proxy does not follow",
        )
