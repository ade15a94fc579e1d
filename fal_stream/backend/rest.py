"""The built-in backend's REST host: ``POST /tokens/``, as at rest.fal.ai.

A client sends its key as ``Authorization: Key <key>`` and the body
``{"allowed_apps": ["<alias>"], "token_expiration": <seconds>}``; the answer is
the token as a bare JSON string, as fal's is (or one of the other two shapes fal's
clients accept, under the ``token_form`` fault).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .faults import Faults, spend
from .signing import TokenSigner
from .stats import BackendStats

logger = logging.getLogger(__name__)

MAX_ALLOWED_APPS = 10
MIN_TOKEN_LIFETIME_S = 1
MAX_TOKEN_LIFETIME_S = 86_400
# fal's status for a minted token is not public; clients accept any 2xx.
MINTED_STATUS = 201
_AUTH_SCHEME = "Key "


class TokenRoute:
    """The ``POST /tokens/`` endpoint as a Starlette handler.

    Args:
        key: The one key that may mint tokens.
        signer: Signs the tokens.
        faults: Live fault settings, read on every request.
        stats: Counters to update.
    """

    def __init__(
        self, key: str, signer: TokenSigner, faults: Faults, stats: BackendStats
    ) -> None:
        self._key = key
        self._signer = signer
        self.faults = faults
        self._stats = stats

    async def handle(self, request: Request) -> Response:
        """Answer one token request."""
        self._stats.token_requests += 1
        faults = self.faults
        if faults.token_delay_s > 0:
            await asyncio.sleep(faults.token_delay_s)
        if faults.token_status is not None and spend(faults, "token_times"):
            return _injected_failure(faults.token_status)

        refusal = self._check_key(request.headers.get("authorization"))
        if refusal:
            return _detail(401, refusal)
        try:
            body: Any = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            return _detail(422, "the body must be JSON")
        problem = _check_body(body)
        if problem:
            return _detail(422, problem)

        lifetime_s = float(body["token_expiration"])
        if faults.token_lifetime_cap_s is not None:
            lifetime_s = min(lifetime_s, faults.token_lifetime_cap_s)
        token = self._signer.issue(body["allowed_apps"], lifetime_s)
        self._stats.tokens_minted += 1
        logger.info(
            "minted a token for %s, valid %.0f s", body["allowed_apps"], lifetime_s
        )
        if faults.token_form == "token":
            return JSONResponse({"token": token}, status_code=MINTED_STATUS)
        if faults.token_form == "detail":
            return JSONResponse({"detail": token}, status_code=MINTED_STATUS)
        return JSONResponse(token, status_code=MINTED_STATUS)

    def _check_key(self, header: str | None) -> str:
        """Return why ``header`` does not carry the key, or ``""`` if it does."""
        if not header:
            return "missing Authorization header; send 'Authorization: Key <key>'"
        if not header.startswith(_AUTH_SCHEME):
            return "the local backend only accepts 'Authorization: Key <key>'"
        if not key_matches(header, self._key):
            return "the key was not accepted; use the backend's key"
        return ""


def token_app(route: TokenRoute) -> Starlette:
    """Build the REST application serving ``route`` at ``POST /tokens/``."""
    return Starlette(routes=[Route("/tokens/", route.handle, methods=["POST"])])


def key_matches(header: str | None, key: str) -> bool:
    """Say whether an ``Authorization`` header value carries ``key``."""
    if not header or not header.startswith(_AUTH_SCHEME):
        return False
    # Compare in constant time, so that timing does not leak the key.
    offered = header[len(_AUTH_SCHEME) :].strip().encode()
    return hmac.compare_digest(offered, key.encode())


def _check_body(body: Any) -> str:
    """Return what is wrong with a token request body, or ``""``."""
    if not isinstance(body, dict):
        return "the body must be a JSON object with allowed_apps and token_expiration"
    apps = body.get("allowed_apps")
    if (
        not isinstance(apps, list)
        or not 1 <= len(apps) <= MAX_ALLOWED_APPS
        or not all(isinstance(app, str) and app.strip() for app in apps)
    ):
        return (
            f"allowed_apps must be a list of 1 to {MAX_ALLOWED_APPS} app aliases, "
            "such as ['fast-lcm-diffusion']"
        )
    lifetime = body.get("token_expiration")
    if (
        isinstance(lifetime, bool)
        or not isinstance(lifetime, int | float)
        or not math.isfinite(lifetime)
        or not MIN_TOKEN_LIFETIME_S <= lifetime <= MAX_TOKEN_LIFETIME_S
    ):
        return (
            f"token_expiration must be a number of seconds from "
            f"{MIN_TOKEN_LIFETIME_S} to {MAX_TOKEN_LIFETIME_S}, not {lifetime!r:.40}"
        )
    return ""


def _injected_failure(status: int) -> Response:
    headers = {"Retry-After": "1"} if status == 429 else None
    return JSONResponse(
        {"detail": f"injected failure: the token service answered {status}"},
        status_code=status,
        headers=headers,
    )


def _detail(status: int, detail: str) -> Response:
    return JSONResponse({"detail": detail}, status_code=status)
