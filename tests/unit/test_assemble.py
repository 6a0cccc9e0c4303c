"""TraceAssembler: completion on root end, late spans, timeouts, drain, and the memory caps."""

from __future__ import annotations

import pytest
from conftest_convert import T0, TRACE_ID, make_span

from galileo_otel.export.assemble import AssembledTrace, TraceAssembler
from galileo_otel.export.convert import convert_trace, trace_uuid

OTHER_TRACE = 0x0AF7651916CD43DD8448EB211C80319C
S = 1_000_000_000  # one second in ns


def assembler(**overrides: int) -> TraceAssembler:
    kwargs = {"max_spans_per_trace": 100, "max_open_traces": 10, "trace_timeout_ns": 30 * S}
    kwargs.update(overrides)
    return TraceAssembler(**kwargs)


def ids(trace: AssembledTrace) -> list[int]:
    return [s.context.span_id for s in trace.spans]


def test_children_wait_for_the_root_then_ship_together() -> None:
    asm = assembler()
    assert asm.add(make_span("grandchild", 3, 2, start=20, end=30)) == []
    assert asm.add(make_span("child", 2, 1, start=10, end=40)) == []
    assert asm.stats()["open_traces"] == 1
    assert asm.stats()["open_spans"] == 2

    ready = asm.add(make_span("root", 1, None, start=0, end=50))

    assert len(ready) == 1
    trace = ready[0]
    assert trace.complete and trace.part == 0 and trace.trace_id == TRACE_ID
    assert trace.root is not None and trace.root.context.span_id == 1
    assert ids(trace) == [3, 2, 1]
    stats = asm.stats()
    assert stats["open_traces"] == 0 and stats["open_spans"] == 0
    assert stats["traces_complete"] == 1 and stats["spans_added"] == 3


def test_a_single_span_trace_ships_at_once() -> None:
    asm = assembler()
    ready = asm.add(make_span("only", 1))
    assert [t.complete for t in ready] == [True]
    assert asm.stats()["open_traces"] == 0


def test_a_span_with_a_remote_parent_is_the_local_root() -> None:
    asm = assembler()
    assert asm.add(make_span("db", 5, 4, end=10)) == []
    ready = asm.add(make_span("server", 4, 99, remote_parent=True, end=20))
    assert len(ready) == 1 and ready[0].root is not None
    assert ready[0].root.context.span_id == 4
    assert ids(ready[0]) == [5, 4]


def test_traces_are_kept_apart() -> None:
    asm = assembler()
    asm.add(make_span("a-child", 2, 1))
    asm.add(make_span("b-child", 2, 1, trace_id=OTHER_TRACE))
    ready = asm.add(make_span("b-root", 1, trace_id=OTHER_TRACE))
    assert [t.trace_id for t in ready] == [OTHER_TRACE]
    assert asm.stats()["open_traces"] == 1


def test_a_child_that_ends_after_its_root_starts_a_later_part() -> None:
    asm = assembler()
    (first,) = asm.add(make_span("root", 1, end=50))
    assert first.part == 0

    assert asm.add(make_span("late", 2, 1, start=10, end=60)) == []
    stats = asm.stats()
    assert stats["late_spans"] == 1 and stats["open_traces"] == 1

    (late,) = asm.drain()
    assert late.part == 1 and not late.complete and late.root is None
    assert ids(late) == [2]
    # The later part gets its own Galileo id, so the first part is not overwritten.
    assert convert_trace(late)["id"] != convert_trace(first)["id"] == trace_uuid(TRACE_ID)
    assert convert_trace(late)["external_id"] == convert_trace(first)["external_id"]


def test_a_second_local_root_of_a_shipped_trace_ships_complete_as_a_later_part() -> None:
    # Two requests of one distributed trace entering this process one after the other.
    asm = assembler()
    asm.add(make_span("server-1", 1, 99, remote_parent=True, end=10))
    assert asm.add(make_span("child-2", 3, 2, start=20, end=25)) == []
    (second,) = asm.add(make_span("server-2", 2, 99, remote_parent=True, start=20, end=30))
    assert second.complete and second.part == 1 and ids(second) == [3, 2]
    (third,) = asm.add(make_span("server-3", 4, 99, remote_parent=True, start=40, end=50))
    assert third.part == 2
    assert asm.stats()["late_spans"] == 3


def test_a_trace_whose_root_never_ends_ships_incomplete_after_the_idle_timeout() -> None:
    asm = assembler(trace_timeout_ns=30 * S)
    asm.add(make_span("child", 2, 1, end=5 * S))
    asm.add(make_span("child-2", 3, 1, end=10 * S))

    assert asm.expire(T0 + 39 * S) == []  # idle since 10 s: not yet
    (trace,) = asm.expire(T0 + 40 * S)
    assert not trace.complete and trace.root is None and ids(trace) == [2, 3]
    stats = asm.stats()
    assert stats["traces_incomplete"] == 1 and stats["open_traces"] == 0
    assert stats["open_spans"] == 0
    assert asm.expire(T0 + 100 * S) == []


def test_expire_takes_only_the_idle_traces() -> None:
    asm = assembler(trace_timeout_ns=30 * S)
    asm.add(make_span("old", 2, 1, end=1 * S))
    asm.add(make_span("fresh", 2, 1, trace_id=OTHER_TRACE, end=20 * S))
    # Activity on the old trace moves it behind the fresh one.
    asm.add(make_span("old-2", 3, 1, end=25 * S))
    assert asm.expire(T0 + 49 * S) == []
    (expired,) = asm.expire(T0 + 50 * S)
    assert expired.trace_id == OTHER_TRACE
    (expired,) = asm.expire(T0 + 55 * S)
    assert expired.trace_id == TRACE_ID


def test_now_ns_sets_the_activity_clock() -> None:
    asm = assembler(trace_timeout_ns=10)
    asm.add(make_span("child", 2, 1, end=10 * S), now_ns=1_000)
    assert asm.expire(1_009) == []
    assert len(asm.expire(1_010)) == 1


def test_drain_ships_everything_left_incomplete() -> None:
    asm = assembler()
    asm.add(make_span("a", 2, 1))
    asm.add(make_span("b", 2, 1, trace_id=OTHER_TRACE))
    drained = asm.drain()
    assert sorted(t.trace_id for t in drained) == sorted([TRACE_ID, OTHER_TRACE])
    assert all(not t.complete for t in drained)
    assert asm.drain() == []
    assert asm.stats()["open_traces"] == 0


def test_spans_over_the_per_trace_cap_are_cut_and_counted_but_the_root_is_kept() -> None:
    asm = assembler(max_spans_per_trace=3)
    for span_id in range(2, 7):  # five children, cap three
        asm.add(make_span(f"c{span_id}", span_id, 1))
    assert asm.stats()["spans_cut"] == 2
    (trace,) = asm.add(make_span("root", 1))
    assert ids(trace) == [2, 3, 4, 1]
    assert trace.spans_cut == 2
    assert convert_trace(trace)["user_metadata"]["otel.spans_cut"] == "2"


def test_over_the_open_trace_cap_the_least_recently_active_ships_early() -> None:
    asm = assembler(max_open_traces=2)
    asm.add(make_span("t1", 2, 1, trace_id=1))
    asm.add(make_span("t2", 2, 1, trace_id=2))
    asm.add(make_span("t1-again", 3, 1, trace_id=1))  # t2 is now the least recently active
    ready = asm.add(make_span("t3", 2, 1, trace_id=3))
    assert [(t.trace_id, t.complete) for t in ready] == [(2, False)]
    stats = asm.stats()
    assert stats["traces_evicted"] == 1 and stats["open_traces"] == 2
    assert stats["traces_incomplete"] == 1


def test_shipped_trace_ids_are_remembered_within_a_bound() -> None:
    asm = assembler(max_open_traces=2)  # remembers 8 shipped traces
    for trace_id in range(1, 10):
        asm.add(make_span("root", 1, trace_id=trace_id))
    # Trace 1 is forgotten: its late span starts part 0 again; trace 9 is remembered.
    assert asm.add(make_span("late", 2, 1, trace_id=1)) == []
    assert asm.add(make_span("late", 2, 1, trace_id=9)) == []
    assert {t.trace_id: t.part for t in asm.drain()} == {1: 0, 9: 1}
    assert asm.stats()["late_spans"] == 1


def test_counts_add_up() -> None:
    asm = assembler(max_spans_per_trace=2, max_open_traces=3)
    for trace_id in range(1, 6):
        for span_id in range(2, 5):
            asm.add(make_span("c", span_id, 1, trace_id=trace_id))
    asm.add(make_span("root", 1, trace_id=5))
    shipped = asm.drain()
    stats = asm.stats()
    assert stats["spans_added"] == 16
    assert stats["spans_cut"] == 5
    assert stats["traces_complete"] + stats["traces_incomplete"] == 5
    assert stats["open_traces"] == stats["open_spans"] == 0
    assert len(shipped) == 2  # traces 3 and 4 were still open: 1 and 2 were evicted


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        TraceAssembler(max_spans_per_trace=0, max_open_traces=1, trace_timeout_ns=1)
    with pytest.raises(ValueError):
        TraceAssembler(max_spans_per_trace=1, max_open_traces=0, trace_timeout_ns=1)
