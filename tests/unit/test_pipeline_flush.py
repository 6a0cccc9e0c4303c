"""Flush truth: force_flush()/shutdown() say True only when everything in their scope arrived.

The scope of a flush is every trace queued before the call that an earlier flush has not already
reported as lost; a loss that happened before the call counts. Both delivery modes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest_pipeline import (
    DEST,
    Call,
    FakeClient,
    FakeTracker,
    emit,
    fake_convert,
    refused,
    tracer_for,
    unavailable,
)

from galileo_otel.errors import ValidationError
from galileo_otel.export.pipeline import ExportPipeline
from galileo_otel.settings import GalileoSettings


class Clock:
    """A monotonic clock the test moves on by hand (real time underneath, so timers still run)."""

    def __init__(self) -> None:
        self.skipped = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.skipped

    def advance(self, seconds: float) -> None:
        self.skipped += seconds


def make(
    tmp_path: Any,
    client: FakeClient,
    clock: Clock,
    *,
    convert: Callable[[Any], dict[str, Any]] = fake_convert,
    spool_retry_s: float = 0.05,
    **overrides: Any,
) -> ExportPipeline:
    values: dict[str, Any] = {
        "api_key": "k",
        "batch_delay": 0.01,
        "export_timeout": 5.0,
        "spool_dir": str(tmp_path / "spool"),
    }
    values.update(overrides)
    return ExportPipeline(
        GalileoSettings(**values),
        client=client,
        tracker=FakeTracker(),
        destination=DEST,
        convert=convert,
        clock=clock,
        wait=lambda _s: False,
        first_delay_s=0.0,
        spool_retry_s=spool_retry_s,
    )


def wait_for(cond: Callable[[], bool], bound_s: float = 10.0) -> None:
    """Wait (bounded) until the pipeline's background threads reached a state."""
    end = time.monotonic() + bound_s
    while not cond():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.005)


@pytest.fixture
def cleanup() -> Any:
    made: list[ExportPipeline] = []
    yield made
    for p in made:
        p.shutdown(1.0)


def reject_422(call: Call) -> None:
    if call.path.endswith("/traces"):
        raise ValidationError(
            "HTTP 422",
            status_code=422,
            detail=[{"msg": "session does not exist"}],
            retryable=False,
        )


def test_reliable_loss_before_the_call_makes_the_flush_false(tmp_path: Any, cleanup: Any) -> None:
    switch = {"reject": True}

    def answer(call: Call) -> None:
        if switch["reject"]:
            reject_422(call)

    clock = Clock()
    pipeline = make(tmp_path, FakeClient(answer), clock)
    cleanup.append(pipeline)
    tracer = tracer_for(pipeline)
    emit(tracer, session="a")
    emit(tracer, session="b")
    # the batches are dead-lettered by the senders on their own, before anyone flushes
    wait_for(lambda: pipeline.stats()["traces_dead_lettered"] == 2)
    clock.advance(4.0)  # the flush comes seconds later
    assert pipeline.force_flush(5.0) is False
    # that False reported the loss: the next flush is judged on its own scope
    assert pipeline.force_flush(5.0) is True
    switch["reject"] = False
    emit(tracer, session="c")
    assert pipeline.force_flush(5.0) is True
    assert pipeline.stats()["traces_confirmed"] == 1


def test_fire_and_forget_loss_before_the_call_makes_the_flush_false(
    tmp_path: Any, cleanup: Any
) -> None:
    down = threading.Event()
    down.set()

    def answer(call: Call) -> None:
        if down.is_set() and call.path.endswith("/traces"):
            raise refused()

    clock = Clock()
    pipeline = make(tmp_path, FakeClient(answer), clock, reliable=False)
    cleanup.append(pipeline)
    tracer = tracer_for(pipeline)
    for i in range(3):
        emit(tracer, session=f"s{i}")
    wait_for(lambda: pipeline.stats()["traces_failed"] == 3)
    clock.advance(4.0)
    assert pipeline.force_flush(5.0) is False
    down.clear()
    emit(tracer, session="s9")
    assert pipeline.force_flush(5.0) is True
    stats = pipeline.stats()
    assert stats["traces_failed"] == 3 == stats["failed.connection"]
    assert stats["traces_confirmed"] == 1


def test_fire_and_forget_flush_waits_for_the_answer(tmp_path: Any, cleanup: Any) -> None:
    # fire-and-forget: True needs a 2xx answer, not only a request sent
    gate = threading.Event()

    def slow(call: Call) -> None:
        if call.path.endswith("/traces"):
            gate.wait(5)

    pipeline = make(tmp_path, FakeClient(slow), Clock(), reliable=False)
    cleanup.append(pipeline)
    emit(tracer_for(pipeline))
    assert pipeline.force_flush(0.2) is False
    gate.set()
    assert pipeline.force_flush(5.0) is True


@pytest.mark.parametrize("reliable", [True, False])
def test_shutdown_counts_a_loss_no_flush_reported(
    tmp_path: Any, reliable: bool, cleanup: Any
) -> None:
    pipeline = make(tmp_path, FakeClient(reject_422), Clock(), reliable=reliable)
    emit(tracer_for(pipeline))
    wait_for(lambda: pipeline.stats()["traces_dead_lettered"] == 1)
    assert pipeline.shutdown(5.0) is False


@pytest.mark.parametrize("reliable", [True, False])
def test_shutdown_after_a_flush_reported_the_loss_is_true(
    tmp_path: Any, reliable: bool, cleanup: Any
) -> None:
    pipeline = make(tmp_path, FakeClient(reject_422), Clock(), reliable=reliable)
    emit(tracer_for(pipeline))
    assert pipeline.force_flush(5.0) is False
    assert pipeline.shutdown(5.0) is True


def test_a_trace_conversion_lost_makes_the_flush_false(tmp_path: Any, cleanup: Any) -> None:
    def convert(trace: Any) -> dict[str, Any]:
        data = fake_convert(trace)
        if data["name"] == "root" and (trace.root.attributes or {}).get("session.id") == "bad":
            raise ValueError("cannot convert this one")
        return data

    pipeline = make(tmp_path, FakeClient(), Clock(), convert=convert)
    cleanup.append(pipeline)
    tracer = tracer_for(pipeline)
    emit(tracer, session="good")
    emit(tracer, session="bad")
    assert pipeline.force_flush(5.0) is False
    assert pipeline.stats()["dropped.convert_error"] == 1
    emit(tracer, session="good")
    assert pipeline.force_flush(5.0) is True


def test_spool_figures_are_current_after_a_flush(tmp_path: Any, cleanup: Any) -> None:
    down = threading.Event()
    down.set()

    def answer(call: Call) -> None:
        if down.is_set() and call.path.endswith("/traces"):
            raise unavailable(503)

    # the periodic spool look (every spool_retry_s) never runs during the test: only a flush
    # can make the figures current
    pipeline = make(tmp_path, FakeClient(answer), Clock(), spool_retry_s=600.0, export_timeout=0.3)
    cleanup.append(pipeline)
    emit(tracer_for(pipeline))
    wait_for(lambda: pipeline.stats()["traces_spooled"] >= 1)
    assert pipeline.force_flush(0.5) is False  # the server is still down
    stats = pipeline.stats()
    assert stats["spool_files"] == 1 and stats["spool_bytes"] > 0
    down.clear()
    assert pipeline.force_flush(5.0) is True
    stats = pipeline.stats()
    assert stats["spool_files"] == 0 and stats["spool_bytes"] == 0
    assert stats["traces_confirmed"] == 1


def test_a_checkpoint_waits_but_leaves_the_loss_for_the_next_flush(
    tmp_path: Any, cleanup: Any
) -> None:
    # the worker process asks checkpoint() which spans its parent need not replay: settled
    # (confirmed or given up) is enough, and the app's own flush still hears of the loss
    pipeline = make(tmp_path, FakeClient(reject_422), Clock())
    cleanup.append(pipeline)
    emit(tracer_for(pipeline))
    assert pipeline.checkpoint(5.0) is True
    assert pipeline.stats()["traces_dead_lettered"] == 1
    assert pipeline.force_flush(5.0) is False
    assert pipeline.force_flush(5.0) is True


def test_losses_beyond_the_tracked_bound_still_make_the_flush_false(
    tmp_path: Any, cleanup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from galileo_otel.export import ledger as ledger_module

    monkeypatch.setattr(ledger_module, "MAX_LOST", 0)  # no loss is tracked one by one
    pipeline = make(tmp_path, FakeClient(reject_422), Clock(), reliable=False, batch_max_traces=1)
    cleanup.append(pipeline)
    tracer = tracer_for(pipeline)
    for i in range(3):
        emit(tracer, session=f"s{i}")
    wait_for(lambda: pipeline.stats()["traces_dead_lettered"] == 3)
    assert pipeline.force_flush(5.0) is False
    assert pipeline.force_flush(5.0) is True
