"""The delivery hook of healing, in both modes: a lost session is made again, the batch resent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest_pipeline import DEST, Call, FakeClient, emit, spool_pipeline, tracer_for

from galileo_otel.errors import ValidationError
from galileo_otel.export.spool import dead_in
from galileo_otel.sessions.tracker import SessionTracker


class LosesSessions(FakeClient):
    """A server that answers Log Traces for a lost session as the local server does."""

    def __init__(self) -> None:
        super().__init__(self._answer)
        self.lost: set[str] = set()

    def _answer(self, call: Call) -> None:
        session_id = call.body.get("session_id")
        if call.path.endswith("/traces") and session_id in self.lost:
            msg = f"session {session_id} does not exist in project {DEST['project_id']}"
            raise ValidationError(
                f"body.session_id: {msg}",
                status_code=422,
                detail=[{"type": "value_error", "loc": ["body", "session_id"], "msg": msg}],
            )


@pytest.mark.parametrize("reliable", [True, False], ids=["reliable", "fire-and-forget"])
def test_a_batch_for_a_lost_session_is_resent_to_the_session_made_again(
    tmp_path: Path, reliable: bool
) -> None:
    client = LosesSessions()
    tracker = SessionTracker()
    pipeline = spool_pipeline(tmp_path / "spool", client, tracker, reliable=reliable)
    try:
        tracer = tracer_for(pipeline)
        emit(tracer, "conv")
        assert pipeline.force_flush(10.0) is True
        (first,) = [s["id"] for s in client.sessions]
        client.lost.add(first)  # the server is wiped
        emit(tracer, "conv")
        emit(tracer, "conv")
        assert pipeline.force_flush(10.0) is True
        stats = pipeline.stats()
        assert stats["traces_dead_lettered"] == 0 and stats["traces_failed"] == 0
        assert stats["sessions.sessions_recreated"] == 1
        assert len(client.sessions) == 2
        second = client.sessions[1]["id"]
        last = client.trace_posts()[-1]
        assert last.body["session_id"] == second
        assert {t["session_id"] for t in last.body["traces"]} == {second}
        assert len(client.trace_posts()) == 3  # the first batch, the rejected one, its resend
    finally:
        assert pipeline.shutdown(5.0) is True
    if reliable:
        assert dead_in(tmp_path / "spool") == []


def test_a_session_lost_again_after_healing_is_set_aside_not_looped(tmp_path: Path) -> None:
    """The resend is tried once: a server that keeps saying no gets the batch dead-lettered."""

    class AlwaysLost(LosesSessions):
        def create_session(self, **kwargs: Any) -> Any:
            created = super().create_session(**kwargs)
            self.lost.add(created.id)
            return created

    client = AlwaysLost()
    pipeline = spool_pipeline(tmp_path / "spool", client, SessionTracker())
    try:
        emit(tracer_for(pipeline), "conv")
        assert pipeline.force_flush(10.0) is False
        stats = pipeline.stats()
        assert stats["traces_dead_lettered"] == 1 and len(client.sessions) == 2
    finally:
        pipeline.shutdown(5.0)
    assert [e["status_code"] for e in dead_in(tmp_path / "spool")] == [422]
