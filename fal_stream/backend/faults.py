"""Faults the built-in backend can inject, for tests and demonstrations.

Every field can be changed while the backend runs; a change applies to the next
request, connection or input. Counters (``*_times``) are spent one per event, so a
fault can be made to happen a set number of times and then clear by itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ResultFault = Literal["none", "huge", "not_a_map", "garbage", "no_image", "silent"]
TokenForm = Literal["string", "token", "detail"]


@dataclass
class Faults:
    """What the built-in backend should get wrong.

    Attributes:
        model_latency_s: Extra time the model takes for each input.
        idle_timeout_s: Seconds without input before the server sends fal's TIMEOUT
            message and closes with 1000.
        drop_after_inputs: Abort the TCP connection, with no close frame, when this
            many inputs have arrived on a connection. ``None`` never drops.
        drop_times: How many connections ``drop_after_inputs`` applies to.
        close_code: Close each connection with this code after
            ``close_after_inputs`` inputs (for example 1011).
        close_after_inputs: See ``close_code``.
        close_times: How many connections ``close_code`` applies to.
        upgrade_status: Refuse the WebSocket upgrade with this HTTP status.
        upgrade_times: How many upgrades to refuse.
        unauthorized_times: Accept this many upgrades, then send
            ``{"status": "error", "error": "Unauthorized"}`` and close.
        internal_error_times: Answer this many inputs with INTERNAL_ERROR and close.
        result: Corrupt this many results (``result_times``) in the given way:
            ``huge`` sends a result larger than any sane image, ``not_a_map`` a
            msgpack list, ``garbage`` undecodable bytes, ``no_image`` a map without
            images, ``silent`` nothing at all.
        result_times: See ``result``.
        token_status: Answer ``POST /tokens/`` with this HTTP status.
        token_times: How many token requests ``token_status`` applies to.
        token_delay_s: Delay every token answer by this long.
        token_lifetime_cap_s: Issue tokens that expire after at most this long,
            whatever was asked.
        token_form: The JSON shape of a minted token: a bare string (fal today),
            ``{"token": ...}`` or ``{"detail": ...}``.
        nsfw_times: Flag this many results as unsafe (with a black image, as fal's
            safety checker does).
    """

    model_latency_s: float = 0.0
    idle_timeout_s: float = 2.0
    drop_after_inputs: int | None = None
    drop_times: int = 0
    close_code: int | None = None
    close_after_inputs: int = 1
    close_times: int = 0
    upgrade_status: int | None = None
    upgrade_times: int = 0
    unauthorized_times: int = 0
    internal_error_times: int = 0
    result: ResultFault = "none"
    result_times: int = 0
    token_status: int | None = None
    token_times: int = 0
    token_delay_s: float = 0.0
    token_lifetime_cap_s: float | None = None
    token_form: TokenForm = "string"
    nsfw_times: int = 0


def spend(faults: Faults, counter: str) -> bool:
    """Use up one unit of the fault ``counter`` counts; say whether one was left."""
    left: int = getattr(faults, counter)
    if left <= 0:
        return False
    setattr(faults, counter, left - 1)
    return True
