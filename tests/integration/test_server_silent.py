"""The local server never traces itself into the app that hosts it (demo, examples)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import httpx
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)

    from galileo_otel.server import serve_in_thread

    with serve_in_thread(api_key="k") as server:
        with httpx.Client() as client:
            assert client.get(server.url + "/healthcheck").status_code == 200
            r = client.post(server.url + "/projects", json={"name": "p", "type": "gen_ai"},
                            headers={"Galileo-API-Key": "k"})
            assert r.status_code == 200, r.text
    provider.force_flush()
    print("SPANS", len(exporter.get_finished_spans()))
    """
)


def test_server_in_a_traced_process_emits_no_spans(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {"PATH": "", "XDG_DATA_HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "SPANS 0" in proc.stdout, proc.stdout + proc.stderr
