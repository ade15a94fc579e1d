"""Deciding on realtime socket upgrades, without a network."""

from __future__ import annotations

import pytest

from fal_stream.backend.signing import TokenSigner
from fal_stream.backend.upgrade import Refusal, SocketGrant, check_upgrade

from .fakes import FakeClock

KEY = "local-key"
PATH = "/fal-ai/fast-lcm-diffusion/image-to-image/realtime"


@pytest.fixture
def signer() -> TokenSigner:
    """A signer on a fake clock at 0."""
    return TokenSigner(b"k" * 32, clock=FakeClock())


def _check(
    signer: TokenSigner, path: str, authorization: str | None = None
) -> SocketGrant | Refusal:
    return check_upgrade(path, authorization, key=KEY, signer=signer)


def test_upgrade_grants_a_token_for_the_alias(signer: TokenSigner) -> None:
    """A token for the alias opens the app, with max_buffering read."""
    token = signer.issue(["fast-lcm-diffusion"], 60)

    grant = _check(signer, f"{PATH}?fal_jwt_token={token}&max_buffering=5")

    assert isinstance(grant, SocketGrant)
    assert str(grant.app_id) == "fal-ai/fast-lcm-diffusion/image-to-image"
    assert grant.max_buffering == 5


def test_upgrade_grants_the_key_header(signer: TokenSigner) -> None:
    """``Authorization: Key <key>`` opens any app without a token."""
    grant = _check(signer, PATH, f"Key {KEY}")

    assert isinstance(grant, SocketGrant)
    assert grant.max_buffering is None


def test_upgrade_token_wins_over_header(signer: TokenSigner) -> None:
    """With both a token and a key header, the token decides."""
    other = signer.issue(["another-app"], 60)

    refusal = _check(signer, f"{PATH}?fal_jwt_token={other}", f"Key {KEY}")

    assert isinstance(refusal, Refusal)
    assert refusal.status == 403


@pytest.mark.parametrize(
    ("path", "authorization", "status"),
    [
        (PATH, None, 401),
        (PATH, "Key nope", 401),
        (PATH, f"Bearer {KEY}", 401),
        (f"{PATH}?fal_jwt_token=", None, 401),
        (f"{PATH}?fal_jwt_token=abc.def.ghi", None, 401),
        (f"{PATH}?max_buffering=0", f"Key {KEY}", 400),
        (f"{PATH}?max_buffering=61", f"Key {KEY}", 400),
        (f"{PATH}?max_buffering=1.5", f"Key {KEY}", 400),
        ("/fal-ai/fast-lcm-diffusion/ws", f"Key {KEY}", 404),
        ("/one-segment/realtime", f"Key {KEY}", 404),
        ("/fal-ai/bad%20name/realtime", f"Key {KEY}", 404),
    ],
)
def test_upgrade_refusals(
    signer: TokenSigner, path: str, authorization: str | None, status: int
) -> None:
    """Bad paths, credentials and max_buffering values get their HTTP status."""
    refusal = _check(signer, path, authorization)

    assert isinstance(refusal, Refusal)
    assert refusal.status == status
    assert KEY not in refusal.reason


def test_upgrade_refuses_expired_tokens(signer: TokenSigner) -> None:
    """A token past expiry is refused with 401 and says so."""
    clock = FakeClock()
    expiring = TokenSigner(b"k" * 32, clock=clock)
    token = expiring.issue(["fast-lcm-diffusion"], 10)
    clock.now = 11

    refusal = _check(expiring, f"{PATH}?fal_jwt_token={token}")

    assert isinstance(refusal, Refusal)
    assert refusal.status == 401
    assert "expired" in refusal.reason
    assert token not in refusal.reason


@pytest.mark.parametrize(
    ("path", "alias"),
    [
        ("/workflows/someone/flow/realtime", "flow"),
        ("/fal-ai/fast-lcm-diffusion/realtime/realtime", "fast-lcm-diffusion"),
        ("/110602490/lcm-sd15-i2i/realtime", "lcm-sd15-i2i"),
    ],
)
def test_upgrade_reads_the_alias_as_fal_does(
    signer: TokenSigner, path: str, alias: str
) -> None:
    """Namespaced ids, doubled /realtime and numeric owners name the right alias."""
    token = signer.issue([alias], 60)

    assert isinstance(_check(signer, f"{path}?fal_jwt_token={token}"), SocketGrant)
