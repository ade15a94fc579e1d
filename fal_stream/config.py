"""Settings read from the environment and from a ``.env`` file."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from dotenv import dotenv_values

from .endpoints import DEFAULT_REST_URL, DEFAULT_RUN_HOST, AppId
from .errors import ConfigError

DEFAULT_APP_ID = "fal-ai/fast-lcm-diffusion/image-to-image"

Backend = Literal["auto", "fal", "local"]


@dataclass(frozen=True)
class Settings:
    """Everything fal_stream can be configured with.

    Build it with :meth:`from_env`, or directly for a program that has its own
    configuration. The key never appears in ``repr`` or in :meth:`describe`.

    Attributes:
        fal_key: ``FAL_KEY``, or ``FAL_KEY_ID`` and ``FAL_KEY_SECRET`` joined by a
            colon. Empty means no key: the app runs on the built-in backend.
        app_id: The realtime app to drive (``FAL_STREAM_APP_ID``).
        backend: ``"fal"``, ``"local"`` or ``"auto"``, which picks fal when a key is
            set (``FAL_STREAM_BACKEND``).
        rest_url: Base URL of fal's REST API, where tokens are minted
            (``FAL_REST_URL``).
        run_host: Host of fal's realtime sockets, or a ``ws://`` base URL
            (``FAL_RUN_HOST``).
        token_lifetime_s: Lifetime asked for each token, 30 to 3600 s
            (``FAL_STREAM_TOKEN_LIFETIME_S``).
        frame_size: Side of the square frame sent to the model, 64 to 1024 px
            (``FAL_STREAM_FRAME_SIZE``).
        jpeg_quality: JPEG quality of the frames sent, 30 to 95
            (``FAL_STREAM_JPEG_QUALITY``).
        min_interval_s: Least time between two sends on one session
            (``FAL_STREAM_MIN_INTERVAL_MS``, in milliseconds).
        max_in_flight: Frames sent and not yet answered, at most, 1 to 8
            (``FAL_STREAM_MAX_IN_FLIGHT``).
    """

    fal_key: str = field(default="", repr=False)
    app_id: str = DEFAULT_APP_ID
    backend: Backend = "auto"
    rest_url: str = DEFAULT_REST_URL
    run_host: str = DEFAULT_RUN_HOST
    token_lifetime_s: float = 120.0
    frame_size: int = 512
    jpeg_quality: int = 80
    min_interval_s: float = 0.128
    max_in_flight: int = 2

    def __post_init__(self) -> None:
        AppId.parse(self.app_id)
        if self.backend not in ("auto", "fal", "local"):
            raise ConfigError(
                "FAL_STREAM_BACKEND must be 'auto', 'fal' or 'local', "
                f"not {self.backend!r}"
            )
        if self.backend == "fal" and not self.fal_key:
            raise ConfigError(
                "backend 'fal' needs a key: set FAL_KEY (or FAL_KEY_ID and "
                "FAL_KEY_SECRET) in the environment or in .env"
            )
        _check_range("FAL_STREAM_TOKEN_LIFETIME_S", self.token_lifetime_s, 30, 3600)
        _check_range("FAL_STREAM_FRAME_SIZE", self.frame_size, 64, 1024)
        _check_range("FAL_STREAM_JPEG_QUALITY", self.jpeg_quality, 30, 95)
        _check_range("FAL_STREAM_MIN_INTERVAL_MS", self.min_interval_s * 1000, 0, 5000)
        _check_range("FAL_STREAM_MAX_IN_FLIGHT", self.max_in_flight, 1, 8)

    @property
    def uses_fal(self) -> bool:
        """Whether frames go to fal rather than to the built-in backend."""
        return self.backend == "fal" or (self.backend == "auto" and bool(self.fal_key))

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        dotenv_path: str | os.PathLike[str] | None = ".env",
        **overrides: Any,
    ) -> Settings:
        """Read settings from ``environ`` (default ``os.environ``) and a ``.env`` file.

        Variables set in the environment win over the file; ``overrides`` win over
        both. The process environment is not modified.

        Raises:
            ConfigError: A value is missing, malformed or out of range.
        """
        merged: dict[str, str] = {}
        if dotenv_path is not None and os.path.exists(dotenv_path):
            merged.update(
                {k: v for k, v in dotenv_values(dotenv_path).items() if v is not None}
            )
        merged.update(os.environ if environ is None else environ)

        def get(name: str) -> str | None:
            value = merged.get(name, "").strip()
            return value or None

        key = get("FAL_KEY") or ""
        if not key and get("FAL_KEY_ID") and get("FAL_KEY_SECRET"):
            key = f"{get('FAL_KEY_ID')}:{get('FAL_KEY_SECRET')}"
        values: dict[str, Any] = {"fal_key": key}
        for name, env, parse in _ENV_FIELDS:
            raw = get(env)
            if raw is not None:
                try:
                    values[name] = parse(raw)
                except ValueError:
                    raise ConfigError(
                        f"{env}={raw[:40]!r} is not a valid {parse.__name__}"
                    ) from None
        values.update(overrides)
        return cls(**values)

    def with_changes(self, **changes: Any) -> Settings:
        """Return a copy with ``changes`` applied and checked."""
        return replace(self, **changes)

    def describe(self) -> dict[str, Any]:
        """Return the effective settings for display, with the key redacted."""
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        shown["fal_key"] = redact(self.fal_key)
        shown["uses_fal"] = self.uses_fal
        return shown


def redact(secret: str) -> str:
    """Say whether ``secret`` is set without showing any of it."""
    return "(set, hidden)" if secret else "(not set)"


def _milliseconds(raw: str) -> float:
    return float(raw) / 1000.0


_milliseconds.__name__ = "number of milliseconds"

_ENV_FIELDS: tuple[tuple[str, str, Any], ...] = (
    ("app_id", "FAL_STREAM_APP_ID", str),
    ("backend", "FAL_STREAM_BACKEND", str),
    ("rest_url", "FAL_REST_URL", str),
    ("run_host", "FAL_RUN_HOST", str),
    ("token_lifetime_s", "FAL_STREAM_TOKEN_LIFETIME_S", float),
    ("frame_size", "FAL_STREAM_FRAME_SIZE", int),
    ("jpeg_quality", "FAL_STREAM_JPEG_QUALITY", int),
    ("min_interval_s", "FAL_STREAM_MIN_INTERVAL_MS", _milliseconds),
    ("max_in_flight", "FAL_STREAM_MAX_IN_FLIGHT", int),
)


def _check_range(env: str, value: float, low: float, high: float) -> None:
    """Refuse ``value`` outside low..high, naming the variable that sets it."""
    if not (math.isfinite(value) and low <= value <= high):
        raise ConfigError(f"{env} must be between {low} and {high}, not {value:g}")
