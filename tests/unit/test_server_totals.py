"""Per-trace and per-session totals on the local server: tokens, duration, llm calls, failed
steps, and erroneous traces (a trace with any failed step counts, not only a failed root)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from galileo_otel.server.store import TOTALS, Store
from galileo_otel.views import session_lines, trace_heading_lines, trace_line


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "totals.db")
    yield store
    store.close()


def _id() -> str:
    return str(uuid.uuid4())


def llm(tokens_in: int, tokens_out: int, status: int = 200) -> dict[str, Any]:
    metrics = {"num_input_tokens": tokens_in, "num_output_tokens": tokens_out}
    return {"id": _id(), "type": "llm", "name": "chat", "status_code": status, "metrics": metrics}


def tool(status: int = 200) -> dict[str, Any]:
    return {"id": _id(), "type": "tool", "name": "lookup", "status_code": status, "spans": []}


def trace(*spans: dict[str, Any], status: int = 200, duration_ns: int = 1_000) -> dict[str, Any]:
    return {
        "id": _id(),
        "type": "trace",
        "input": "q",
        "status_code": status,
        "metrics": {"duration_ns": duration_ns},
        "spans": list(spans),
    }


def test_a_trace_and_its_session_carry_the_totals_of_their_steps(store: Store) -> None:
    pid = store.create_project("p")["id"]
    sid = store.create_session(pid, {})["id"]
    # An agent repeats its children's tokens: only llm steps count, so nothing twice.
    agent = {
        "id": _id(),
        "type": "agent",
        "name": "helper",
        "status_code": 200,
        "metrics": {"num_input_tokens": 30, "num_output_tokens": 5},
        "spans": [llm(10, 2), llm(20, 3)],
    }
    first = trace(agent, duration_ns=5_000)
    second = trace(llm(7, 1), tool(status=500), duration_ns=2_000)
    store.ingest_traces(pid, {"session_id": sid, "traces": [first, second]})

    stored = store.get_trace(pid, first["id"])
    assert stored is not None
    assert {k: stored[k] for k in (*TOTALS, "has_error")} == {
        "input_tokens": 30,
        "output_tokens": 5,
        "total_tokens": 35,
        "duration_ns": 5_000,
        "num_llm_calls": 2,
        "num_failed_steps": 0,
        "has_error": False,
    }
    failed = store.get_trace(pid, second["id"])
    assert failed is not None and failed["num_failed_steps"] == 1 and failed["has_error"] is True
    # What the client sent on the trace is untouched: Galileo keeps the root's status.
    assert failed["status_code"] == 200

    session = store.get_session(pid, sid)
    assert session is not None
    assert {k: session[k] for k in (*TOTALS, "num_errors", "has_error")} == {
        "input_tokens": 37,
        "output_tokens": 6,
        "total_tokens": 43,
        "duration_ns": 7_000,
        "num_llm_calls": 3,
        "num_failed_steps": 1,
        "num_errors": 1,  # erroneous traces, not failed steps
        "has_error": True,
    }


def test_a_failed_step_makes_its_session_findable_by_error(store: Store) -> None:
    pid = store.create_project("p")["id"]
    ok, failing = store.create_session(pid, {})["id"], store.create_session(pid, {})["id"]
    store.ingest_traces(pid, {"session_id": ok, "traces": [trace(llm(1, 1))]})
    store.ingest_traces(pid, {"session_id": failing, "traces": [trace(llm(1, 1), tool(502))]})
    flt = {"type": "boolean", "column_id": "has_error", "operator": "eq", "value": True}
    assert store.count_with(pid, [flt]) == 1
    flt = {"type": "number", "column_id": "num_failed_steps", "operator": "gte", "value": 1}
    assert store.count_with(pid, [flt]) == 1
    flt = {"type": "number", "column_id": "total_tokens", "operator": "eq", "value": 2}
    assert store.count_with(pid, [flt]) == 2


@pytest.mark.parametrize("column", TOTALS)
def test_every_total_is_a_sortable_number_column(store: Store, column: str) -> None:
    from galileo_otel.server.query import compile_session_filter

    pid = store.create_project("p")["id"]
    small, big = store.create_session(pid, {})["id"], store.create_session(pid, {})["id"]
    store.ingest_traces(pid, {"session_id": small, "traces": [trace(llm(1, 1), duration_ns=1)]})
    store.ingest_traces(
        pid,
        {
            "session_id": big,
            "traces": [trace(llm(5, 5), llm(5, 5, status=500), tool(500), duration_ns=9)],
        },
    )
    records, _ = store.search_sessions(
        pid, {}, compile_session_filter(), {"column_id": column, "ascending": False}, 0, 10
    )
    assert [r["id"] for r in records] == [big, small]
    assert records[0][column] > records[1][column]


def test_a_retried_request_counts_nothing_twice(store: Store) -> None:
    pid = store.create_project("p")["id"]
    sid = store.create_session(pid, {})["id"]
    body = {"session_id": sid, "traces": [trace(llm(4, 2), tool(500))]}
    store.ingest_traces(pid, body)
    store.ingest_traces(pid, body)
    session = store.get_session(pid, sid)
    assert session is not None
    assert (session["input_tokens"], session["num_failed_steps"], session["num_errors"]) == (
        4,
        1,
        1,
    )


def test_spans_sent_on_their_own_and_updates_move_the_totals(store: Store) -> None:
    pid = store.create_project("p")["id"]
    sid = store.create_session(pid, {})["id"]
    root = trace(llm(3, 1))
    store.ingest_traces(pid, {"session_id": sid, "traces": [root]})
    late = tool()
    # Distributed mode: a step arrives later, then fails by an update; then recovers.
    store.ingest_spans(pid, {"trace_id": root["id"], "parent_id": root["id"], "spans": [late]})
    store.update_span(pid, late["id"], {"status_code": 500})
    session = store.get_session(pid, sid)
    assert session is not None and (session["num_failed_steps"], session["num_errors"]) == (1, 1)
    store.update_span(pid, late["id"], {"status_code": 200})
    session = store.get_session(pid, sid)
    assert session is not None and (session["num_failed_steps"], session["num_errors"]) == (0, 0)
    # The root itself failing makes the trace erroneous once, however many steps failed.
    store.update_trace(pid, root["id"], {"status_code": 503, "duration_ns": 4_000})
    session = store.get_session(pid, sid)
    assert session is not None
    assert (session["num_errors"], session["duration_ns"], session["num_spans"]) == (1, 4_000, 2)


def test_spans_that_arrive_before_their_trace_are_counted_with_it(store: Store) -> None:
    pid = store.create_project("p")["id"]
    sid = store.create_session(pid, {})["id"]
    root = trace()
    early = llm(6, 6, status=429)
    store.ingest_spans(pid, {"trace_id": root["id"], "parent_id": root["id"], "spans": [early]})
    store.ingest_traces(pid, {"session_id": sid, "traces": [root]})
    session = store.get_session(pid, sid)
    assert session is not None
    assert (session["input_tokens"], session["num_llm_calls"], session["num_errors"]) == (6, 1, 1)


def test_an_incomplete_trace_completed_later_is_counted_once(store: Store) -> None:
    pid = store.create_project("p")["id"]
    sid = store.create_session(pid, {})["id"]
    first = trace(llm(2, 2))
    store.ingest_traces(pid, {"session_id": sid, "is_complete": False, "traces": [first]})
    complete = {**first, "spans": [*first["spans"], llm(3, 3)]}
    store.ingest_traces(pid, {"session_id": sid, "is_complete": True, "traces": [complete]})
    session = store.get_session(pid, sid)
    assert session is not None
    assert (session["input_tokens"], session["num_llm_calls"], session["num_traces"]) == (5, 2, 1)


def test_the_views_show_the_totals(store: Store) -> None:
    pid = store.create_project("p")["id"]
    sid = store.create_session(pid, {})["id"]
    failing = trace(llm(12, 3), tool(500), duration_ns=1_500_000_000)
    store.ingest_traces(pid, {"session_id": sid, "traces": [failing]})
    session = store.get_session(pid, sid)
    assert session is not None
    text = "\n".join(session_lines(session))
    assert "errors 1" in text
    assert "tokens 12 in / 3 out / 15 total   llm calls 1   failed steps 1   time 1.50s" in text
    stored = store.get_trace(pid, failing["id"])
    assert stored is not None
    heading = trace_heading_lines(stored, 1, 1, steps=2)[0]
    assert "tokens 12 in / 3 out  1 llm call(s)  1 failed step(s)" in heading
    assert heading.endswith("ERROR (failed steps)")
    tail = trace_line({**stored, "num_spans": 2})
    assert "12/3 tok" in tail and "1 error(s)" in tail


def test_the_tail_route_answers_each_traces_totals(store: Store) -> None:
    from galileo_otel.server.local_routes import traces_after

    pid = store.create_project("p")["id"]
    sid = store.create_session(pid, {})["id"]
    store.ingest_traces(pid, {"session_id": sid, "traces": [trace(llm(8, 2), tool(500))]})
    (record,) = traces_after(store, pid, after=None, limit=10)["traces"]
    assert (record["input_tokens"], record["total_tokens"], record["num_llm_calls"]) == (8, 10, 1)
    assert (record["num_failed_steps"], record["has_error"], record["num_errors"]) == (1, True, 1)
