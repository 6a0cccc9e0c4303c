"""Crash safety: a process killed with SIGKILL after force_flush loses nothing it had accepted;
the next process (server up) delivers every trace exactly once."""

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
from test_delivery_faults import get, unused_port

from galileo_otel.export.spool import pending_in

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and flock are POSIX"),
]

APP = textwrap.dedent(
    """
    import json, sys, time
    from opentelemetry.sdk.trace import TracerProvider
    from galileo_otel.export.convert import trace_uuid
    from galileo_otel.processor import GalileoSessionProcessor

    url, spool, mode, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    processor = GalileoSessionProcessor(
        api_key="test-key", api_url=url, project="crash", log_stream="default",
        spool_dir=spool, batch_delay=0.05, export_timeout=2.0, read_timeout=1.0,
    )
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("crash-test")
    if mode == "produce":
        ids = []
        for i in range(n):
            with tracer.start_as_current_span(f"turn {i}", attributes={"session.id": f"c{i % 3}"}) as root:
                with tracer.start_as_current_span("llm"):
                    pass
            ids.append(trace_uuid(root.get_span_context().trace_id))
        flushed = processor.force_flush(1500)
        print(json.dumps({"flushed": flushed, "ids": ids}), flush=True)
        time.sleep(600)  # killed here
    else:  # "deliver": start; the flush covers the backlog adopted from the killed process
        processor.force_flush(30000)
        processor.shutdown(5000)
        print(json.dumps(processor.stats()), flush=True)
    """
)


def run_app(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    script = tmp_path / "app.py"
    script.write_text(APP)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GALILEO_", "OTEL_"))}
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_kill_9_after_force_flush_loses_nothing(local_server: Any, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    down = f"http://127.0.0.1:{unused_port()}"
    first = run_app(tmp_path, down, str(spool), "produce", "40")
    try:
        assert first.stdout is not None
        line = first.stdout.readline()  # blocks until force_flush returned (bounded: 1.5 s)
        assert line, first.stderr.read() if first.stderr else ""
        produced = json.loads(line)
        assert produced["flushed"] is False  # nothing could be confirmed: the server is down
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=10)  # reaps it and closes its pipes
    assert first.returncode == -signal.SIGKILL
    assert len(produced["ids"]) == 40
    assert pending_in(spool)

    second = run_app(tmp_path, local_server.url, str(spool), "deliver", "0")
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    stats = json.loads(out.strip().splitlines()[-1])
    assert stats["traces_confirmed"] == 40
    assert pending_in(spool) == []
    # every trace the first process accepted, exactly once, in the sessions it named
    url = local_server.url
    pid = get(url, "/projects?project_name=crash&type=gen_ai")[0]["id"]
    stored = get(url, "/local/stats")
    assert stored["traces"] == 40 and stored["sessions"] == 3
    for tid in produced["ids"]:
        assert get(url, f"/v2/projects/{pid}/traces/{tid}") is not None
