"""Fixtures shared by the test modules."""

from __future__ import annotations

import os

# Before anything imports gradio, which otherwise reports usage to its servers.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from collections.abc import AsyncIterator, Iterator

import pytest

from fal_stream.backend import Faults, LocalBackend
from fal_stream.tokens import TokenManager


@pytest.fixture
def backend() -> Iterator[LocalBackend]:
    """A built-in backend on free loopback ports, serving from its own thread.

    Its faults are defaults but for a 30 s idle timeout, so a loaded machine does
    not close a socket mid-test; change ``backend.faults`` fields to inject some.
    """
    with LocalBackend(faults=Faults(idle_timeout_s=30.0)) as running:
        yield running


@pytest.fixture
async def tokens(backend: LocalBackend) -> AsyncIterator[TokenManager]:
    """A token manager minting from ``backend``."""
    manager = TokenManager(backend.key, rest_url=backend.rest_url)
    yield manager
    await manager.aclose()
