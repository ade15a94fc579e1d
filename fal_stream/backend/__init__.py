"""The built-in backend: a local server that speaks fal's realtime protocol.

It lets the app and every test run offline: :class:`LocalBackend` mints tokens
like rest.fal.ai and serves ``/<app id>/realtime`` sockets like fal.run, with a
fast CPU "preview" model instead of a diffusion model, and :class:`Faults` to make
it misbehave on purpose.
"""

from .faults import Faults
from .server import MAX_INPUT_BYTES, BackendError, LocalBackend
from .stats import BackendStats

__all__ = ["MAX_INPUT_BYTES", "BackendError", "BackendStats", "Faults", "LocalBackend"]
