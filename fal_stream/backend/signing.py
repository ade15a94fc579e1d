"""Realtime tokens of the built-in backend: short-lived HS256 JWTs.

fal keeps the contents of its tokens private; ours carry what the socket side must
check, the aliases the token opens (``allowed_apps``) and its expiry (``exp``), plus
``iat`` and a unique ``jti``. Each :class:`TokenSigner` has its own random secret, so
a token from one backend never opens another.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import jwt

from ..errors import AuthError

ALGORITHM = "HS256"
# HS256 wants a secret at least as long as its 256-bit digest.
SECRET_BYTES = 32


class InvalidTokenError(AuthError):
    """A token is malformed, forged, expired or lacks a claim."""


@dataclass(frozen=True)
class TokenClaims:
    """What a verified token allows.

    Attributes:
        allowed_apps: The app aliases the token opens, such as
            ``("fast-lcm-diffusion",)``.
        issued_at: When it was minted, in seconds since the epoch.
        expires_at: When it stops opening sockets, in seconds since the epoch.
        token_id: A unique id (``jti``).
    """

    allowed_apps: tuple[str, ...]
    issued_at: float
    expires_at: float
    token_id: str

    def allows(self, alias: str) -> bool:
        """Say whether the token opens sockets of the app named ``alias``."""
        return alias in self.allowed_apps


class TokenSigner:
    """Issues and verifies the backend's tokens.

    Args:
        secret: The HMAC secret; a fresh random one when ``None``.
        clock: Returns the current time in seconds since the epoch; tests pass a
            fake one.
    """

    def __init__(
        self,
        secret: bytes | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = (
            secret if secret is not None else secrets.token_bytes(SECRET_BYTES)
        )
        self._clock = clock

    def issue(self, allowed_apps: Sequence[str], lifetime_s: float) -> str:
        """Mint a token opening ``allowed_apps`` for ``lifetime_s`` seconds."""
        now = self._clock()
        claims = {
            "allowed_apps": list(allowed_apps),
            "iat": now,
            "exp": now + lifetime_s,
            "jti": secrets.token_hex(8),
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> TokenClaims:
        """Check the signature and expiry of ``token`` and return its claims.

        Raises:
            InvalidTokenError: The token is malformed, signed by someone else,
                expired or missing a claim. The message never quotes the token.
        """
        try:
            # Expiry is checked below against the injected clock, not PyJWT's.
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                options={"verify_exp": False, "verify_iat": False},
            )
        except jwt.InvalidTokenError as exc:
            raise InvalidTokenError(
                f"the token is not valid ({type(exc).__name__}); mint a new one",
                status=401,
            ) from exc

        apps = claims.get("allowed_apps")
        expires_at = _seconds(claims.get("exp"))
        issued_at = _seconds(claims.get("iat", 0.0))
        if (
            not isinstance(apps, list)
            or not all(isinstance(app, str) for app in apps)
            or expires_at is None
            or issued_at is None
        ):
            raise InvalidTokenError("the token lacks its claims; mint a new one", 401)
        if self._clock() >= expires_at:
            raise InvalidTokenError("the token has expired; mint a new one", 401)
        return TokenClaims(
            allowed_apps=tuple(apps),
            issued_at=issued_at,
            expires_at=expires_at,
            token_id=str(claims.get("jti", "")),
        )


def _seconds(value: object) -> float | None:
    """Return a numeric claim as a float, or ``None`` if it is not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
