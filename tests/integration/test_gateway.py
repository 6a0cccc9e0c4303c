"""galileo-otel gateway as a real subprocess in front of the local server, with Python's stock
OTLP exporter as the client: a kill -9 while Galileo fails, a full write-ahead log, two
gateways sharing sessions through a real Redis, inbound keys, SIGTERM."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest_gateway import (
    KEY,
    GatewayProcess,
    galileo_id,
    gateway_env,
    sessions_of,
    startup_line,
    stored_ids,
    wait_for,
)
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import set_span_in_context

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROJECT = "gw-project"


class Acknowledged(SpanExporter):
    """The stock exporter, recording the spans it reported as exported (the gateway said 200)."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        self.inner = OTLPSpanExporter(endpoint=url, **kwargs)
        self.acked: list[ReadableSpan] = []
        self.failed: list[ReadableSpan] = []
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self.inner.export(spans)
        with self._lock:
            (self.acked if result is SpanExportResult.SUCCESS else self.failed).extend(spans)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()


def _client(url: str, **kwargs: Any) -> tuple[TracerProvider, Acknowledged]:
    exporter = Acknowledged(url, **kwargs)
    provider = TracerProvider(resource=Resource.create({"service.name": "py-chat"}))
    # One request per span: each answer is known, and a trace spans several requests.
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _started(
    gateways: list[GatewayProcess], env: dict[str, str], log: Path, **kwargs: Any
) -> GatewayProcess:
    """A gateway started with ``env``; the ``gateways`` fixture stops it after the test."""
    gw = GatewayProcess(env, log, **kwargs)
    gateways.append(gw.start())
    return gw


def _turn(provider: TracerProvider, conversation: str, user: str) -> None:
    tracer = provider.get_tracer("tests")
    with tracer.start_as_current_span(
        "turn", attributes={"session.id": conversation, "user.id": user}
    ):
        with tracer.start_as_current_span(
            "chat gpt-test",
            attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-test"},
        ):
            pass


def _send_turns(
    gw: GatewayProcess,
    turns: Iterable[tuple[str, Resource]],
    after_each: Callable[[list[ReadableSpan]], None] | None = None,
) -> list[ReadableSpan]:
    """One turn per ``(conversation, resource)``, each through its own provider and stock exporter
    to the gateway; the spans the gateway acknowledged (every one: a refusal fails the test).
    ``after_each`` sees the spans acknowledged so far after each turn."""
    acked: list[ReadableSpan] = []
    for conversation, resource in turns:
        exporter = Acknowledged(gw.traces_url)
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        _turn(provider, conversation, "ana")
        provider.shutdown()
        assert not exporter.failed
        acked += exporter.acked
        if after_each is not None:
            after_each(acked)
    return acked


def _expected(spans: Sequence[ReadableSpan]) -> set[str]:
    out = set()
    for span in spans:
        assert span.context is not None
        out.add(galileo_id(span.context.trace_id, span.context.span_id, span.parent is None))
    return out


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Any]:
    from galileo_otel.server import serve_in_thread

    with serve_in_thread(db_path=tmp_path / "galileo.db", api_key=KEY) as running:
        yield running


@pytest.fixture
def gateways() -> Iterator[list[GatewayProcess]]:
    started: list[GatewayProcess] = []
    yield started
    for gateway in started:
        gateway.kill()


def test_kill_9_while_galileo_fails_loses_no_acknowledged_span(
    server: Any, tmp_path: Path, gateways: list[GatewayProcess]
) -> None:
    server.faults.fail("*", status=503)  # Galileo is down: nothing can be confirmed
    gw = _started(gateways, gateway_env(server.url, tmp_path), tmp_path / "gw.log")
    provider, exporter = _client(gw.traces_url, compression=Compression.Gzip)
    conversations = [("conv-a1", "alice"), ("conv-b1", "bob"), ("conv-a2", "alice")]
    for _ in range(2):
        for conversation, user in conversations:
            _turn(provider, conversation, user)
    # A trace split by the crash: its child is answered before it, its root after the restart.
    tracer = provider.get_tracer("tests")
    split_root = tracer.start_span("turn", attributes={"session.id": "conv-b1", "user.id": "bob"})
    tracer.start_span("lookup", context=set_span_in_context(split_root)).end()
    assert len(exporter.acked) == 13 and not exporter.failed
    metrics = gw.metrics()
    assert metrics["galileo_gateway_wal_entries"] == 13  # all kept: none was confirmed
    assert metrics["galileo_gateway_spans_accepted_total"] == 13

    gw.kill()  # kill -9: no shutdown code runs
    server.faults.clear()
    gw.start()  # the same state directory: the log is replayed
    split_root.end()  # exported to the restarted gateway
    provider.shutdown()
    assert len(exporter.acked) == 14 and not exporter.failed

    expected = _expected(exporter.acked)
    wait_for(lambda: expected <= stored_ids(server, PROJECT), 60, "every acknowledged span")
    sessions = {s["external_id"]: s for s in sessions_of(server, PROJECT)}
    assert set(sessions) == {"conv-a1", "conv-b1", "conv-a2"}  # one per conversation
    assert {k: s["num_traces"] for k, s in sessions.items()} == {
        "conv-a1": 2,
        "conv-b1": 3,  # the split trace arrived whole, in its conversation
        "conv-a2": 2,
    }
    split = server.state.store.session_traces(
        sessions["conv-b1"]["project_id"], sessions["conv-b1"]["id"]
    )[-1]
    assert [s["name"] for s in split["spans"]] == ["lookup"]
    # Chained per user: alice's second conversation follows her first; bob's starts a chain.
    assert sessions["conv-a2"]["previous_session_id"] == sessions["conv-a1"]["id"]
    assert sessions["conv-a1"]["previous_session_id"] is None
    assert sessions["conv-b1"]["previous_session_id"] is None
    # Once Galileo confirmed everything the log empties.
    wait_for(lambda: gw.metrics()["galileo_gateway_wal_entries"] == 0, 30, "an empty log")
    assert "replayed 13 request(s)" in gw.output()


def test_a_full_log_answers_503_and_the_clients_retry_delivers(
    server: Any, tmp_path: Path, gateways: list[GatewayProcess]
) -> None:
    server.faults.fail("traces", status=503)
    env = gateway_env(
        server.url,
        tmp_path,
        GALILEO_GATEWAY_WAL_MAX_BYTES="1",  # one request fills it
        GALILEO_GATEWAY_RETRY_AFTER="1",
        GALILEO_EXPORT_TIMEOUT="2",
    )
    gw = _started(gateways, env, tmp_path / "gw.log")
    exporter = Acknowledged(gw.traces_url, timeout=60)
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "py-chat"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))

    def send_turn(conversation: str) -> None:
        # One request per turn (as a batching exporter sends it): a whole trace per row.
        _turn(provider, conversation, "ana")
        spans = memory.get_finished_spans()
        memory.clear()
        exporter.export(spans)

    send_turn("conv-1")
    assert len(exporter.acked) == 2
    assert httpx.get(gw.url + "/readyz").status_code == 503  # full: take me out of rotation

    blocked = threading.Thread(target=send_turn, args=("conv-2",))
    blocked.start()  # answered 503 + Retry-After while the log is full; the exporter retries
    wait_for(
        lambda: gw.metrics()['galileo_gateway_requests_refused_total{reason="wal_full"}'] >= 1,
        30,
        "a 503 for the full log",
    )
    assert not exporter.failed
    server.faults.clear()  # Galileo is back: the log drains, the retry gets in
    blocked.join(90)
    assert not blocked.is_alive()
    exporter.shutdown()
    assert len(exporter.acked) == 4 and not exporter.failed
    expected = _expected(exporter.acked)
    wait_for(lambda: expected <= stored_ids(server, PROJECT), 60, "both conversations")
    assert [s["external_id"] for s in sessions_of(server, PROJECT)] == ["conv-1", "conv-2"]


def test_two_gateways_on_one_redis_share_sessions(
    server: Any, tmp_path: Path, redis_url: str, gateways: list[GatewayProcess]
) -> None:
    envs = [
        gateway_env(server.url, tmp_path / name, GALILEO_SESSION_STORE=redis_url)
        for name in ("one", "two")
    ]
    one = GatewayProcess(envs[0], tmp_path / "one.log")
    two = GatewayProcess(envs[1], tmp_path / "two.log")
    gateways.extend([one.start(), two.start()])
    first, first_acks = _client(one.traces_url)
    second, second_acks = _client(two.traces_url)

    _turn(first, "conv-x", "ana")
    wait_for(lambda: len(sessions_of(server, PROJECT)) == 1, 60, "the first session")
    _turn(second, "conv-x", "ana")  # the same conversation through the other gateway
    _turn(second, "conv-y", "ana")  # ana's next conversation
    _turn(first, "conv-x", "ana")
    first.shutdown()
    second.shutdown()

    expected = _expected(first_acks.acked + second_acks.acked)
    wait_for(lambda: expected <= stored_ids(server, PROJECT), 60, "every trace")
    sessions = {s["external_id"]: s for s in sessions_of(server, PROJECT)}
    assert set(sessions) == {"conv-x", "conv-y"}
    assert sessions["conv-x"]["num_traces"] == 3
    assert sessions["conv-y"]["previous_session_id"] == sessions["conv-x"]["id"]


def test_inbound_key_is_required_and_never_forwarded(
    server: Any, tmp_path: Path, gateways: list[GatewayProcess]
) -> None:
    env = gateway_env(server.url, tmp_path, GALILEO_GATEWAY_KEY="inbound-key-for-clients")
    gw = _started(gateways, env, tmp_path / "gw.log")
    body = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "js"}}]
                },
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b174",
                                "name": "turn",
                                "startTimeUnixNano": "1700000000000000000",
                                "endTimeUnixNano": "1700000001000000000",
                                "attributes": [
                                    {"key": "session.id", "value": {"stringValue": "conv-j"}}
                                ],
                            }
                        ]
                    }
                ],
            }
        ]
    }
    missing = httpx.post(gw.traces_url, json=body)
    assert missing.status_code == 401
    # The client's credential is the gateway's inbound key, which the local server would refuse
    # (it wants KEY): the trace arriving proves the gateway sends its own key, not the client's.
    answer = httpx.post(
        gw.traces_url,
        json=body,
        headers={"Authorization": "Bearer inbound-key-for-clients", "logstream": "json-stream"},
    )
    assert answer.status_code == 200 and answer.json() == {}
    wait_for(lambda: sessions_of(server, PROJECT), 60, "the JSON trace")
    (session,) = sessions_of(server, PROJECT)
    assert session["external_id"] == "conv-j"
    streams = server.state.store.list_log_streams(session["project_id"])
    assert {s["id"]: s["name"] for s in streams}[session["log_stream_id"]] == "json-stream"


def test_sigterm_stops_cleanly_and_leaves_an_empty_log(
    server: Any, tmp_path: Path, gateways: list[GatewayProcess]
) -> None:
    gw = _started(gateways, gateway_env(server.url, tmp_path), tmp_path / "gw.log")
    line = startup_line(gw.output())
    assert KEY not in gw.output() and "gat******89" in line and PROJECT in line
    provider, exporter = _client(gw.traces_url)
    _turn(provider, "conv-t", "ana")
    provider.shutdown()
    assert gw.terminate(timeout_s=30) == 0  # bounded: graceful 2 s + shutdown timeout 10 s
    assert "galileo-otel gateway: stopped" in gw.output()
    wait_for(lambda: _expected(exporter.acked) <= stored_ids(server, PROJECT), 10, "the trace")
    with contextlib.closing(sqlite3.connect(tmp_path / "gateway" / "wal.db")) as db:
        assert db.execute("SELECT COUNT(*) FROM entries").fetchone() == (0,)


def test_otlp_grpc_from_the_stock_exporter(
    server: Any, tmp_path: Path, gateways: list[GatewayProcess]
) -> None:
    # The Collector's loadbalancing exporter speaks OTLP/gRPC only: the gateway takes it too.
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
        OTLPSpanExporter as GrpcSpanExporter,
    )

    env = gateway_env(server.url, tmp_path, GALILEO_GATEWAY_KEY="inbound-key-for-clients")
    gw = _started(gateways, env, tmp_path / "gw.log", grpc=True)
    assert f"OTLP/gRPC on port {gw.grpc_port}" in startup_line(gw.output())
    endpoint = f"127.0.0.1:{gw.grpc_port}"
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "grpc-chat"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    _turn(provider, "conv-g", "gus")
    spans = memory.get_finished_spans()

    wrong = GrpcSpanExporter(endpoint=endpoint, insecure=True, headers={"galileo-api-key": "no"})
    assert wrong.export(spans) is SpanExportResult.FAILURE  # UNAUTHENTICATED: not retried
    wrong.shutdown()
    right = GrpcSpanExporter(
        endpoint=endpoint,
        insecure=True,
        headers={"authorization": "Bearer inbound-key-for-clients", "logstream": "grpc-stream"},
    )
    assert right.export(spans) is SpanExportResult.SUCCESS
    right.shutdown()

    wait_for(lambda: _expected(spans) <= stored_ids(server, PROJECT), 60, "the gRPC trace")
    (session,) = sessions_of(server, PROJECT)
    assert session["external_id"] == "conv-g"
    streams = server.state.store.list_log_streams(session["project_id"])
    assert {s["id"]: s["name"] for s in streams}[session["log_stream_id"]] == "grpc-stream"


@pytest.mark.parametrize("export_process", [False, True], ids=["in-process", "worker-process"])
def test_sessions_say_which_client_sent_the_spans(
    server: Any, tmp_path: Path, gateways: list[GatewayProcess], export_process: bool
) -> None:
    # Galileo shows who logged a session: the app's OpenTelemetry SDK language, not the gateway's,
    # whether the pipelines run in the gateway's process or in export worker processes.
    env = gateway_env(server.url, tmp_path, GALILEO_EXPORT_PROCESS=str(export_process).lower())
    gw = _started(gateways, env, tmp_path / "gw.log")
    resources = {
        "conv-py": Resource.create({"service.name": "py-chat"}),  # telemetry.sdk.language=python
        "conv-node": Resource({"service.name": "node-chat", "telemetry.sdk.language": "nodejs"}),
        "conv-go": Resource({"service.name": "go-chat", "telemetry.sdk.language": "go"}),
        "conv-bare": Resource({"service.name": "bare"}),  # no language at all
    }
    acked = _send_turns(gw, resources.items())
    wait_for(lambda: _expected(acked) <= stored_ids(server, PROJECT), 60, "every trace")
    methods = {s["external_id"]: s["logging_method"] for s in sessions_of(server, PROJECT)}
    assert methods == {
        "conv-py": "python_client",
        "conv-node": "typescript_client",
        "conv-go": "api_direct",
        "conv-bare": "api_direct",
    }


@pytest.mark.parametrize("export_process", [False, True], ids=["in-process", "worker-process"])
def test_one_conversation_from_two_languages_is_one_session(
    server: Any, tmp_path: Path, gateways: list[GatewayProcess], export_process: bool
) -> None:
    # A Node.js front end opens the conversation, a Python back end continues it: one session,
    # logged by the client that opened it. Worker processes share it through the SQLite store.
    env = gateway_env(server.url, tmp_path, GALILEO_EXPORT_PROCESS=str(export_process).lower())
    gw = _started(gateways, env, tmp_path / "gw.log")

    def stored(acked: list[ReadableSpan]) -> None:
        # The second language's trace comes once the first one's session exists.
        want = _expected(acked)
        wait_for(lambda: want <= stored_ids(server, PROJECT), 60, "the traces")

    turns = [
        (
            "conv-shared",
            Resource({"service.name": "node-front", "telemetry.sdk.language": "nodejs"}),
        ),
        ("conv-shared", Resource.create({"service.name": "py-back"})),
    ]
    _send_turns(gw, turns, after_each=stored)
    sessions = sessions_of(server, PROJECT)
    assert [(s["external_id"], s["logging_method"]) for s in sessions] == [
        ("conv-shared", "typescript_client")
    ]
