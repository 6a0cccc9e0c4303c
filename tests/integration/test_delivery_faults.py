"""Delivery against the real local server and its fault injection: 503, 429, hangs, refusals,
restarts; reliable mode delivers every trace exactly once, fire-and-forget counts its losses."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest
from conftest_delivery import KEY, assert_stored_exactly, get, settings_for
from opentelemetry.sdk.trace import TracerProvider

from galileo_otel.export.convert import trace_uuid
from galileo_otel.export.pipeline import ExportPipeline
from galileo_otel.export.spool import dead_in, pending_in
from galileo_otel.processor import GalileoSessionProcessor
from galileo_otel.server import serve_in_thread
from galileo_otel.settings import GalileoSettings

pytestmark = pytest.mark.integration


def pipeline_for(settings: GalileoSettings, **kw: Any) -> ExportPipeline:
    kw.setdefault("backoff_initial_s", 0.05)
    kw.setdefault("backoff_max_s", 0.2)
    kw.setdefault("spool_retry_s", 0.1)
    return ExportPipeline(settings, **kw)


class App:
    """An instrumented app: GalileoSessionProcessor on a TracerProvider, remembering trace ids."""

    def __init__(self, pipeline: ExportPipeline) -> None:
        self.pipeline = pipeline
        self.provider = TracerProvider(shutdown_on_exit=False)
        self.processor = GalileoSessionProcessor(pipeline)
        self.provider.add_span_processor(self.processor)
        self.tracer = self.provider.get_tracer("delivery-test")
        self.trace_ids: list[str] = []

    def turns(self, n: int, sessions: int = 3, start: int = 0) -> None:
        for i in range(start, start + n):
            attrs = {"session.id": f"conv-{i % sessions}", "gen_ai.operation.name": "invoke_agent"}
            with self.tracer.start_as_current_span(f"turn {i}", attributes=attrs) as root:
                with self.tracer.start_as_current_span(
                    "chat", attributes={"gen_ai.request.model": "m"}
                ):
                    pass
            self.trace_ids.append(trace_uuid(root.get_span_context().trace_id))


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_reliable_rides_out_503s_and_429s(local_server: Any, tmp_path: Path) -> None:
    faults = local_server.faults
    faults.fail("traces", status=503, times=3)
    faults.rate_limit("traces", retry_after_s=0.1, times=2)
    faults.fail("sessions.create", status=502, times=1)
    app = App(pipeline_for(settings_for(local_server.url, tmp_path / "spool")))
    app.turns(20)
    assert app.pipeline.force_flush(20.0) is True
    stats = app.pipeline.stats()
    assert stats["traces_confirmed"] == 20
    assert stats["requests_retried"] >= 5
    assert app.pipeline.shutdown(5.0) is True
    assert_stored_exactly(local_server.url, app.trace_ids)
    assert pending_in(tmp_path / "spool") == []
    assert get(local_server.url, "/local/stats")["sessions"] == 3


def test_reliable_retries_a_hanging_request(local_server: Any, tmp_path: Path) -> None:
    local_server.faults.hang("traces", max_hang_s=10.0, times=1)
    settings = settings_for(local_server.url, tmp_path / "spool", read_timeout=0.5)
    app = App(pipeline_for(settings))
    app.turns(6)
    assert app.pipeline.force_flush(15.0) is True
    assert app.pipeline.stats()["requests_retried"] >= 1
    app.pipeline.shutdown(5.0)
    assert_stored_exactly(local_server.url, app.trace_ids)


def test_shutdown_with_a_hanging_server_is_bounded_and_the_next_run_delivers(
    local_server: Any, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    # warm up: destination and sessions exist, so the hang hits Log Traces itself
    first = App(pipeline_for(settings_for(local_server.url, spool, read_timeout=30.0)))
    first.turns(3)
    assert first.pipeline.force_flush(10.0)
    local_server.faults.hang("traces", max_hang_s=30.0)
    first.turns(12, start=3)
    started = time.monotonic()
    assert first.pipeline.shutdown(1.5) is False
    assert time.monotonic() - started < 6.0  # bounded by the 1.5 s timeout (slack for CI)
    # the hung requests' batches stay with the first pipeline's stuck senders until their
    # connections close (clear() releases the hangs); then they are anyone's to send
    local_server.faults.clear()
    for sender in first.pipeline.senders.threads:
        sender.join(35.0)
    second = App(pipeline_for(settings_for(local_server.url, spool)))
    assert second.pipeline.force_flush(20.0) is True
    second.pipeline.shutdown(5.0)
    assert pending_in(spool) == []
    assert_stored_exactly(local_server.url, first.trace_ids)


def test_server_down_then_next_start_delivers_once(local_server: Any, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    down = f"http://127.0.0.1:{unused_port()}"
    first = App(pipeline_for(settings_for(down, spool)))
    first.turns(25, sessions=4)
    started = time.monotonic()
    assert first.pipeline.shutdown(10.0) is False
    assert time.monotonic() - started < 8.0  # refusals go straight back to the spool
    stats = first.pipeline.stats()
    assert stats["traces_spooled"] == 25 and stats["traces_confirmed"] == 0
    assert pending_in(spool)

    second = App(pipeline_for(settings_for(local_server.url, spool)))
    assert second.pipeline.force_flush(20.0) is True  # the adopted backlog, delivered
    assert second.pipeline.shutdown(5.0) is True
    assert second.pipeline.stats()["traces_confirmed"] == 25
    assert_stored_exactly(local_server.url, first.trace_ids)
    assert get(local_server.url, "/local/stats")["sessions"] == 4


def test_server_restart_mid_run(tmp_path: Path) -> None:
    db = tmp_path / "galileo.db"
    server = serve_in_thread(db_path=db, api_key=KEY)
    port = server.port
    app = App(pipeline_for(settings_for(server.url, tmp_path / "spool")))
    try:
        app.turns(10)
        assert app.pipeline.force_flush(10.0)
        server.stop()
        app.turns(10, start=10)  # server down: retried, then parked in the spool
        # Nothing can be confirmed while the server is down; the flush sends (and fails) them.
        assert app.pipeline.force_flush(1.0) is False
        server = serve_in_thread(db_path=db, api_key=KEY, port=port)
        app.turns(10, start=20)
        # the periodic spool retry and the fresh batches get everything through
        assert app.pipeline.force_flush(20.0) is True
        assert app.pipeline.shutdown(5.0) is True
        assert_stored_exactly(server.url, app.trace_ids)
        assert pending_in(tmp_path / "spool") == []
    finally:
        app.pipeline.shutdown(1.0)
        server.stop()


def test_permanent_error_is_set_aside_not_retried(local_server: Any, tmp_path: Path) -> None:
    app = App(pipeline_for(settings_for(local_server.url, tmp_path / "spool")))
    app.turns(2, sessions=1)
    assert app.pipeline.force_flush(10.0)
    local_server.faults.fail("traces", status=422, times=1)
    app.turns(3, sessions=1, start=2)
    assert app.pipeline.force_flush(10.0) is False
    app.turns(2, sessions=1, start=5)
    assert app.pipeline.force_flush(10.0) is True
    app.pipeline.shutdown(5.0)
    stats = app.pipeline.stats()
    assert stats["traces_dead_lettered"] == 3
    assert stats["requests_retried"] == 0
    assert local_server.faults.stats()["error"] == 1  # sent once, never again
    assert len(dead_in(tmp_path / "spool")) == 1
    assert_stored_exactly(local_server.url, app.trace_ids[:2] + app.trace_ids[5:])


def test_fire_and_forget_counts_losses_exactly(local_server: Any, tmp_path: Path) -> None:
    settings = settings_for(
        local_server.url, tmp_path / "spool", reliable=False, batch_max_traces=1
    )
    app = App(pipeline_for(settings))
    app.turns(2)
    assert app.pipeline.force_flush(10.0)
    local_server.faults.fail("traces", status=503, times=4)
    app.turns(10, start=2)
    started = time.monotonic()
    assert app.pipeline.force_flush(10.0) is False
    assert time.monotonic() - started < 5.0  # nothing retried, nothing waited for
    app.pipeline.shutdown(5.0)
    assert local_server.wait_idle(10.0)
    stats = app.pipeline.stats()
    got = get(local_server.url, "/local/stats")["traces"]
    assert stats["traces_sent"] == 12
    assert stats["traces_failed"] == 4 == stats["failed.http_503"]
    assert stats["traces_confirmed"] == got == 8
    assert not (tmp_path / "spool").exists()


def test_fire_and_forget_with_the_server_down_never_blocks(tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{unused_port()}"
    settings = settings_for(down, tmp_path / "spool", reliable=False, project_id=None)
    app = App(pipeline_for(settings))
    started = time.monotonic()
    app.turns(30)
    assert time.monotonic() - started < 5.0
    assert app.pipeline.shutdown(5.0) is False
    stats = app.pipeline.stats()
    assert stats["traces_failed"] == 30
    assert stats["traces_confirmed"] == 0
