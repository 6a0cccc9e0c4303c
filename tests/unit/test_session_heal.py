"""Sessions that heal: the answers that say a session is gone, compare-and-delete, re-creation."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest_sessions import _close_sqlite_stores  # noqa: F401 (autouse fixture)

from galileo_otel.errors import APIError, NotFoundError, ValidationError
from galileo_otel.sessions.heal import describe_store, previous_missing, session_missing
from galileo_otel.sessions.store import MemorySessionStore, SessionStore, SQLiteSessionStore
from galileo_otel.sessions.tracker import SessionTracker

S = 1_000_000_000


def local_server_422(field: str, what: str) -> ValidationError:
    """The local server's answer, as the client raises it (FastAPI's 422 detail list)."""
    msg = f"{what} 3f0c8a52-7d4e-4b7e-9a55-0c1d2e3f4a5b does not exist in project p"
    detail = [{"type": "value_error", "loc": ["body", field], "msg": msg, "input": "x"}]
    return ValidationError(f"body.{field}: {msg}", status_code=422, detail=detail)


@pytest.mark.parametrize(
    ("exc", "missing"),
    [
        (local_server_422("session_id", "session"), True),
        # a trace's own session_id (FastAPI loc with the trace's index)
        (
            ValidationError(
                "x",
                status_code=422,
                detail=[{"loc": ["body", "traces", 0, "session_id"], "msg": "Session not found"}],
            ),
            True,
        ),
        # a plain-text 404 as a path-style API answers it
        (NotFoundError("Session not found", status_code=404, detail="Session not found"), True),
        (NotFoundError("No such session: s1", status_code=404), True),
        (APIError("Session with id s1 not found in project p", status_code=422), True),
        # not this: another object, another status, a validation error of the body
        (local_server_422("previous_session_id", "previous session"), False),
        (local_server_422("log_stream_id", "log stream"), False),
        (
            NotFoundError("project p not found", status_code=404, detail="project p not found"),
            False,
        ),
        (
            ValidationError(
                "x", status_code=422, detail=[{"loc": ["body"], "msg": "Field required"}]
            ),
            False,
        ),
        (APIError("session not found", status_code=400), False),
        (APIError("connection refused"), False),
    ],
)
def test_which_answers_say_the_session_is_gone(exc: APIError, missing: bool) -> None:
    assert session_missing(exc) is missing


def test_which_answers_say_the_previous_session_is_gone() -> None:
    assert previous_missing(local_server_422("previous_session_id", "previous session"))
    assert not previous_missing(local_server_422("session_id", "session"))
    assert not previous_missing(APIError("previous session gone", status_code=503))


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> SessionStore:
    if request.param == "memory":
        return MemorySessionStore()
    return SQLiteSessionStore(tmp_path / "sessions.db")


class Server:
    """Create Session stand-in with a server's memory: it can lose every session."""

    def __init__(self) -> None:
        self.sessions: set[str] = set()
        self.calls: list[dict[str, Any]] = []

    def create(self, payload: dict[str, Any]) -> str:
        self.calls.append(dict(payload))
        previous = payload.get("previous_session_id")
        if previous is not None and previous not in self.sessions:
            raise local_server_422("previous_session_id", "previous session")
        sid = str(uuid.uuid4())
        self.sessions.add(sid)
        return sid


def test_heal_forgets_the_id_and_the_session_is_created_again_once(
    store: SessionStore, caplog: pytest.LogCaptureFixture
) -> None:
    server = Server()
    tracker = SessionTracker(store)
    first = tracker.session_for_trace({"session.id": "c"}, 1 * S, 2 * S)
    old = tracker.ensure_created(first, server.create)
    server.sessions.clear()  # restored from a backup, say

    record = tracker.session_for_trace({"session.id": "c"}, 3 * S, 4 * S)
    assert record.local_id == first.local_id and record.galileo_id == old  # the store remembers
    with caplog.at_level(logging.WARNING):
        assert tracker.heal(record, old, "HTTP 422: session does not exist") is True
        assert tracker.heal(record, old) is True  # a second rejected batch: no second line
    assert record.galileo_id is None
    new = tracker.ensure_created(record, server.create)
    assert new != old and new in server.sessions and len(server.calls) == 2
    # Everyone using the store now gets the new id; nothing is created a third time.
    again = tracker.session_for_trace({"session.id": "c"}, 5 * S, 6 * S)
    assert tracker.ensure_created(again, server.create) == new and len(server.calls) == 2
    stats = tracker.stats()
    assert stats["sessions_healed"] == 1 and stats["sessions_recreated"] == 1
    lines = [r.getMessage() for r in caplog.records if "does not know session" in r.getMessage()]
    assert len(lines) == 1 and describe_store(store) in lines[0] and old in lines[0]


def test_forget_is_compare_and_delete(store: SessionStore) -> None:
    """A heal that comes late (another process made the session again) keeps the new id."""
    tracker = SessionTracker(store)
    record = tracker.session_for_trace({"session.id": "c"}, 1 * S, 2 * S)
    old = tracker.ensure_created(record, Server().create)
    assert store.forget_created(record.local_id, old) is True
    fresh = tracker.ensure_created(store.get(record.local_id) or record, Server().create)
    assert store.forget_created(record.local_id, old) is False  # the stale id is not there
    assert (store.get(record.local_id) or record).galileo_id == fresh


def test_a_recreated_session_chains_to_a_previous_galileo_still_has(store: SessionStore) -> None:
    server = Server()
    tracker = SessionTracker(store, idle_timeout_s=10)
    one = tracker.session_for_trace({"user.id": "u"}, 1 * S, 2 * S)
    one_id = tracker.ensure_created(one, server.create)
    two = tracker.session_for_trace({"user.id": "u"}, 100 * S, 101 * S)  # idle: rotated
    two_id = tracker.ensure_created(two, server.create)
    assert server.calls[-1]["previous_session_id"] == one_id
    server.sessions.discard(two_id)  # only the newer one was lost
    assert tracker.heal(two, two_id)
    tracker.ensure_created(two, server.create)
    assert server.calls[-1]["previous_session_id"] == one_id  # the chain holds
    assert tracker.stats()["previous_lost"] == 0


def test_a_session_whose_previous_was_lost_too_is_made_without_the_link(
    store: SessionStore,
) -> None:
    server = Server()
    tracker = SessionTracker(store, idle_timeout_s=10)
    one = tracker.session_for_trace({"user.id": "u"}, 1 * S, 2 * S)
    tracker.ensure_created(one, server.create)
    two = tracker.session_for_trace({"user.id": "u"}, 100 * S, 101 * S)
    two_id = tracker.ensure_created(two, server.create)
    server.sessions.clear()  # wiped: both are gone
    assert tracker.heal(two, two_id)
    made = tracker.ensure_created(two, server.create)
    assert made in server.sessions and server.calls[-1]["previous_session_id"] is None
    assert tracker.stats()["previous_lost"] == 1
    # A new turn after rotation chains to the session made again, which Galileo has.
    three = tracker.session_for_trace({"user.id": "u"}, 200 * S, 201 * S)
    tracker.ensure_created(three, server.create)
    assert server.calls[-1]["previous_session_id"] == made


def test_a_session_the_app_named_is_not_ours_to_make_again() -> None:
    tracker = SessionTracker()
    gid = str(uuid.uuid4())
    record = tracker.session_for_trace({"galileo.session.id": gid}, 1 * S, 2 * S)
    assert tracker.heal(record, gid) is False
    assert record.galileo_id == gid
