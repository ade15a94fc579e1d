"""Short-lived realtime tokens: minted with the key, cached, refreshed ahead of time.

The key stays on this server. Each realtime connection carries a JWT that fal mints
for one app alias and a short lifetime. fal's Python client mints one per connection
and never refreshes; its JavaScript client took three releases to stop reconnecting
with stale tokens. Here a token is minted once per alias, refreshed in the
background at 90% of its life while it is in use, and dropped the moment fal
refuses it, so a reconnect rarely waits for a mint and never retries a bad token.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import jwt

from .endpoints import DEFAULT_REST_URL, AppId, token_url
from .errors import AuthError, ConfigError, TokenError
from .redact import scrub

logger = logging.getLogger(__name__)

REFRESH_AT_FRACTION = 0.9
RETRY_AFTER_FRACTION = 0.05
# A token this close to its expiry is not handed out for a new connection.
FRESH_MARGIN_FRACTION = 0.05
MINT_ATTEMPTS = 4
BACKOFF_BASE_S = 0.25
BACKOFF_CAP_S = 4.0
REQUEST_TIMEOUT_S = 10.0
_RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class Clock(Protocol):
    """A monotonic clock in seconds, such as :func:`time.monotonic`."""

    def __call__(self) -> float: ...


class TokenSource(Protocol):
    """What a realtime session needs from a token provider."""

    async def token(self, app: AppId) -> str:
        """Return a token fresh enough to open a connection to ``app``."""
        ...

    def discard(self, app: AppId, token: str) -> None:
        """Forget ``token`` because fal refused it."""
        ...


@dataclass(frozen=True)
class Token:
    """A realtime token and the span it is good for, on the manager's clock."""

    value: str = field(repr=False)
    alias: str
    issued_at: float
    expires_at: float

    @property
    def lifetime_s(self) -> float:
        return self.expires_at - self.issued_at

    def refresh_at(self) -> float:
        """When a background refresh should replace this token."""
        return self.issued_at + REFRESH_AT_FRACTION * self.lifetime_s

    def is_fresh(self, now: float) -> bool:
        """Whether a new connection may still be opened with this token."""
        return now < self.expires_at - FRESH_MARGIN_FRACTION * self.lifetime_s


def retry_delay_s(token: Token) -> float:
    """How long to wait before retrying a failed refresh of ``token``."""
    return RETRY_AFTER_FRACTION * token.lifetime_s


def backoff_s(attempt: int, rand: Callable[[], float] = random.random) -> float:
    """Capped exponential backoff with jitter for mint attempt ``attempt`` (from 0)."""
    ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2.0**attempt)
    return ceiling * (0.5 + rand() / 2)


def parse_token_response(body: Any) -> str:
    """Take the JWT out of a token answer: a JSON string, or a ``token`` or
    ``detail`` field.

    Raises:
        TokenError: The answer holds no token.
    """
    if isinstance(body, str) and body:
        return body
    if isinstance(body, dict):
        for name in ("token", "detail"):
            value = body.get(name)
            if isinstance(value, str) and value:
                return value
    raise TokenError("the token endpoint answered without a token")


def token_expiry_s(value: str) -> float | None:
    """Read the seconds left before ``value`` expires from its ``exp`` claim.

    The signature is not checked: the expiry only tells when to refresh, and fal
    checks the token itself. Returns ``None`` when the token carries no expiry.
    """
    try:
        claims = jwt.decode(value, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    exp = claims.get("exp")
    if not isinstance(exp, int | float):
        return None
    return float(exp) - time.time()


class TokenManager:
    """Mints, caches and refreshes realtime tokens for any number of apps.

    Safe to share between sessions on one event loop. Callers asking at once for
    the same alias share a single request.

    Args:
        key: The fal key, ``"id:secret"`` or a single string.
        rest_url: Base URL of the REST API that mints tokens.
        lifetime_s: Lifetime to ask for; the ``exp`` claim of the answer wins when
            it is sooner.
        http: Client to mint with; by default one is made and closed by
            :meth:`aclose`.
        clock: Monotonic clock, replaceable in tests.
        refresh: Whether to refresh tokens in the background while in use.

    Raises:
        ConfigError: ``key`` is empty.
    """

    def __init__(
        self,
        key: str,
        *,
        rest_url: str = DEFAULT_REST_URL,
        lifetime_s: float = 120.0,
        http: httpx.AsyncClient | None = None,
        clock: Clock = time.monotonic,
        refresh: bool = True,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not key.strip():
            raise ConfigError(
                "no fal key: set FAL_KEY (or FAL_KEY_ID and FAL_KEY_SECRET), or use "
                "the built-in backend (fal_stream.backend.LocalBackend)"
            )
        self._key = key
        self._url = token_url(rest_url)
        self._lifetime_s = lifetime_s
        self._http = http or httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S)
        self._owns_http = http is None
        self._clock = clock
        self._refresh = refresh
        self._sleep = sleep
        self._tokens: dict[str, Token] = {}
        self._minting: dict[str, asyncio.Task[Token]] = {}
        self._refreshers: dict[str, asyncio.Task[None]] = {}
        self._last_used: dict[str, float] = {}
        self.mints = 0
        self.discards = 0

    async def token(self, app: AppId) -> str:
        """Return a fresh token for ``app``, minting one only when needed.

        Blocks only while a mint is under way.

        Raises:
            AuthError: fal refused the key.
            TokenError: No token could be minted after retries.
        """
        now = self._clock()
        self._last_used[app.alias] = now
        cached = self._tokens.get(app.alias)
        if cached is not None and cached.is_fresh(now):
            return cached.value
        return (await self._mint_shared(app.alias)).value

    def cached(self, app: AppId) -> Token | None:
        """The token held for ``app``, fresh or not, without minting."""
        return self._tokens.get(app.alias)

    def discard(self, app: AppId, token: str) -> None:
        """Forget ``token`` so the next connection is given a new one."""
        held = self._tokens.get(app.alias)
        if held is not None and held.value == token:
            del self._tokens[app.alias]
            self.discards += 1
            logger.info("dropped a refused token for %s", app.alias)

    async def aclose(self) -> None:
        """Stop background refreshes and close the HTTP client if it is ours."""
        tasks = [*self._refreshers.values(), *self._minting.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._refreshers.clear()
        self._minting.clear()
        if self._owns_http:
            await self._http.aclose()

    async def _mint_shared(self, alias: str) -> Token:
        task = self._minting.get(alias)
        if task is None:
            task = asyncio.create_task(self._mint(alias))
            self._minting[alias] = task
            task.add_done_callback(lambda _: self._minting.pop(alias, None))
        # Shielded: one caller giving up must not cancel the mint the others await.
        return await asyncio.shield(task)

    async def _mint(self, alias: str) -> Token:
        body = {"allowed_apps": [alias], "token_expiration": int(self._lifetime_s)}
        headers = {"Authorization": f"Key {self._key}"}
        for attempt in range(MINT_ATTEMPTS):
            last = attempt == MINT_ATTEMPTS - 1
            try:
                response = await self._http.post(self._url, json=body, headers=headers)
            except httpx.HTTPError as exc:
                problem = f"could not reach the token endpoint ({type(exc).__name__})"
                if last:
                    raise TokenError(
                        problem + "; check the network and FAL_REST_URL"
                    ) from exc
                await self._wait_before_retry(alias, attempt, problem)
                continue
            if response.is_success:
                return self._store(alias, _json(response))
            if response.status_code in (401, 403):
                raise AuthError(
                    f"fal refused the key (HTTP {response.status_code}): check that "
                    "FAL_KEY is a valid key of your fal account",
                    status=response.status_code,
                )
            problem = f"the token endpoint answered HTTP {response.status_code}"
            if response.status_code not in _RETRYABLE_STATUS or last:
                detail = scrub(response.text[:200], self._key)
                raise TokenError(f"{problem}: {detail}", status=response.status_code)
            await self._wait_before_retry(
                alias, attempt, problem, response.headers.get("retry-after")
            )
        raise AssertionError("unreachable")  # pragma: no cover

    async def _wait_before_retry(
        self, alias: str, attempt: int, problem: str, retry_after: str | None = None
    ) -> None:
        delay = backoff_s(attempt)
        if retry_after is not None and retry_after.isdigit():
            delay = max(delay, min(float(retry_after), BACKOFF_CAP_S))
        logger.warning("%s for %s; retrying in %.2f s", problem, alias, delay)
        await self._sleep(delay)

    def _store(self, alias: str, body: Any) -> Token:
        value = parse_token_response(body)
        now = self._clock()
        lifetime = self._lifetime_s
        left = token_expiry_s(value)
        if left is not None:
            lifetime = max(0.0, min(lifetime, left))
        token = Token(value, alias, issued_at=now, expires_at=now + lifetime)
        self._tokens[alias] = token
        self.mints += 1
        logger.info("minted a token for %s, good for %.0f s", alias, lifetime)
        if self._refresh and alias not in self._refreshers:
            task = asyncio.create_task(self._refresh_loop(alias))
            self._refreshers[alias] = task
            task.add_done_callback(lambda _: self._refreshers.pop(alias, None))
        return token

    async def _refresh_loop(self, alias: str) -> None:
        """Keep a fresh token for ``alias`` while sessions keep asking for it."""
        while (token := self._tokens.get(alias)) is not None:
            await self._sleep(max(0.0, token.refresh_at() - self._clock()))
            if self._tokens.get(alias) is not token:
                continue  # replaced or dropped meanwhile
            if self._clock() - self._last_used.get(alias, -1e18) > token.lifetime_s:
                logger.debug(
                    "token for %s unused for a lifetime; not refreshing", alias
                )
                return
            try:
                await self._mint_shared(alias)
            except AuthError:
                self._tokens.pop(alias, None)
                logger.error("refresh for %s refused: the key was refused", alias)
                return
            except TokenError as exc:
                if not token.is_fresh(self._clock()):
                    self._tokens.pop(alias, None)
                    logger.warning("refresh for %s failed (%s); dropped", alias, exc)
                    return
                logger.warning("refresh for %s failed (%s); will retry", alias, exc)
                await self._sleep(retry_delay_s(token))


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise TokenError("the token endpoint answered with something not JSON") from exc
