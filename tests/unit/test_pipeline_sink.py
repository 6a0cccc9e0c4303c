"""The Sink seam: make_pipeline(sink=...) sends batches to any destination, same rules."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from conftest_pipeline import LOG_STREAM_ID, PROJECT_ID, FakeTracker, emit, tracer_for

from galileo_otel.errors import APIError, ConfigError, ValidationError
from galileo_otel.export import make_pipeline
from galileo_otel.export.sink import Outcome
from galileo_otel.settings import GalileoSettings


class RecordingSink:
    """Keeps every batch it is given; answers with the scripted outcomes, then success."""

    def __init__(self, outcomes: list[Outcome] | None = None) -> None:
        self.outcomes = list(outcomes or [])
        self.batches: list[dict[str, Any]] = []
        self.deadlines: list[float | None] = []
        self.closed = False
        self.lock = threading.Lock()

    def send(self, batch: Any, deadline: float | None) -> Outcome:
        with self.lock:
            self.batches.append({"header": batch.header, "traces": json.loads(batch.body())})
            self.deadlines.append(deadline)
            return self.outcomes.pop(0) if self.outcomes else Outcome(sent=True)

    def close(self) -> None:
        self.closed = True


def settings(tmp_path: Any, **overrides: Any) -> GalileoSettings:
    values: dict[str, Any] = {
        "api_key": "k",
        "project_id": PROJECT_ID,
        "log_stream_id": LOG_STREAM_ID,
        "batch_delay": 0.01,
        "export_timeout": 5.0,
        "spool_dir": str(tmp_path / "spool"),
    }
    values.update(overrides)
    return GalileoSettings(**values)


@pytest.mark.parametrize("reliable", [True, False])
def test_batches_reach_the_sink_and_flush_is_true(tmp_path: Any, reliable: bool) -> None:
    sink = RecordingSink()
    pipeline = make_pipeline(
        settings(tmp_path, reliable=reliable), sink=sink, tracker=FakeTracker(), start=True
    )
    assert pipeline is not None
    tracer = tracer_for(pipeline)
    emit(tracer, session="a", children=2)
    emit(tracer, session="b")
    assert pipeline.force_flush(5.0) is True
    traces = [t for b in sink.batches for t in b["traces"]]
    assert len(traces) == 2
    assert {b["header"].external_id for b in sink.batches} == {"a", "b"}
    # reliable sends carry a deadline; fire-and-forget sends none
    assert all((d is not None) == reliable for d in sink.deadlines)
    stats = pipeline.stats()
    assert stats["traces_confirmed"] == 2 == stats["traces_sent"]
    assert pipeline.shutdown(5.0) is True
    assert sink.closed is False  # a sink passed in is the caller's to close


def test_a_sink_outcome_drives_retry_and_dead_letter(tmp_path: Any) -> None:
    busy = APIError("HTTP 503", status_code=503, retryable=True, retry_after=0.01)
    rejected = ValidationError("HTTP 422", status_code=422, detail="bad", retryable=False)
    sink = RecordingSink([Outcome(sent=True, error=busy), Outcome(sent=True, error=rejected)])
    pipeline = make_pipeline(settings(tmp_path), sink=sink, tracker=FakeTracker())
    assert pipeline is not None
    emit(tracer_for(pipeline))
    assert pipeline.force_flush(5.0) is False  # retried once, then rejected for good
    stats = pipeline.stats()
    assert stats["requests_retried"] == 1
    assert stats["traces_dead_lettered"] == 1 == stats["dead_lettered.422"]
    assert len(sink.batches) == 2
    pipeline.shutdown(1.0)


def test_a_sink_cannot_cross_into_a_worker_process(tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match="in-process"):
        make_pipeline(settings(tmp_path, export_process=True), sink=RecordingSink())
