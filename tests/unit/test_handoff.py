"""SpanHandoff, the app thread's side of every pipeline: bounded queue, wake-ups, records."""

from __future__ import annotations

import threading
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from test_offload import assemble, make_spans

from galileo_otel.export.convert import convert_trace
from galileo_otel.export.handoff import _MAX_RESOURCES, SpanHandoff


class Handoff(SpanHandoff):
    def __init__(self, max_queue: int = 100, records: bool = False) -> None:
        self._max_queue = max_queue
        self._disabled = False
        self._closing = False
        self._queue_records = records
        self._reset_handoff()


def test_a_sleeping_worker_is_woken_once_until_it_sleeps_again() -> None:
    handoff = Handoff()
    sets = []
    handoff._wake = _CountingEvent(sets)
    for i in range(10):
        assert handoff.submit(i)
    assert len(sets) == 1  # the first span woke it; it is awake for the other nine
    handoff._awake = False  # the worker drained the queue and sleeps
    handoff._queue.clear()
    handoff.submit("x")
    assert len(sets) == 2


def test_a_worker_that_wants_a_batch_is_woken_past_its_threshold_only() -> None:
    handoff = Handoff()
    sets = []
    handoff._wake = _CountingEvent(sets)
    handoff._wake_after = 4  # woken when the queue holds more than 4
    for i in range(4):
        handoff.submit(i)
    assert sets == []
    handoff.submit(4)
    assert len(sets) == 1


def test_a_full_or_closed_queue_drops_and_counts() -> None:
    handoff = Handoff(max_queue=2)
    assert handoff.submit(1) and handoff.submit(2)
    assert handoff.submit(3) is False
    handoff._closing = True
    assert handoff.submit(4) is False
    assert (handoff._dropped_full, handoff._dropped_closed) == (1, 1)
    assert list(handoff._queue) == [1, 2]


def test_records_rebuild_into_spans_that_convert_like_the_originals() -> None:
    spans = make_spans()
    handoff = Handoff(records=True)
    for span in spans:
        assert handoff.submit(span)
    queued = list(handoff._queue)
    assert all(type(item) is tuple for item in queued)  # the span objects are not kept
    span_of = handoff.worker_rebuild()
    rebuilt = [span_of(item) for item in queued]
    assert [convert_trace(t) for t in assemble(rebuilt)] == [
        convert_trace(t) for t in assemble(spans)
    ]
    assert rebuilt[0].resource.attributes["service.name"] == "svc"


def test_records_are_off_unless_asked_for() -> None:
    span = make_spans()[0]
    handoff = Handoff()
    handoff.submit(span)
    assert handoff._queue[0] is span
    assert handoff.worker_rebuild()(span) is span


def test_spans_of_too_many_resources_or_unreadable_ones_are_queued_as_they_are() -> None:
    handoff = Handoff(max_queue=10_000, records=True)
    for i in range(_MAX_RESOURCES):
        handoff._number_resource(Resource.create({"n": i}))
    tracer = TracerProvider(resource=Resource.create({"n": "one more"})).get_tracer("t")
    with tracer.start_as_current_span("s") as span:
        pass
    odd: Any = object()
    assert handoff.submit(span) and handoff.submit(odd)
    assert handoff._queue[-2] is span and handoff._queue[-1] is odd
    assert handoff.worker_rebuild()(span) is span


def test_threads_adding_one_resource_at_once_get_one_number() -> None:
    handoff = Handoff(max_queue=10_000, records=True)
    spans = make_spans()
    barrier = threading.Barrier(4)

    def emit() -> None:
        barrier.wait(10)
        for span in spans:
            handoff.submit(span)

    threads = [threading.Thread(target=emit) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len({item[12] for item in handoff._queue}) == 1
    assert len(handoff._queue) == 4 * len(spans)


class _CountingEvent(threading.Event):
    def __init__(self, sets: list[int]) -> None:
        super().__init__()
        self._sets = sets

    def set(self) -> None:
        self._sets.append(1)
        super().set()
