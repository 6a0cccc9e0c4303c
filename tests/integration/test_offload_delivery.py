"""GALILEO_EXPORT_PROCESS against the real local server: delivery, bounded shutdown, a killed
worker process.

Each test waits for its worker process to be set up before its timed part, and every deadline
that holds a worker's start or first work is derived from that measured cold start (see
tests/worker_start.py): the imports can take most of a minute on a loaded machine.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest_delivery import assert_stored_exactly, get, settings_for
from opentelemetry.sdk.trace import TracerProvider

from forking import run_forked
from galileo_otel.export.convert import trace_uuid
from galileo_otel.export.offload import OffloadPipeline
from galileo_otel.export.spool import pending_in
from galileo_otel.processor import GalileoSessionProcessor
from galileo_otel.settings import GalileoSettings
from worker_start import ColdStart, wait_until_ready

# A watchdog against a hang only: each step's own bound, derived from the measured cold start,
# fails first. A test with restarts holds up to five cold starts (about a minute each at nice
# 10 on a loaded machine, without compiled bytecode).
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

OFFLOAD: dict[str, Any] = {"project": "offload", "export_process": True}


class App:
    """An instrumented app whose processor builds its own (offloaded) pipeline."""

    def __init__(self, settings: GalileoSettings) -> None:
        self.provider = TracerProvider(shutdown_on_exit=False)
        self.processor = GalileoSessionProcessor(settings=settings)
        pipeline = self.processor.pipeline
        assert isinstance(pipeline, OffloadPipeline)
        self.pipeline: OffloadPipeline = pipeline
        self.provider.add_span_processor(self.processor)
        self.tracer = self.provider.get_tracer("offload-test")
        self.trace_ids: list[str] = []
        # The processor started the worker process: its cold start, before any timed part.
        self.cold: ColdStart = wait_until_ready(pipeline)

    def turns(self, n: int, sessions: int = 3, start: int = 0) -> None:
        for i in range(start, start + n):
            attrs = {"session.id": f"conv-{i % sessions}", "gen_ai.operation.name": "invoke_agent"}
            with self.tracer.start_as_current_span(f"turn {i}", attributes=attrs) as root:
                with self.tracer.start_as_current_span(
                    "chat", attributes={"gen_ai.request.model": "m"}
                ) as chat:
                    chat.add_event("gen_ai.user.message", {"content": f"hi {i}"})
            self.trace_ids.append(trace_uuid(root.get_span_context().trace_id))


def configure_offload(provider: TracerProvider, local_server: Any, tmp_path: Path) -> Any:
    """configure() on ``provider`` with the export worker process, against the local server."""
    from galileo_otel.configure import configure

    settings = settings_for(local_server.url, tmp_path / "spool", **OFFLOAD)
    return configure(
        tracer_provider=provider,
        **{name: getattr(settings, name) for name in ("api_key", "api_url", "spool_dir")},
        project="offload",
        log_stream="default",
        export_process=True,
        batch_delay=0.05,
    )


def test_every_trace_arrives_once_through_the_worker_process(
    local_server: Any, tmp_path: Path
) -> None:
    app = App(settings_for(local_server.url, tmp_path / "spool", **OFFLOAD))
    app.turns(30)
    assert app.pipeline.force_flush(app.cold.bound(20.0)) is True
    stats = app.pipeline.stats()
    assert stats["traces_confirmed"] == 30
    assert stats["spans_queued"] == 60
    assert stats["spans_dropped"] == 0
    assert app.pipeline.shutdown(app.cold.bound(5.0)) is True
    assert_stored_exactly(local_server.url, app.trace_ids, project="offload")
    assert get(local_server.url, "/local/stats")["sessions"] == 3
    assert pending_in(tmp_path / "spool") == []


def test_shutdown_is_bounded_when_the_server_hangs(local_server: Any, tmp_path: Path) -> None:
    app = App(settings_for(local_server.url, tmp_path / "spool", read_timeout=30.0, **OFFLOAD))
    app.turns(2)
    assert app.pipeline.force_flush(app.cold.bound(15.0)) is True
    local_server.faults.hang("traces", max_hang_s=30.0)
    app.turns(5, start=2)
    started = time.monotonic()
    assert app.pipeline.shutdown(1.5) is False
    assert time.monotonic() - started < 4.0  # bounded by the 1.5 s timeout (slack for CI)
    proc = app.pipeline.child
    assert proc is not None and proc.poll() is not None  # the child is gone too


def test_killed_worker_loses_nothing_and_the_parent_recovers(
    local_server: Any, tmp_path: Path
) -> None:
    app = App(settings_for(local_server.url, tmp_path / "spool", **OFFLOAD))
    app.turns(10)
    assert app.pipeline.force_flush(app.cold.bound(20.0)) is True
    proc = app.pipeline.child
    assert proc is not None
    app.turns(10, start=10)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    app.turns(10, start=20)
    assert app.pipeline.force_flush(app.cold.bound(30.0)) is True  # holds the restart
    stats = app.pipeline.stats()
    assert stats["offload.child_exits"] == 1
    assert stats["offload.restarts"] == 1
    assert app.pipeline.child is not proc
    assert app.pipeline.shutdown(app.cold.bound(5.0)) is True
    assert_stored_exactly(local_server.url, app.trace_ids, project="offload")


def test_after_repeated_worker_deaths_export_falls_back_in_process(
    local_server: Any, tmp_path: Path
) -> None:
    app = App(settings_for(local_server.url, tmp_path / "spool", **OFFLOAD))
    app.turns(5)
    assert app.pipeline.force_flush(app.cold.bound(20.0)) is True
    seen: list[int] = []
    for round_ in range(4):  # MAX_RESTARTS (3) restarts, then the fourth death
        proc = app.pipeline.child
        assert proc is not None
        seen.append(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        app.turns(2, start=5 + 2 * round_)
        assert app.pipeline.force_flush(app.cold.bound(30.0)) is True  # a restart or fallback
    stats = app.pipeline.stats()
    assert stats["offload.restarts"] == 3
    assert stats["offload.fallback"] == 1
    assert len(set(seen)) == 4
    assert app.pipeline.shutdown(app.cold.bound(5.0)) is True
    assert_stored_exactly(local_server.url, app.trace_ids, project="offload")


def test_a_forked_app_process_gets_its_own_worker_process(
    local_server: Any, tmp_path: Path
) -> None:
    app = App(settings_for(local_server.url, tmp_path / "spool", **OFFLOAD))
    app.turns(3)
    assert app.pipeline.force_flush(app.cold.bound(20.0)) is True
    parent_worker = app.pipeline.child
    assert parent_worker is not None
    # The forked app's own worker process starts cold.
    child_flush, child_shutdown = app.cold.bound(20.0), app.cold.bound(5.0)

    def child() -> list[Any]:  # the forked app process
        app.trace_ids.clear()
        app.turns(4, start=100)
        flushed = app.pipeline.force_flush(child_flush)
        own_worker = app.pipeline.child
        own = own_worker is not None and own_worker.pid != parent_worker.pid
        ok = app.pipeline.shutdown(child_shutdown)
        return [flushed, own, ok, app.trace_ids]

    flushed, own, ok, child_ids = run_forked(child, timeout_s=child_flush + child_shutdown + 10.0)
    assert (flushed, own, ok) == (True, True, True)
    app.turns(2, start=3)  # the parent's worker process still serves the parent
    assert app.pipeline.force_flush(app.cold.bound(20.0)) is True
    assert app.pipeline.child is parent_worker
    assert app.pipeline.shutdown(app.cold.bound(5.0)) is True
    assert_stored_exactly(local_server.url, app.trace_ids + child_ids, project="offload")


def test_configure_with_export_process_uses_the_worker_and_delivers(
    local_server: Any, tmp_path: Path
) -> None:

    provider = TracerProvider(shutdown_on_exit=False)
    handle = configure_offload(provider, local_server, tmp_path)
    pipeline = handle.processor.pipeline
    assert isinstance(pipeline, OffloadPipeline)
    cold = wait_until_ready(pipeline)
    tracer = provider.get_tracer("configure-offload")
    ids = []
    for i in range(10):
        with tracer.start_as_current_span(f"turn {i}", attributes={"session.id": "c"}) as root:
            pass
        ids.append(trace_uuid(root.get_span_context().trace_id))
    assert handle.force_flush(cold.bound(20.0)) is True
    stats = handle.stats()
    assert stats["traces_confirmed"] == 10 and stats["spool_enabled"] is True
    assert handle.shutdown(cold.bound(10.0)) is True
    assert_stored_exactly(local_server.url, ids, project="offload")


def _gated_worker(gate: Path) -> list[str]:
    """A worker process that cannot get set up until the test opens ``gate`` (a FIFO)."""
    code = (
        "import sys\n"
        f"open({str(gate)!r}, 'rb').close()  # blocks until the test opens the FIFO\n"
        "from galileo_otel.export.offload.child import main\n"
        "sys.exit(main())\n"
    )
    return [sys.executable, "-c", code]


def _open_gate(gate: Path) -> None:
    opener = threading.Thread(target=lambda: os.close(os.open(gate, os.O_WRONLY)), daemon=True)
    opener.start()
    opener.join(30)
    assert not opener.is_alive(), "the gated worker process never opened its gate"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo (Unix)")
def test_configure_never_waits_for_a_worker_process_still_starting(
    local_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """configure() returns while the child cannot be ready; spans wait for it, none is lost."""
    from galileo_otel.export.offload import parent

    gate = tmp_path / "gate"
    os.mkfifo(gate)
    monkeypatch.setattr(parent, "worker_command", lambda: _gated_worker(gate))
    provider = TracerProvider(shutdown_on_exit=False)
    handle = configure_offload(provider, local_server, tmp_path)
    pipeline = handle.processor.pipeline
    assert isinstance(pipeline, OffloadPipeline)
    # configure() is back and the worker process is blocked on its gate: nothing waited for it.
    assert pipeline.wait_ready(0) is False
    proc = pipeline.child
    assert proc is not None and proc.poll() is None
    tracer = provider.get_tracer("slow-start")
    ids = []
    for i in range(300):
        with tracer.start_as_current_span(
            f"turn {i}", attributes={"session.id": f"c{i % 3}"}
        ) as root:
            pass
        ids.append(trace_uuid(root.get_span_context().trace_id))
    # every span was taken while the child could not be ready
    assert pipeline.wait_ready(0) is False
    _open_gate(gate)
    cold = wait_until_ready(pipeline)  # then the kept spans go: the flush's own work
    assert handle.force_flush(cold.bound(30.0)) is True
    stats = handle.stats()
    assert stats["spans_queued"] == 300 and stats["spans_dropped"] == 0
    assert stats["traces_confirmed"] == 300
    assert stats["offload.child_exits"] == 0
    assert handle.shutdown(cold.bound(10.0)) is True
    assert_stored_exactly(local_server.url, ids, project="offload")


def test_a_loss_in_the_worker_process_makes_the_next_flush_false(
    local_server: Any, tmp_path: Path
) -> None:
    app = App(settings_for(local_server.url, tmp_path / "spool", **OFFLOAD))
    try:
        app.turns(2, sessions=1)
        assert app.pipeline.force_flush(app.cold.bound(20.0)) is True
        local_server.faults.fail("traces", status=422, times=1)
        app.turns(3, sessions=1, start=2)
        # the worker process sends the batch on its own and the server rejects it for good
        end = time.monotonic() + app.cold.bound(20.0)
        while local_server.faults.stats().get("error", 0) < 1:
            assert time.monotonic() < end, "the batch never reached the server"
            time.sleep(0.01)
        assert app.pipeline.force_flush(app.cold.bound(20.0)) is False
        app.turns(2, sessions=1, start=5)
        assert app.pipeline.force_flush(app.cold.bound(20.0)) is True
        assert app.pipeline.stats()["traces_dead_lettered"] == 3
    finally:
        assert app.pipeline.shutdown(app.cold.bound(5.0)) is True
    assert_stored_exactly(
        local_server.url, app.trace_ids[:2] + app.trace_ids[5:], project="offload"
    )
