"""Counters of what the built-in backend has seen, for tests and the UI."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class BackendStats:
    """What one backend has served since it started.

    Every field is updated by the backend's event loop and may be read from any
    thread.

    Attributes:
        token_requests: ``POST /tokens/`` requests, answered or not.
        tokens_minted: Tokens issued.
        connections: Sockets accepted past the upgrade.
        inputs: Input frames received, valid or not.
        inputs_dropped: Pending inputs replaced by a newer one before the model
            reached them.
        results: Results sent (corrupted ones included).
        errors_sent: ``INTERNAL_ERROR`` messages sent.
        timeouts_sent: Idle ``TIMEOUT`` messages sent.
        last_prompt: The prompt of the last input the model painted.
        app_ids: The distinct app ids sockets were opened for.
    """

    token_requests: int = 0
    tokens_minted: int = 0
    connections: int = 0
    inputs: int = 0
    inputs_dropped: int = 0
    results: int = 0
    errors_sent: int = 0
    timeouts_sent: int = 0
    last_prompt: str = ""
    app_ids: set[str] = field(default_factory=set)
