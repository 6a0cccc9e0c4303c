"""End to end: spans -> GalileoSessionProcessor -> export pipeline -> local server, in sessions."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import set_span_in_context

from galileo_otel.api.filters import id_, text
from galileo_otel.processor import GalileoSessionProcessor
from galileo_otel.sessions import session
from galileo_otel.settings import GalileoSettings

pytestmark = pytest.mark.integration

S = 1_000_000_000
T0 = 1_700_000_000 * S  # span timestamps are explicit, so idle rotation needs no waiting


def test_conversation_through_processor_and_pipeline(local_project: Any) -> None:
    server, client, _project_id = local_project
    settings = GalileoSettings(
        api_url=server.url,
        api_key=server.api_key,
        project="test",
        log_stream="default",
        spool_dir="off",
        batch_delay=0.05,
        session_idle_timeout=600,
        service_name="e2e",
    )
    processor = GalileoSessionProcessor(settings=settings)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("e2e")

    def turn(at_s: float, name: str = "chat", **attrs: Any) -> None:
        root = tracer.start_span(name, start_time=T0 + int(at_s * S), attributes=attrs or None)
        child = tracer.start_span(
            "llm",
            context=set_span_in_context(root),
            start_time=T0 + int(at_s * S) + 1,
        )
        child.end(end_time=T0 + int((at_s + 1) * S))
        root.end(end_time=T0 + int((at_s + 2) * S))

    try:
        with session("conv-1", user_id="alice", name="Support"):
            turn(0)
            turn(100)
            turn(2000)  # idle > 600 s: a new session chained to the first
        turn(2100, **{"gen_ai.conversation.id": "conv-2", "user.id": "alice"})
        turn(2200, **{"user.id": "bob"})  # automatic session of bob
        assert processor.force_flush(20_000) is True
    finally:
        processor.shutdown(timeout_millis=10_000)

    conv1 = sorted(
        client.iter_sessions(filters=[text("external_id") == "conv-1"]),
        key=lambda r: str(r["created_at"]),
    )
    assert len(conv1) == 2
    first, second = conv1
    assert first["num_traces"] == 2 and second["num_traces"] == 1
    assert first["previous_session_id"] is None
    assert second["previous_session_id"] == first["id"]
    assert first["name"] == "Support"
    assert first["user_metadata"]["user.id"] == "alice"
    assert first["user_metadata"]["service.name"] == "e2e"
    (conv2,) = client.iter_sessions(filters=[text("external_id") == "conv-2"])
    assert conv2["previous_session_id"] == second["id"]  # alice's latest session
    assert conv2["num_traces"] == 1
    assert client.count_sessions(filters=[text("user_metadata.user.id") == "bob"]) == 1
    assert client.count_sessions() == 4
    assert client.count_sessions(filters=[id_("previous_session_id") == first["id"]]) == 1
