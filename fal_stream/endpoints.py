"""App ids, token aliases and the URLs of fal's realtime API, with no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from .errors import BadInputError

DEFAULT_REST_URL = "https://rest.fal.ai"
DEFAULT_RUN_HOST = "fal.run"
DEFAULT_REALTIME_PATH = "/realtime"
MAX_BUFFERING_RANGE = range(1, 61)

# Ids under these namespaces carry the owner one segment later:
# "workflows/owner/alias/..." is minted for "alias", not for "owner".
_NAMESPACES = frozenset({"workflows", "comfy"})
_LEGACY_ID = re.compile(r"^(\d+)-(.+)$")
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~-]*$")


@dataclass(frozen=True)
class AppId:
    """A parsed fal app id such as ``fal-ai/fast-lcm-diffusion/image-to-image``.

    Attributes:
        owner: The account that owns the app (``fal-ai``).
        alias: The app name the token is minted for (``fast-lcm-diffusion``).
        path: Anything after the alias, with a leading slash, or ``""``.
        namespace: ``"workflows"`` or ``"comfy"`` for namespaced ids, else ``""``.
    """

    owner: str
    alias: str
    path: str = ""
    namespace: str = ""

    @classmethod
    def parse(cls, app_id: str) -> AppId:
        """Parse an app id as fal's clients do.

        A legacy id ``123-myapp`` means ``123/myapp``. Surrounding slashes and spaces
        are ignored.

        Raises:
            BadInputError: The id has fewer than two segments or a character that
                cannot appear in a URL path segment.
        """
        text = app_id.strip().strip("/")
        legacy = _LEGACY_ID.match(text)
        if legacy and "/" not in text:
            text = f"{legacy[1]}/{legacy[2]}"
        parts = text.split("/")
        namespace = ""
        if parts[0] in _NAMESPACES:
            namespace, parts = parts[0], parts[1:]
        if len(parts) < 2 or not all(_SEGMENT.match(part) for part in parts):
            raise BadInputError(
                f"app id {app_id[:120]!r} is not of the form 'owner/app', for example "
                "'fal-ai/fast-lcm-diffusion'"
            )
        return cls(
            owner=parts[0],
            alias=parts[1],
            path="".join(f"/{part}" for part in parts[2:]),
            namespace=namespace,
        )

    def __str__(self) -> str:
        prefix = f"{self.namespace}/" if self.namespace else ""
        return f"{prefix}{self.owner}/{self.alias}{self.path}"


def token_url(rest_url: str = DEFAULT_REST_URL) -> str:
    """Return the URL that mints realtime tokens under ``rest_url``."""
    return rest_url.rstrip("/") + "/tokens/"


def realtime_path(app: AppId, path: str = DEFAULT_REALTIME_PATH) -> str:
    """Return the socket path for ``app``, such as ``/fal-ai/x/realtime``.

    ``path`` is not appended twice when the id already ends with it, as fal's
    JavaScript client does since 1.9.2.
    """
    base = f"/{app}"
    if path and not base.endswith(path):
        base += path
    return base


def realtime_url(
    app: AppId,
    token: str,
    *,
    run_host: str = DEFAULT_RUN_HOST,
    path: str = DEFAULT_REALTIME_PATH,
    max_buffering: int | None = None,
) -> str:
    """Build the realtime socket URL for ``app`` carrying ``token``.

    Args:
        app: The app to connect to.
        token: The JWT minted for the app's alias.
        run_host: A bare host (``fal.run``), which means ``wss://``, or a full base
            URL such as ``ws://127.0.0.1:8700`` for the built-in backend.
        path: The endpoint path appended to the app id.
        max_buffering: How many pending inputs fal may keep, 1 to 60.

    Raises:
        BadInputError: ``max_buffering`` is out of range.
    """
    query: dict[str, str | int] = {"fal_jwt_token": token}
    if max_buffering is not None:
        if max_buffering not in MAX_BUFFERING_RANGE:
            raise BadInputError(
                f"max_buffering must be between 1 and 60, not {max_buffering}"
            )
        query["max_buffering"] = max_buffering
    return f"{run_base_url(run_host)}{realtime_path(app, path)}?{urlencode(query)}"


def run_base_url(run_host: str) -> str:
    """Return ``run_host`` as a ``ws://`` or ``wss://`` base URL with no slash."""
    host = run_host.rstrip("/")
    scheme = urlsplit(host).scheme
    if scheme in ("ws", "wss"):
        return host
    if scheme in ("http", "https"):
        return "ws" + host[len("http") :]
    return f"wss://{host}"
