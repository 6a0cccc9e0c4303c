"""Pydantic models of every schema in ``galileo-openapi.yaml``: the wire contract of client and server.

Unknown fields are ignored, as FastAPI does; dump request bodies with :func:`to_wire`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from enum import Enum
from typing import Annotated, Any, Literal, Union
from uuid import UUID

from pydantic import (
    UUID4,
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    model_validator,
)

__all__ = [
    "AgentSpan",
    "AgentType",
    "AndNode",
    "ContentPart",
    "Document",
    "FileContentPart",
    "FilterExpression",
    "FilterLeaf",
    "HTTPValidationError",
    "LlmMetrics",
    "LlmSpan",
    "LogRecordsBooleanFilter",
    "LogRecordsCollectionFilter",
    "LogRecordsDateFilter",
    "LogRecordsFilter",
    "LogRecordsFullyAnnotatedFilter",
    "LogRecordsIDFilter",
    "LogRecordsNumberFilter",
    "LogRecordsQueryCountRequest",
    "LogRecordsQueryCountResponse",
    "LogRecordsQueryRequest",
    "LogRecordsQueryResponse",
    "LogRecordsTextFilter",
    "LogStream",
    "LogStreamCreateRequest",
    "LogTracesIngestRequest",
    "LogTracesIngestResponse",
    "LoggingMethod",
    "Message",
    "MessageRole",
    "Metrics",
    "NotNode",
    "OrNode",
    "Project",
    "ProjectCreateRequest",
    "QuerySort",
    "RetrieverSpan",
    "SessionCreateRequest",
    "SessionCreateResponse",
    "Span",
    "TextContentPart",
    "ToolCall",
    "ToolCallFunction",
    "ToolSpan",
    "Trace",
    "UtcDatetime",
    "ValidationErrorItem",
    "WorkflowSpan",
    "filter_adapter",
    "filter_expression_adapter",
    "span_adapter",
    "to_wire",
]


class _Model(BaseModel):
    """Base of every wire model: unknown fields are ignored, names and aliases both accepted."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


def to_wire(model: BaseModel) -> dict[str, Any]:
    """Dump a model as the JSON body the API expects.

    JSON types (UUIDs and datetimes as strings), wire names (``and``/``or``/``not``) and no
    ``None`` values: every nullable field of the schema defaults to ``null``, so leaving it out
    means the same, and non-nullable optional fields (``created_at``, tool call parts) must not be
    sent as ``null``.
    """
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _assume_utc(value: datetime) -> datetime:
    # The schema's date-time is RFC 3339, which needs an offset; Galileo keeps time in UTC.
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


UtcDatetime = Annotated[datetime, AfterValidator(_assume_utc)]
"""A datetime; a naive one is taken as UTC, so it always serialises with an offset."""


# ------------------------------------------------------------------------------------------------
# Shared enums and errors
# ------------------------------------------------------------------------------------------------


class LoggingMethod(str, Enum):
    """Who logged a record; galileo-otel stamps ``python_client``."""

    playground = "playground"
    python_client = "python_client"
    typescript_client = "typescript_client"
    api_direct = "api_direct"


class ValidationErrorItem(_Model):
    """One entry of FastAPI's 422 ``detail`` list."""

    loc: list[str | int]
    msg: str
    type: str


class HTTPValidationError(_Model):
    """The body of a 422 answer."""

    detail: list[ValidationErrorItem] = Field(default_factory=list)


# ------------------------------------------------------------------------------------------------
# Create Session
# ------------------------------------------------------------------------------------------------


class SessionCreateRequest(_Model):
    """Body of ``POST /v2/projects/{project_id}/sessions``."""

    log_stream_id: UUID4 | None = None
    experiment_id: UUID4 | None = None
    metrics_testing_id: UUID4 | None = None
    logging_method: LoggingMethod = LoggingMethod.api_direct
    client_version: str | None = None
    reliable: bool = True
    name: str | None = None
    previous_session_id: UUID4 | None = None
    external_id: str | None = None
    user_metadata: dict[str, str] | None = None


class SessionCreateResponse(_Model):
    """Answer of Create Session.

    Response ids accept any UUID version: being strict on what a server sends back would only
    turn a working call into an error.
    """

    id: UUID
    name: str | None
    project_id: UUID
    project_name: str
    previous_session_id: UUID | None = None
    external_id: str | None = None


# ------------------------------------------------------------------------------------------------
# Filters
# ------------------------------------------------------------------------------------------------

IDOperator = Literal["eq", "ne", "one_of", "not_in", "contains"]
DateOperator = Literal["eq", "ne", "gt", "gte", "lt", "lte"]
NumberOperator = Literal["eq", "ne", "gt", "gte", "lt", "lte", "between"]
BooleanOperator = Literal["eq", "ne"]
CollectionOperator = Literal["eq", "contains", "one_of", "not_in"]
TextOperator = Literal["eq", "ne", "contains", "one_of", "not_in"]


def _operator_check(kind: str, allowed: tuple[str, ...]) -> Callable[[Any], Any]:
    """A before-validator whose error names the rejected operator and the allowed ones."""

    def check(value: Any) -> Any:
        if isinstance(value, Enum):
            value = value.value
        if isinstance(value, str) and value not in allowed:
            raise ValueError(
                f"operator {value!r} is not allowed for a {kind} filter; "
                f"use one of: {', '.join(allowed)}"
            )
        return value

    return check


def _operator(kind: str, allowed: tuple[str, ...]) -> BeforeValidator:
    return BeforeValidator(_operator_check(kind, allowed))


class LogRecordsIDFilter(_Model):
    """Filter on an id column (``id``, ``session_id``, ``trace_id``, ...)."""

    column_id: str = Field(description="ID of the column to filter.")
    operator: Annotated[
        IDOperator, _operator("id", ("eq", "ne", "one_of", "not_in", "contains"))
    ] = "eq"
    value: UUID4 | list[UUID4 | str] | str
    type: Literal["id"] = "id"


class LogRecordsDateFilter(_Model):
    """Filter on a date-time column (``created_at``, ``updated_at``)."""

    column_id: str = Field(description="ID of the column to filter.")
    operator: Annotated[DateOperator, _operator("date", ("eq", "ne", "gt", "gte", "lt", "lte"))]
    value: UtcDatetime
    type: Literal["date"] = "date"


class LogRecordsNumberFilter(_Model):
    """Filter on a numeric column; ``between`` takes ``[low, high]``."""

    column_id: str = Field(description="ID of the column to filter.")
    operator: Annotated[
        NumberOperator,
        _operator("number", ("eq", "ne", "gt", "gte", "lt", "lte", "between")),
    ]
    value: int | float | list[int] | list[float]
    type: Literal["number"] = "number"

    @model_validator(mode="after")
    def _between_needs_two(self) -> LogRecordsNumberFilter:
        if self.operator == "between" and not (
            isinstance(self.value, list) and len(self.value) == 2
        ):
            raise ValueError("operator 'between' needs exactly two values: [low, high]")
        return self


class LogRecordsBooleanFilter(_Model):
    """Filter on a boolean column."""

    column_id: str = Field(description="ID of the column to filter.")
    operator: Annotated[BooleanOperator, _operator("boolean", ("eq", "ne"))] = "eq"
    value: bool
    type: Literal["boolean"] = "boolean"


class LogRecordsCollectionFilter(_Model):
    """Filter on a list-valued column (e.g. ``tags``)."""

    column_id: str = Field(description="ID of the column to filter.")
    operator: Annotated[
        CollectionOperator, _operator("collection", ("eq", "contains", "one_of", "not_in"))
    ]
    value: str | list[str]
    case_sensitive: bool = True
    type: Literal["collection"] = "collection"


class LogRecordsTextFilter(_Model):
    """Filter on a text column (``input``, ``output``, ``name``, ``external_id``, ...)."""

    column_id: str = Field(description="ID of the column to filter.")
    operator: Annotated[
        TextOperator, _operator("text", ("eq", "ne", "contains", "one_of", "not_in"))
    ]
    value: str | list[str]
    case_sensitive: bool = True
    type: Literal["text"] = "text"


class LogRecordsFullyAnnotatedFilter(_Model):
    """Queue-scoped filter for records rated across all queue templates."""

    column_id: Literal["fully_annotated"] = "fully_annotated"
    type: Literal["fully_annotated"] = "fully_annotated"
    user_ids: Annotated[list[UUID4], Field(min_length=1)] | None = None


LogRecordsFilter = Annotated[
    Union[  # noqa: UP007 - a runtime alias; pydantic needs the Union of Annotated members
        LogRecordsIDFilter,
        LogRecordsDateFilter,
        LogRecordsNumberFilter,
        LogRecordsBooleanFilter,
        LogRecordsCollectionFilter,
        LogRecordsTextFilter,
        LogRecordsFullyAnnotatedFilter,
    ],
    Field(discriminator="type"),
]
"""One typed filter, told apart by its ``type``."""


class FilterLeaf(_Model):
    """A filter-tree leaf: ``{"filter": <one typed filter>}``."""

    filter: LogRecordsFilter


class AndNode(_Model):
    """``{"and": [node, ...]}``: every child matches."""

    and_: list[FilterExpression] = Field(alias="and")


class OrNode(_Model):
    """``{"or": [node, ...]}``: at least one child matches."""

    or_: list[FilterExpression] = Field(alias="or")


class NotNode(_Model):
    """``{"not": node}``: the child does not match."""

    not_: FilterExpression = Field(alias="not")


_NODE_TYPES: dict[type[BaseModel], str] = {}


def _node_kind(value: Any) -> str | None:
    """Which tree node a value is: picked by its key, so errors point at the right branch."""
    if isinstance(value, dict):
        for key in ("filter", "and", "or", "not", "and_", "or_", "not_"):
            if key in value:
                return key.rstrip("_")
        return None
    return _NODE_TYPES.get(type(value))


FilterExpression = Annotated[
    Union[  # noqa: UP007 - a runtime alias; pydantic needs the Union of Annotated members
        Annotated[FilterLeaf, Tag("filter")],
        Annotated[AndNode, Tag("and")],
        Annotated[OrNode, Tag("or")],
        Annotated[NotNode, Tag("not")],
    ],
    Discriminator(
        _node_kind,
        custom_error_type="filter_node",
        custom_error_message=(
            'a filter tree node is {"filter": {...}}, {"and": [...]}, {"or": [...]} or {"not": {...}}'
        ),
    ),
]
"""A filter tree: a leaf, or and/or/not of trees."""

for _node_type, _tag in (
    (FilterLeaf, "filter"),
    (AndNode, "and"),
    (OrNode, "or"),
    (NotNode, "not"),
):
    _NODE_TYPES[_node_type] = _tag
AndNode.model_rebuild()
OrNode.model_rebuild()
NotNode.model_rebuild()


class LogRecordsQueryCountRequest(_Model):
    """Body of ``POST /v2/projects/{project_id}/sessions/count``.

    ``filters`` are and-ed; ``filter_tree`` expresses and/or/not.
    """

    log_stream_id: UUID4 | None = None
    experiment_id: UUID4 | None = None
    metrics_testing_id: UUID4 | None = None
    filters: list[LogRecordsFilter] = Field(default_factory=list)
    filter_tree: FilterExpression | None = None


class LogRecordsQueryCountResponse(_Model):
    """Answer of Count Sessions."""

    total_count: int


class QuerySort(_Model):
    """Sort order of Query Sessions."""

    column_id: str
    ascending: bool = True
    sort_type: Literal["column"] = "column"


class LogRecordsQueryRequest(_Model):
    """Body of ``POST /v2/projects/{project_id}/sessions/search``."""

    starting_token: int = 0
    limit: int = 100
    previous_last_row_id: str | None = None
    log_stream_id: UUID4 | None = None
    experiment_id: UUID4 | None = None
    metrics_testing_id: UUID4 | None = None
    filters: list[LogRecordsFilter] = Field(default_factory=list)
    filter_tree: FilterExpression | None = None
    sort: QuerySort | None = None
    include_counts: bool = False


class LogRecordsQueryResponse(_Model):
    """Answer of Query Sessions: one page of records."""

    starting_token: int = 0
    limit: int = 100
    paginated: bool = False
    next_starting_token: int | None = None
    last_row_id: str | None = None
    records: list[dict[str, Any]] = Field(default_factory=list)


# ------------------------------------------------------------------------------------------------
# Traces and spans
# ------------------------------------------------------------------------------------------------


class TextContentPart(_Model):
    """A text part of a multi-part message."""

    type: Literal["text"] = "text"
    text: str


class FileContentPart(_Model):
    """A file part of a multi-part message."""

    type: Literal["file"] = "file"
    file_id: str | None = None


ContentModality = Literal["text", "document", "image", "audio", "video"]


class DataContentPart(_Model):
    """Media in a multi-part message, as the official SDK ingests it: inline or by URL."""

    type: Literal["data"] = "data"
    modality: ContentModality
    mime_type: str | None = None
    base64: str | None = None
    url: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> DataContentPart:
        if (self.base64 is None) == (self.url is None):
            raise ValueError("a data part needs exactly one of base64 and url")
        return self


def _part_kind(value: Any) -> str:
    # The schema does not require ``type`` on a text part, so anything but a file or data part
    # is text.
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if kind in ("file", "data") else "text"


ContentPart = Annotated[
    Union[  # noqa: UP007 - a runtime alias; pydantic needs the Union of Annotated members
        Annotated[TextContentPart, Tag("text")],
        Annotated[FileContentPart, Tag("file")],
        Annotated[DataContentPart, Tag("data")],
    ],
    Discriminator(_part_kind),
]
"""One part of a multi-part message content."""

Content = Union[str, list[ContentPart]]  # noqa: UP007 - a runtime alias
"""A string, or a list of content parts."""

MessageRole = Literal["system", "user", "assistant", "tool", "developer", "function", "agent"]


class ToolCallFunction(_Model):
    """The function a tool call invokes."""

    name: str | None = None
    arguments: str | None = None


class ToolCall(_Model):
    """A tool call requested by an LLM."""

    id: str | None = None
    function: ToolCallFunction | None = None


class Message(_Model):
    """A chat message: the input items and the output of an llm span."""

    content: Content
    role: MessageRole
    tool_call_id: str | None = None
    tool_calls: list[ToolCall] | None = None


class Document(_Model):
    """A retrieved document: the output items of a retriever span."""

    content: str
    metadata: dict[str, str | bool | int | float] = Field(default_factory=dict)


class Metrics(_Model):
    """Step metrics; unknown metrics are kept."""

    model_config = ConfigDict(extra="allow")

    duration_ns: int | None = None


class LlmMetrics(Metrics):
    """Metrics of an llm span."""

    num_input_tokens: int | None = None
    num_output_tokens: int | None = None
    num_total_tokens: int | None = None
    time_to_first_token_ns: int | None = None


StepIO = Union[  # noqa: UP007 - a runtime alias
    str, list[ContentPart], list[Message], Message, list[Document]
]
"""What a workflow or agent span takes and gives: text, content parts, messages or documents."""

AgentType = Literal[
    "default", "planner", "react", "reflection", "router", "classifier", "supervisor", "judge"
]


class _Step(_Model):
    """Fields every trace and span has."""

    name: str = ""
    created_at: UtcDatetime = Field(default_factory=_utc_now)
    user_metadata: dict[str, str] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    status_code: int | None = None
    external_id: str | None = None
    dataset_input: str | None = None
    dataset_output: str | None = None
    dataset_metadata: dict[str, str] = Field(default_factory=dict)
    id: UUID4 | None = None
    session_id: UUID4 | None = None
    trace_id: UUID4 | None = None


class _SpanStep(_Step):
    """Fields every span adds to a step."""

    step_number: int | None = None
    parent_id: UUID4 | None = None


class LlmSpan(_SpanStep):
    """A call to an LLM: messages in, one message out."""

    type: Literal["llm"] = "llm"
    input: list[Message] = Field(default_factory=list)
    redacted_input: list[Message] | None = None
    output: Message | None = None
    redacted_output: Message | None = None
    metrics: LlmMetrics = Field(default_factory=LlmMetrics)
    tools: list[dict[str, Any]] | None = None
    model: str | None = None
    temperature: float | None = None
    finish_reason: str | None = None
    events: list[dict[str, Any]] | None = None


class RetrieverSpan(_SpanStep):
    """A retrieval: a query in, documents out."""

    type: Literal["retriever"] = "retriever"
    input: str = ""
    redacted_input: str | None = None
    output: list[Document] | None = None
    redacted_output: list[Document] | None = None
    metrics: Metrics = Field(default_factory=Metrics)
    spans: list[Span] = Field(default_factory=list)


class ToolSpan(_SpanStep):
    """A tool call: text in, text out."""

    type: Literal["tool"] = "tool"
    input: str = ""
    redacted_input: str | None = None
    output: str | None = None
    redacted_output: str | None = None
    metrics: Metrics = Field(default_factory=Metrics)
    spans: list[Span] = Field(default_factory=list)
    tool_call_id: str | None = None


class WorkflowSpan(_SpanStep):
    """A group of steps."""

    type: Literal["workflow"] = "workflow"
    input: StepIO = ""
    redacted_input: StepIO | None = None
    output: StepIO | None = None
    redacted_output: StepIO | None = None
    metrics: Metrics = Field(default_factory=Metrics)
    spans: list[Span] = Field(default_factory=list)


class AgentSpan(_SpanStep):
    """An agent: a group of steps with an ``agent_type``."""

    type: Literal["agent"] = "agent"
    input: StepIO = ""
    redacted_input: StepIO | None = None
    output: StepIO | None = None
    redacted_output: StepIO | None = None
    metrics: Metrics = Field(default_factory=Metrics)
    spans: list[Span] = Field(default_factory=list)
    agent_type: AgentType = "default"


Span = Annotated[
    Union[LlmSpan, RetrieverSpan, ToolSpan, WorkflowSpan, AgentSpan],  # noqa: UP007
    Field(discriminator="type"),
]
"""One span, told apart by its ``type``."""


class Trace(_Step):
    """A trace: the root of a tree of spans."""

    type: Literal["trace"] = "trace"
    input: Content = ""
    redacted_input: Content | None = None
    output: Content | None = None
    redacted_output: Content | None = None
    metrics: Metrics = Field(default_factory=Metrics)
    spans: list[Span] = Field(default_factory=list)


for _model in (RetrieverSpan, ToolSpan, WorkflowSpan, AgentSpan, Trace):
    _model.model_rebuild()


class LogTracesIngestRequest(_Model):
    """Body of ``POST /v2/projects/{project_id}/traces``."""

    log_stream_id: UUID4 | None = None
    experiment_id: UUID4 | None = None
    metrics_testing_id: UUID4 | None = None
    logging_method: LoggingMethod = LoggingMethod.api_direct
    client_version: str | None = None
    reliable: bool = True
    traces: Annotated[list[Trace], Field(min_length=1)]
    session_id: UUID4 | None = None
    session_external_id: str | None = None
    is_complete: bool = True
    include_trace_ids: bool = False


class LogTracesIngestResponse(_Model):
    """Answer of Log Traces."""

    project_id: UUID
    project_name: str
    records_count: int
    traces_count: int
    spans_count: int
    log_stream_id: UUID | None = None
    experiment_id: UUID | None = None
    metrics_testing_id: UUID | None = None
    session_id: UUID | None = None
    trace_ids: list[UUID] | None = None


# ------------------------------------------------------------------------------------------------
# Projects and log streams
# ------------------------------------------------------------------------------------------------


class Project(_Model):
    """A project, as ``GET /projects`` and ``POST /projects`` return it."""

    id: UUID
    name: str
    type: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class ProjectCreateRequest(_Model):
    """Body of ``POST /projects``."""

    name: Annotated[str, Field(min_length=1)]
    type: str = "gen_ai"


class LogStream(_Model):
    """A log stream of a project."""

    id: UUID
    name: str
    project_id: UUID
    created_at: datetime | None = None
    updated_at: datetime | None = None


class LogStreamCreateRequest(_Model):
    """Body of ``POST /v2/projects/{project_id}/log_streams``."""

    name: Annotated[str, Field(min_length=1)]


filter_adapter: TypeAdapter[Any] = TypeAdapter(LogRecordsFilter)
"""Validates one typed filter from a dict: ``filter_adapter.validate_python({...})``."""

filter_expression_adapter: TypeAdapter[Any] = TypeAdapter(FilterExpression)
"""Validates a filter tree from a dict."""

span_adapter: TypeAdapter[Any] = TypeAdapter(Span)
"""Validates one span from a dict."""
