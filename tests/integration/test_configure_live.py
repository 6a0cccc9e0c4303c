"""configure() against a real local server: delivery, existing providers, clear errors."""

from __future__ import annotations

import importlib
import json
import logging
import re
import socket
import sys
import textwrap
from typing import Any

import pytest
from conftest_cli import explain, galileo_env, run, sessions_of
from opentelemetry.sdk.trace import TracerProvider

from galileo_otel.errors import ConfigError
from galileo_otel.sessions.context import session

cfg = importlib.import_module("galileo_otel.configure")
pytestmark = pytest.mark.integration

UNKNOWN_PID = "6a0b3c8e-1f2d-4e5f-9a8b-7c6d5e4f3a2b"


def _kw(server: Any, **extra: Any) -> dict[str, Any]:
    return {
        "api_url": server.url,
        "api_key": server.api_key,
        "project": "live",
        "batch_delay": 0.05,
        "spool_dir": "off",
        **extra,
    }


def test_configure_delivers_sessions(local_server: Any) -> None:
    provider = TracerProvider()
    handle = cfg.configure(tracer_provider=provider, **_kw(local_server))
    assert handle.destination is not None  # resolved (and created) at configure time
    tracer = provider.get_tracer("t")
    for conv, turns in (("c1", 2), ("c2", 1)):
        with session(conv, user_id="u"):
            for _ in range(turns):
                with tracer.start_as_current_span("turn"):
                    pass
    assert handle.force_flush(10) is True
    stats = handle.stats()
    assert stats["traces_confirmed"] == 3 and stats["spans_dropped"] == 0
    assert handle.shutdown(10) is True
    got = {s["external_id"]: s["num_traces"] for s in sessions_of(local_server, "live")}
    assert got == {"c1": 2, "c2": 1}


def test_wrong_key_is_one_config_error(local_server: Any) -> None:
    with pytest.raises(ConfigError) as info:
        cfg.configure(tracer_provider=TracerProvider(), **_kw(local_server, api_key="nope"))
    assert "rejected the API key (HTTP 401)" in str(info.value)
    assert info.value.__cause__ is None and "nope" not in str(info.value)


def test_unknown_project_id_is_one_config_error(local_server: Any) -> None:
    with pytest.raises(ConfigError) as info:
        cfg.configure(
            tracer_provider=TracerProvider(),
            **_kw(local_server, project=None, project_id=UNKNOWN_PID),
        )
    assert f"no Galileo project with id {UNKNOWN_PID}" in str(info.value)


def test_unknown_names_without_creation_are_config_errors(local_server: Any) -> None:
    with pytest.raises(
        ConfigError,
        match=re.escape("does not exist and creation is off (GALILEO_CREATE_MISSING=false)"),
    ):
        cfg.configure(
            tracer_provider=TracerProvider(),
            **_kw(local_server, project="ghost", create_missing=False),
        )


def test_unreachable_server_warns_and_continues(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    provider = TracerProvider()
    with caplog.at_level(logging.WARNING, logger="galileo_otel.configure"):
        handle = cfg.configure(
            tracer_provider=provider,
            api_url=f"http://127.0.0.1:{port}",
            api_key="k",
            project="p",
            spool_dir="off",
            reliable=False,
        )
    assert handle.enabled and handle.destination is None
    assert "could not reach the Galileo API" in caplog.text
    handle.shutdown(1)


EXISTING_PROVIDER_APP = textwrap.dedent(
    """
    import json
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    trace.set_tracer_provider(provider)

    from galileo_otel.configure import configure
    from galileo_otel.sessions import session

    handle = configure()
    again = configure()
    tracer = trace.get_tracer("app")
    for conv in ("x1", "x2"):
        with session(conv, user_id="zed"):
            with tracer.start_as_current_span("turn"):
                with tracer.start_as_current_span("llm"):
                    pass
    print(json.dumps({
        "same_provider": trace.get_tracer_provider() is provider and handle.tracer_provider is provider,
        "same_handle": again is handle,
        "memory_spans": len(memory.get_finished_spans()),
        "flushed": handle.force_flush(10),
        "processors": len(provider._active_span_processor._span_processors),
    }))
    """
)


def test_configure_next_to_existing_global_provider(local_server: Any) -> None:
    proc = run(
        [sys.executable, "-c", EXISTING_PROVIDER_APP], galileo_env(local_server, project="existing")
    )
    assert proc.returncode == 0, explain(proc)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == {
        "same_provider": True,
        "same_handle": True,
        "memory_spans": 4,
        "flushed": True,
        "processors": 2,
    }
    got = {s["external_id"]: s["num_traces"] for s in sessions_of(local_server, "existing")}
    assert got == {"x1": 1, "x2": 1}
