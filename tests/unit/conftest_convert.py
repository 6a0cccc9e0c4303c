"""Span builders for the assembly and conversion unit tests: ReadableSpans with fixed ids and times."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z in ns
RESOURCE = Resource.create({"service.name": "test-service"})


def ctx(span_id: int, trace_id: int = TRACE_ID, *, remote: bool = False) -> SpanContext:
    return SpanContext(trace_id, span_id, is_remote=remote, trace_flags=TraceFlags(1))


def make_span(
    name: str,
    span_id: int,
    parent: int | None = None,
    *,
    trace_id: int = TRACE_ID,
    start: int = 0,
    end: int = 1_000,
    attributes: Mapping[str, Any] | None = None,
    events: Sequence[tuple[str, Mapping[str, Any]] | tuple[str, Mapping[str, Any], int]] = (),
    error: str | None = None,
    remote_parent: bool = False,
    kind: SpanKind = SpanKind.INTERNAL,
) -> ReadableSpan:
    """A finished span; `start`/`end` are ns offsets from T0, `parent` a span id in the same trace."""
    parent_ctx = None if parent is None else ctx(parent, trace_id, remote=remote_parent)
    status = Status(StatusCode.ERROR, error) if error is not None else Status(StatusCode.UNSET)
    built_events = [
        Event(e[0], dict(e[1]), timestamp=T0 + (e[2] if len(e) > 2 else start))  # type: ignore[misc]
        for e in events
    ]
    return ReadableSpan(
        name=name,
        context=ctx(span_id, trace_id),
        parent=parent_ctx,
        resource=RESOURCE,
        attributes=dict(attributes or {}),
        events=built_events,
        kind=kind,
        status=status,
        start_time=T0 + start,
        end_time=T0 + end,
    )
