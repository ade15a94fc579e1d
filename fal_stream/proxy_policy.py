"""What the fal proxy routes accept, decided without any I/O.

fal's browser and mobile clients mint realtime tokens through a server that holds
the key. Whoever can reach that server can spend the key owner's credit, so every
request passes these checks before anything is forwarded: the page's origin, an
optional shared secret, the target URL (only the realtime token URL), the apps a
token may be minted for, its lifetime, and a per-client rate limit.
"""

from __future__ import annotations

import hmac
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from dotenv import dotenv_values

from .endpoints import DEFAULT_REALTIME_PATH, DEFAULT_REST_URL, AppId, token_url
from .errors import BadInputError, ConfigError, FalStreamError

SECRET_HEADER = "x-fal-stream-secret"
DEFAULT_RATE_PER_MIN = 30
DEFAULT_MAX_TOKEN_S = 120
# The lifetime fal's clients ask for when the caller does not say.
DEFAULT_TOKEN_S = 120
# fal's Swift client still mints at the host fal used before February 2026.
FAL_TOKEN_URLS = (token_url(DEFAULT_REST_URL), "https://rest.alpha.fal.ai/tokens/")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-")


class Refusal(FalStreamError):
    """A proxy request is refused; the route answers ``status`` with the message.

    Attributes:
        status: The HTTP status to answer.
        headers: Extra response headers, such as ``Retry-After``.
    """

    def __init__(
        self, status: int, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.headers = dict(headers or {})


@dataclass(frozen=True)
class ProxyConfig:
    """How the fal proxy routes behave; they are off unless ``enabled``.

    Attributes:
        enabled: Whether the routes are mounted (``FAL_STREAM_PROXY=1``).
        origins: Origins allowed besides the server's own, such as
            ``https://app.example.com`` (``FAL_STREAM_PROXY_ORIGINS``, comma
            separated). A request with no ``Origin`` header (a native app, a
            script) is not refused for it: only browsers send one, and outside a
            browser it can be forged, so the secret and the rate limit are what
            guard such callers.
        secret: When set, every request must carry it in the
            ``x-fal-stream-secret`` header (``FAL_STREAM_PROXY_SECRET``).
        rate_per_min: Tokens minted per client address per minute, at most
            (``FAL_STREAM_PROXY_RATE``).
        max_token_s: Longest token lifetime handed out, in seconds; longer asks
            are cut to it (``FAL_STREAM_PROXY_MAX_TOKEN_S``).
        apps: App ids tokens may be minted for, besides the server's own
            (``FAL_STREAM_PROXY_APPS``, comma separated).
        forwarded_hops: Reverse proxies in front of this server; with ``n`` > 0
            the client address is the ``n``-th entry from the right of
            ``X-Forwarded-For`` (``FAL_STREAM_PROXY_FORWARDED_HOPS``).
    """

    enabled: bool = False
    origins: tuple[str, ...] = ()
    secret: str = field(default="", repr=False)
    rate_per_min: int = DEFAULT_RATE_PER_MIN
    max_token_s: int = DEFAULT_MAX_TOKEN_S
    apps: tuple[str, ...] = ()
    forwarded_hops: int = 0

    def __post_init__(self) -> None:
        for origin in self.origins:
            if normalize_origin(origin) != origin:
                raise ConfigError(
                    f"proxy origin {origin[:80]!r} must look like "
                    "'https://host' or 'http://host:port', with no path"
                )
        for app in self.apps:
            try:
                AppId.parse(app)
            except BadInputError as exc:
                raise ConfigError(f"FAL_STREAM_PROXY_APPS: {exc}") from None
        if not 1 <= self.rate_per_min <= 10_000:
            raise ConfigError(f"proxy rate must be 1 to 10000, not {self.rate_per_min}")
        if not 10 <= self.max_token_s <= 3600:
            raise ConfigError(
                f"proxy max token lifetime must be 10 to 3600 s, not {self.max_token_s}"
            )
        if not 0 <= self.forwarded_hops <= 5:
            raise ConfigError(
                f"forwarded hops must be 0 to 5, not {self.forwarded_hops}"
            )

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        dotenv_path: str | os.PathLike[str] | None = ".env",
    ) -> ProxyConfig:
        """Read the proxy settings from ``environ`` (default ``os.environ``) and a
        ``.env`` file, the environment winning, as :meth:`Settings.from_env` does.

        Raises:
            ConfigError: A value is malformed or out of range.
        """
        env: dict[str, str] = {}
        if dotenv_path is not None and os.path.exists(dotenv_path):
            env.update(
                {k: v for k, v in dotenv_values(dotenv_path).items() if v is not None}
            )
        env.update(os.environ if environ is None else environ)

        def get(name: str) -> str:
            return env.get(name, "").strip()

        def number(name: str, default: int) -> int:
            raw = get(name)
            try:
                return int(raw) if raw else default
            except ValueError:
                raise ConfigError(
                    f"{name}={raw[:40]!r} is not a whole number"
                ) from None

        def items(name: str) -> tuple[str, ...]:
            return tuple(item.strip() for item in get(name).split(",") if item.strip())

        return cls(
            enabled=get("FAL_STREAM_PROXY").lower() in ("1", "true", "yes", "on"),
            origins=tuple(o.rstrip("/") for o in items("FAL_STREAM_PROXY_ORIGINS")),
            secret=get("FAL_STREAM_PROXY_SECRET"),
            rate_per_min=number("FAL_STREAM_PROXY_RATE", DEFAULT_RATE_PER_MIN),
            max_token_s=number("FAL_STREAM_PROXY_MAX_TOKEN_S", DEFAULT_MAX_TOKEN_S),
            apps=items("FAL_STREAM_PROXY_APPS"),
            forwarded_hops=number("FAL_STREAM_PROXY_FORWARDED_HOPS", 0),
        )


def allowed_aliases(app_ids: Iterable[str]) -> frozenset[str]:
    """Return the token aliases of ``app_ids``, the only ones minted for."""
    return frozenset(AppId.parse(app).alias for app in app_ids)


# Origins and secrets.


def normalize_origin(origin: str) -> str:
    """Return ``origin`` as ``scheme://host[:port]`` in lower case, default port
    dropped, or ``""`` when it is not a plain http(s) origin."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return ""
    host = parts.hostname or ""
    if (
        parts.scheme not in _DEFAULT_PORTS
        or not host
        or parts.username is not None
        or parts.path
        or parts.query
        or parts.fragment
        or not _plain_host(host.strip("[]"), allow_colon=True)
    ):
        return ""
    if ":" in host:
        host = f"[{host}]"
    shown_port = "" if port in (None, _DEFAULT_PORTS[parts.scheme]) else f":{port}"
    return f"{parts.scheme}://{host}{shown_port}"


def check_origin(origin: str | None, host: str | None, allowed: Iterable[str]) -> None:
    """Refuse a browser request from a page that is not allowed.

    A page served by this very host passes whatever its scheme: behind a reverse
    proxy that ends TLS the server sees ``http`` while the page is ``https``.

    Args:
        origin: The request's ``Origin`` header; ``None`` passes (not a browser).
        host: The request's ``Host`` header.
        allowed: Further origins that pass, already normalized.

    Raises:
        Refusal: 403 with the refused origin named.
    """
    if origin is None:
        return
    seen = normalize_origin(origin)
    own = {_netloc(normalize_origin(f"{s}://{host}")) for s in _DEFAULT_PORTS}
    if seen and (_netloc(seen) in own - {""} or seen in allowed):
        return
    raise Refusal(
        403,
        f"origin {origin[:100]!r} may not use this proxy; add it to "
        "FAL_STREAM_PROXY_ORIGINS to allow it",
    )


def _netloc(origin: str) -> str:
    return origin.partition("://")[2]


def check_secret(offered: str | None, secret: str) -> None:
    """Refuse a request without the shared secret, when one is configured.

    Raises:
        Refusal: 401 when the header is missing or wrong.
    """
    if not secret:
        return
    # Constant-time, so that response timing does not reveal the secret.
    if offered is None or not hmac.compare_digest(offered.encode(), secret.encode()):
        raise Refusal(
            401,
            f"missing or wrong {SECRET_HEADER} header; this proxy needs the shared "
            "secret its operator set in FAL_STREAM_PROXY_SECRET",
        )


# Targets.


def check_target(target: str | None, allowed_urls: Iterable[str]) -> None:
    """Refuse any ``x-fal-target-url`` that is not exactly an allowed URL.

    Each URL is split with :func:`urllib.parse.urlsplit` and compared on scheme,
    host, port and path, after refusing every character a look-alike could hide
    behind: percent escapes, backslashes, spaces, non-ASCII, user-info, a query
    or a fragment.

    Raises:
        Refusal: 400 when the header is missing, 403 when the URL is not allowed.
    """
    if target is None or not target.strip():
        raise Refusal(
            400,
            "missing the x-fal-target-url header; fal's clients set it when "
            "configured with proxyUrl",
        )
    wanted = _url_key(target)
    if wanted is None or wanted not in {_url_key(url) for url in allowed_urls}:
        shown = ", ".join(sorted(set(allowed_urls)))
        raise Refusal(
            403,
            f"target {target[:120]!r} is not allowed; this proxy only mints "
            f"realtime tokens at {shown}",
        )


def _url_key(url: str) -> tuple[str, str, int, str] | None:
    """Return ``(scheme, host, port, path)`` of a plain URL, else ``None``."""
    if not url.isascii() or not url.isprintable() or any(c in url for c in " \\%"):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname or ""
    # urlsplit lower-cases the scheme and host; an upper-case original is refused
    # rather than folded, so that only the one spelling passes.
    head = url[: len(parts.scheme) + 3 + len(parts.netloc)]
    if (
        head != head.lower()
        or parts.scheme not in _DEFAULT_PORTS
        or "@" in parts.netloc
        or parts.query
        or parts.fragment
        or "?" in url
        or "#" in url
        or not _plain_host(host)
        or "/." in parts.path
    ):
        return None
    default = _DEFAULT_PORTS[parts.scheme]
    return (parts.scheme, host, default if port is None else port, parts.path)


def _plain_host(host: str, *, allow_colon: bool = False) -> bool:
    """Whether ``host`` is a lower-case ASCII name or address, no trailing dot."""
    chars = _HOST_CHARS | ({":"} if allow_colon else set())
    return bool(host) and set(host) <= chars and not host.endswith(".")


# Token requests.


def token_body(body: Any, aliases: frozenset[str], max_token_s: int) -> dict[str, Any]:
    """Check a token request body and return the one to forward.

    Only ``allowed_apps`` and ``token_expiration`` are forwarded; the lifetime is
    cut to ``max_token_s``, and defaults to fal's 120 s (or less) when absent.

    Raises:
        Refusal: 400 for a malformed body, 403 for an app not served here.
    """
    if not isinstance(body, dict):
        raise Refusal(
            400,
            "the body must be a JSON object such as "
            '{"allowed_apps": ["fast-lcm-diffusion"], "token_expiration": 120}',
        )
    apps = body.get("allowed_apps")
    if (
        not isinstance(apps, list)
        or not apps
        or not all(isinstance(a, str) for a in apps)
    ):
        raise Refusal(400, "allowed_apps must be a non-empty list of app aliases")
    for app in apps:
        if app not in aliases:
            raise Refusal(403, _not_served(app, aliases))
    return {
        "allowed_apps": list(dict.fromkeys(apps)),
        "token_expiration": capped_lifetime(body.get("token_expiration"), max_token_s),
    }


def capped_lifetime(asked: Any, max_token_s: int) -> int:
    """Return the token lifetime to mint, in whole seconds, at most ``max_token_s``.

    Raises:
        Refusal: 400 when ``asked`` is given and is not a positive number.
    """
    if asked is None:
        return min(DEFAULT_TOKEN_S, max_token_s)
    if (
        isinstance(asked, bool)
        or not isinstance(asked, int | float)
        or not math.isfinite(asked)
        or asked < 1
    ):
        raise Refusal(
            400,
            f"token_expiration must be a positive number of seconds, not {asked!r:.40}",
        )
    return min(int(asked), max_token_s)


def token_app(requested: Any, aliases: frozenset[str]) -> AppId:
    """Parse the app a ``tokenProvider`` asks for and check that it is served.

    fal's JavaScript client (1.9.2 on) passes the app id with its realtime path,
    such as ``fal-ai/fast-lcm-diffusion/image-to-image/realtime``; the path is
    dropped.

    Raises:
        Refusal: 400 for a missing or malformed id, 403 for an app not served.
    """
    if not isinstance(requested, str) or not requested.strip():
        raise Refusal(
            400,
            'name the app: JSON body {"app": "owner/alias"} or query ?app=owner/alias',
        )
    text = requested.strip().rstrip("/")
    if text.endswith(DEFAULT_REALTIME_PATH):
        text = text[: -len(DEFAULT_REALTIME_PATH)]
    try:
        app = AppId.parse(text)
    except BadInputError as exc:
        raise Refusal(400, str(exc)) from None
    if app.alias not in aliases:
        raise Refusal(403, _not_served(app.alias, aliases))
    return app


def _not_served(alias: str, aliases: frozenset[str]) -> str:
    return (
        f"this server does not mint tokens for {alias[:80]!r}; it serves "
        f"{', '.join(sorted(aliases))} (add app ids to FAL_STREAM_PROXY_APPS)"
    )
