"""Per-client request budgets on a fake clock, and whom a request counts against."""

from __future__ import annotations

import pytest

from fal_stream.ratelimit import RateLimiter, client_address

from .fakes import FakeClock


def test_rate_limiter_refuses_past_the_rate_then_refills() -> None:
    """After ``per_min`` requests the next must wait, per client, until refilled."""
    clock = FakeClock()
    limiter = RateLimiter(3, clock)
    for _ in range(3):
        assert limiter.acquire("10.0.0.1") is None

    assert limiter.acquire("10.0.0.1") == 20
    assert limiter.acquire("10.0.0.2") is None

    clock.now += 20
    assert limiter.acquire("10.0.0.1") is None
    assert limiter.acquire("10.0.0.1") == 20


def test_rate_limiter_forgets_clients_beyond_its_bound() -> None:
    """Tracking is bounded: past ``max_clients`` the idle buckets are dropped."""
    clock = FakeClock()
    limiter = RateLimiter(1, clock, max_clients=4)
    for n in range(4):
        limiter.acquire(f"c{n}")
    clock.now += 60
    limiter.acquire("c4")

    # c0 was forgotten with a full bucket, so it may ask again at once.
    assert limiter.acquire("c0") is None
    assert limiter.acquire("c4") == 60


@pytest.mark.parametrize(
    ("peer", "forwarded", "hops", "expected"),
    [
        ("127.0.0.1", None, 0, "127.0.0.1"),
        ("127.0.0.1", "1.2.3.4", 0, "127.0.0.1"),
        ("10.0.0.9", "6.6.6.6, 1.2.3.4", 1, "1.2.3.4"),
        ("10.0.0.9", "6.6.6.6, 1.2.3.4, 10.0.0.8", 2, "1.2.3.4"),
        ("10.0.0.9", "1.2.3.4", 2, "10.0.0.9"),
        (None, None, 0, "unknown"),
    ],
)
def test_client_address(
    peer: str | None, forwarded: str | None, hops: int, expected: str
) -> None:
    """Only the entries trusted proxies appended to X-Forwarded-For are used."""
    assert client_address(peer, forwarded, hops) == expected
