"""Interpreter exit: an app that never calls shutdown still delivers (bounded exit flush)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from test_delivery_faults import get

pytestmark = pytest.mark.integration

SCRIPT = textwrap.dedent(
    """
    import sys
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from galileo_otel.exporter import GalileoSpanExporter
    from galileo_otel.processor import GalileoSessionProcessor

    url, spool, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    opts = dict(api_key="test-key", api_url=url, project=mode, log_stream="default",
                spool_dir=spool, batch_delay=5.0)
    provider = TracerProvider()  # shuts down at exit, as apps' providers do
    if mode == "processor":
        provider.add_span_processor(GalileoSessionProcessor(**opts))
    else:  # the exporter under a stock BatchSpanProcessor (OTEL_TRACES_EXPORTER=galileo)
        provider.add_span_processor(
            BatchSpanProcessor(GalileoSpanExporter(**opts), schedule_delay_millis=60_000)
        )
    tracer = provider.get_tracer("exit-test")
    for i in range(7):
        with tracer.start_as_current_span(f"turn {i}", attributes={"session.id": f"c{i % 2}"}):
            with tracer.start_as_current_span("llm"):
                pass
    # no flush, no shutdown: the exit hooks must deliver (batch_delay is far away)
    """
)


@pytest.mark.parametrize("mode", ["processor", "exporter"])
def test_spans_are_delivered_at_exit(local_server: Any, tmp_path: Path, mode: str) -> None:
    script = tmp_path / "app.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GALILEO_", "OTEL_"))}
    proc = subprocess.run(
        [sys.executable, str(script), local_server.url, str(tmp_path / "spool"), mode],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    projects = get(local_server.url, f"/projects?project_name={mode}&type=gen_ai")
    assert projects, proc.stderr
    assert get(local_server.url, "/local/stats")["traces"] == 7
    assert get(local_server.url, "/local/stats")["sessions"] == 2
