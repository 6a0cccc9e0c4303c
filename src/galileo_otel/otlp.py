"""OTLP/HTTP trace requests decoded into SDK ``ReadableSpan`` objects (needs ``opentelemetry-proto``).

Shared by the local server's OTLP ingest (:mod:`galileo_otel.server.otlp`) and the gateway
(:mod:`galileo_otel.gateway`): pure decoding, no web framework.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

__all__ = ["JSON_TYPE", "PROTOBUF_TYPES", "OtlpDecodeError", "decode_request", "spans_from_request"]

PROTOBUF_TYPES = ("application/x-protobuf", "application/protobuf")
"""Content types of an OTLP/HTTP protobuf body."""
JSON_TYPE = "application/json"
"""Content type of an OTLP/HTTP JSON body."""
_IS_REMOTE_KNOWN = 0x100  # SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
_IS_REMOTE = 0x200  # SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK


class OtlpDecodeError(ValueError):
    """The body is not an ``ExportTraceServiceRequest`` in the announced encoding: answered 400."""


def _hex_ids_to_base64(payload: Any) -> None:
    """OTLP/JSON writes ids as hex; protobuf's JSON mapping wants base64. Rewrite them in place."""
    if not isinstance(payload, dict):
        return
    for resource_spans in payload.get("resourceSpans") or []:
        for scope_spans in (resource_spans or {}).get("scopeSpans") or []:
            for span in (scope_spans or {}).get("spans") or []:
                if not isinstance(span, dict):
                    continue
                targets = [
                    span,
                    *[link for link in span.get("links") or [] if isinstance(link, dict)],
                ]
                for target in targets:
                    for key in ("traceId", "spanId", "parentSpanId"):
                        value = target.get(key)
                        if isinstance(value, str) and value and len(value) in (16, 32):
                            try:
                                raw = bytes.fromhex(value)
                            except ValueError:
                                continue  # already base64 (a protobuf-JSON sender)
                            target[key] = base64.b64encode(raw).decode("ascii")


def decode_request(body: bytes, content_type: str) -> ExportTraceServiceRequest:
    """Decode an OTLP/HTTP trace export body (protobuf or JSON).

    Raises:
        OtlpDecodeError: The body does not decode.
    """
    request = ExportTraceServiceRequest()
    if content_type == JSON_TYPE:
        try:
            payload = json.loads(body or b"{}")
            _hex_ids_to_base64(payload)
            json_format.ParseDict(payload, request, ignore_unknown_fields=True)
        except (ValueError, TypeError, RecursionError, json_format.ParseError) as exc:
            raise OtlpDecodeError(f"not an OTLP/JSON ExportTraceServiceRequest: {exc}") from exc
        return request
    try:
        request.ParseFromString(body)
    except (DecodeError, RecursionError) as exc:
        raise OtlpDecodeError(f"not an OTLP protobuf ExportTraceServiceRequest: {exc}") from exc
    return request


def _value(value: AnyValue) -> Any:
    """An OTLP ``AnyValue`` as an OpenTelemetry attribute value."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    if kind == "array_value":
        items = [_value(v) for v in value.array_value.values]
        # OTel attributes hold homogeneous sequences of primitives; anything else becomes JSON.
        if (
            items
            and all(type(i) is type(items[0]) for i in items)
            and not isinstance(items[0], (list, tuple, dict))
        ):
            return tuple(items)
        return json.dumps([_jsonable(v) for v in value.array_value.values])
    if kind == "kvlist_value":
        return json.dumps({kv.key: _jsonable(kv.value) for kv in value.kvlist_value.values})
    return None


def _jsonable(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_jsonable(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _jsonable(kv.value) for kv in value.kvlist_value.values}
    return _value(value)


def _attributes(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        converted = _value(pair.value)
        if converted is not None:
            out[pair.key] = converted
    return out


def _int_id(raw: bytes, size: int) -> int | None:
    if len(raw) != size:
        return None
    value = int.from_bytes(raw, "big")
    return value or None


def spans_from_request(request: ExportTraceServiceRequest) -> tuple[list[ReadableSpan], int, str]:
    """The request's spans as SDK ``ReadableSpan`` objects, in the order they were sent.

    Returns:
        ``(spans, rejected, reason)``: spans with an invalid trace or span id are left out and
        counted.
    """
    spans: list[ReadableSpan] = []
    rejected = 0
    reason = ""
    for resource_spans in request.resource_spans:
        resource = Resource(
            _attributes(resource_spans.resource.attributes), resource_spans.schema_url or None
        )
        for scope_spans in resource_spans.scope_spans:
            scope = InstrumentationScope(
                scope_spans.scope.name or "",
                scope_spans.scope.version or None,
                scope_spans.schema_url or None,
            )
            for span in scope_spans.spans:
                trace_id = _int_id(span.trace_id, 16)
                span_id = _int_id(span.span_id, 8)
                if trace_id is None or span_id is None:
                    rejected += 1
                    reason = "a span has an invalid trace_id or span_id"
                    continue
                flags = TraceFlags(span.flags & 0xFF)
                context = SpanContext(trace_id, span_id, is_remote=False, trace_flags=flags)
                parent_id = _int_id(span.parent_span_id, 8)
                parent = None
                if parent_id is not None:
                    # Senders that know say whether the parent is remote; others leave it out,
                    # and the parent is then taken as local (the trace waits for it).
                    remote = bool(span.flags & _IS_REMOTE_KNOWN and span.flags & _IS_REMOTE)
                    parent = SpanContext(trace_id, parent_id, is_remote=remote, trace_flags=flags)
                links = []
                for link in span.links:
                    link_trace, link_span = _int_id(link.trace_id, 16), _int_id(link.span_id, 8)
                    if link_trace is not None and link_span is not None:
                        links.append(
                            Link(
                                SpanContext(link_trace, link_span, is_remote=True),
                                _attributes(link.attributes),
                            )
                        )
                status_code = span.status.code if span.status.code in (0, 1, 2) else 0
                spans.append(
                    ReadableSpan(
                        name=span.name,
                        context=context,
                        parent=parent,
                        resource=resource,
                        attributes=_attributes(span.attributes),
                        events=[
                            Event(e.name, _attributes(e.attributes), e.time_unix_nano or None)
                            for e in span.events
                        ],
                        links=links,
                        # OTLP numbers kinds from 1 (0 = unspecified); the SDK from 0.
                        kind=SpanKind(max(span.kind - 1, 0))
                        if span.kind <= 5
                        else SpanKind.INTERNAL,
                        status=Status(StatusCode(status_code), span.status.message or None),
                        start_time=span.start_time_unix_nano or None,
                        end_time=span.end_time_unix_nano or span.start_time_unix_nano or None,
                        instrumentation_scope=scope,
                    )
                )
    return spans, rejected, reason
