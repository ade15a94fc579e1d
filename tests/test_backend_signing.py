"""The built-in backend's tokens: HS256 JWTs checked against a fake clock."""

from __future__ import annotations

import jwt
import pytest

from fal_stream.backend.signing import InvalidTokenError, TokenSigner
from fal_stream.errors import AuthError

from .fakes import FakeClock

SECRET = b"s" * 32


def test_signer_round_trip() -> None:
    """A token verifies to the apps and times it was issued with."""
    clock = FakeClock()
    clock.now = 1000.0
    signer = TokenSigner(SECRET, clock=clock)

    claims = signer.verify(signer.issue(["fast-lcm-diffusion", "other"], 120))

    assert claims.allowed_apps == ("fast-lcm-diffusion", "other")
    assert claims.issued_at == 1000.0
    assert claims.expires_at == 1120.0
    assert claims.token_id
    assert claims.allows("other")
    assert not claims.allows("fal-ai")


def test_signer_tokens_are_unique() -> None:
    """Two tokens minted at the same instant differ by their jti."""
    signer = TokenSigner(SECRET, clock=FakeClock())

    assert signer.issue(["a"], 60) != signer.issue(["a"], 60)


def test_signer_refuses_expired_tokens() -> None:
    """A token stops verifying at its expiry, by the signer's clock."""
    clock = FakeClock()
    signer = TokenSigner(SECRET, clock=clock)
    token = signer.issue(["a"], 60)

    clock.now = 59.9
    signer.verify(token)
    clock.now = 60.0
    with pytest.raises(InvalidTokenError, match="expired") as raised:
        signer.verify(token)
    assert isinstance(raised.value, AuthError)
    assert raised.value.status == 401


def test_signer_refuses_other_secrets_and_junk() -> None:
    """Tokens of another signer, unsigned tokens and junk do not verify."""
    clock = FakeClock()
    signer = TokenSigner(SECRET, clock=clock)
    foreign = TokenSigner(b"x" * 32, clock=clock).issue(["a"], 60)
    unsigned = jwt.encode(
        {"allowed_apps": ["a"], "exp": 60}, key=None, algorithm="none"
    )

    for token in (foreign, unsigned, "junk"):
        with pytest.raises(InvalidTokenError) as raised:
            signer.verify(token)
        assert token not in str(raised.value)


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": 60},
        {"allowed_apps": "a", "exp": 60},
        {"allowed_apps": [1], "exp": 60},
        {"allowed_apps": ["a"]},
        {"allowed_apps": ["a"], "exp": True},
    ],
)
def test_signer_refuses_tokens_without_claims(claims: dict[str, object]) -> None:
    """A well-signed token missing a claim does not verify."""
    signer = TokenSigner(SECRET, clock=FakeClock())
    token = jwt.encode(claims, SECRET, algorithm="HS256")

    with pytest.raises(InvalidTokenError, match="claims"):
        signer.verify(token)


def test_signer_default_secret_is_random() -> None:
    """Two signers made without a secret do not accept each other's tokens."""
    first, second = TokenSigner(), TokenSigner()

    with pytest.raises(InvalidTokenError):
        second.verify(first.issue(["a"], 60))
