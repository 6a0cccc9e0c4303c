"""OTLP/HTTP ingestion at ``/otel/traces``: a stock ``OTLPSpanExporter``, hand-made OTLP/JSON and
the official galileo OpenTelemetry processor, each against a real server on 127.0.0.1."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest_official_sdk import KEY, loopback_only_fixture, sdk_env_fixture  # noqa: F401
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from galileo_otel.api.models import LogTracesIngestRequest
from galileo_otel.export.assemble import TraceAssembler
from galileo_otel.export.convert import convert_trace
from galileo_otel.server.query import compile_session_filter
from galileo_otel.server.store import TOTALS

pytestmark = pytest.mark.integration

HEADERS = {"Galileo-API-Key": KEY, "project": "otlp-project", "logstream": "otlp-stream"}


@pytest.fixture
def server(tmp_path: Any) -> Iterator[Any]:
    from galileo_otel.server import serve_in_thread

    with serve_in_thread(db_path=tmp_path / "galileo.db", api_key=KEY) as running:
        yield running


def _provider(
    exporter: Any, *, service: str = "svc", batch: bool = True
) -> tuple[TracerProvider, InMemorySpanExporter]:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(
        BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
    )
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider, memory


def _chat(provider: TracerProvider, attrs: dict[str, Any], question: str) -> None:
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("turn", attributes=attrs):
        with tracer.start_as_current_span(
            "chat gpt-test",
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "gpt-test",
                "gen_ai.usage.input_tokens": 7,
                "gen_ai.usage.output_tokens": 2,
            },
        ):
            pass
        with tracer.start_as_current_span(
            "lookup", attributes={"gen_ai.operation.name": "execute_tool"}
        ):
            pass


def _sessions(server: Any, project: str = "otlp-project") -> list[dict[str, Any]]:
    assert server.wait_idle(10.0)
    store = server.state.store
    (found,) = store.find_projects(project)
    records, _ = store.search_sessions(
        found["id"], {}, compile_session_filter([], None), None, 0, 100
    )
    return records


def _local_conversion(spans: tuple[ReadableSpan, ...]) -> dict[str, dict[str, Any]]:
    """What galileo-otel's own pipeline makes of the same spans (assembly + conversion)."""
    assembler = TraceAssembler(
        max_spans_per_trace=100, max_open_traces=100, trace_timeout_ns=10**12
    )
    out: dict[str, dict[str, Any]] = {}
    for span in spans:
        for trace in assembler.add(span):
            data = convert_trace(trace)
            out[data["id"]] = data
    return out


def _as_stored(trace: dict[str, Any]) -> dict[str, Any]:
    """A trace as the REST route would store it: through the shared Log Traces model."""
    body = LogTracesIngestRequest.model_validate({"traces": [trace]})
    return dict(body.model_dump(mode="json", by_alias=True)["traces"][0])


def _comparable(step: dict[str, Any]) -> dict[str, Any]:
    # The server adds session ids, parent links and a trace's totals when it stores; the rest
    # must be identical.
    added = ("session_id", "parent_id", "spans", "trace_id", "has_error", *TOTALS)
    keep = {k: v for k, v in step.items() if k not in added}
    keep["spans"] = [_comparable(s) for s in step.get("spans") or []]
    return keep


def test_stock_exporter_gzip_groups_sessions_and_converts_like_the_client(server: Any) -> None:
    exporter = OTLPSpanExporter(
        endpoint=server.url + "/otel/traces", headers=HEADERS, compression=Compression.Gzip
    )
    provider, memory = _provider(exporter)
    _chat(provider, {"session.id": "conv-1"}, "one")
    _chat(provider, {"session.id": "conv-1"}, "two")
    _chat(provider, {"user.id": "ana"}, "three")
    assert provider.force_flush(10_000)
    provider.shutdown()

    sessions = {s["external_id"]: s for s in _sessions(server)}
    assert set(sessions) == {"conv-1", None}
    assert sessions["conv-1"]["num_traces"] == 2
    assert sessions[None]["num_traces"] == 1
    assert sessions[None]["user_metadata"].get("user.id") == "ana"
    store = server.state.store
    project_id = sessions["conv-1"]["project_id"]
    stream = store.list_log_streams(project_id)
    assert [s["name"] for s in stream] == ["otlp-stream"]
    assert sessions["conv-1"]["log_stream_id"] == stream[0]["id"]

    # One implementation: the server stored exactly what the in-process converter makes.
    expected = _local_conversion(memory.get_finished_spans())
    stored = [t for s in sessions.values() for t in store.session_traces(project_id, s["id"])]
    assert sorted(t["id"] for t in stored) == sorted(expected)
    for trace in stored:
        assert _comparable(trace) == _comparable(_as_stored(expected[trace["id"]]))
    llm = next(s for t in stored for s in t["spans"] if s["type"] == "llm")
    assert llm["model"] == "gpt-test" and llm["metrics"]["num_input_tokens"] == 7
    assert [(t["input_tokens"], t["num_llm_calls"], t["has_error"]) for t in stored] == [
        (7, 1, False)
    ] * 3


def test_a_trace_split_across_requests_is_stored_once_complete(server: Any) -> None:
    exporter = OTLPSpanExporter(endpoint=server.url + "/v1/traces", headers=HEADERS)
    # SimpleSpanProcessor: every span is its own request, children before their root.
    provider, _ = _provider(exporter, batch=False)
    _chat(provider, {"session.id": "split"}, "q")
    provider.shutdown()
    (session,) = _sessions(server)
    assert (session["num_traces"], session["num_spans"]) == (1, 2)
    assert server.state.stats()["otlp_requests"] == 3


def test_otlp_json_with_hex_ids(server: Any) -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "json-svc"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    _chat(provider, {"gen_ai.conversation.id": "json-conv"}, "q")
    provider.shutdown()
    payload = json_format.MessageToDict(encode_spans(memory.get_finished_spans()))
    # OTLP/JSON writes trace and span ids as hex (protobuf's JSON mapping would use base64).
    for rs in payload["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = __import__("base64").b64decode(span[key]).hex()
    with httpx.Client(base_url=server.url) as http:
        answer = http.post(
            "/otel/traces",
            content=json.dumps(payload),
            headers={**HEADERS, "Content-Type": "application/json"},
        )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json() == {}
    (session,) = _sessions(server)
    assert session["external_id"] == "json-conv" and session["num_spans"] == 2
    (trace,) = server.state.store.session_traces(session["project_id"], session["id"])
    expected_id = memory.get_finished_spans()[0].context.trace_id
    assert trace["external_id"] == f"{expected_id:032x}"


def test_bad_requests_get_clear_answers(server: Any) -> None:
    good = encode_spans(()).SerializeToString()
    proto = {"Content-Type": "application/x-protobuf"}
    with httpx.Client(base_url=server.url) as http:
        no_key = http.post("/otel/traces", content=good, headers={**proto, "project": "p"})
        assert no_key.status_code == 401
        no_project = http.post(
            "/otel/traces", content=good, headers={**proto, "Galileo-API-Key": KEY}
        )
        assert no_project.status_code == 400 and "project" in no_project.json()["detail"]
        garbage = http.post("/otel/traces", content=b"\xff\xff\xff", headers={**proto, **HEADERS})
        assert garbage.status_code == 400 and "protobuf" in garbage.json()["detail"]
        text = http.post(
            "/otel/traces", content=b"x", headers={**HEADERS, "Content-Type": "text/plain"}
        )
        assert text.status_code == 415 and "application/x-protobuf" in text.json()["detail"]
        bad_experiment = http.post(
            "/otel/traces", content=good, headers={**proto, **HEADERS, "experimentid": "nope"}
        )
        assert bad_experiment.status_code == 400
        empty = http.post("/otel/traces", content=good, headers={**proto, **HEADERS})
        assert empty.status_code == 200
        assert ExportTraceServiceResponse.FromString(empty.content) == ExportTraceServiceResponse()


def test_invalid_span_ids_are_reported_as_partial_success(server: Any) -> None:
    payload = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {"traceId": "", "spanId": "", "name": "broken"},
                            {
                                "traceId": "0af7651916cd43dd8448eb211c80319c",
                                "spanId": "b7ad6b7169203331",
                                "name": "ok",
                                "startTimeUnixNano": "1700000000000000000",
                                "endTimeUnixNano": "1700000001000000000",
                            },
                        ]
                    }
                ]
            }
        ]
    }
    with httpx.Client(base_url=server.url) as http:
        answer = http.post(
            "/otel/traces",
            content=json.dumps(payload),
            headers={**HEADERS, "Content-Type": "application/json"},
        )
    assert answer.status_code == 200
    assert answer.json()["partialSuccess"]["rejectedSpans"] == "1"
    assert "trace_id" in answer.json()["partialSuccess"]["errorMessage"]
    assert server.state.stats()["traces"] == 1


def test_a_gzip_bomb_is_refused_with_413(tmp_path: Any) -> None:
    from galileo_otel.server import serve_in_thread

    with serve_in_thread(db_path=tmp_path / "g.db", api_key=KEY, max_body_bytes=64 * 1024) as srv:
        bomb = gzip.compress(b"\0" * (1024 * 1024))
        assert len(bomb) < 64 * 1024
        with httpx.Client(base_url=srv.url) as http:
            answer = http.post(
                "/otel/traces",
                content=bomb,
                headers={
                    **HEADERS,
                    "Content-Type": "application/x-protobuf",
                    "Content-Encoding": "gzip",
                },
            )
        assert answer.status_code == 413
        assert "decompressed request body" in answer.json()["detail"]
        assert "65536" in answer.json()["detail"]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_official_galileo_otel_processor_logs_into_its_session(sdk_env: Any) -> None:
    from galileo import galileo_context
    from galileo.otel import GalileoSpanProcessor, add_galileo_span_processor

    provider = TracerProvider(resource=Resource.create({"service.name": "official"}))
    processor = GalileoSpanProcessor(project="otel-project", logstream="otel-stream")
    exporter = processor.exporter
    if not hasattr(exporter, "_session"):
        # galileo 2.7's exporter updates its headers through the `requests` session that older
        # opentelemetry-exporter-otlp-proto-http releases kept as `_session`; the installed one
        # sends through its own client, and every export fails with AttributeError. Give it a
        # session to update: the headers it was built with (key, project, log stream) still go
        # out, and each span's resource names its real target.
        import requests

        exporter._session = requests.Session()
    add_galileo_span_processor(provider, processor)
    with galileo_context(project="otel-project", log_stream="otel-stream"):
        session_id = galileo_context.start_session(name="otel chat", external_id="otel-conv")
        _chat(provider, {}, "q1")
        _chat(provider, {}, "q2")
        processor.force_flush()
    provider.shutdown()

    (session,) = _sessions(sdk_env, "otel-project")
    assert session["id"] == session_id and session["external_id"] == "otel-conv"
    assert (session["num_traces"], session["num_spans"]) == (2, 4)
    project_id = session["project_id"]
    assert [s["name"] for s in sdk_env.state.store.list_log_streams(project_id)] == ["otel-stream"]
    traces = sdk_env.state.store.session_traces(project_id, session_id)
    assert [t["name"] for t in traces] == ["turn", "turn"]


def test_a_failed_step_inside_a_successful_turn_counts_as_a_session_error(server: Any) -> None:
    exporter = OTLPSpanExporter(endpoint=server.url + "/v1/traces", headers=HEADERS)
    provider, _ = _provider(exporter)
    tracer = provider.get_tracer("test")
    _chat(provider, {"session.id": "conv-ok"}, "fine")
    with tracer.start_as_current_span("turn", attributes={"session.id": "conv-bad"}):
        with tracer.start_as_current_span(
            "lookup",
            attributes={"gen_ai.operation.name": "execute_tool", "error.type": "TimeoutError"},
        ):
            pass  # the tool failed (error.type), the app recovered: the root ends fine
    assert provider.force_flush(10_000)
    provider.shutdown()

    sessions = {s["external_id"]: s for s in _sessions(server)}
    assert (sessions["conv-bad"]["num_errors"], sessions["conv-bad"]["has_error"]) == (1, True)
    assert sessions["conv-bad"]["num_failed_steps"] == 1
    assert (sessions["conv-ok"]["num_errors"], sessions["conv-ok"]["input_tokens"]) == (0, 7)
    project_id = sessions["conv-bad"]["project_id"]
    flt = [{"type": "boolean", "column_id": "has_error", "operator": "eq", "value": True}]
    assert server.state.store.count_with(project_id, flt) == 1
    (trace,) = server.state.store.session_traces(project_id, sessions["conv-bad"]["id"])
    assert trace["status_code"] == 200 and trace["has_error"] is True
    assert trace["spans"][0]["status_code"] == 500
