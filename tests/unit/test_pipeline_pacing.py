"""When a batch leaves the worker: after a quiet period at once (50 ms at most), then paced.

The worker's loop runs one pass at a time on the test's thread (``Batcher.run()`` returns once
the ledger is stopping and the queue is empty), against an injected clock, so the times below
are exact, whatever the machine's load.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest_pipeline import DEST, FakeClient, FakeTracker, emit, fake_convert, tracer_for

from galileo_otel.export.config import DEFAULT_FIRST_DELAY_S
from galileo_otel.export.pipeline import ExportPipeline
from galileo_otel.settings import GalileoSettings


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Worker:
    """An unstarted pipeline whose worker loop the test runs pass by pass."""

    def __init__(self, batch_delay: float) -> None:
        self.clock = Clock()
        self.pipeline = ExportPipeline(
            GalileoSettings(api_key="k", batch_delay=batch_delay),
            client=FakeClient(),
            tracker=FakeTracker(),
            destination=DEST,
            convert=fake_convert,
            start=False,
            spool=False,
            clock=self.clock,
            shutdown_at_exit=False,
        )
        self.tracer = tracer_for(self.pipeline)

    def trace_at(self, t: float, session: str = "s1") -> int:
        """A trace ends at ``t``; the worker takes it: how many batches left then."""
        self.clock.now = t
        emit(self.tracer, session=session)
        return self.pass_at(t)

    def pass_at(self, t: float) -> int:
        """One pass of the worker loop at ``t``: how many batches left the worker."""
        self.clock.now = t
        ledger = self.pipeline.ledger
        ledger.stop_event.set()  # the pass drains the queue, checks its timers, returns
        try:
            self.pipeline.batcher.run()
        finally:
            ledger.stop_event.clear()
        closed, _outbox = ledger.leftovers()
        return sum(1 for item in closed if getattr(item, "payload", None) is not None)

    def close(self) -> None:
        self.pipeline.shutdown(0)


@pytest.fixture
def worker() -> Any:
    made: list[Worker] = []

    def make(batch_delay: float) -> Worker:
        made.append(Worker(batch_delay))
        return made[-1]

    yield make
    for w in made:
        w.close()


def test_the_first_batch_after_a_quiet_period_leaves_after_50_ms(worker: Any) -> None:
    assert DEFAULT_FIRST_DELAY_S == 0.05
    w = worker(batch_delay=1.0)
    assert w.trace_at(100.0) == 0  # opened: it waits for more traces, not for the 1 s delay
    assert w.pass_at(100.049) == 0
    assert w.pass_at(100.05) == 1
    # A quiet period (longer than the delay) later: 50 ms again.
    assert w.trace_at(103.0) == 0
    assert w.pass_at(103.049) == 0
    assert w.pass_at(103.05) == 1


def test_in_a_steady_stream_batches_leave_once_per_delay(worker: Any) -> None:
    w = worker(batch_delay=1.0)
    assert w.trace_at(100.0) == 0
    assert w.pass_at(100.05) == 1  # the first send after the quiet start
    # Traces keep coming: the next send waits for the delay since the last one.
    assert w.trace_at(100.2) == 0
    assert w.trace_at(100.6, session="s2") == 0  # another session joins the same send
    assert w.pass_at(101.049) == 0
    assert w.pass_at(101.05) == 2  # one batch per session, together
    assert w.trace_at(101.1) == 0
    assert w.pass_at(102.049) == 0
    assert w.pass_at(102.05) == 1


def test_a_delay_under_50_ms_is_the_delay(worker: Any) -> None:
    w = worker(batch_delay=0.03125)  # 1/32 s: exact sums on the fake clock
    assert w.trace_at(100.0) == 0
    assert w.pass_at(100.03) == 0
    assert w.pass_at(100.03125) == 1
    assert w.trace_at(100.0625) == 0  # the next batch waits the delay too, not 50 ms
    assert w.pass_at(100.09) == 0
    assert w.pass_at(100.09375) == 1
