"""The gateway's engine without sockets: write-ahead log, open-trace table, checkpoint rule,
replay, back-pressure, routing, and the HTTP answers (through an in-process ASGI client)."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext

from galileo_otel.cli import main
from galileo_otel.gateway.app import create_gateway_app, inbound_key_ok
from galileo_otel.gateway.config import GatewaySettings
from galileo_otel.gateway.core import Gateway, Refused, destination_settings
from galileo_otel.gateway.runner import check_listen, gateway_settings, startup_line
from galileo_otel.gateway.tracking import OpenTraces
from galileo_otel.gateway.wal import WalFullError, WalLockedError, WriteAheadLog
from galileo_otel.otlp import spans_from_request
from galileo_otel.settings import GalileoSettings

S = 1_000_000_000
PROTO = {"content-type": "application/x-protobuf"}


def _span(trace_id: int, span_id: int, parent: int | None = None, end_s: int = 100) -> ReadableSpan:
    return ReadableSpan(
        name=f"s{span_id}",
        context=SpanContext(trace_id, span_id, is_remote=False),
        parent=SpanContext(trace_id, parent, is_remote=False) if parent else None,
        resource=Resource.create({"service.name": "svc"}),
        attributes={"session.id": f"conv-{trace_id}"},
        start_time=(end_s - 1) * S,
        end_time=end_s * S,
    )


def _request(*spans: ReadableSpan) -> ExportTraceServiceRequest:
    return encode_spans(list(spans))


class FakePipeline:
    """The Pipeline interface, recording what it is given; flush answers are set by the test."""

    def __init__(self, settings: GalileoSettings, max_queue: int) -> None:
        self.settings = settings
        self.submitted: list[Any] = []
        self.flush_ok = True
        self.flushes = 0
        self.queue_size = 0
        self.shutdown_ok = True
        self.closed = False
        self.extra: dict[str, Any] = {}
        self.max_queue = max_queue

    def submit(self, span: Any) -> bool:
        if self.closed:
            return False
        self.submitted.append(span)
        return True

    def force_flush(self, timeout_s: float | None = None) -> bool:
        self.flushes += 1
        return self.flush_ok

    def shutdown(self, timeout_s: float | None = None) -> bool:
        self.closed = True
        return self.shutdown_ok

    def stats(self) -> dict[str, Any]:
        return {
            "queue_size": self.queue_size,
            "traces_confirmed": len(self.submitted),
            **self.extra,
        }


class Clock:
    def __init__(self) -> None:
        self.now = 1_000 * S

    def __call__(self) -> int:
        return self.now


class Rig:
    def __init__(self, tmp_path: Path, **config: Any) -> None:
        self.settings = GalileoSettings(
            api_key="upstream-secret-key-123", project="p", log_stream="s", max_queue_spans=10
        )
        self.config = GatewaySettings(dir=str(tmp_path / "gw"), **config)
        self.clock = Clock()
        self.pipelines: list[FakePipeline] = []
        self.gateway = self.new_gateway()

    def factory(self, settings: GalileoSettings, **_: Any) -> FakePipeline:
        pipeline = FakePipeline(settings, int(settings.max_queue_spans))
        self.pipelines.append(pipeline)
        return pipeline

    def new_gateway(self) -> Gateway:
        gateway = Gateway(
            self.settings,
            self.config,
            pipeline_factory=self.factory,
            clock_ns=self.clock,
            checkpoint_every_s=None,
        )
        gateway.start()
        assert gateway.wait_ready(10)
        return gateway

    def send(self, *spans: ReadableSpan, headers: dict[str, str] | None = None) -> int:
        request = _request(*spans)
        decoded, _, _ = spans_from_request(request)
        return self.gateway.accept(request, decoded, headers or {}).wal_id


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    made = Rig(tmp_path)
    yield made
    made.gateway.close(1.0)


# --- write-ahead log ------------------------------------------------------------------------------


def test_wal_files_are_private_and_rows_survive_a_reopen(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path / "state", max_bytes=0)
    first = wal.append({"project": "a"}, b"one", 1)
    second = wal.append({}, b"two", 2)
    assert first < second
    assert wal.usage() == (2, 6)
    wal.close()
    assert stat.S_IMODE(os.stat(tmp_path / "state").st_mode) == 0o700
    for name in ("wal.db", "wal.lock"):
        assert stat.S_IMODE(os.stat(tmp_path / "state" / name).st_mode) == 0o600

    again = WriteAheadLog(tmp_path / "state", max_bytes=0)
    rows = list(again.entries())
    assert [(r.id, r.headers, r.body) for r in rows] == [
        (first, {"project": "a"}, b"one"),
        (second, {}, b"two"),
    ]
    assert again.delete([first, 999]) == 1
    assert again.usage() == (1, 3)
    again.close()


def test_wal_is_bounded_in_bytes_but_always_takes_one_row(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path, max_bytes=10)
    wal.append({}, b"x" * 50, 1)  # an empty log takes any one row: a request never starves
    with pytest.raises(WalFullError):
        wal.append({}, b"y", 2)
    wal.delete([r.id for r in wal.entries()])
    wal.append({}, b"y" * 10, 3)
    wal.close()


def test_one_gateway_per_state_directory(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path, max_bytes=0)
    with pytest.raises(WalLockedError, match="GALILEO_GATEWAY_DIR"):
        WriteAheadLog(tmp_path, max_bytes=0)
    wal.close()
    WriteAheadLog(tmp_path, max_bytes=0).close()


# --- the open-trace table -------------------------------------------------------------------------


def test_open_traces_follow_the_assemblers_rules() -> None:
    table = OpenTraces(trace_timeout_ns=10 * S, margin_ns=1 * S)
    now = 100 * S
    assert table.note([_span(1, 2, parent=1), _span(2, 3, parent=9)], now) == {1, 2}
    assert not table.closed({1}, now)
    table.note([_span(1, 1)], now)  # the root closes trace 1
    assert table.closed({1}, now)
    table.note([_span(1, 4, parent=1)], now + S)  # a late span opens a new part
    assert not table.closed({1}, now + S)
    # Idle for the timeout plus the margin: the assembler has shipped it.
    assert not table.closed({2}, now + 11 * S - 1)
    assert table.closed({2}, now + 11 * S)
    table.prune(now + 12 * S + 1)
    assert len(table) == 0


def test_a_span_that_ends_in_the_future_keeps_its_trace_open_longer() -> None:
    table = OpenTraces(trace_timeout_ns=10 * S, margin_ns=0)
    table.note([_span(1, 2, parent=1, end_s=500)], now_ns=100 * S)  # client clock ahead
    assert not table.closed({1}, 200 * S)
    assert table.closed({1}, 510 * S + 1)


# --- the engine -----------------------------------------------------------------------------------


def test_a_row_is_deleted_only_after_its_traces_closed_and_a_flush_confirmed(rig: Rig) -> None:
    gw = rig.gateway
    child = rig.send(_span(1, 2, parent=1))
    assert gw.wal.usage()[0] == 1
    assert gw.checkpoint() == 0  # trace 1 is open: its spans are only in the assembler
    assert rig.pipelines[0].flushes == 0

    rig.send(_span(1, 1))  # the root: trace 1 ships
    rig.pipelines[0].flush_ok = False  # Galileo did not confirm
    assert gw.checkpoint() == 0
    assert gw.wal.usage()[0] == 2

    rig.pipelines[0].flush_ok = True
    assert gw.checkpoint() == 2
    assert gw.wal.usage() == (0, 0)
    assert child > 0
    assert gw.stats()["wal_rows_deleted"] == 2


def test_a_rootless_trace_is_released_after_the_trace_timeout(rig: Rig) -> None:
    rig.send(_span(7, 2, parent=1))
    rig.clock.now += int(rig.settings.trace_timeout * S)
    assert rig.gateway.checkpoint() == 0
    rig.clock.now += 4 * S  # past the margin
    assert rig.gateway.checkpoint() == 1


def test_a_loss_in_the_pipeline_keeps_the_rows_and_hands_them_over_again(rig: Rig) -> None:
    rig.send(_span(1, 2, parent=1), _span(1, 1))
    pipeline = rig.pipelines[0]
    pipeline.extra["dropped.spool_full"] = 1  # a batch the spool had no room for
    assert rig.gateway.checkpoint() == 0
    assert [s.context.span_id for s in pipeline.submitted] == [2, 1, 2, 1]
    assert rig.gateway.stats()["resubmitted_requests"] == 1
    assert rig.gateway.checkpoint() == 1  # no new loss: the second hand-over was confirmed


def test_a_nearly_full_spool_answers_503(rig: Rig) -> None:
    rig.send(_span(1, 1))
    rig.pipelines[0].extra["spool_bytes"] = int(rig.settings.spool_max_bytes)
    rig.gateway.checkpoint()
    with pytest.raises(Refused) as full:
        rig.send(_span(2, 1))
    assert full.value.status == 503 and "spool" in full.value.reason
    assert not rig.gateway.ready
    rig.pipelines[0].extra["spool_bytes"] = 0
    rig.gateway.checkpoint()
    rig.send(_span(2, 1))


def test_rows_left_are_replayed_in_order_by_the_next_start(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.send(_span(1, 2, parent=1))
    rig.send(_span(1, 1), headers={"logstream": "other"})
    rig.gateway.wal.close()  # as after kill -9: no shutdown ran

    rig.gateway = rig.new_gateway()
    by_stream = {p.settings.log_stream: p for p in rig.pipelines[2:]}
    assert [s.context.span_id for s in by_stream["s"].submitted] == [2]
    assert [s.context.span_id for s in by_stream["other"].submitted] == [1]
    assert rig.gateway.stats()["replayed_requests"] == 2
    assert rig.gateway.close(1.0)
    wal = WriteAheadLog(tmp_path / "gw", max_bytes=0)
    assert wal.usage() == (0, 0)
    wal.close()


def _in(resource: Resource, *spans: ReadableSpan) -> list[ReadableSpan]:
    """``spans`` as if sent by an app whose resource is ``resource``."""
    return [
        ReadableSpan(
            name=s.name,
            context=s.context,
            parent=s.parent,
            resource=resource,
            attributes=s.attributes,
            start_time=s.start_time,
            end_time=s.end_time,
        )
        for s in spans
    ]


def test_spans_go_to_a_pipeline_per_client_language(tmp_path: Path) -> None:
    made: list[tuple[FakePipeline, Any]] = []

    class Recording(Rig):
        def factory(self, settings: GalileoSettings, **kw: Any) -> FakePipeline:
            pipeline = super().factory(settings)
            made.append((pipeline, kw.get("tracker")))
            return pipeline

    rig = Recording(tmp_path, max_destinations=1)
    node = Resource({"service.name": "js", "telemetry.sdk.language": "nodejs"})
    # One request from a Collector batching two apps: a Python one and a Node.js one.
    rig.send(_span(1, 2, parent=1), *_in(node, _span(2, 2, parent=1), _span(2, 1)), _span(1, 1))
    (py, py_tracker), (js, js_tracker) = made
    assert py_tracker.store is js_tracker.store  # one store per destination
    assert [(s.context.trace_id, s.context.span_id) for s in py.submitted] == [(1, 2), (1, 1)]
    assert [(s.context.trace_id, s.context.span_id) for s in js.submitted] == [(2, 2), (2, 1)]
    record = js_tracker.session_for_trace({"session.id": "conv-2"}, 1, 2)
    assert record.logging_method == "typescript_client"
    assert py_tracker.session_for_trace({"session.id": "conv-1"}, 1, 2).logging_method is None
    assert rig.gateway.stats()["destinations"] == 1  # two pipelines, one destination
    assert rig.gateway.wal.usage()[0] == 1  # one row for the request
    assert rig.gateway.checkpoint() == 1  # both pipelines flushed: the row goes

    # A row left in the log is split the same way when it is replayed.
    rig.send(*_in(node, _span(3, 1)))
    rig.gateway.wal.close()  # as after kill -9
    made.clear()
    rig.gateway = rig.new_gateway()
    ((replayed, tracker),) = made
    assert tracker is not None and [s.context.trace_id for s in replayed.submitted] == [3]
    assert rig.gateway.close(1.0)


def test_close_keeps_the_rows_when_the_pipeline_could_not_deliver(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.send(_span(1, 1))
    rig.pipelines[0].shutdown_ok = False
    assert not rig.gateway.close(1.0)
    wal = WriteAheadLog(tmp_path / "gw", max_bytes=0)
    assert wal.usage()[0] == 1
    wal.close()


def test_back_pressure_refuses_before_anything_is_written(tmp_path: Path) -> None:
    rig = Rig(tmp_path, wal_max_bytes=1, retry_after=3)
    rig.send(_span(1, 1))
    with pytest.raises(Refused) as full:
        rig.send(_span(2, 1))
    assert (full.value.status, full.value.retry_after_s) == (503, 3)
    assert not rig.gateway.ready  # /readyz says so too

    rig.gateway.checkpoint()
    rig.pipelines[0].queue_size = 9  # the worker is behind: one free place in its queue
    # The gateway's lower bound of the room runs short, it reads the queue size, and refuses.
    with pytest.raises(Refused) as busy:
        rig.send(*[_span(3, i, parent=1) for i in range(2, 11)])
    assert busy.value.status == 429
    assert rig.gateway.wal.usage()[0] == 0
    rig.send(_span(4, 1))
    stats = rig.gateway.stats()
    assert stats["refused.wal_full"] == 1 and stats["refused.queue_full"] == 1
    with pytest.raises(Refused) as too_big:
        rig.send(*[_span(5, i, parent=1) for i in range(2, 14)])
    assert too_big.value.status == 413
    rig.gateway.close(1.0)


def test_headers_override_the_destination_and_need_a_project(tmp_path: Path) -> None:
    base = GalileoSettings(
        project="p", log_stream="s", log_stream_id="5300dd70-b0e8-4ab3-9643-d54b10dd6988"
    )
    key = ("other", "", "")
    assert destination_settings(base, key).project == "other"
    assert destination_settings(base, key).log_stream == "s"
    experiment = "0b1e8f0e-8a7b-4c1e-9d2f-2b7c4a1e3f10"
    moved = destination_settings(base, ("", "", experiment))
    assert (moved.experiment_id, moved.log_stream, moved.log_stream_id) == (experiment, None, None)

    rig = Rig(tmp_path)
    rig.settings = GalileoSettings(api_key="k" * 20)  # no GALILEO_PROJECT
    rig.gateway.close(1.0)
    rig.gateway = rig.new_gateway()
    with pytest.raises(Refused, match="project") as missing:
        rig.send(_span(1, 1))
    assert missing.value.status == 400
    with pytest.raises(Refused, match="UUID"):
        rig.send(_span(1, 1), headers={"project": "x", "experimentid": "nope"})
    rig.send(_span(1, 1), headers={"project": "x"})
    assert rig.pipelines[-1].settings.project == "x"
    rig.gateway.close(1.0)


# --- settings, start-up -----------------------------------------------------------------------


def test_listening_beyond_loopback_needs_an_inbound_key(capsys: pytest.CaptureFixture[str]) -> None:
    check_listen("127.0.0.1", GatewaySettings())
    check_listen("::1", GatewaySettings())
    check_listen("0.0.0.0", GatewaySettings(key="inbound"))
    assert main(["gateway", "--host", "0.0.0.0", "--port", "1"]) == 1
    assert "GALILEO_GATEWAY_KEY" in capsys.readouterr().err


def test_startup_line_masks_the_key_and_sessions_default_to_sqlite(tmp_path: Path) -> None:
    config = GatewaySettings(dir=str(tmp_path))
    settings = gateway_settings(
        GalileoSettings(api_key="upstream-secret-key-123", project="p", log_stream="s"), config
    )
    assert settings.session_store_path() == tmp_path / "sessions.db"
    line = startup_line(settings, config, "127.0.0.1", 4318)
    assert "upstream-secret-key-123" not in line and "ups******23" in line
    assert "http://127.0.0.1:4318/v1/traces" in line and "project p" in line
    redis = GalileoSettings(session_store="redis://:pw-secret@127.0.0.1:6379/0")
    assert "pw-secret" not in startup_line(gateway_settings(redis, config), config, "::1", 1)


def test_inbound_key_header_or_bearer() -> None:
    assert inbound_key_ok(None, {})
    assert inbound_key_ok("k1", {"galileo-api-key": "k1"})
    assert inbound_key_ok("k1", {"authorization": "Bearer k1"})
    assert not inbound_key_ok("k1", {"authorization": "Bearer k2"})
    assert not inbound_key_ok("k1", {"galileo-api-key": ""})


# --- HTTP answers ---------------------------------------------------------------------------------


def test_http_answers(tmp_path: Path) -> None:
    # httpx's ASGI transport, not starlette's TestClient (deprecated with newer httpx).
    rig = Rig(tmp_path, key="inbound-key", max_body_bytes=4096, wal_max_bytes=1)
    app = create_gateway_app(rig.gateway, manage=False)
    try:
        asyncio.run(_http_scenario(app, rig))
    finally:
        rig.gateway.close(1.0)


async def _http_scenario(app: Any, rig: Rig) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://gw", headers={"Galileo-API-Key": "inbound-key"}
    ) as client:
        body = _request(_span(1, 1)).SerializeToString()
        denied = await client.post(
            "/v1/traces", content=body, headers={**PROTO, "Galileo-API-Key": "x"}
        )
        assert denied.status_code == 401
        ok = await client.post(
            "/v1/traces", content=gzip.compress(body), headers={**PROTO, "content-encoding": "gzip"}
        )
        assert ok.status_code == 200
        assert not ExportTraceServiceResponse.FromString(ok.content).HasField("partial_success")

        # The log is full now (wal_max_bytes=1): 503 with Retry-After, and not ready.
        full = await client.post("/v1/traces", content=body, headers=PROTO)
        assert full.status_code == 503 and full.headers["retry-after"] == "5"
        assert (await client.get("/readyz")).status_code == 503
        assert (await client.get("/healthz")).status_code == 200
        rig.gateway.checkpoint()
        assert (await client.get("/readyz")).status_code == 200

        junk = await client.post("/v1/traces", content=b"\xff\x00junk", headers=PROTO)
        assert junk.status_code == 400
        text = await client.post("/v1/traces", content=body, headers={"content-type": "text/plain"})
        assert text.status_code == 415
        big = await client.post("/v1/traces", content=b"x" * 5000, headers=PROTO)
        assert big.status_code == 413
        bomb = gzip.compress(b"\x00" * 100_000)
        inflated = await client.post(
            "/v1/traces", content=bomb, headers={**PROTO, "content-encoding": "gzip"}
        )
        assert inflated.status_code == 413

        # OTLP/JSON (hex ids) with one invalid span id: 200 with partial_success, in JSON.
        spans = [
            {"traceId": "0" * 31 + "9", "spanId": "0" * 15 + "1", "name": "ok"},
            {"traceId": "0" * 31 + "9", "spanId": "", "name": "bad"},
        ]
        payload = {"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}
        answer = await client.post(
            "/v1/traces", content=json.dumps(payload), headers={"content-type": "application/json"}
        )
        assert answer.status_code == 200
        assert answer.json()["partialSuccess"]["rejectedSpans"] == "1"

        metrics = (await client.get("/metrics")).text
    assert "galileo_gateway_spans_accepted_total 2.0" in metrics
    assert "galileo_gateway_spans_rejected_total 1.0" in metrics
    assert 'galileo_gateway_requests_refused_total{reason="wal_full"} 1.0' in metrics
    assert "galileo_gateway_wal_bytes" in metrics


def test_the_gateway_imports_without_the_server_only_dependencies() -> None:
    # The [gateway] extra has no pyjwt or jinja2 (the local server's login and web UI).
    code = (
        "import sys\n"
        "for name in ('jwt', 'jinja2'): sys.modules[name] = None\n"
        "import galileo_otel.gateway.app, galileo_otel.gateway.runner\n"
        "assert 'galileo_otel.server.app' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


class _Aborted(Exception):
    pass


class _GrpcContext:
    def __init__(self, metadata: list[tuple[str, str]]) -> None:
        self.metadata = metadata
        self.code: Any = None

    def invocation_metadata(self) -> list[tuple[str, str]]:
        return self.metadata

    def abort(self, code: Any, details: str) -> None:
        self.code = code
        raise _Aborted(details)


def test_grpc_answers_map_the_http_ones(tmp_path: Path) -> None:
    grpc = pytest.importorskip("grpc")
    from galileo_otel.gateway.grpc_server import _TraceService

    rig = Rig(tmp_path, key="inbound-key", wal_max_bytes=1)
    service = _TraceService(rig.gateway)
    request = _request(_span(1, 1))
    good = _GrpcContext([("galileo-api-key", "inbound-key"), ("logstream", "g")])
    assert not service.Export(request, good).HasField("partial_success")
    assert rig.pipelines[-1].settings.log_stream == "g"
    for metadata, code in [
        ([("authorization", "Bearer nope")], grpc.StatusCode.UNAUTHENTICATED),
        ([("galileo-api-key", "inbound-key")], grpc.StatusCode.UNAVAILABLE),  # log full
        (
            [("galileo-api-key", "inbound-key"), ("experimentid", "x")],
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
    ]:
        context = _GrpcContext(metadata)
        with pytest.raises(_Aborted):
            service.Export(_request(_span(2, 1)), context)
        assert context.code == code
    rig.gateway.close(1.0)


def test_the_log_commits_in_full_unless_told_otherwise(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        WriteAheadLog(tmp_path / "a", max_bytes=0, synchronous="EXTRA; DROP TABLE x")  # type: ignore[arg-type]
    wal = WriteAheadLog(tmp_path / "b", max_bytes=0, synchronous="OFF")
    assert wal.append({}, b"x", 1) == 1
    wal.close()


def test_a_worker_process_pipeline_is_told_its_logging_method(tmp_path: Path) -> None:
    kwargs: list[dict[str, Any]] = []

    class Recording(Rig):
        def factory(self, settings: GalileoSettings, **kw: Any) -> FakePipeline:
            kwargs.append(kw)
            return super().factory(settings)

    rig = Recording(tmp_path)
    rig.settings = rig.settings.model_copy(update={"export_process": True})
    rig.gateway.close(1.0)
    rig.gateway = rig.new_gateway()
    node = Resource({"telemetry.sdk.language": "nodejs"})
    rig.send(_span(2, 1), *_in(node, _span(1, 1)))
    # Python spans: exactly the in-process factory call; Node.js ones: the method, no tracker
    # (the worker process builds its own, stamping the method).
    assert kwargs == [
        {"shutdown_at_exit": False},
        {"shutdown_at_exit": False, "logging_method": "typescript_client"},
    ]
    rig.gateway.close(1.0)


def test_the_worker_process_stamps_the_logging_method_it_was_started_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from galileo_otel.errors import ConfigError
    from galileo_otel.export import make_pipeline
    from galileo_otel.export.offload.fallback import in_process_pipeline
    from galileo_otel.export.offload.protocol import METHOD_ENV, settings_env

    settings = GalileoSettings(
        api_key="k" * 20, project="p", log_stream="s", spool_dir=str(tmp_path / "spool")
    )
    # The launch carries the method; a method in the parent's own environment is never inherited.
    monkeypatch.setenv(METHOD_ENV, "api_direct")
    assert settings_env(settings, None, "typescript_client")[METHOD_ENV] == "typescript_client"
    assert METHOD_ENV not in settings_env(settings)
    # What the child (and the parent's in-process fallback) runs: a tracker stamping the method.
    pipeline, tracker = in_process_pipeline(settings, logging_method="typescript_client")
    try:
        record = pipeline.session_tracker().session_for_trace({"session.id": "conv-1"}, 1, 2)
        assert tracker is pipeline.session_tracker()
        assert record.logging_method == "typescript_client"
    finally:
        assert pipeline.shutdown(5.0)
        tracker.close()
    python, none = in_process_pipeline(settings)  # this client's own: as before
    assert none is None
    assert (
        python.session_tracker().session_for_trace({"session.id": "c"}, 1, 2).logging_method is None
    )
    assert python.shutdown(5.0)
    with pytest.raises(ConfigError, match="worker process"):
        make_pipeline(settings, logging_method="typescript_client")  # in-process: a tracker


def test_one_session_id_from_two_languages_is_one_session(tmp_path: Path) -> None:
    # A Node.js front end and a Python back end logging one conversation: one Galileo session,
    # with the logging method of the language that opened it; the other one joins it.
    trackers: list[Any] = []

    class Recording(Rig):
        def factory(self, settings: GalileoSettings, **kw: Any) -> FakePipeline:
            trackers.append(kw["tracker"])
            return super().factory(settings)

    rig = Recording(tmp_path)
    node = Resource({"service.name": "js", "telemetry.sdk.language": "nodejs"})
    rig.send(*_in(node, _span(2, 1)), _span(1, 1))
    js, py = trackers  # built in the order the request named them: Node.js first
    opened = js.session_for_trace({"session.id": "conv-7"}, 10, 20)
    joined = py.session_for_trace({"session.id": "conv-7"}, 30, 40)
    assert joined.local_id == opened.local_id
    assert joined.logging_method == "typescript_client"  # the opener's
    # Created once, whichever pipeline's sink asks first.
    created: list[dict[str, Any]] = []

    def create(payload: dict[str, Any]) -> str:
        created.append(payload)
        return "00000000-0000-4000-8000-000000000007"

    assert py.ensure_created(joined, create) == js.ensure_created(opened, create)
    assert [p["logging_method"] for p in created] == ["typescript_client"]
    # Other conversations stay apart.
    assert py.session_for_trace({"session.id": "conv-8"}, 50, 60).local_id != opened.local_id
    rig.gateway.close(1.0)
