"""The Ledger on its own: flush scopes, loss reporting, held / parked / settled, the scan backoff.

No threads of a pipeline here: the tests drive the Ledger's methods as the batcher, the spooler
and the senders would, on an injected clock, so a deadline passes when the test says so.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest

from galileo_otel.api.retry import RetryPolicy
from galileo_otel.export._stage import Flush, Outbound
from galileo_otel.export.ledger import Ledger
from galileo_otel.export.stats import Counters


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Entry:
    """A spool row as the ledger sees it: a name."""

    def __init__(self, name: str) -> None:
        self.name = name


def make(
    *, in_flight: int = 2, spool: bool = True, max_lost: int | None = None
) -> tuple[Ledger, Clock, list[int]]:
    clock = Clock()
    started: list[int] = []
    ledger = Ledger(
        in_flight=in_flight,
        max_unwritten_bytes=1 << 20,
        counters=Counters(),
        clock=clock,
        scan_policy=RetryPolicy(
            deadline_s=None, backoff_initial_s=5.0, backoff_max_s=60.0, jitter=0
        ),
        spool_on=spool,
        max_lost=max_lost,
    )
    ledger.when_work(lambda: started.append(1))
    return ledger, clock, started


def batch(ledger: Ledger, traces: int = 1, *, entry: str | None = None) -> Outbound:
    """A batch the batcher closes, and the spooler writes (with a row when ``entry``)."""
    header: Any = SimpleNamespace(traces=traces)
    out = Outbound(seq=ledger.next_seq(), header=header, payload=b"[]", record=None)
    ledger.closed(out)
    running, item = ledger.next_to_write(housekeep_at=float("inf"))
    assert running and item is out
    if entry is not None:
        out.entry = Entry(entry)  # type: ignore[assignment]
    return out


def flush(ledger: Ledger, clock: Clock, *, final: bool = False, report: bool = True) -> bool:
    """A flush whose marker follows every batch closed so far; its deadline already passed
    unless nothing in scope is pending (the injected clock never moves by itself)."""
    marker = Flush(final=final)
    marker.seq = ledger.next_seq() - 1  # the last closed batch, as the batcher stamps it
    return ledger.wait_settled(marker.seq, clock.now, final=final, report=report)


def test_a_flush_is_true_once_everything_in_its_scope_is_confirmed() -> None:
    ledger, clock, _ = make(spool=False)
    a, b = batch(ledger), batch(ledger)
    assert ledger.written(a) == "sending" and ledger.written(b) == "sending"
    assert flush(ledger, clock) is False  # both pending, deadline reached
    ledger.settle(a, ok=True)
    assert flush(ledger, clock) is False
    ledger.settle(b, ok=True)
    assert flush(ledger, clock) is True
    assert not ledger.busy()


def test_a_batch_closed_after_the_marker_is_not_in_scope() -> None:
    ledger, clock, _ = make(spool=False)
    first = batch(ledger)
    ledger.written(first)
    upto = first.seq
    later = batch(ledger)
    ledger.written(later)
    ledger.settle(first, ok=True)
    assert ledger.wait_settled(upto, clock.now, final=False, report=True) is True
    assert ledger.busy()  # the later one is still pending


def test_a_loss_before_the_call_makes_the_flush_false_and_is_reported_once() -> None:
    ledger, clock, _ = make(spool=False)
    out = batch(ledger)
    ledger.written(out)
    ledger.settle(out, ok=False)  # given up on, long before anyone flushes
    assert ledger.any_lost()
    assert flush(ledger, clock) is False  # reports it
    assert not ledger.any_lost()
    assert flush(ledger, clock) is True  # judged on its own scope


def test_a_trace_lost_before_batching_counts_like_a_lost_batch() -> None:
    ledger, clock, _ = make(spool=False)
    ledger.lose_unbatched()
    assert flush(ledger, clock) is False
    assert flush(ledger, clock) is True


def test_a_loss_outside_the_scope_waits_for_the_flush_that_covers_it() -> None:
    ledger, clock, _ = make(spool=False)
    early = batch(ledger)
    ledger.written(early)
    ledger.settle(early, ok=True)
    upto = early.seq
    late = batch(ledger)
    ledger.written(late)
    ledger.settle(late, ok=False)
    assert ledger.wait_settled(upto, clock.now, final=False, report=True) is True
    assert flush(ledger, clock) is False  # this one covers the loss


def test_a_checkpoint_waits_for_settled_but_leaves_losses_to_the_next_flush() -> None:
    ledger, clock, _ = make(spool=False)
    out = batch(ledger)
    ledger.written(out)
    assert flush(ledger, clock, report=False) is False  # not settled yet
    ledger.settle(out, ok=False)
    assert flush(ledger, clock, report=False) is True  # settled (given up) is enough
    assert flush(ledger, clock) is False  # the app's flush still hears of the loss


def test_losses_past_the_tracked_bound_make_every_flush_false_until_one_covers_them() -> None:
    ledger, clock, _ = make(spool=False, max_lost=0)
    out = batch(ledger)
    ledger.written(out)
    ledger.settle(out, ok=False)
    assert ledger.any_lost()
    assert ledger.wait_settled(0, clock.now, final=False, report=True) is False  # not covered
    assert flush(ledger, clock) is False  # covers it: reported
    assert flush(ledger, clock) is True


def test_held_rows_are_the_senders_and_parked_ones_do_not_hold_up_shutdown() -> None:
    ledger, clock, started = make(in_flight=1)
    out = batch(ledger, traces=3, entry="row-1")
    assert ledger.written(out) == "sending"
    assert started == [1]  # the senders were asked to start with the first batch
    assert [e.name for e in ledger.held_entries()] == ["row-1"]
    assert ledger.take() is out
    assert ledger.figures()["in_flight"] == 1
    assert ledger.figures()["traces_pending"] == 3
    # it failed: back on disk, parked
    ledger.back_on_disk(out, retried=True, not_before_s=None)
    ledger.sender_free()
    assert ledger.held_entries() == []
    assert flush(ledger, clock) is False  # an ordinary flush waits for it (deadline passed)
    assert flush(ledger, clock, final=True) is False  # shutdown does not wait, but says False
    assert ledger.figures()["batches_pending"] == 1  # still pending: the next process sends it


def test_a_row_claimed_again_from_the_spool_is_the_same_batch() -> None:
    ledger, clock, _ = make(in_flight=1)
    out = batch(ledger, entry="row-1")
    ledger.written(out)
    ledger.take()
    ledger.back_on_disk(out, retried=True, not_before_s=None)
    ledger.sender_free()
    entry: Any = Entry("row-1")
    clock.now += 5.0
    assert ledger.scan_room(clock.now) == 1
    header: Any = SimpleNamespace(traces=1)
    ledger.claimed([(entry, header)], [], clock.now)
    again = ledger.take()
    assert again is not None and again.seq == out.seq
    ledger.settle(again, ok=True)
    assert flush(ledger, clock) is True


def test_senders_busy_leave_the_batch_on_disk() -> None:
    ledger, _, _ = make(in_flight=1)
    first = batch(ledger, entry="a")
    second = batch(ledger, entry="b")
    assert ledger.written(first) == "sending"
    assert ledger.written(second) == "on_disk"  # the outbox holds one per sender
    assert ledger.idle_names() == {"b": second.seq}


def test_the_scan_backs_off_while_the_server_fails_and_resumes_when_it_answers() -> None:
    ledger, clock, _ = make(in_flight=1)
    out = batch(ledger, entry="a")
    ledger.written(out)
    ledger.take()
    ledger.back_on_disk(out, retried=True, not_before_s=None)
    ledger.sender_free()
    assert ledger.scan_room(clock.now) == 0
    clock.now += 4.9
    assert ledger.scan_room(clock.now) == 0
    clock.now += 0.1
    assert ledger.scan_room(clock.now) == 1  # 5 s: the policy's first wait
    # a second failure in a row waits twice as long; Retry-After wins when longer
    ledger.claimed([(Entry("a"), SimpleNamespace(traces=1))], [], clock.now)  # type: ignore[list-item]
    again = ledger.take()
    assert again is not None
    ledger.back_on_disk(again, retried=True, not_before_s=30.0)
    ledger.sender_free()
    clock.now += 29.0
    assert ledger.scan_room(clock.now) == 0
    clock.now += 1.0
    assert ledger.scan_room(clock.now) == 1
    ledger.server_answers()  # another batch got through: no more backing off
    assert ledger.scan_room(clock.now) == 1


@pytest.mark.parametrize("failed", [False, True])
def test_a_freed_sender_wakes_the_spooler_for_a_batch_waiting_on_disk(failed: bool) -> None:
    # The spooler slept while every sender was busy; the batch on disk (left there, or back
    # after failing and due for its retry) goes to the sender that frees up, without waiting
    # for the next look at the spool.
    ledger, clock, _ = make(in_flight=1)
    first = batch(ledger, entry="a")
    assert ledger.written(first) == "sending"
    second = batch(ledger, entry="b")
    assert ledger.written(second) == "on_disk"
    sent = ledger.take()
    assert sent is first
    if failed:
        ledger.server_answers()
    woke: list[tuple[bool, Any]] = []
    spooler = threading.Thread(
        target=lambda: woke.append(ledger.next_to_write(housekeep_at=clock.now + 3600))
    )
    spooler.start()
    spooler.join(0.2)
    assert woke == []  # asleep: the one sender is busy
    ledger.settle(sent, ok=True)
    ledger.sender_free()
    spooler.join(30)
    assert woke == [(True, None)]
    assert ledger.scan_room(clock.now) == 1


def test_adopted_backlog_is_in_every_flush_scope() -> None:
    ledger, clock, _ = make()
    assert ledger.housekept([("orphan", 4)], set(), {}, {"batches": 1}) == 0
    assert ledger.figures()["traces_pending"] == 4
    assert ledger.wait_settled(0, clock.now, final=False, report=True) is False
    entry: Any = Entry("orphan")
    ledger.claimed([(entry, SimpleNamespace(traces=4))], [], clock.now)  # type: ignore[list-item]
    out = ledger.take()
    assert out is not None
    ledger.settle(out, ok=True)
    assert ledger.wait_settled(0, clock.now, final=False, report=True) is True


def test_a_flush_waiter_is_woken_by_the_settle() -> None:
    ledger, clock, _ = make(spool=False)
    out = batch(ledger)
    ledger.written(out)
    answer: list[bool] = []
    waiter = threading.Thread(
        target=lambda: answer.append(
            ledger.wait_settled(out.seq, clock.now + 3600, final=False, report=True)
        )
    )
    waiter.start()
    ledger.settle(out, ok=True)
    waiter.join(30)
    assert answer == [True]


def test_stop_ends_the_waits_of_senders_and_spooler() -> None:
    ledger, _, _ = make(spool=False)
    ledger.stop()
    assert ledger.take() is None
    assert ledger.next_to_write(float("inf")) == (False, None)


@pytest.mark.parametrize("spool", [True, False])
def test_without_room_and_stopping_a_batch_without_a_row_is_lost(spool: bool) -> None:
    ledger, _, _ = make(in_flight=1, spool=spool)
    outs = [batch(ledger) for _ in range(3)]
    assert [ledger.written(o) for o in outs[:2]] == ["sending", "sending"]
    ledger.stop()
    assert ledger.written(outs[2]) == "lost"
    assert ledger.any_lost()
