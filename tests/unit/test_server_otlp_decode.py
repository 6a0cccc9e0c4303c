"""OTLP decoding into SDK spans, and the ingestor's hold / expire / drain of unfinished traces."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from galileo_otel.server.otlp import (
    OtlpDecodeError,
    OtlpIngestor,
    decode_request,
    spans_from_request,
)
from galileo_otel.server.store import Store, WriteQueue

HEADERS = {"project": "p", "logstream": "s", "experimentid": ""}


def _spans() -> tuple[Any, ...]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "unit"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("scope", "1.2")
    with tracer.start_as_current_span("root", attributes={"session.id": "c1", "n": 3}):
        with tracer.start_as_current_span(
            "child", kind=SpanKind.CLIENT, attributes={"tags": ("a", "b"), "ok": True, "x": 1.5}
        ) as child:
            child.add_event("gen_ai.user.message", {"content": "hi"})
            child.set_status(StatusCode.ERROR, "boom")
    provider.shutdown()
    return memory.get_finished_spans()


def test_protobuf_round_trip_keeps_what_conversion_reads() -> None:
    original = _spans()
    body = encode_spans(original).SerializeToString()
    spans, rejected, _ = spans_from_request(decode_request(body, "application/x-protobuf"))
    assert rejected == 0
    by_name = {s.name: s for s in spans}
    child, root = by_name["child"], by_name["root"]
    assert child.context.trace_id == original[0].context.trace_id
    assert child.parent is not None and child.parent.span_id == root.context.span_id
    assert not child.parent.is_remote and root.parent is None
    assert child.kind is SpanKind.CLIENT
    assert child.status.status_code is StatusCode.ERROR and child.status.description == "boom"
    assert dict(child.attributes) == {"tags": ("a", "b"), "ok": True, "x": 1.5}
    assert root.attributes["n"] == 3
    assert [e.name for e in child.events] == ["gen_ai.user.message"]
    assert child.events[0].attributes["content"] == "hi"
    assert child.resource.attributes["service.name"] == "unit"
    assert child.instrumentation_scope.name == "scope"
    assert (child.start_time, child.end_time) == (original[0].start_time, original[0].end_time)


def test_json_with_hex_ids_decodes_to_the_same_spans() -> None:
    request = encode_spans(_spans())
    payload = json_format.MessageToDict(request)
    for rs in payload["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = __import__("base64").b64decode(span[key]).hex()
    decoded = decode_request(json.dumps(payload).encode(), "application/json")
    assert decoded == request


@pytest.mark.parametrize(
    ("body", "media"),
    [
        (b"\x0a\xff", "application/x-protobuf"),
        (b"{not json", "application/json"),
        (b"[1]", "application/json"),
    ],
)
def test_undecodable_bodies_raise(body: bytes, media: str) -> None:
    with pytest.raises(OtlpDecodeError):
        decode_request(body, media)


@pytest.fixture
def ingestor(tmp_path: Path) -> Iterator[tuple[OtlpIngestor, Store, list[int]]]:
    store = Store(tmp_path / "g.db")
    writer = WriteQueue()
    now = [10**18]
    otlp = OtlpIngestor(
        store,
        writer,
        tmp_path / "g.db.otlp-sessions",
        clock_ns=lambda: now[0],
        expire_every_s=None,
        trace_timeout_s=5,
    )
    yield otlp, store, now
    otlp.close()
    writer.close()
    store.close()


def test_a_trace_whose_root_never_comes_ships_incomplete_after_the_timeout(
    ingestor: tuple[OtlpIngestor, Store, list[int]],
) -> None:
    otlp, store, now = ingestor
    child = next(s for s in _spans() if s.name == "child")
    now[0] = child.end_time
    assert otlp._writer.submit(lambda: otlp._ingest([child], HEADERS, 0)).result(5) == 0
    assert store.stats()["traces"] == 0
    otlp._writer.submit(otlp.expire).result(5)  # not idle long enough yet
    assert store.stats()["traces"] == 0
    now[0] += 6 * 10**9
    otlp._writer.submit(otlp.expire).result(5)
    assert store.stats()["traces"] == 1
    (row,) = store._conn().execute("SELECT is_complete FROM traces").fetchall()
    assert row[0] == 0


def test_close_stores_what_is_still_held(tmp_path: Path) -> None:
    store = Store(tmp_path / "g.db")
    writer = WriteQueue()
    otlp = OtlpIngestor(store, writer, tmp_path / "s", expire_every_s=None)
    child = next(s for s in _spans() if s.name == "child")
    writer.submit(lambda: otlp._ingest([child], HEADERS, 0)).result(5)
    assert store.stats()["traces"] == 0
    otlp.close()
    assert store.stats()["traces"] == 1
    writer.close()
    store.close()
