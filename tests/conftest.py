"""Fixtures shared by the test modules."""

from __future__ import annotations

import os

# Before anything imports gradio, which otherwise reports usage to its servers.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from collections.abc import Iterator

import pytest

from fal_stream.backend import Faults, LocalBackend


@pytest.fixture
def backend() -> Iterator[LocalBackend]:
    """A built-in backend on free loopback ports, serving from its own thread.

    Its faults are fresh defaults; change ``backend.faults`` fields to inject some.
    """
    with LocalBackend(faults=Faults()) as running:
        yield running
