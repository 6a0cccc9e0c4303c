"""api/models.py: defaults, operators, UUIDs, the recursive filter tree, traces and spans."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

import pydantic
import pytest

from galileo_otel.api import models as m
from galileo_otel.api.models import (
    AgentSpan,
    AndNode,
    FilterLeaf,
    HTTPValidationError,
    LlmSpan,
    LoggingMethod,
    LogRecordsBooleanFilter,
    LogRecordsCollectionFilter,
    LogRecordsFullyAnnotatedFilter,
    LogRecordsIDFilter,
    LogRecordsNumberFilter,
    LogRecordsQueryCountRequest,
    LogRecordsQueryRequest,
    LogRecordsQueryResponse,
    LogRecordsTextFilter,
    LogStream,
    LogTracesIngestRequest,
    LogTracesIngestResponse,
    Message,
    NotNode,
    OrNode,
    Project,
    RetrieverSpan,
    SessionCreateRequest,
    SessionCreateResponse,
    ToolSpan,
    Trace,
    WorkflowSpan,
    filter_adapter,
    filter_expression_adapter,
    span_adapter,
    to_wire,
)

U4 = "9b2f8a3c-1d4e-4f5a-8b6c-7d8e9f0a1b2c"
U1 = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"  # a version-1 UUID


def test_all_names_exist_and_are_sorted() -> None:
    assert m.__all__ == sorted(m.__all__)
    for name in m.__all__:
        assert hasattr(m, name), name


def test_session_create_request_defaults() -> None:
    assert to_wire(SessionCreateRequest()) == {"logging_method": "api_direct", "reliable": True}
    assert [e.value for e in LoggingMethod] == [
        "playground",
        "python_client",
        "typescript_client",
        "api_direct",
    ]


@pytest.mark.parametrize(
    "field", ["log_stream_id", "experiment_id", "metrics_testing_id", "previous_session_id"]
)
@pytest.mark.parametrize("bad", ["nope", U1])
def test_uuid4_fields_reject_non_uuid4(field: str, bad: str) -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        SessionCreateRequest.model_validate({field: bad})
    assert info.value.errors()[0]["loc"] == (field,)
    assert str(SessionCreateRequest.model_validate({field: U4}).model_dump()[field]) == U4


def test_request_and_response_models_ignore_unknown_fields() -> None:
    req = SessionCreateRequest.model_validate({"name": "n", "surprise": 1})
    assert "surprise" not in to_wire(req)
    resp = SessionCreateResponse.model_validate(
        {"id": U4, "name": None, "project_id": U4, "project_name": "p", "new_field": [1]}
    )
    assert resp.project_name == "p"
    assert (
        LogTracesIngestResponse.model_validate(
            {
                "project_id": U4,
                "project_name": "p",
                "records_count": 1,
                "traces_count": 1,
                "spans_count": 0,
                "extra": True,
            }
        ).spans_count
        == 0
    )


def test_session_create_response_required_fields() -> None:
    with pytest.raises(pydantic.ValidationError):
        SessionCreateResponse.model_validate({"id": U4, "project_id": U4, "project_name": "p"})


def test_response_ids_accept_any_uuid_version() -> None:
    resp = SessionCreateResponse.model_validate(
        {"id": U1, "name": "n", "project_id": U1, "project_name": "p"}
    )
    assert str(resp.id) == U1


# --- filters ------------------------------------------------------------------------------------


def test_filter_defaults() -> None:
    assert to_wire(LogRecordsIDFilter(column_id="id", value=U4)) == {
        "column_id": "id",
        "operator": "eq",
        "value": U4,
        "type": "id",
    }
    assert LogRecordsBooleanFilter(column_id="b", value=False).operator == "eq"
    text = LogRecordsTextFilter(column_id="input", operator="contains", value="x")
    assert text.case_sensitive is True and text.type == "text"
    coll = LogRecordsCollectionFilter(column_id="tags", operator="contains", value="x")
    assert coll.case_sensitive is True and coll.type == "collection"
    assert to_wire(LogRecordsFullyAnnotatedFilter()) == {
        "column_id": "fully_annotated",
        "type": "fully_annotated",
    }


@pytest.mark.parametrize(
    ("kind", "required"),
    [
        ("text", {"column_id", "operator", "value"}),
        ("number", {"column_id", "operator", "value"}),
        ("date", {"column_id", "operator", "value"}),
        ("collection", {"column_id", "operator", "value"}),
        ("id", {"column_id", "value"}),
        ("boolean", {"column_id", "value"}),
    ],
)
def test_filter_required_fields(kind: str, required: set[str]) -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        filter_adapter.validate_python({"type": kind})
    missing = {e["loc"][-1] for e in info.value.errors() if e["type"] == "missing"}
    assert missing == required


@pytest.mark.parametrize(
    ("kind", "value", "allowed", "rejected"),
    [
        ("id", U4, ["eq", "ne", "one_of", "not_in", "contains"], ["gt", "between"]),
        ("date", "2025-01-01T00:00:00Z", ["eq", "ne", "gt", "gte", "lt", "lte"], ["contains"]),
        ("number", 1, ["eq", "ne", "gt", "gte", "lt", "lte"], ["contains", "one_of"]),
        ("boolean", True, ["eq", "ne"], ["gt", "contains"]),
        ("collection", "x", ["eq", "contains", "one_of", "not_in"], ["ne", "gt"]),
        ("text", "x", ["eq", "ne", "contains", "one_of", "not_in"], ["gt", "between"]),
    ],
)
def test_operators_per_filter_type(
    kind: str, value: Any, allowed: list[str], rejected: list[str]
) -> None:
    for op in allowed:
        model = filter_adapter.validate_python(
            {"type": kind, "column_id": "c", "operator": op, "value": value}
        )
        assert model.operator == op
    for op in rejected:
        with pytest.raises(pydantic.ValidationError) as info:
            filter_adapter.validate_python(
                {"type": kind, "column_id": "c", "operator": op, "value": value}
            )
        message = str(info.value)
        assert f"operator {op!r} is not allowed for a {kind} filter" in message
        assert allowed[0] in message


def test_number_between_needs_exactly_two_values() -> None:
    ok = LogRecordsNumberFilter(column_id="n", operator="between", value=[2, 5])
    assert ok.value == [2, 5]
    for bad in ([1], [1, 2, 3], 4, []):
        with pytest.raises(pydantic.ValidationError, match="exactly two values"):
            LogRecordsNumberFilter(column_id="n", operator="between", value=bad)


def test_number_keeps_ints_and_floats() -> None:
    assert LogRecordsNumberFilter(column_id="n", operator="gt", value=3).value == 3
    assert isinstance(LogRecordsNumberFilter(column_id="n", operator="gt", value=3).value, int)
    assert LogRecordsNumberFilter(column_id="n", operator="lt", value=2.5).value == 2.5


def test_date_filter_parses_and_serialises_iso() -> None:
    f = filter_adapter.validate_python(
        {
            "type": "date",
            "column_id": "created_at",
            "operator": "gte",
            "value": "2025-01-02T03:04:05Z",
        }
    )
    assert f.value == datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert to_wire(f)["value"] == "2025-01-02T03:04:05Z"


def test_unknown_filter_type_is_rejected() -> None:
    with pytest.raises(pydantic.ValidationError, match="does not match any of the expected tags"):
        filter_adapter.validate_python({"type": "regex", "column_id": "x", "value": "y"})


def test_fully_annotated_user_ids() -> None:
    f = LogRecordsFullyAnnotatedFilter(user_ids=[uuid.UUID(U4)])
    assert to_wire(f)["user_ids"] == [U4]
    with pytest.raises(pydantic.ValidationError):
        LogRecordsFullyAnnotatedFilter(user_ids=[])
    with pytest.raises(pydantic.ValidationError):
        LogRecordsFullyAnnotatedFilter.model_validate({"column_id": "other"})


TREE = {
    "and": [
        {"filter": {"type": "text", "column_id": "input", "operator": "contains", "value": "x"}},
        {
            "or": [
                {"not": {"filter": {"type": "boolean", "column_id": "b", "value": True}}},
                {"and": []},
            ]
        },
    ]
}


def test_filter_tree_round_trip() -> None:
    tree = filter_expression_adapter.validate_python(TREE)
    assert isinstance(tree, AndNode)
    assert isinstance(tree.and_[0], FilterLeaf)
    assert isinstance(tree.and_[1], OrNode)
    assert isinstance(tree.and_[1].or_[0], NotNode)
    wire = to_wire(tree)
    assert wire["and"][0]["filter"]["case_sensitive"] is True
    assert wire["and"][1]["or"][0]["not"]["filter"]["operator"] == "eq"
    assert to_wire(filter_expression_adapter.validate_python(wire)) == wire


def test_filter_tree_error_points_at_the_bad_node() -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        LogRecordsQueryCountRequest.model_validate({"filter_tree": {"and": [{"nand": []}]}})
    err = info.value.errors()[0]
    assert err["type"] == "filter_node"
    # pydantic puts the union tag before the field: filter_tree -> (tag and) -> and -> 0
    assert err["loc"] == ("filter_tree", "and", "and", 0)
    with pytest.raises(pydantic.ValidationError, match="'gt' is not allowed"):
        LogRecordsQueryCountRequest.model_validate(
            {
                "filter_tree": {
                    "not": {
                        "filter": {"type": "text", "column_id": "a", "operator": "gt", "value": "b"}
                    }
                }
            }
        )


def test_nodes_accept_python_names_too() -> None:
    leaf = FilterLeaf(filter=LogRecordsBooleanFilter(column_id="b", value=True))
    node = NotNode(not_=AndNode(and_=[leaf]))
    assert to_wire(node) == {
        "not": {
            "and": [
                {"filter": {"column_id": "b", "operator": "eq", "value": True, "type": "boolean"}}
            ]
        }
    }


def test_query_request_defaults() -> None:
    assert to_wire(LogRecordsQueryRequest()) == {
        "starting_token": 0,
        "limit": 100,
        "filters": [],
        "include_counts": False,
    }
    req = LogRecordsQueryRequest.model_validate({"sort": {"column_id": "created_at"}})
    assert to_wire(req)["sort"] == {
        "column_id": "created_at",
        "ascending": True,
        "sort_type": "column",
    }
    assert LogRecordsQueryResponse.model_validate({}).records == []


def test_http_validation_error_keeps_fastapi_detail() -> None:
    err = HTTPValidationError.model_validate(
        {"detail": [{"loc": ["body", 0], "msg": "bad", "type": "x", "input": 1, "ctx": {}}]}
    )
    assert err.detail[0].loc == ["body", 0]


# --- traces and spans ---------------------------------------------------------------------------


def test_trace_defaults_and_nested_spans() -> None:
    trace = Trace.model_validate(
        {
            "input": "hi",
            "spans": [
                {
                    "type": "workflow",
                    "spans": [
                        {"type": "llm", "input": [{"role": "user", "content": "hi"}]},
                        {"type": "agent", "spans": [{"type": "tool", "input": "q"}]},
                    ],
                },
                {
                    "type": "retriever",
                    "input": "q",
                    "output": [{"content": "doc", "metadata": {"s": 1}}],
                },
            ],
        }
    )
    workflow, retriever = trace.spans
    assert isinstance(workflow, WorkflowSpan) and isinstance(retriever, RetrieverSpan)
    assert isinstance(workflow.spans[0], LlmSpan) and isinstance(workflow.spans[1], AgentSpan)
    assert isinstance(workflow.spans[1].spans[0], ToolSpan)
    assert workflow.spans[1].agent_type == "default"
    assert trace.created_at.tzinfo is not None
    wire = to_wire(trace)
    assert wire["type"] == "trace" and wire["name"] == ""
    assert wire["spans"][1]["output"][0]["metadata"] == {"s": 1}
    assert "output" not in wire  # None left out, never sent as null


def test_workflow_input_picks_messages_over_documents() -> None:
    span = WorkflowSpan.model_validate({"input": [{"role": "user", "content": "hi"}]})
    assert isinstance(span.input, list) and isinstance(span.input[0], Message)
    docs = WorkflowSpan.model_validate({"input": [{"content": "d"}]})
    assert isinstance(docs.input, list) and type(docs.input[0]).__name__ == "Document"


def test_llm_span_messages_tools_and_metrics() -> None:
    span = span_adapter.validate_python(
        {
            "type": "llm",
            "input": [
                {"role": "system", "content": [{"type": "text", "text": "be brief"}]},
                {"role": "tool", "content": "42", "tool_call_id": "c1"},
            ],
            "output": {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"id": "c2", "function": {"name": "f", "arguments": "{}"}}],
            },
            "metrics": {"num_input_tokens": 3, "num_output_tokens": 4, "custom_metric": 1.5},
            "model": "gpt-x",
            "temperature": 0.2,
        }
    )
    assert isinstance(span, LlmSpan)
    assert span.output is not None and span.output.tool_calls is not None
    assert span.output.tool_calls[0].function is not None
    wire = to_wire(span)
    assert wire["metrics"] == {"num_input_tokens": 3, "num_output_tokens": 4, "custom_metric": 1.5}
    assert wire["input"][0]["content"] == [{"type": "text", "text": "be brief"}]


def test_message_role_is_checked() -> None:
    with pytest.raises(pydantic.ValidationError):
        Message.model_validate({"role": "robot", "content": "x"})


def test_span_ids_are_uuid4() -> None:
    with pytest.raises(pydantic.ValidationError):
        ToolSpan.model_validate({"id": "not-a-uuid"})
    with pytest.raises(pydantic.ValidationError):
        ToolSpan.model_validate({"parent_id": U1})
    assert str(ToolSpan.model_validate({"id": U4, "trace_id": U4}).id) == U4


def test_ingest_request_needs_a_trace_and_has_defaults() -> None:
    with pytest.raises(pydantic.ValidationError):
        LogTracesIngestRequest.model_validate({"traces": []})
    with pytest.raises(pydantic.ValidationError):
        LogTracesIngestRequest.model_validate({})
    req = LogTracesIngestRequest.model_validate({"traces": [{"input": "x"}]})
    assert req.reliable is True and req.is_complete is True and req.include_trace_ids is False
    assert req.logging_method is LoggingMethod.api_direct


def test_project_and_log_stream_models() -> None:
    project = Project.model_validate({"id": U4, "name": "app", "type": "gen_ai", "runs": []})
    assert project.name == "app"
    stream = LogStream.model_validate(
        {
            "id": U4,
            "name": "default",
            "project_id": U4,
            "created_at": "2025-01-01T00:00:00Z",
            "updated_at": "2025-01-01T00:00:00Z",
        }
    )
    assert stream.created_at is not None and stream.created_at.year == 2025
    assert to_wire(m.ProjectCreateRequest(name="app")) == {"name": "app", "type": "gen_ai"}
    with pytest.raises(pydantic.ValidationError):
        m.LogStreamCreateRequest(name="")


def test_naive_datetimes_are_taken_as_utc() -> None:
    trace = Trace.model_validate({"created_at": "2025-01-01T10:00:00"})
    assert to_wire(trace)["created_at"] == "2025-01-01T10:00:00Z"
    f = filter_adapter.validate_python(
        {"type": "date", "column_id": "created_at", "operator": "lt", "value": datetime(2025, 1, 1)}
    )
    assert to_wire(f)["value"] == "2025-01-01T00:00:00Z"
    aware = Trace.model_validate({"created_at": "2025-01-01T10:00:00+02:00"})
    assert to_wire(aware)["created_at"] == "2025-01-01T10:00:00+02:00"
