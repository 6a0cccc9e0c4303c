"""GalileoSpanExporter under the SDK's stock BatchSpanProcessor (no sockets)."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from conftest_pipeline import DEST, PROJECT_ID, FakeClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult

from galileo_otel.export.pipeline import ExportPipeline
from galileo_otel.exporter import GalileoSpanExporter
from galileo_otel.settings import GalileoSettings


def test_entry_point_names_the_exporter() -> None:
    (ep,) = entry_points(group="opentelemetry_traces_exporter", name="galileo")
    assert ep.load() is GalileoSpanExporter


def test_works_with_no_arguments_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GALILEO_API_KEY", "k")
    monkeypatch.setenv("GALILEO_PROJECT_ID", PROJECT_ID)
    monkeypatch.setenv("GALILEO_RELIABLE", "false")
    monkeypatch.setenv("GALILEO_BATCH_DELAY", "250ms")
    exporter = GalileoSpanExporter()
    try:
        settings = exporter.pipeline.settings
        assert settings.reliable is False
        assert settings.batch_delay == 0.25
        assert settings.project_id == PROJECT_ID
        assert exporter.stats()["spans_queued"] == 0
    finally:
        exporter.shutdown()


def test_overrides_win_over_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GALILEO_RELIABLE", "false")
    exporter = GalileoSpanExporter(reliable=True, spool_dir=str(tmp_path / "s"), api_key="k")
    try:
        assert exporter.pipeline.settings.reliable is True
        stats = exporter.pipeline.stats()  # reliable: a spool, open or being opened
        assert stats["spool_enabled"] or stats["spool_reason"].startswith("not open yet")
    finally:
        exporter.shutdown()


def _pipeline(tmp_path: Path, client: FakeClient, **overrides: Any) -> ExportPipeline:
    settings = GalileoSettings(
        api_key="k", batch_delay=0.01, spool_dir=str(tmp_path / "spool"), **overrides
    )
    return ExportPipeline(settings, client=client, destination=DEST, first_delay_s=0.0)


def test_under_batch_span_processor_sessions_come_from_attributes(tmp_path: Path) -> None:
    client = FakeClient()
    exporter = GalileoSpanExporter(_pipeline(tmp_path, client))
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=10))
    tracer = provider.get_tracer("t")
    for conv in ("conv-1", "conv-2", "conv-1"):
        with tracer.start_as_current_span("turn", attributes={"session.id": conv}):
            with tracer.start_as_current_span("llm"):
                pass
    assert provider.force_flush(10_000)
    # the stock BatchSpanProcessor's force_flush exports but never calls the exporter's
    assert exporter.force_flush(10_000)
    posts = client.trace_posts()
    by_external: dict[str, int] = {}
    for call in posts:
        by_external[call.body["session_external_id"]] = by_external.get(
            call.body["session_external_id"], 0
        ) + len(call.body["traces"])
    assert by_external == {"conv-1": 2, "conv-2": 1}
    assert {s["external_id"] for s in client.sessions} == {"conv-1", "conv-2"}
    provider.shutdown()
    assert exporter.export([]) is SpanExportResult.SUCCESS
    # after shutdown the pipeline refuses spans: FAILURE, never an exception
    with tracer.start_as_current_span("late") as span:
        pass
    assert exporter.export([span]) is SpanExportResult.FAILURE  # type: ignore[list-item]


def test_export_reports_a_full_queue(tmp_path: Path) -> None:
    pipeline = ExportPipeline(
        GalileoSettings(api_key="k", max_queue_spans=2, spool_dir="off"),
        client=FakeClient(),
        destination=DEST,
        start=False,
    )
    exporter = GalileoSpanExporter(pipeline)
    assert exporter.export(["a", "b"]) is SpanExportResult.SUCCESS  # type: ignore[list-item]
    assert exporter.export(["c"]) is SpanExportResult.FAILURE  # type: ignore[list-item]
    assert exporter.stats()["dropped.queue_full"] == 1
    pipeline.shutdown(0.1)
