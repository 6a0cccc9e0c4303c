"""The REAL official ``galileo`` SDK (2.7) against ``galileo-otel serve``, unmodified.

Each test runs the SDK's own code paths (login, project and log stream get-or-create,
GalileoLogger sessions and traces, ``@log``, session search, distributed mode) against a real
server on 127.0.0.1 and then reads back what the server stored.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from conftest_official_sdk import KEY, loopback_only_fixture, sdk_env_fixture  # noqa: F401

pytestmark = [
    pytest.mark.integration,
    # The SDK runs its async HTTP clients on event loops of its own threads and leaves their
    # transports to the garbage collector; that leak is the SDK's, not the server's.
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]


def _project(server: Any, name: str = "sdk-project") -> dict[str, Any]:
    # The SDK's batch mode sends reliable: false, answered before it is stored.
    assert server.wait_idle(10.0)
    found = server.state.store.find_projects(name)
    assert len(found) == 1, f"expected one project {name!r}, found {found}"
    return dict(found[0])


def _sessions(server: Any, project_id: str) -> list[dict[str, Any]]:
    from galileo_otel.server.query import compile_session_filter

    records, _ = server.state.store.search_sessions(
        project_id, {}, compile_session_filter([], None), None, 0, 100
    )
    return records


def _walk(step: dict[str, Any]) -> list[dict[str, Any]]:
    out, stack = [], list(step.get("spans") or [])
    while stack:
        span = stack.pop(0)
        out.append(span)
        stack[:0] = span.get("spans") or []
    return out


def test_login_gives_an_expiring_bearer_token_and_the_key_still_works(sdk_env: Any) -> None:
    import jwt

    with httpx.Client(base_url=sdk_env.url) as http:
        assert http.post("/login/api_key", json={"api_key": "wrong"}).status_code == 401
        answer = http.post("/login/api_key", json={"api_key": KEY}).json()
        claims = jwt.decode(answer["access_token"], options={"verify_signature": False})
        assert claims["exp"] > claims["iat"]
        bearer = {"Authorization": f"Bearer {answer['access_token']}"}
        user = http.get("/current_user", headers=bearer)
        assert user.status_code == 200 and user.json()["email"]
        assert http.get("/projects", headers=bearer).status_code == 200
        assert http.get("/projects", headers={"Galileo-API-Key": KEY}).status_code == 200
        assert http.get("/projects", headers={"Authorization": "Bearer forged"}).status_code == 401


def test_logger_creates_project_stream_session_and_stores_the_trace(sdk_env: Any) -> None:
    from galileo import GalileoLogger

    logger = GalileoLogger(project="sdk-project", log_stream="sdk-stream")
    session_id = logger.start_session(name="chat", external_id="conv-1", metadata={"k": "v"})
    logger.start_trace(input="What is 2+2?", name="turn")
    logger.add_llm_span(
        input=[{"role": "user", "content": "What is 2+2?"}],
        output={"role": "assistant", "content": "4"},
        model="gpt-test",
        num_input_tokens=5,
        num_output_tokens=1,
    )
    logger.add_tool_span(input="calc(2+2)", output="4", name="calc")
    logger.conclude(output="4")
    logger.flush()

    project = _project(sdk_env)
    streams = sdk_env.state.store.list_log_streams(project["id"])
    assert [s["name"] for s in streams] == ["sdk-stream"]
    (session,) = _sessions(sdk_env, project["id"])
    assert session["id"] == session_id
    assert session["external_id"] == "conv-1" and session["name"] == "chat"
    assert session["user_metadata"] == {"k": "v"}
    assert session["log_stream_id"] == streams[0]["id"]
    (trace,) = sdk_env.state.store.session_traces(project["id"], session_id)
    assert (trace["input"], trace["output"], trace["name"]) == ("What is 2+2?", "4", "turn")
    kinds = {s["type"]: s for s in _walk(trace)}
    assert kinds["llm"]["model"] == "gpt-test" and kinds["llm"]["output"]["content"] == "4"
    assert kinds["tool"]["output"] == "4"

    # A second logger finds the project and stream again instead of duplicating them.
    GalileoLogger(project="sdk-project", log_stream="sdk-stream").flush()
    assert len(sdk_env.state.store.find_projects("sdk-project")) == 1
    assert len(sdk_env.state.store.list_log_streams(project["id"])) == 1


def test_session_search_by_external_id_reuses_the_session(sdk_env: Any) -> None:
    from galileo import GalileoLogger
    from galileo.log_streams import get_log_stream
    from galileo.search import get_sessions

    first = GalileoLogger(project="sdk-project", log_stream="sdk-stream")
    session_id = first.start_session(external_id="ticket-42")
    first.start_trace(input="hello")
    first.conclude(output="hi")
    first.flush()

    again = GalileoLogger(project="sdk-project", log_stream="sdk-stream")
    assert again.start_session(external_id="ticket-42") == session_id
    other = again.start_session(external_id="ticket-43")
    assert other != session_id

    project = _project(sdk_env)
    assert sorted(s["external_id"] for s in _sessions(sdk_env, project["id"])) == [
        "ticket-42",
        "ticket-43",
    ]
    # The SDK's own search API (POST /projects/{id}/sessions/search) parses our records.
    stream = get_log_stream(name="sdk-stream", project_name="sdk-project")
    assert stream is not None
    found = get_sessions(project_id=project["id"], log_stream_id=stream.id)
    assert sorted(str(r.id) for r in found.records) == sorted([session_id, other])
    assert {str(r.run_id) for r in found.records} == {stream.id}


def test_log_decorator_traces_nested_functions(sdk_env: Any) -> None:
    from galileo import galileo_context, log

    @log(span_type="tool")
    def add(a: int, b: int) -> int:
        return a + b

    @log
    def plan(x: int) -> int:
        return add(x, 1) * 2

    with galileo_context(project="sdk-project", log_stream="decorated"):
        assert plan(3) == 8

    project = _project(sdk_env)
    assert [s["name"] for s in sdk_env.state.store.list_log_streams(project["id"])] == ["decorated"]
    assert sdk_env.state.stats()["traces"] == 1
    (row,) = sdk_env.state.store._conn().execute("SELECT id FROM traces").fetchall()
    trace = sdk_env.state.store.get_trace(project["id"], row[0])
    names = [s["name"] for s in _walk(trace)]
    assert names == ["plan", "add"]
    tool = _walk(trace)[1]
    assert tool["type"] == "tool" and tool["output"] == "4"


def test_content_blocks_and_control_spans_are_accepted(sdk_env: Any) -> None:
    from galileo import GalileoLogger
    from galileo_core.schemas.logging.control import ControlResult

    logger = GalileoLogger(project="sdk-project", log_stream="sdk-stream")
    logger.start_session(external_id="media")
    logger.start_trace(input="describe")
    image = {"type": "data", "modality": "image", "url": "https://example.invalid/cat.png"}
    logger.add_llm_span(
        input=[{"role": "user", "content": [{"type": "text", "text": "what is it?"}, image]}],
        output={"role": "assistant", "content": "a cat"},
        model="vision",
    )
    logger.add_control_span(
        input="a cat",
        output=ControlResult(action="observe", matched=False),
        name="pii-guard",
        control_id=7,
    )
    logger.conclude(output="a cat")
    logger.flush()

    project = _project(sdk_env)
    (session,) = _sessions(sdk_env, project["id"])
    (trace,) = sdk_env.state.store.session_traces(project["id"], session["id"])
    spans = {s["type"]: s for s in _walk(trace)}
    assert spans["llm"]["input"][0]["content"][1] == {
        **image,
        "mime_type": None,
        "base64": None,
        "index": None,
        "metadata": None,
    }
    assert spans["control"]["name"] == "pii-guard" and spans["control"]["control_id"] == 7
    assert spans["control"]["output"]["action"] == "observe"


def test_distributed_mode_appends_spans_and_patches_the_trace(sdk_env: Any) -> None:
    from galileo import GalileoLogger

    upstream = GalileoLogger(project="sdk-project", log_stream="sdk-stream", mode="distributed")
    session_id = upstream.start_session(external_id="dist")
    trace = upstream.start_trace(input="plan a trip")
    upstream.add_workflow_span(input="plan", name="planner")
    upstream.add_llm_span(input="where?", output="Lisbon", model="m")
    upstream.conclude(output="Lisbon")  # ends the workflow span
    headers = upstream.get_tracing_headers()

    # A downstream service continues the same trace from the propagated headers.
    downstream = GalileoLogger(
        project="sdk-project",
        log_stream="sdk-stream",
        mode="distributed",
        trace_id=headers["X-Galileo-Trace-ID"],
        span_id=headers["X-Galileo-Parent-ID"],
    )
    downstream.add_tool_span(input="book Lisbon", output="booked", name="booking")
    downstream.flush()
    upstream.conclude(output="booked a trip to Lisbon")
    upstream.flush()

    project = _project(sdk_env)
    stored = sdk_env.state.store.get_trace(project["id"], str(trace.id))
    assert stored is not None
    assert stored["session_id"] == session_id
    assert stored["output"] == "booked a trip to Lisbon"
    top = {s["name"]: s for s in stored["spans"]}
    assert set(top) == {"planner", "booking"}
    assert top["planner"]["output"] == "Lisbon"  # patched when the workflow span concluded
    assert [s["type"] for s in top["planner"]["spans"]] == ["llm"]
    assert top["booking"]["output"] == "booked"
    (session,) = _sessions(sdk_env, project["id"])
    assert (session["num_traces"], session["num_spans"]) == (1, 3)
    # Through the API as the SDK reads it back.
    with httpx.Client(base_url=sdk_env.url, headers={"Galileo-API-Key": KEY}) as http:
        span_id = top["booking"]["id"]
        answer = http.get(f"/v2/projects/{project['id']}/spans/{span_id}")
        assert answer.status_code == 200 and answer.json()["output"] == "booked"


def _log_two_turns(session_external_id: str) -> str:
    from galileo import GalileoLogger

    logger = GalileoLogger(project="sdk-project", log_stream="sdk-stream")
    session_id = logger.start_session(external_id=session_external_id)
    for question, answer in (("Where is my parcel?", "In Lisbon."), ("And the refund?", "Sent.")):
        logger.start_trace(input=question, name="turn")
        logger.add_llm_span(
            input=[{"role": "user", "content": question}],
            output={"role": "assistant", "content": answer},
            model="gpt-test",
            num_input_tokens=7,
            num_output_tokens=2,
        )
        logger.add_tool_span(input="lookup", output=answer, name="lookup")
        logger.conclude(output=answer)
    logger.flush()
    return str(session_id)


def test_search_get_traces_and_get_spans_parse_with_the_sdks_own_models(sdk_env: Any) -> None:
    from galileo.log_streams import get_log_stream
    from galileo.resources.models import (
        ExtendedLlmSpanRecord,
        ExtendedToolSpanRecord,
        ExtendedTraceRecord,
        LogRecordsSortClause,
        LogRecordsTextFilter,
        LogRecordsTextFilterOperator,
    )
    from galileo.search import get_spans, get_traces

    session_id = _log_two_turns("ticket-7")
    project = _project(sdk_env)
    stream = get_log_stream(name="sdk-stream", project_name="sdk-project")
    assert stream is not None

    traces = get_traces(project_id=project["id"], log_stream_id=stream.id)
    assert traces.records and all(isinstance(r, ExtendedTraceRecord) for r in traces.records)
    # Newest first by default, each with its session and log stream.
    assert [r.input_ for r in traces.records] == ["And the refund?", "Where is my parcel?"]
    assert {str(r.session_id) for r in traces.records} == {session_id}
    assert {str(r.run_id) for r in traces.records} == {stream.id}

    oldest = get_traces(
        project_id=project["id"],
        sort=LogRecordsSortClause(column_id="created_at", ascending=True),
        limit=1,
    )
    assert [r.input_ for r in oldest.records] == ["Where is my parcel?"]
    assert oldest.paginated and oldest.next_starting_token == 1

    found = get_traces(
        project_id=project["id"],
        filters=[
            LogRecordsTextFilter(
                column_id="output",
                operator=LogRecordsTextFilterOperator.CONTAINS,
                value="lisbon",
                case_sensitive=False,
            )
        ],
    )
    assert [r.output for r in found.records] == ["In Lisbon."]

    spans = get_spans(project_id=project["id"], log_stream_id=stream.id)
    kinds = sorted(type(r).__name__ for r in spans.records)
    assert kinds == sorted(["ExtendedLlmSpanRecord", "ExtendedToolSpanRecord"] * 2)
    trace_ids = {str(r.id) for r in traces.records}
    assert {str(r.trace_id) for r in spans.records} == trace_ids
    llm = get_spans(
        project_id=project["id"],
        filters=[
            LogRecordsTextFilter(
                column_id="type", operator=LogRecordsTextFilterOperator.EQ, value="llm"
            )
        ],
    )
    assert len(llm.records) == 2 and all(isinstance(r, ExtendedLlmSpanRecord) for r in llm.records)
    assert {r.model for r in llm.records} == {"gpt-test"}
    assert not any(isinstance(r, ExtendedToolSpanRecord) for r in llm.records)


def test_search_of_an_unknown_column_is_a_422_naming_the_known_ones(sdk_env: Any) -> None:
    from galileo.resources.models import LogRecordsTextFilter, LogRecordsTextFilterOperator
    from galileo.search import get_traces

    _log_two_turns("ticket-8")
    project = _project(sdk_env)
    with pytest.raises(ValueError, match="unknown column 'nope' for traces"):
        get_traces(
            project_id=project["id"],
            filters=[
                LogRecordsTextFilter(
                    column_id="nope", operator=LogRecordsTextFilterOperator.EQ, value="x"
                )
            ],
        )
    with httpx.Client(base_url=sdk_env.url, headers={"Galileo-API-Key": KEY}) as http:
        missing = http.post("/projects/00000000-0000-4000-8000-000000000000/spans/search", json={})
        assert missing.status_code == 404
