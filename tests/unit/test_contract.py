"""Contract: every body the client sends validates against the OpenAPI file, and the models match it."""

from __future__ import annotations

import json
import string
from datetime import datetime, timezone
from typing import Any

import jsonschema
import pytest
from conftest_api import (
    API_KEY,
    BASE,
    EXPERIMENT_ID,
    LOG_STREAM_ID,
    PROJECT_ID,
    SESSION_ID,
    FakeAPI,
    FakeClock,
    _openapi,
    filter_tree_schema_name,
    new_uuid,
    ok,
    request_schema,
    schema_validator,
    session_answer,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from galileo_otel.api import models as m
from galileo_otel.api.client import GalileoClient, RetryPolicy
from galileo_otel.api.filters import (
    Filter,
    boolean,
    collection,
    date,
    fully_annotated,
    id_,
    number,
    text,
)
from galileo_otel.api.models import filter_expression_adapter, to_wire

SESSIONS = "/v2/projects/{project_id}/sessions"
COUNT = "/v2/projects/{project_id}/sessions/count"
SEARCH = "/v2/projects/{project_id}/sessions/search"
TRACES = "/v2/projects/{project_id}/traces"


def as_json(value: Any) -> Any:
    """What the server receives: the value after a trip through JSON text."""
    return json.loads(json.dumps(value))


def validate(schema_name: str, body: Any) -> None:
    schema_validator(schema_name).validate(as_json(body))


def client_for(api: FakeAPI, **kw: Any) -> GalileoClient:
    clock = FakeClock()
    return GalileoClient(
        api_key=API_KEY,
        api_url=BASE,
        project_id=PROJECT_ID,
        transport=api.transport(),
        sleep=clock.sleep,
        clock=clock,
        retry=RetryPolicy.none(),
        **kw,
    )


def test_the_validator_is_not_a_rubber_stamp() -> None:
    # The checks below mean something only if a bad body fails.
    sessions = request_schema(SESSIONS)
    with pytest.raises(jsonschema.ValidationError, match="uuid4"):
        validate(sessions, {"previous_session_id": "6ba7b810-9dad-11d1-80b4-00c04fd430c8"})
    with pytest.raises(jsonschema.ValidationError, match="date-time"):
        validate(request_schema(TRACES), {"traces": [{"created_at": "2025-01-01T00:00:00"}]})
    name = request_schema(COUNT)
    with pytest.raises(jsonschema.ValidationError):
        validate(
            name, {"filters": [{"type": "text", "column_id": "a", "operator": "gt", "value": "x"}]}
        )
    with pytest.raises(jsonschema.ValidationError):
        validate(name, {"filter_tree": {"and": [{"nand": []}]}})
    with pytest.raises(jsonschema.ValidationError):
        validate(request_schema(TRACES), {"traces": []})
    with pytest.raises(jsonschema.ValidationError):
        validate(request_schema(SESSIONS), {"logging_method": "carrier_pigeon"})


# ------------------------------------------------------------------------------------------------
# Every body the client can send
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"name": "chat", "external_id": "conv-1", "user_metadata": {"user.id": "u1"}},
        {"previous_session_id": "0d4b1e9a-7c3f-4a2b-9e8d-1f2a3b4c5d6e", "reliable": False},
        {"experiment_id": EXPERIMENT_ID},
        {
            "log_stream_id": LOG_STREAM_ID,
            "metrics_testing_id": "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b",
        },
    ],
)
def test_create_session_bodies(kwargs: dict[str, Any]) -> None:
    api = FakeAPI([ok(session_answer())])
    with client_for(api, log_stream_id=LOG_STREAM_ID) as client:
        client.create_session(**kwargs)
    body = api.last_body
    validate(request_schema(SESSIONS), body)
    assert body["logging_method"] == "python_client"
    assert "client_version" in body and "reliable" in body


def test_count_and_search_bodies() -> None:
    tree = (
        text("input").contains("refund", case_sensitive=False) & (number("num_traces") >= 2)
    ) | ~(collection("tags").one_of(["beta", "internal"]))
    flat = [
        text("external_id") == "conv-1",
        id_("id") != new_uuid(),
        boolean("has_error").is_false(),
        date("created_at") < datetime(2030, 1, 1),
        number("num_traces").between(1, 10),
        fully_annotated(),
    ]
    api = FakeAPI([ok({"total_count": 1}), ok({"records": []}), ok({"total_count": 0})])
    with client_for(api, log_stream_id=LOG_STREAM_ID) as client:
        client.count_sessions(filters=flat, filter_tree=tree)
        client.search_sessions(
            filters=flat,
            filter_tree=tree,
            limit=5,
            starting_token=10,
            sort={"column_id": "created_at"},
        )
        client.count_sessions(experiment_id=EXPERIMENT_ID)
    count_body, search_body, bare_body = api.bodies()
    validate(request_schema(COUNT), count_body)
    validate(request_schema(SEARCH), search_body)
    validate(request_schema(COUNT), bare_body)
    assert len(count_body["filters"]) == len(flat)


def _rich_trace() -> dict[str, Any]:
    tid = new_uuid()
    return {
        "id": tid,
        "trace_id": tid,
        "session_id": SESSION_ID,
        "name": "turn",
        "input": "where is my refund?",
        "output": "on its way",
        "created_at": datetime(2025, 1, 1, tzinfo=timezone.utc),
        "user_metadata": {"user.id": "u1"},
        "tags": ["beta"],
        "status_code": 200,
        "metrics": {"duration_ns": 1_000_000},
        "external_id": "otel-trace-1",
        "spans": [
            {
                "type": "agent",
                "agent_type": "router",
                "name": "support-agent",
                "id": new_uuid(),
                "parent_id": tid,
                "trace_id": tid,
                "step_number": 1,
                "input": [{"role": "user", "content": "where is my refund?"}],
                "output": {"role": "assistant", "content": "on its way"},
                "spans": [
                    {
                        "type": "llm",
                        "model": "gpt-x",
                        "temperature": 0.1,
                        "finish_reason": "tool_calls",
                        "input": [
                            {"role": "system", "content": [{"type": "text", "text": "be nice"}]},
                            {"role": "user", "content": "where is my refund?"},
                        ],
                        "output": {
                            "role": "assistant",
                            "content": "",
                            "tool_calls": [
                                {
                                    "id": "c1",
                                    "function": {"name": "lookup", "arguments": '{"o": 1}'},
                                }
                            ],
                        },
                        "tools": [{"type": "function", "function": {"name": "lookup"}}],
                        "metrics": {
                            "duration_ns": 500,
                            "num_input_tokens": 10,
                            "num_output_tokens": 2,
                            "num_total_tokens": 12,
                            "time_to_first_token_ns": 100,
                        },
                        "events": [{"name": "token"}],
                    },
                    {
                        "type": "tool",
                        "name": "lookup",
                        "input": '{"o": 1}',
                        "output": "shipped",
                        "tool_call_id": "c1",
                        "status_code": 200,
                    },
                    {
                        "type": "retriever",
                        "input": "refund policy",
                        "output": [
                            {
                                "content": "30 days",
                                "metadata": {"score": 0.9, "src": "kb", "ok": True},
                            }
                        ],
                    },
                    {
                        "type": "workflow",
                        "input": [{"content": "doc"}],
                        "output": "done",
                        "spans": [{"type": "tool", "input": "x"}],
                    },
                ],
            }
        ],
    }


def test_log_traces_bodies() -> None:
    answer = {
        "project_id": PROJECT_ID,
        "project_name": "proj",
        "records_count": 1,
        "traces_count": 1,
        "spans_count": 0,
    }
    api = FakeAPI([ok(answer), ok(answer)])
    with client_for(api, log_stream_id=LOG_STREAM_ID) as client:
        client.log_traces(
            [_rich_trace(), m.Trace(input=[m.TextContentPart(text="multi")])],
            session_id=SESSION_ID,
            session_external_id="conv-1",
            include_trace_ids=True,
        )
        client.log_traces(
            [{"input": "x"}], experiment_id=EXPERIMENT_ID, reliable=False, is_complete=False
        )
    for body in api.bodies():
        validate(request_schema(TRACES), body)
    assert api.bodies()[0]["traces"][0]["spans"][0]["spans"][0]["type"] == "llm"


def test_hot_path_body_validates() -> None:
    with client_for(FakeAPI(), log_stream_id=LOG_STREAM_ID) as client:
        trace = to_wire(m.Trace.model_validate(_rich_trace()))
        body = client.build_log_traces_body(
            [trace], session_id=SESSION_ID, session_external_id="conv-1"
        )
    validate(request_schema(TRACES), body)


# ------------------------------------------------------------------------------------------------
# The models say what the schema says
# ------------------------------------------------------------------------------------------------

SCHEMA_OF_MODEL = {
    "SessionCreateRequest": m.SessionCreateRequest,
    "SessionCreateResponse": m.SessionCreateResponse,
    "LogRecordsQueryCountRequest": m.LogRecordsQueryCountRequest,
    "LogRecordsQueryCountResponse": m.LogRecordsQueryCountResponse,
    "LogRecordsIDFilter": m.LogRecordsIDFilter,
    "LogRecordsDateFilter": m.LogRecordsDateFilter,
    "LogRecordsNumberFilter": m.LogRecordsNumberFilter,
    "LogRecordsBooleanFilter": m.LogRecordsBooleanFilter,
    "LogRecordsCollectionFilter": m.LogRecordsCollectionFilter,
    "LogRecordsTextFilter": m.LogRecordsTextFilter,
    "LogRecordsFullyAnnotatedFilter": m.LogRecordsFullyAnnotatedFilter,
    "LogTracesIngestRequest": m.LogTracesIngestRequest,
    "LogTracesIngestResponse": m.LogTracesIngestResponse,
    "LogRecordsQueryRequest": m.LogRecordsQueryRequest,
    "LogRecordsQueryResponse": m.LogRecordsQueryResponse,
    "HTTPValidationError": m.HTTPValidationError,
    "ValidationError": m.ValidationErrorItem,
    "Message": m.Message,
    "Document": m.Document,
    "Metrics": m.Metrics,
    "LlmMetrics": m.LlmMetrics,
    "Trace": m.Trace,
    "LlmSpan": m.LlmSpan,
    "RetrieverSpan": m.RetrieverSpan,
    "ToolSpan": m.ToolSpan,
    "WorkflowSpan": m.WorkflowSpan,
    "AgentSpan": m.AgentSpan,
}


def test_every_schema_has_a_model() -> None:
    doc, _ = _openapi()
    names = set(doc["components"]["schemas"])
    tree_nodes = {
        n
        for n in names
        if n.split("_", 1)[0] in {"FilterExpression", "FilterLeaf", "AndNode", "OrNode", "NotNode"}
    }
    assert len(tree_nodes) == 5
    assert names - tree_nodes - {"LoggingMethod"} == set(SCHEMA_OF_MODEL)


@pytest.mark.parametrize("name", sorted(SCHEMA_OF_MODEL))
def test_model_fields_required_and_defaults_match_the_schema(name: str) -> None:
    doc, _ = _openapi()
    schema = doc["components"]["schemas"][name]
    model: type[BaseModel] = SCHEMA_OF_MODEL[name]
    ours = model.model_json_schema(by_alias=True, mode="validation")
    if "$ref" in ours:  # recursive models put themselves under $defs
        ours = ours["$defs"][ours["$ref"].rsplit("/", 1)[1]]
    assert set(schema.get("properties", {})) == set(ours.get("properties", {})), name
    theirs_required = set(schema.get("required", []))
    our_required = set(ours.get("required", []))
    if name.endswith("Response") or name in {"ValidationError", "HTTPValidationError"}:
        assert our_required <= theirs_required  # lenient on what servers send
    else:
        assert our_required == theirs_required, name
    for prop, spec in schema.get("properties", {}).items():
        if "default" in spec:
            assert ours["properties"][prop].get("default") == spec["default"], (name, prop)
        if "enum" in spec:
            assert ours["properties"][prop]["enum"] == spec["enum"], (name, prop)
        if "const" in spec:
            assert ours["properties"][prop]["const"] == spec["const"], (name, prop)


def test_logging_method_enum_matches() -> None:
    doc, _ = _openapi()
    assert [e.value for e in m.LoggingMethod] == doc["components"]["schemas"]["LoggingMethod"][
        "enum"
    ]


# ------------------------------------------------------------------------------------------------
# Property: every filter tree the DSL can build validates against the schema
# ------------------------------------------------------------------------------------------------

columns = st.text(alphabet=string.ascii_lowercase + "_.", min_size=1, max_size=12)
texts = st.text(max_size=15)
text_lists = st.lists(texts, max_size=4)
numbers = st.integers(min_value=-(10**12), max_value=10**12) | st.floats(
    allow_nan=False, allow_infinity=False, width=32
)
datetimes = st.datetimes(
    min_value=datetime(1970, 1, 2),
    max_value=datetime(2200, 1, 1),
    timezones=st.none() | st.just(timezone.utc),
)
uuids = st.uuids(version=4)
flags = st.booleans()


@st.composite
def conditions(draw: st.DrawFn) -> Filter:
    kind = draw(
        st.sampled_from(["text", "number", "date", "boolean", "collection", "id", "annotated"])
    )
    col = draw(columns)
    cs = draw(flags)
    if kind == "text":
        c = text(col)
        return draw(
            st.sampled_from(
                [
                    lambda: c == draw(texts),
                    lambda: c != draw(texts),
                    lambda: c.contains(draw(texts), case_sensitive=cs),
                    lambda: c.one_of(draw(text_lists), case_sensitive=cs),
                    lambda: c.not_in(draw(text_lists), case_sensitive=cs),
                ]
            )
        )()
    if kind == "number":
        n = number(col)
        x, y = draw(numbers), draw(numbers)
        return draw(
            st.sampled_from(
                [n == x, n != x, n > x, n >= x, n < x, n <= x, n.between(min(x, y), max(x, y))]
            )
        )
    if kind == "date":
        d, when = date(col), draw(datetimes)
        return draw(
            st.sampled_from([d == when, d != when, d > when, d >= when, d < when, d <= when])
        )
    if kind == "boolean":
        b, v = boolean(col), draw(flags)
        return draw(st.sampled_from([b == v, b != v, b.is_true(), b.is_false()]))
    if kind == "collection":
        c2 = collection(col)
        return draw(
            st.sampled_from(
                [
                    lambda: c2 == draw(texts),
                    lambda: c2.eq(draw(text_lists), case_sensitive=cs),
                    lambda: c2.contains(draw(texts), case_sensitive=cs),
                    lambda: c2.one_of(draw(text_lists)),
                    lambda: c2.not_in(draw(text_lists)),
                ]
            )
        )()
    if kind == "id":
        i = id_(col)
        return draw(
            st.sampled_from(
                [
                    lambda: i == draw(uuids),
                    lambda: i != str(draw(uuids)),
                    lambda: i.one_of(draw(st.lists(uuids, max_size=3))),
                    lambda: i.not_in(draw(st.lists(uuids, max_size=3))),
                    lambda: i.contains(draw(texts)),
                ]
            )
        )()
    return fully_annotated(draw(st.none() | st.lists(uuids, min_size=1, max_size=3)))


trees = st.recursive(
    conditions(),
    lambda kids: st.one_of(
        st.tuples(kids, kids).map(lambda p: p[0] & p[1]),
        st.tuples(kids, kids).map(lambda p: p[0] | p[1]),
        kids.map(lambda k: ~k),
    ),
    max_leaves=12,
)


def _dates_are_rfc3339(node: Any) -> None:
    # jsonschema does not check format: date-time without an extra package; check it here.
    if isinstance(node, dict):
        if node.get("type") == "date":
            parsed = datetime.fromisoformat(node["value"].replace("Z", "+00:00"))
            assert parsed.tzinfo is not None
        for value in node.values():
            _dates_are_rfc3339(value)
    elif isinstance(node, list):
        for value in node:
            _dates_are_rfc3339(value)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees)
def test_dsl_trees_validate_against_the_schema(tree: Filter) -> None:
    wire = as_json(tree.to_dict())
    schema_validator(filter_tree_schema_name()).validate(wire)
    _dates_are_rfc3339(wire)
    # What the server parses back is what was built.
    assert as_json(to_wire(filter_expression_adapter.validate_python(wire))) == wire


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(conditions(), max_size=5), st.none() | trees)
def test_dsl_count_and_search_requests_validate(flat: list[Filter], tree: Filter | None) -> None:
    api = FakeAPI([ok({"total_count": 0}), ok({"records": []})])
    with client_for(api) as client:
        client.count_sessions(filters=flat, filter_tree=tree, log_stream_id=LOG_STREAM_ID)
        client.search_sessions(filters=flat, filter_tree=tree, log_stream_id=LOG_STREAM_ID)
    count_body, search_body = api.bodies()
    validate(request_schema(COUNT), count_body)
    validate(request_schema(SEARCH), search_body)
    assert len(count_body["filters"]) == len(flat)


# ------------------------------------------------------------------------------------------------
# Property: every trace the models accept serialises to a body the schema accepts
# ------------------------------------------------------------------------------------------------

small_text = st.text(max_size=8)
maybe_uuid = st.none() | uuids.map(str)
str_dict = st.dictionaries(small_text, small_text, max_size=2)
content = small_text | st.lists(
    st.one_of(
        st.builds(lambda t: {"type": "text", "text": t}, small_text),
        st.builds(lambda t: {"text": t}, small_text),
        st.builds(lambda f: {"type": "file", "file_id": f}, st.none() | small_text),
    ),
    max_size=2,
)
roles = st.sampled_from(["system", "user", "assistant", "tool", "developer", "function", "agent"])
tool_calls = st.none() | st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "id": small_text,
            "function": st.fixed_dictionaries(
                {}, optional={"name": small_text, "arguments": small_text}
            ),
        },
    ),
    max_size=2,
)
messages = st.fixed_dictionaries(
    {"role": roles, "content": content},
    optional={"tool_call_id": st.none() | small_text, "tool_calls": tool_calls},
)
documents = st.fixed_dictionaries(
    {"content": small_text},
    optional={
        "metadata": st.dictionaries(
            small_text,
            small_text
            | st.booleans()
            | st.integers()
            | st.floats(allow_nan=False, allow_infinity=False),
            max_size=2,
        )
    },
)
step_io = st.one_of(
    small_text, st.lists(messages, max_size=2), messages, st.lists(documents, max_size=2)
)
maybe_int = st.none() | st.integers(min_value=0, max_value=2**53)
common = {
    "name": small_text,
    "created_at": datetimes.map(lambda d: d.isoformat()),
    "user_metadata": str_dict,
    "tags": st.lists(small_text, max_size=2),
    "status_code": st.none() | st.integers(100, 599),
    "external_id": st.none() | small_text,
    "id": maybe_uuid,
    "session_id": maybe_uuid,
    "trace_id": maybe_uuid,
}
span_common = {**common, "step_number": maybe_int, "parent_id": maybe_uuid}


def _spans(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[list[dict[str, Any]]]:
    return st.lists(children, max_size=3)


leaf_spans = st.one_of(
    st.fixed_dictionaries(
        {"type": st.just("llm")},
        optional={
            **span_common,
            "input": st.lists(messages, max_size=2),
            "output": st.none() | messages,
            "model": st.none() | small_text,
            "temperature": st.none() | st.floats(0, 2),
            "metrics": st.fixed_dictionaries(
                {}, optional={"num_input_tokens": maybe_int, "duration_ns": maybe_int}
            ),
            "tools": st.none() | st.lists(st.just({"type": "function"}), max_size=1),
        },
    ),
    st.fixed_dictionaries(
        {"type": st.just("tool")},
        optional={**span_common, "input": small_text, "output": st.none() | small_text},
    ),
    st.fixed_dictionaries(
        {"type": st.just("retriever")},
        optional={
            **span_common,
            "input": small_text,
            "output": st.none() | st.lists(documents, max_size=2),
        },
    ),
)
span_trees = st.recursive(
    leaf_spans,
    lambda kids: st.one_of(
        st.fixed_dictionaries(
            {"type": st.just("workflow"), "spans": _spans(kids)},
            optional={**span_common, "input": step_io, "output": st.none() | step_io},
        ),
        st.fixed_dictionaries(
            {"type": st.just("agent"), "spans": _spans(kids)},
            optional={
                **span_common,
                "input": step_io,
                "agent_type": st.sampled_from(["default", "planner", "router", "judge"]),
            },
        ),
    ),
    max_leaves=8,
)
traces = st.fixed_dictionaries(
    {"spans": _spans(span_trees)},
    optional={**common, "input": content, "output": st.none() | content},
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(traces, min_size=1, max_size=2), st.booleans())
def test_any_accepted_trace_serialises_to_a_valid_body(
    batch: list[dict[str, Any]], reliable: bool
) -> None:
    api = FakeAPI(
        [
            ok(
                {
                    "project_id": PROJECT_ID,
                    "project_name": "p",
                    "records_count": 1,
                    "traces_count": 1,
                    "spans_count": 1,
                }
            )
        ]
    )
    with client_for(api, log_stream_id=LOG_STREAM_ID) as client:
        client.log_traces(batch, session_id=SESSION_ID, reliable=reliable)
    validate(request_schema(TRACES), api.last_body)
