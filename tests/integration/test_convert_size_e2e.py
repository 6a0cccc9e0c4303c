"""A trace bigger than GALILEO_BATCH_MAX_BYTES reaches the local server cut to fit, and is counted.

Needs the pipeline to encode through ``galileo_otel.export.fit.encode_within`` and to show
``ConvertStats`` under ``convert.*`` in ``stats()``: the pipeline belongs to another branch, so
this file is named so that pytest does not collect it yet. At merge time, wire the pipeline and
rename it to ``test_convert_size_e2e.py`` (it passed here with the wiring applied, and fails
without it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest_delivery import get, settings_for
from opentelemetry.sdk.trace import TracerProvider

from galileo_otel import GalileoSessionProcessor
from galileo_otel.export.convert import trace_uuid
from galileo_otel.export.pipeline import ExportPipeline

pytestmark = pytest.mark.integration


def test_an_oversized_trace_arrives_cut_to_fit_and_counted(
    local_server: Any, tmp_path: Path
) -> None:
    max_bytes = 256 * 1024
    settings = settings_for(local_server.url, tmp_path / "spool", batch_max_bytes=max_bytes)
    pipeline = ExportPipeline(settings)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(GalileoSessionProcessor(pipeline))
    tracer = provider.get_tracer("size-test")
    big = "word " * 200_000  # 1 MB
    messages = json.dumps([{"role": "user", "parts": [{"type": "text", "content": big}]}])
    with tracer.start_as_current_span("turn", attributes={"session.id": "big"}) as root:
        with tracer.start_as_current_span(
            "chat", attributes={"gen_ai.operation.name": "chat", "gen_ai.input.messages": messages}
        ):
            pass
        with tracer.start_as_current_span("small", attributes={"input.value": "hello"}):
            pass
    assert pipeline.force_flush(20.0) is True
    stats = pipeline.stats()
    assert pipeline.shutdown(5.0) is True
    assert stats["traces_confirmed"] == 1 and stats["traces_dead_lettered"] == 0
    assert stats["convert.traces_cut"] == 1 and stats["convert.texts_cut"] == 2
    tid = trace_uuid(root.get_span_context().trace_id)
    project = get(local_server.url, "/projects?project_name=delivery&type=gen_ai")[0]["id"]
    stored = get(local_server.url, f"/v2/projects/{project}/traces/{tid}")
    chat, small = stored["spans"]
    assert chat["input"][0]["content"].endswith("characters cut to fit the request size]")
    assert small["input"] == "hello"
    assert stored["user_metadata"]["otel.cut_texts"] == "2"
    assert len(json.dumps(stored)) < max_bytes
