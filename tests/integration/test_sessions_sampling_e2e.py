"""GALILEO_SESSION_SAMPLE_RATE end to end: configure() against the local server keeps whole sessions."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from conftest_cli import sessions_of
from opentelemetry.sdk.trace import TracerProvider

from galileo_otel.sessions.context import session
from galileo_otel.sessions.tracker import sampled

cfg = importlib.import_module("galileo_otel.configure")
pytestmark = pytest.mark.integration


def test_sample_rate_keeps_or_drops_whole_sessions(local_server: Any) -> None:
    keys = [f"conv-{i}" for i in range(40)]
    provider = TracerProvider()
    handle = cfg.configure(
        tracer_provider=provider,
        api_url=local_server.url,
        api_key=local_server.api_key,
        project="sampled",
        batch_delay=0.05,
        spool_dir="off",
        session_sample_rate=0.5,
    )
    tracer = provider.get_tracer("t")
    for key in keys:
        with session(key, user_id="u"):
            for _ in range(3):
                with tracer.start_as_current_span("turn"):
                    pass
    assert handle.force_flush(20) is True
    stats = handle.stats()
    assert handle.shutdown(10) is True
    kept = [k for k in keys if sampled(k, 0.5)]
    assert 0 < len(kept) < len(keys)
    got = {s["external_id"]: s["num_traces"] for s in sessions_of(local_server, "sampled")}
    assert got == {k: 3 for k in kept}
    assert stats["dropped.sampled"] == 3 * (len(keys) - len(kept))


def test_tracker_counters_reach_exporter_stats(local_server: Any) -> None:
    provider = TracerProvider()
    handle = cfg.configure(
        tracer_provider=provider,
        api_url=local_server.url,
        api_key=local_server.api_key,
        project="counted",
        batch_delay=0.05,
        spool_dir="off",
    )
    with session("conv-a", user_id="u"), provider.get_tracer("t").start_as_current_span("turn"):
        pass
    assert handle.force_flush(20) is True
    stats = handle.stats()
    assert handle.shutdown(10) is True
    assert stats["sessions.sessions_opened"] == 1
    assert stats["convert.traces_cut"] == 0
