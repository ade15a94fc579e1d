"""The token manager: minting, sharing, refreshing and refusals, on a fake clock.

HTTP goes through httpx.MockTransport; no test sleeps.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import jwt
import pytest

from fal_stream.endpoints import AppId
from fal_stream.errors import AuthError, TokenError
from fal_stream.tokens import (
    BACKOFF_CAP_S,
    Token,
    TokenManager,
    backoff_s,
    parse_token_response,
    retry_delay_s,
)

from .fakes import FakeClock

APP = AppId.parse("fal-ai/fast-lcm-diffusion/image-to-image")
KEY = "key-id:key-secret-sentinel"


class TokenServer:
    """Answers token requests from a script of responses and records them."""

    def __init__(self, clock: FakeClock, script: list[Callable[[], httpx.Response]]):
        self.clock = clock
        self.script = script
        self.requests: list[tuple[float, dict[str, object]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        import json

        self.requests.append((self.clock.now, json.loads(request.content)))
        assert request.headers["authorization"] == f"Key {KEY}"
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        return step()


def ok(value: str = "tok") -> Callable[[], httpx.Response]:
    return lambda: httpx.Response(201, json=value)


def status(code: int) -> Callable[[], httpx.Response]:
    return lambda: httpx.Response(code, json={"detail": f"status {code}"})


def make_manager(
    script: list[Callable[[], httpx.Response]], **kwargs: object
) -> tuple[TokenManager, TokenServer, FakeClock]:
    clock = FakeClock()
    server = TokenServer(clock, script)
    http = httpx.AsyncClient(transport=httpx.MockTransport(server))
    manager = TokenManager(
        KEY,
        rest_url="http://rest.test",
        http=http,
        clock=clock,
        sleep=clock.sleep,
        **kwargs,  # type: ignore[arg-type]
    )
    return manager, server, clock


async def test_token_request_shape() -> None:
    """The request names the alias and the lifetime, as fal's clients do."""
    manager, server, _ = make_manager([ok()], refresh=False)
    assert await manager.token(APP) == "tok"
    assert server.requests[0][1] == {
        "allowed_apps": ["fast-lcm-diffusion"],
        "token_expiration": 120,
    }
    await manager.aclose()


async def test_token_concurrent_callers_share_one_mint() -> None:
    """Ten callers asking at once cause a single request."""
    manager, server, _ = make_manager([ok()], refresh=False)
    tokens = await asyncio.gather(*(manager.token(APP) for _ in range(10)))
    assert set(tokens) == {"tok"} and len(server.requests) == 1
    await manager.aclose()


async def test_token_cached_until_nearly_expired() -> None:
    """A cached token is reused while fresh and replaced near its expiry."""
    manager, server, clock = make_manager([ok("a"), ok("b")], refresh=False)
    assert await manager.token(APP) == "a"
    clock.now = 100.0
    assert await manager.token(APP) == "a"
    clock.now = 115.0  # within 5% of the 120 s lifetime
    assert await manager.token(APP) == "b"
    assert len(server.requests) == 2
    await manager.aclose()


def test_token_refresh_schedule() -> None:
    """Refresh at 90% of the lifetime, retry a failed refresh after 5%."""
    token = Token("t", "alias", issued_at=10.0, expires_at=130.0)
    assert token.refresh_at() == pytest.approx(118.0)
    assert retry_delay_s(token) == pytest.approx(6.0)
    assert token.is_fresh(123.9) and not token.is_fresh(124.0)


async def test_token_background_refresh_while_in_use() -> None:
    """A token in use is re-minted at 90% of its life, before anyone asks."""
    manager, server, _clock = make_manager([ok("a"), ok("b"), ok("c")])
    await manager.token(APP)
    for _ in range(20):
        await asyncio.sleep(0)
    # Minted at 0 and refreshed at 108; the next refresh (at 205.2) finds the
    # token unused for longer than a lifetime and stops.
    assert [t for t, _ in server.requests] == [0.0, pytest.approx(108.0)]
    cached = manager.cached(APP)
    assert cached is not None and cached.value == "b"
    await manager.aclose()


async def test_token_refresh_failure_retries_after_five_percent() -> None:
    """A failed refresh is retried after 5% of the lifetime, keeping the old one."""
    manager, server, _clock = make_manager(
        [ok("a"), status(400), ok("b")], refresh=True
    )
    await manager.token(APP)
    for _ in range(20):
        await asyncio.sleep(0)
    times = [t for t, _ in server.requests]
    assert times[:3] == [0.0, pytest.approx(108.0), pytest.approx(114.0)]
    await manager.aclose()


async def test_token_retries_429_and_5xx_with_backoff() -> None:
    """429 and 5xx answers are retried with growing, capped, jittered waits."""
    manager, server, clock = make_manager(
        [status(429), status(503), ok("late")], refresh=False
    )
    assert await manager.token(APP) == "late"
    assert len(server.requests) == 3
    assert len(clock.sleeps) == 2 and all(0 < s <= BACKOFF_CAP_S for s in clock.sleeps)
    await manager.aclose()


async def test_token_gives_up_after_attempts() -> None:
    """Persistent 500s end in a TokenError with the status."""
    manager, server, _ = make_manager([status(500)], refresh=False)
    with pytest.raises(TokenError, match="HTTP 500") as caught:
        await manager.token(APP)
    assert caught.value.status == 500 and len(server.requests) == 4
    await manager.aclose()


@pytest.mark.parametrize("code", [401, 403])
async def test_token_refused_key_not_retried(code: int) -> None:
    """A refused key is reported at once, without retries or the key itself."""
    manager, server, _ = make_manager([status(code)], refresh=False)
    with pytest.raises(AuthError, match="refused the key") as caught:
        await manager.token(APP)
    assert caught.value.status == code and len(server.requests) == 1
    assert "sentinel" not in str(caught.value)
    await manager.aclose()


async def test_token_transport_error_retried() -> None:
    """A connection failure is retried, then reported with what to check."""
    clock = FakeClock()

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    http = httpx.AsyncClient(transport=httpx.MockTransport(refuse))
    manager = TokenManager(KEY, http=http, clock=clock, sleep=clock.sleep)
    with pytest.raises(TokenError, match="FAL_REST_URL"):
        await manager.token(APP)
    assert len(clock.sleeps) == 3
    await manager.aclose()


@pytest.mark.parametrize(
    ("body", "token"),
    [("jwt", "jwt"), ({"token": "jwt"}, "jwt"), ({"detail": "jwt"}, "jwt")],
)
def test_parse_token_response_forms(body: object, token: str) -> None:
    """A bare string, {"token"} and {"detail"} all carry the JWT."""
    assert parse_token_response(body) == token


@pytest.mark.parametrize("body", [None, "", 42, {"detail": ["x"]}, ["jwt"]])
def test_parse_token_response_refuses_others(body: object) -> None:
    """Anything else is a TokenError."""
    with pytest.raises(TokenError):
        parse_token_response(body)


async def test_token_lifetime_from_exp_claim() -> None:
    """A token that expires sooner than asked is refreshed by its own expiry."""
    short = jwt.encode({"exp": int(time.time()) + 10}, "s" * 32, algorithm="HS256")
    manager, _, _ = make_manager([ok(short)], refresh=False)
    await manager.token(APP)
    cached = manager.cached(APP)
    assert cached is not None and 8 <= cached.lifetime_s <= 10
    await manager.aclose()


async def test_token_discard_forgets_only_that_token() -> None:
    """A refused token is dropped and the next caller gets a new one."""
    manager, _server, _ = make_manager([ok("a"), ok("b")], refresh=False)
    assert await manager.token(APP) == "a"
    manager.discard(APP, "other")
    assert await manager.token(APP) == "a"
    manager.discard(APP, "a")
    assert await manager.token(APP) == "b"
    await manager.aclose()


def test_backoff_grows_and_is_capped() -> None:
    """Backoff doubles per attempt, stays under the cap, and is jittered."""
    assert backoff_s(0, rand=lambda: 1.0) == pytest.approx(0.25)
    assert backoff_s(1, rand=lambda: 1.0) == pytest.approx(0.5)
    assert backoff_s(30, rand=lambda: 1.0) == BACKOFF_CAP_S
    assert backoff_s(30, rand=lambda: 0.0) == BACKOFF_CAP_S / 2
