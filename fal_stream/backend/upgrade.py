"""Deciding whether to open a realtime socket, with no I/O.

fal's run host takes ``/<app id>/realtime`` with the token in the query string
(``fal_jwt_token``) or, for server-side clients, the key in an ``Authorization:
Key`` header. A refusal is an HTTP status on the upgrade, which clients see as a
failed handshake: 401 for a missing, forged or expired token, 403 for a token
minted for another app, 400 for a bad ``max_buffering``, 404 for a bad path.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from ..endpoints import DEFAULT_REALTIME_PATH, MAX_BUFFERING_RANGE, AppId
from ..errors import BadInputError
from .rest import key_matches
from .signing import InvalidTokenError, TokenSigner


@dataclass(frozen=True)
class SocketGrant:
    """An accepted upgrade.

    Attributes:
        app_id: The app the socket serves.
        max_buffering: The client's ``max_buffering``, or ``None``.
    """

    app_id: AppId
    max_buffering: int | None = None


@dataclass(frozen=True)
class Refusal:
    """A refused upgrade: the HTTP status and a reason, free of secrets."""

    status: int
    reason: str


def check_upgrade(
    path: str, authorization: str | None, *, key: str, signer: TokenSigner
) -> SocketGrant | Refusal:
    """Decide on an upgrade request for ``path`` (with its query string).

    Args:
        path: The request target, such as
            ``/fal-ai/fast-lcm-diffusion/realtime?fal_jwt_token=...``.
        authorization: The ``Authorization`` header, if any.
        key: The backend's key, which opens any app.
        signer: Verifies tokens.
    """
    target = urlsplit(path)
    if not target.path.endswith(DEFAULT_REALTIME_PATH):
        return Refusal(404, "no realtime endpoint here; use /<owner>/<app>/realtime")
    try:
        app_id = AppId.parse(unquote(target.path[: -len(DEFAULT_REALTIME_PATH)]))
    except BadInputError:
        return Refusal(404, "no app at this path; use /<owner>/<app>/realtime")

    query = parse_qs(target.query, keep_blank_values=True)
    max_buffering: int | None = None
    if "max_buffering" in query:
        text = query["max_buffering"][0]
        if not text.isdigit() or int(text) not in MAX_BUFFERING_RANGE:
            return Refusal(400, f"max_buffering must be 1 to 60, not {text[:20]!r}")
        max_buffering = int(text)
    grant = SocketGrant(app_id, max_buffering)

    if "fal_jwt_token" in query:
        try:
            claims = signer.verify(query["fal_jwt_token"][0])
        except InvalidTokenError as exc:
            return Refusal(401, str(exc))
        if not claims.allows(app_id.alias):
            return Refusal(
                403, f"the token does not open app {app_id.alias!r}; mint one for it"
            )
        return grant
    if authorization is None:
        return Refusal(
            401,
            "missing token: add ?fal_jwt_token=<token> or send "
            "'Authorization: Key <key>'",
        )
    if not key_matches(authorization, key):
        return Refusal(401, "the key was not accepted; use the backend's key")
    return grant
