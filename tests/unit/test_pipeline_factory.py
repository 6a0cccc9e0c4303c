"""make_pipeline(): the one place a pipeline is built, used from every way in (no sockets)."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from opentelemetry.sdk.trace import TracerProvider

from galileo_otel.api.client import Destination
from galileo_otel.errors import ConfigError
from galileo_otel.export import make_pipeline
from galileo_otel.exporter import GalileoSpanExporter
from galileo_otel.processor import GalileoSessionProcessor
from galileo_otel.settings import GalileoSettings, merge_settings

cfg = importlib.import_module("galileo_otel.configure")

PID = "6a0b3c8e-1f2d-4e5f-9a8b-7c6d5e4f3a2b"
LSID = "0f1e2d3c-4b5a-4968-8776-655443322110"


class Built:
    """Records which pipeline class the factory built, with what."""

    kinds: ClassVar[list[tuple[str, GalileoSettings, dict[str, Any]]]] = []

    def __init__(self, kind: str, settings: GalileoSettings, **kwargs: Any) -> None:
        self.settings = settings
        Built.kinds.append((kind, settings, kwargs))

    def start(self, *, wait: bool = True) -> None:
        self.waited = wait

    def submit(self, span: Any) -> bool:
        return True

    def force_flush(self, timeout_s: float | None = None) -> bool:
        return True

    def shutdown(self, timeout_s: float | None = None) -> bool:
        return True

    def stats(self) -> dict[str, Any]:
        return {}


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[list[Any]]:
    import galileo_otel.export.offload as offload_module
    import galileo_otel.export.pipeline as pipeline_module

    Built.kinds = []
    monkeypatch.setattr(
        pipeline_module, "ExportPipeline", lambda s, **kw: Built("in-process", s, **kw)
    )
    monkeypatch.setattr(offload_module, "OffloadPipeline", lambda s, **kw: Built("worker", s, **kw))
    monkeypatch.setattr(
        cfg,
        "resolve_destination",
        lambda settings, **kw: Destination(PID, settings.project, LSID, None, "default"),
    )
    monkeypatch.setenv("GALILEO_SPOOL_DIR", str(tmp_path / "spool"))
    yield Built.kinds


def _kind(kinds: list[Any]) -> str:
    assert len(kinds) == 1
    return str(kinds[0][0])


@pytest.mark.parametrize("export_process", [False, True])
def test_configure_honours_export_process(built: list[Any], export_process: bool) -> None:
    handle = cfg.configure(
        tracer_provider=TracerProvider(shutdown_on_exit=False),
        api_key="k",
        project="p",
        export_process=export_process,
    )
    assert _kind(built) == ("worker" if export_process else "in-process")
    # configure() hands the destination it resolved to whichever pipeline it built
    assert built[0][2]["destination"].project_id == PID
    handle.shutdown()


def test_env_export_process_reaches_every_way_in(
    built: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GALILEO_EXPORT_PROCESS", "true")
    monkeypatch.setenv("GALILEO_API_KEY", "k")
    monkeypatch.setenv("GALILEO_PROJECT", "p")
    handle = cfg.configure(tracer_provider=TracerProvider(shutdown_on_exit=False))
    GalileoSessionProcessor()
    GalileoSpanExporter()
    assert [k for k, _, _ in built] == ["worker", "worker", "worker"]
    # the worker never holds up the caller while it starts: start(wait=False)
    handle.shutdown()


def test_a_starting_worker_does_not_block_the_caller(built: list[Any]) -> None:
    pipeline: Any = make_pipeline(GalileoSettings(api_key="k", export_process=True))
    assert pipeline.waited is False


def test_disabled_builds_nothing(built: list[Any]) -> None:
    assert make_pipeline(GalileoSettings(logging_disabled=True)) is None
    assert built == []


@pytest.mark.parametrize(
    "build",
    [
        lambda: GalileoSpanExporter(settings=GalileoSettings(api_key="k"), batch_delay="soon"),
        lambda: GalileoSessionProcessor(settings=GalileoSettings(api_key="k"), batch_delay="soon"),
        lambda: GalileoSpanExporter(batch_delay="soon"),
        lambda: cfg.configure(api_key="k", project="p", batch_delay="soon"),
    ],
)
def test_bad_override_is_a_config_error_naming_the_setting(built: list[Any], build: Any) -> None:
    with pytest.raises(ConfigError, match="batch_delay"):
        build()
    assert built == []


def test_merge_settings_keeps_the_base_and_validates_overrides(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = GalileoSettings(api_key="k", project="p", batch_delay=2.0)
    merged = merge_settings(base, {"reliable": False})
    assert merged.project == "p" and merged.batch_delay == 2.0 and merged.reliable is False
    assert merge_settings(base, {}) is base
    with pytest.raises(ConfigError, match="no_such_setting"):
        merge_settings(base, {"no_such_setting": 1})
    # an override wins over env vars; env vars fill the rest when no base is given
    monkeypatch.setenv("GALILEO_BATCH_DELAY", "3")
    assert merge_settings(None, {"api_key": "k"}).batch_delay == 3.0
    assert merge_settings(None, {"api_key": "k", "batch_delay": 4}).batch_delay == 4.0


def test_the_pipeline_closes_the_tracker_it_built(tmp_path: Path) -> None:
    from galileo_otel.export.pipeline import ExportPipeline

    pipeline = ExportPipeline(
        GalileoSettings(
            api_key="k", spool_dir="off", session_store=f"sqlite:///{tmp_path}/sessions.db"
        ),
        start=True,
    )
    tracker = pipeline.session_tracker()
    closed: list[bool] = []
    original = tracker.close
    tracker.close = lambda: (closed.append(True), original())[1]
    assert pipeline.shutdown(2.0)
    assert closed == [True]


def test_a_tracker_passed_in_is_left_open(tmp_path: Path) -> None:
    from galileo_otel.export.pipeline import ExportPipeline

    class Tracker:
        closed = False

        def close(self) -> None:
            self.closed = True

    tracker = Tracker()
    pipeline = ExportPipeline(
        GalileoSettings(api_key="k", spool_dir="off"), tracker=tracker, start=False
    )
    pipeline.shutdown(1.0)
    assert tracker.closed is False
