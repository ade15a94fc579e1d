"""The newest-wins pacer, driven by hand with explicit times."""

import math

import pytest

from fal_stream.pacing import PIPELINE_SLACK, Pacer


def test_pacer_newest_frame_replaces_pending() -> None:
    """Frames offered before a send replace each other; only the last goes."""
    pacer: Pacer[str] = Pacer(min_interval_s=0.1, max_in_flight=1)
    for i in range(5):
        pacer.offer(f"frame{i}", now=0.0)
    assert pacer.replaced == 4
    taken = pacer.take(0.0)
    assert (taken.seq, taken.frame) == (5, "frame4")
    assert pacer.pending is None
    assert pacer.wait_s(0.0) is None


def test_pacer_interval_between_sends() -> None:
    """A frame waits out the minimum interval since the last send."""
    pacer: Pacer[str] = Pacer(min_interval_s=0.128, max_in_flight=4)
    pacer.offer("a", 0.0)
    assert pacer.wait_s(0.0) == 0.0
    pacer.take(0.0)
    pacer.offer("b", 0.05)
    assert pacer.wait_s(0.05) == pytest.approx(0.078)
    assert pacer.wait_s(0.2) == 0.0


def test_pacer_in_flight_bound_blocks_until_answer() -> None:
    """At the in-flight limit nothing goes until a result frees a place."""
    pacer: Pacer[str] = Pacer(min_interval_s=0.0, max_in_flight=2)
    for t in (0.0, 0.1):
        pacer.offer("x", t)
        pacer.take(t)
    pacer.offer("y", 0.2)
    assert pacer.wait_s(0.2) == math.inf
    answered = pacer.answer()
    assert answered is not None and answered.seq == 1
    assert pacer.wait_s(0.3) == 0.0


def test_pacer_results_match_frames_in_send_order() -> None:
    """Results are matched to frames oldest first, with their offer times."""
    pacer: Pacer[str] = Pacer(min_interval_s=0.0, max_in_flight=3)
    for t in (0.0, 1.0, 2.0):
        pacer.offer("f", t - 0.5)
        pacer.take(t)
    seqs = [s.seq for s in (pacer.answer(), pacer.answer(), pacer.answer()) if s]
    assert seqs == [1, 2, 3]
    assert pacer.answer() is None


def test_pacer_expire_frees_lost_frames() -> None:
    """A frame unanswered past the timeout is counted lost and frees its place."""
    pacer: Pacer[str] = Pacer(min_interval_s=0.0, max_in_flight=1, result_timeout_s=5)
    pacer.offer("a", 0.0)
    pacer.take(0.0)
    assert pacer.next_expiry_s(1.0) == 4.0
    assert pacer.expire(4.9) == []
    lost = pacer.expire(5.0)
    assert [s.seq for s in lost] == [1]
    assert pacer.in_flight == 0


def test_pacer_restore_only_the_newest() -> None:
    """A lost frame goes back only if no newer frame was offered since."""
    pacer: Pacer[str] = Pacer(min_interval_s=0.0, max_in_flight=2)
    pacer.offer("old", 0.0)
    old = pacer.take(0.0)
    assert pacer.forget_in_flight()[0].seq == 1
    assert pacer.restore(old)
    assert pacer.pending == old

    pacer.take(1.0)
    pacer.offer("new", 1.1)
    assert not pacer.restore(old)
    assert pacer.pending is not None and pacer.pending.frame == "new"


def test_pacer_slow_model_never_builds_a_queue() -> None:
    """With a model slower than the frame rate, the frame sent is always the
    newest one offered and the backlog never exceeds one frame."""
    pacer: Pacer[int] = Pacer(min_interval_s=0.0, max_in_flight=1)
    model_s, frame_s = 0.2, 1 / 30
    now, busy_until, sent = 0.0, 0.0, []
    for i in range(300):
        now = i * frame_s
        if pacer.in_flight and now >= busy_until:
            pacer.answer()
        pacer.offer(i, now)
        if pacer.wait_s(now) == 0.0:
            sent.append(pacer.take(now).frame)
            busy_until = now + model_s
            assert sent[-1] == i
    assert len(sent) == pytest.approx(300 * frame_s / model_s, rel=0.2)
    assert pacer.replaced == 300 - len(sent) - (1 if pacer.pending else 0)


def test_pacer_spaces_frames_by_model_time_while_one_is_in_flight() -> None:
    """With a frame in flight the next goes after the model's time, not before:
    sooner it would only wait at the server."""
    pacer: Pacer[str] = Pacer(min_interval_s=0.05, max_in_flight=2)
    for _ in range(20):
        pacer.note_model_time(0.2)
    assert pacer.model_s == pytest.approx(0.2, abs=0.001)
    pacer.offer("a", 0.0)
    pacer.take(0.0)
    pacer.offer("b", 0.01)
    assert pacer.wait_s(0.01) == pytest.approx(0.2 * PIPELINE_SLACK - 0.01, abs=0.001)
    pacer.answer()
    # Nothing in flight: only the minimum interval applies.
    assert pacer.wait_s(0.06) == 0.0


def test_pacer_ignores_nonsense_model_times() -> None:
    """NaN, infinite and negative timings leave the estimate alone."""
    pacer: Pacer[str] = Pacer()
    for bad in (math.nan, math.inf, -1.0):
        pacer.note_model_time(bad)
    assert pacer.model_s == 0.0
