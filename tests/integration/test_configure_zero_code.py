"""opentelemetry-instrument with our entry points: next to otlp, and in the stock OTel set-up."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from conftest_cli import BIN, EXAMPLES, explain, galileo_env, otlp_sink, run, sessions_of

pytestmark = pytest.mark.integration

EXPECTED = {"conv-a": 3, "conv-b": 2, "conv-c": 1}


def _counts(server: Any, project: str) -> dict[str, int]:
    return {
        str(s.get("external_id")): int(s.get("num_traces") or 0)
        for s in sessions_of(server, project)
    }


def test_galileo_next_to_otlp_delivers_to_both(local_server: Any) -> None:
    with otlp_sink() as sink:
        env = {
            **galileo_env(local_server, project="both"),
            "OTEL_PYTHON_DISTRO": "galileo",
            "OTEL_PYTHON_CONFIGURATOR": "galileo",
            "OTEL_TRACES_EXPORTER": "galileo,otlp",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{sink.url}/v1/traces",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
        }
        proc = run(
            [str(BIN / "opentelemetry-instrument"), sys.executable, str(EXAMPLES / "env_only.py")],
            env,
        )
        assert proc.returncode == 0, explain(proc)
        assert [path for path, _ in sink.requests if path == "/v1/traces"], explain(proc)
        assert all(size > 0 for _, size in sink.requests)
    assert _counts(local_server, "both") == EXPECTED, explain(proc)


def test_stock_configurator_with_galileo_exporter(local_server: Any) -> None:
    # The OpenTelemetry distro and configurator, our exporter named in OTEL_TRACES_EXPORTER:
    # BatchSpanProcessor(GalileoSpanExporter()) built by the stock loader, sessions from attributes.
    env = {
        **galileo_env(local_server, project="stock"),
        "OTEL_PYTHON_DISTRO": "distro",
        "OTEL_PYTHON_CONFIGURATOR": "configurator",
        "OTEL_TRACES_EXPORTER": "galileo",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }
    proc = run(
        [str(BIN / "opentelemetry-instrument"), sys.executable, str(EXAMPLES / "env_only.py")], env
    )
    assert proc.returncode == 0, explain(proc)
    assert _counts(local_server, "stock") == EXPECTED, explain(proc)


def test_misconfigured_zero_code_app_still_runs_and_says_why(local_server: Any) -> None:
    env = {
        **galileo_env(local_server, project="bad"),
        "GALILEO_API_KEY": "wrong-key",
        "OTEL_PYTHON_DISTRO": "galileo",
        "OTEL_PYTHON_CONFIGURATOR": "galileo",
    }
    proc = run(
        [str(BIN / "opentelemetry-instrument"), sys.executable, str(EXAMPLES / "env_only.py")], env
    )
    assert proc.returncode == 0, explain(proc)  # the app is not taken down
    assert "not sending traces to Galileo" in proc.stderr and "rejected the API key" in proc.stderr
    assert "Traceback" not in proc.stderr, explain(proc)
