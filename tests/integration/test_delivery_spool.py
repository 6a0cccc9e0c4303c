"""The shared spool against the real local server: several processes on one spool, a backlog
drained by a short process, kill -9 in a loop, a FIFO where the database should be, a full spool.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest_delivery import assert_stored_exactly, get, settings_for
from test_delivery_faults import App, pipeline_for, unused_port

from galileo_otel.export.spool import DB_NAME, pending_in

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes and FIFOs"),
]

APP = textwrap.dedent(
    """
    import json, sys, time
    from opentelemetry.sdk.trace import TracerProvider
    from galileo_otel.export.convert import trace_uuid
    from galileo_otel.processor import GalileoSessionProcessor

    url, spool, tag, n, then = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
    processor = GalileoSessionProcessor(
        api_key="test-key", api_url=url, project="delivery", log_stream="default",
        spool_dir=spool, batch_delay=0.05, batch_max_traces=5, export_timeout=5.0,
        read_timeout=2.0,
    )
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("spool-test")
    ids = []
    for i in range(n):
        attrs = {"session.id": f"{tag}-{i % 3}"}
        with tracer.start_as_current_span(f"turn {i}", attributes=attrs) as root:
            with tracer.start_as_current_span("llm"):
                pass
        ids.append(trace_uuid(root.get_span_context().trace_id))
    flushed = processor.force_flush(20000)
    if then == "hang":
        print(json.dumps({"flushed": flushed, "ids": ids}), flush=True)
        time.sleep(600)  # killed here
    processor.shutdown(10000)
    stats = processor.stats()
    print(json.dumps({"flushed": flushed, "ids": ids, "stats": stats}), flush=True)
    """
)


def start_app(tmp_path: Path, url: str, spool: Path, tag: str, n: int, then: str) -> Any:
    script = tmp_path / "app.py"
    if not script.exists():
        # Written once: rewriting it while an earlier process is still reading it at start-up
        # ran that process on an empty file (it exited 0 having done nothing).
        script.write_text(APP)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GALILEO_", "OTEL_"))}
    return subprocess.Popen(
        [sys.executable, str(script), url, str(spool), tag, str(n), then],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def reconciles(stats: dict[str, Any]) -> bool:
    """Every batched trace is exactly one of confirmed, pending, failed, dead, dropped, handed over."""
    left = stats["traces_batched"] + stats["traces_adopted"]
    right = (
        stats["traces_confirmed"]
        + stats["traces_pending"]
        + stats["traces_failed"]
        + stats["traces_dead_lettered"]
        + stats["dropped.spool_full"]
        + stats["traces_handed_over"]
    )
    return bool(left == right)


@pytest.mark.parametrize("flapping", [False, True], ids=["healthy", "flapping"])
def test_processes_sharing_a_spool_all_flush_true(
    local_server: Any, tmp_path: Path, flapping: bool
) -> None:
    if flapping:
        local_server.faults.fail("traces", status=503, fraction=0.3)
    spool = tmp_path / "spool"
    apps = [start_app(tmp_path, local_server.url, spool, f"p{i}", 20, "exit") for i in range(3)]
    # Every process is waited for (and its pipes closed) before anything is asserted.
    outputs = [(proc, *proc.communicate(timeout=120)) for proc in apps]
    results = []
    for proc, out, err in outputs:
        assert proc.returncode == 0 and out.strip(), err
        results.append(json.loads(out.strip().splitlines()[-1]))
    local_server.faults.clear()
    for result in results:
        assert result["flushed"] is True
        stats = result["stats"]
        assert stats["traces_confirmed"] == 20 and stats["traces_pending"] == 0
        assert reconciles(stats)
    assert_stored_exactly(local_server.url, [i for r in results for i in r["ids"]])
    assert pending_in(spool) == []


def test_a_short_process_drains_a_200_batch_backlog(local_server: Any, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    # the server is down: 200 batches of one trace each stay in the spool
    down = App(
        pipeline_for(
            settings_for(f"http://127.0.0.1:{unused_port()}", spool, batch_max_traces=1),
            first_delay_s=0.0,
        )
    )
    down.turns(200, sessions=4)
    assert down.pipeline.shutdown(3.0) is False
    assert len(pending_in(spool)) == 200
    # a short-lived process: start, flush, shut down; it leaves nothing it had time to send
    short = App(pipeline_for(settings_for(local_server.url, spool)))
    assert short.pipeline.force_flush(60.0) is True
    assert short.pipeline.shutdown(10.0) is True
    stats = short.pipeline.stats()
    assert stats["traces_adopted"] == 200 and stats["traces_confirmed"] == 200
    assert reconciles(stats)
    assert pending_in(spool) == []
    assert_stored_exactly(local_server.url, down.trace_ids)


def test_kill_9_in_a_loop_then_a_final_drain_loses_nothing(
    local_server: Any, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    accepted: list[str] = []
    for round_ in range(3):
        # every third round the server fails, so kills leave unsent batches behind
        if round_ == 1:
            local_server.faults.fail("traces", status=503)
        proc = start_app(tmp_path, local_server.url, spool, f"k{round_}", 15, "hang")
        assert proc.stdout is not None
        line = proc.stdout.readline()
        accepted += json.loads(line)["ids"]  # ended spans: accepted by the pipeline
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        assert proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()
        local_server.faults.clear()
    final = start_app(tmp_path, local_server.url, spool, "final", 0, "exit")
    out, err = final.communicate(timeout=120)
    assert final.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["flushed"] is True and reconciles(result["stats"])
    assert pending_in(spool) == []
    # 0 accepted traces lost (the server deduplicates a batch sent twice by its ids)
    assert_stored_exactly(local_server.url, accepted)


@pytest.mark.parametrize("bad", ["fifo", "garbage"])
def test_a_bad_spool_database_is_set_aside_and_delivery_goes_on(
    local_server: Any, tmp_path: Path, bad: str
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    if bad == "fifo":
        os.mkfifo(spool / DB_NAME)
    else:
        (spool / DB_NAME).write_bytes(b"\x00poison" * 512)
    app = App(pipeline_for(settings_for(local_server.url, spool)))
    app.turns(30)
    assert app.pipeline.force_flush(20.0) is True
    assert app.pipeline.shutdown(5.0) is True
    stats = app.pipeline.stats()
    assert stats["spool_enabled"] is True and stats["traces_confirmed"] == 30
    assert [p.name.startswith(f"{DB_NAME}.bad-") for p in spool.iterdir()].count(True) == 1
    assert_stored_exactly(local_server.url, app.trace_ids)


def test_a_full_spool_drops_and_counts_never_blocks(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    settings = settings_for(
        f"http://127.0.0.1:{unused_port()}",
        spool,
        spool_max_bytes=20_000,
        batch_max_traces=1,
        export_timeout=0.5,
    )
    app = App(pipeline_for(settings, first_delay_s=0.0))
    app.turns(100)
    assert app.pipeline.force_flush(10.0) is False
    app.pipeline.shutdown(3.0)
    stats = app.pipeline.stats()
    assert stats["dropped.spool_full"] > 0
    assert stats["spool_bytes"] <= 20_000
    assert stats["traces_pending"] > 0  # what fitted waits in the spool for the next run
    assert reconciles(stats)
    assert stats["traces_batched"] == 100


def test_a_read_only_spool_shows_in_stats(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    app = App(pipeline_for(settings_for("http://127.0.0.1:9", blocker / "spool")))
    stats = app.pipeline.stats()
    assert stats["spool_enabled"] is False and stats["spool_reason"].startswith("unusable")
    app.pipeline.shutdown(0.5)


def test_the_spool_directory_stays_within_its_cap_through_an_outage(
    local_server: Any, tmp_path: Path
) -> None:
    """Sends fail (503) while traces keep coming: the spool directory is sampled the whole time."""
    import threading

    from galileo_otel.export.spool import DISK_TOLERANCE_BYTES

    cap = 300_000
    spool = tmp_path / "spool"
    local_server.faults.fail("traces", status=503)
    settings = settings_for(
        local_server.url, spool, spool_max_bytes=cap, batch_max_traces=2, export_timeout=0.3
    )
    app = App(pipeline_for(settings, first_delay_s=0.0))
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            size = 0
            for path in list(spool.iterdir()) if spool.exists() else []:
                try:
                    size += path.stat().st_size
                except FileNotFoundError:  # the WAL files come and go
                    pass
            peak[0] = max(peak[0], size)
            done.wait(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        app.turns(600, sessions=5)
        assert app.pipeline.force_flush(5.0) is False  # the outage: nothing confirmed
        stats = app.pipeline.stats()
        assert stats["dropped.spool_full"] > 0  # it filled up, dropped and counted
        assert stats["spool_bytes"] <= cap
        # The server answers again: what fitted is delivered, and the spool shrinks back.
        local_server.faults.clear()
        app.pipeline.shutdown(20.0)  # False: the dropped traces count as lost
    finally:
        done.set()
        sampler.join(5.0)
    assert peak[0] <= cap + DISK_TOLERANCE_BYTES, peak[0]
    assert peak[0] > cap // 2  # the sampler saw the spool fill
    stats = app.pipeline.stats()
    assert reconciles(stats)
    assert stats["traces_batched"] == 600 and stats["traces_failed"] == 0
    # The next run sends what the first left in the spool; the spool shrinks back.
    after = pipeline_for(settings)
    assert after.force_flush(20.0) is True
    assert after.shutdown(10.0) is True
    confirmed = stats["traces_confirmed"] + after.stats()["traces_confirmed"]
    assert confirmed + stats["dropped.spool_full"] == 600
    assert get(local_server.url, "/local/stats")["traces"] == confirmed
    assert pending_in(spool) == []
    wal = spool / f"{DB_NAME}-wal"
    assert not wal.exists() or wal.stat().st_size <= 64 * 1024
