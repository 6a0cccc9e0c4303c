"""The routes and fields the official ``galileo`` Python SDK needs beyond galileo-otel's own.

The SDK (2.7) reads projects with ``created_by``/``created_by_user``/``runs``, finds log streams
through ``/projects/{id}/log_streams/paginated``, and in distributed mode sends spans on their own
(``POST /v2/projects/{id}/spans``) and then patches the trace and its spans as they finish.
``galileo.search.get_traces`` / ``get_spans`` call ``POST /projects/{id}/traces/search`` and
``/spans/search`` (Query Traces, Query Spans): the Query Sessions body and answer, over traces
and spans (:mod:`galileo_otel.server.reads`).
Everything is stored through the same :class:`~galileo_otel.server.store.Store` as the rest.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from fastapi import APIRouter, Query
from pydantic import UUID4, BaseModel, ConfigDict, Field

from galileo_otel.api.models import LoggingMethod, LogRecordsQueryRequest, Span
from galileo_otel.server.query import FilterError
from galileo_otel.server.reads import Reads, RecordKind, compile_record_filter
from galileo_otel.server.store import NotFoundError

if TYPE_CHECKING:
    from galileo_otel.server.app import ServerState
    from galileo_otel.server.auth import Authenticator

__all__ = [
    "SpanUpdateRequest",
    "SpansIngestRequest",
    "TraceUpdateRequest",
    "log_stream_record",
    "project_record",
    "sdk_router",
]

T = TypeVar("T")

MAX_QUERY_LIMIT = 10_000
_MAX_OFFSET = 2**53


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    log_stream_id: UUID4 | None = None
    experiment_id: UUID4 | None = None
    metrics_testing_id: UUID4 | None = None
    logging_method: LoggingMethod = LoggingMethod.api_direct
    client_version: str | None = None
    reliable: bool = True


class SpansIngestRequest(_Body):
    """Body of ``POST /v2/projects/{project_id}/spans``: spans appended under ``parent_id``."""

    spans: Annotated[list[Span], Field(min_length=1)]
    trace_id: UUID4
    parent_id: UUID4


class TraceUpdateRequest(_Body):
    """Body of ``PATCH /v2/projects/{project_id}/traces/{trace_id}``; None leaves a field as is."""

    trace_id: UUID4 | None = None
    input: Any = None
    output: Any = None
    status_code: int | None = None
    tags: list[str] | None = None
    is_complete: bool | None = False
    duration_ns: int | None = None


class SpanUpdateRequest(_Body):
    """Body of ``PATCH /v2/projects/{project_id}/spans/{span_id}``; None leaves a field as is."""

    span_id: UUID4 | None = None
    input: Any = None
    output: Any = None
    status_code: int | None = None
    tags: list[str] | None = None
    duration_ns: int | None = None


def project_record(auth: Authenticator, project: dict[str, Any]) -> dict[str, Any]:
    """A stored project with the fields the SDK's ``ProjectDB`` requires."""
    return {
        **project,
        "created_by": auth.user_id,
        "created_by_user": {"id": auth.user_id, "email": auth.current_user()["email"]},
        "runs": [],
        "permissions": [],
        "description": None,
    }


def log_stream_record(auth: Authenticator, stream: dict[str, Any]) -> dict[str, Any]:
    """A stored log stream with the fields the SDK's ``LogStreamResponse`` reads."""
    return {**stream, "created_by": auth.user_id, "has_user_created_sessions": False}


async def _write(state: ServerState, job: Callable[[], T], *, reliable: bool) -> T | None:
    future = state.writer.submit(job, background=not reliable)
    if not reliable:
        return None
    return await asyncio.wrap_future(future)


def sdk_router(state: ServerState) -> APIRouter:
    """The official SDK's extra routes over ``state``'s store (mount behind the key check)."""
    router = APIRouter()
    store = state.store
    auth = state.auth

    reads = Reads(store.path)

    def query(
        kind: RecordKind, project_id: uuid.UUID, body: LogRecordsQueryRequest
    ) -> dict[str, Any]:
        project_or_404(project_id)
        if not 1 <= body.limit <= MAX_QUERY_LIMIT:
            raise FilterError(
                ("body", "limit"), f"limit must be between 1 and {MAX_QUERY_LIMIT}", body.limit
            )
        if not 0 <= body.starting_token <= _MAX_OFFSET:
            raise FilterError(
                ("body", "starting_token"), "starting_token must be >= 0", body.starting_token
            )
        data = body.model_dump(mode="json", by_alias=True)
        compiled = compile_record_filter(kind, data["filters"], data["filter_tree"])
        records, more = reads.query_records(
            kind, str(project_id), data, compiled, data["sort"], body.starting_token, body.limit
        )
        return {
            "starting_token": body.starting_token,
            "limit": body.limit,
            "paginated": more,
            "next_starting_token": body.starting_token + len(records) if more else None,
            "last_row_id": records[-1]["id"] if records else None,
            "records": records,
        }

    @router.post("/projects/{project_id}/traces/search", tags=["trace"])
    @router.post("/v2/projects/{project_id}/traces/search", tags=["trace"])
    def query_traces(project_id: UUID4, body: LogRecordsQueryRequest) -> dict[str, Any]:
        """Query Traces: one page of matching traces (default: newest first), without spans."""
        return query("trace", project_id, body)

    @router.post("/projects/{project_id}/spans/search", tags=["trace"])
    @router.post("/v2/projects/{project_id}/spans/search", tags=["trace"])
    def query_spans(project_id: UUID4, body: LogRecordsQueryRequest) -> dict[str, Any]:
        """Query Spans: one page of matching spans of every trace (default: newest first)."""
        return query("span", project_id, body)

    def project_or_404(project_id: uuid.UUID) -> dict[str, Any]:
        project = store.get_project(str(project_id))
        if project is None:
            raise NotFoundError(f"project {project_id} not found")
        return project

    @router.get("/projects/{project_id}", tags=["projects"])
    def get_project(project_id: UUID4) -> dict[str, Any]:
        """One project."""
        return project_record(auth, project_or_404(project_id))

    @router.get("/projects/{project_id}/log_streams/paginated", tags=["log_streams"])
    def list_log_streams_paginated(
        project_id: UUID4,
        starting_token: int = Query(0, ge=0, le=2**53),
        limit: int = Query(100, ge=1, le=10_000),
        include_counts: bool = Query(False),
    ) -> dict[str, Any]:
        """One page of a project's log streams, oldest first."""
        project_or_404(project_id)
        streams = store.list_log_streams(str(project_id))
        page = streams[starting_token : starting_token + limit]
        more = starting_token + limit < len(streams)
        return {
            "starting_token": starting_token,
            "limit": limit,
            "paginated": more,
            "next_starting_token": starting_token + len(page) if more else None,
            "log_streams": [log_stream_record(auth, s) for s in page],
        }

    @router.get("/projects/{project_id}/log_streams/{log_stream_id}", tags=["log_streams"])
    def get_log_stream(project_id: UUID4, log_stream_id: UUID4) -> dict[str, Any]:
        """One log stream of a project."""
        project_or_404(project_id)
        stream = store.get_log_stream(str(project_id), str(log_stream_id))
        if stream is None:
            raise NotFoundError(f"log stream {log_stream_id} not found in project {project_id}")
        return log_stream_record(auth, stream)

    @router.post("/v2/projects/{project_id}/spans", tags=["trace"])
    async def log_spans(project_id: UUID4, body: SpansIngestRequest) -> dict[str, Any]:
        """Log Spans: append spans to a trace (which may arrive later) under ``parent_id``."""
        project = project_or_404(project_id)
        data = body.model_dump(mode="json", by_alias=True)
        for span in data["spans"]:
            # Ids fixed now, so a fire-and-forget request and its retry store one span.
            span["id"] = span.get("id") or str(uuid.uuid4())
        pid = str(project_id)
        result = await _write(state, lambda: store.ingest_spans(pid, data), reliable=body.reliable)
        if result is not None:
            return result
        return {
            "project_id": pid,
            "project_name": project["name"],
            "session_id": None,
            "trace_id": data["trace_id"],
            "records_count": len(data["spans"]),
            "log_stream_id": data["log_stream_id"],
            "experiment_id": data["experiment_id"],
        }

    @router.patch("/v2/projects/{project_id}/traces/{trace_id}", tags=["trace"])
    async def update_trace(
        project_id: UUID4, trace_id: uuid.UUID, body: TraceUpdateRequest
    ) -> dict[str, Any]:
        """Update a trace: output, status, duration, tags, completion."""
        project_or_404(project_id)
        data = body.model_dump(mode="json")
        pid, tid = str(project_id), str(trace_id)
        result = await _write(state, lambda: store.update_trace(pid, tid, data), reliable=True)
        assert result is not None
        return result

    @router.patch("/v2/projects/{project_id}/spans/{span_id}", tags=["trace"])
    async def update_span(
        project_id: UUID4, span_id: uuid.UUID, body: SpanUpdateRequest
    ) -> dict[str, Any]:
        """Update a span: output, status, duration, tags."""
        project_or_404(project_id)
        data = body.model_dump(mode="json")
        pid, sid = str(project_id), str(span_id)
        result = await _write(state, lambda: store.update_span(pid, sid, data), reliable=True)
        assert result is not None
        return result

    @router.get("/v2/projects/{project_id}/spans/{span_id}", tags=["trace"])
    def get_span(project_id: UUID4, span_id: uuid.UUID) -> dict[str, Any]:
        """One span with its subtree."""
        project_or_404(project_id)
        span = store.get_span(str(project_id), str(span_id))
        if span is None:
            raise NotFoundError(f"span {span_id} not found in project {project_id}")
        return span

    return router
