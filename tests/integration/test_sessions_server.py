"""Sessions against the real local server: a scripted multi-user conversation, read back and counted."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from galileo_otel import __version__
from galileo_otel.api.filters import id_, text
from galileo_otel.sessions.store import SQLiteSessionStore
from galileo_otel.sessions.tracker import SessionRecord, SessionTracker

pytestmark = pytest.mark.integration

S = 1_000_000_000


def _creator(client: Any) -> Any:
    calls: list[dict[str, Any]] = []
    lock = threading.Lock()

    def create(payload: dict[str, Any]) -> str:
        with lock:
            calls.append(payload)
        return str(client.create_session(**payload).id)

    create.calls = calls  # type: ignore[attr-defined]
    return create


def _session(client: Any, galileo_id: str) -> dict[str, Any]:
    records = list(client.iter_sessions(filters=[id_("id") == galileo_id]))
    assert len(records) == 1
    return records[0]


def test_scripted_multi_user_conversation(local_project: Any) -> None:
    _server, client, _project_id = local_project
    tracker = SessionTracker(
        idle_timeout_s=600, service_name="chat-api", metadata_attributes=["tenant"]
    )
    create = _creator(client)

    def turn(at_s: float, **attrs: Any) -> SessionRecord:
        attributes = {k.replace("__", "."): v for k, v in attrs.items()}
        start = int(at_s * S)
        return tracker.session_for_trace(attributes, start, start + 2 * S)

    a1 = turn(0, session__id="a-1", user__id="alice", tenant="acme")
    bob1 = turn(10, user__id="bob")  # automatic session of bob
    anon = turn(20)  # automatic session of the process
    assert turn(60, session__id="a-1", user__id="alice").local_id == a1.local_id
    a1b = turn(2000, session__id="a-1", user__id="alice")  # idle > 600 s: rotated
    a2 = turn(2100, session__id="a-2", user__id="alice", galileo__session__name="Billing")
    bob2 = turn(5000, user__id="bob")  # rotated automatic session
    carol = turn(5100, session__id="c-1", user__id="carol", session__previous_id="a-2")

    # chain order: creating the newest alice session first creates the older ones before it
    # (the server refuses a previous_session_id it does not know)
    gid_a2 = tracker.ensure_created(a2, create)
    assert [c["external_id"] for c in create.calls] == ["a-1", "a-1", "a-2"]
    gids = {
        "a1": tracker.ensure_created(a1, create),
        "a1b": tracker.ensure_created(a1b, create),
        "a2": gid_a2,
        "bob1": tracker.ensure_created(bob1, create),
        "anon": tracker.ensure_created(anon, create),
        "bob2": tracker.ensure_created(bob2, create),
        "carol": tracker.ensure_created(carol, create),
    }
    # an app-set session.previous_id that is already a Galileo id is passed through
    dave = turn(5200, session__id="d-1", user__id="dave", session__previous_id=gids["bob1"])
    gids["dave"] = tracker.ensure_created(dave, create)
    assert len(create.calls) == 8 == len(set(gids.values()))

    expected = {
        "a1": ("a-1", None, "alice", "a-1"),
        "a1b": ("a-1", "a1", "alice", "a-1"),
        "a2": ("a-2", "a1b", "alice", "Billing"),
        "bob1": (None, None, "bob", None),
        "anon": (None, None, None, None),
        "bob2": (None, "bob1", "bob", None),
        "carol": ("c-1", "a2", "carol", "c-1"),
        "dave": ("d-1", "bob1", "dave", "d-1"),
    }
    for name, (external_id, previous, user, session_name) in expected.items():
        record = _session(client, gids[name])
        assert record["external_id"] == external_id, name
        assert record["previous_session_id"] == (gids[previous] if previous else None), name
        assert record["name"] == session_name, name
        assert record["logging_method"] == "python_client"
        assert record["client_version"] == __version__
        metadata = record["user_metadata"]
        assert metadata["service.name"] == "chat-api"
        assert metadata.get("user.id") == user, name
    assert _session(client, gids["a1"])["user_metadata"]["tenant"] == "acme"

    # Count Sessions with filters agrees
    assert client.count_sessions() == 8
    assert client.count_sessions(filters=[text("external_id") == "a-1"]) == 2
    assert client.count_sessions(filters=[text("user_metadata.user.id") == "alice"]) == 3
    assert client.count_sessions(filters=[id_("previous_session_id") == gids["a1b"]]) == 1
    assert client.count_sessions(filters=[id_("previous_session_id") == gids["bob1"]]) == 2
    assert (
        client.count_sessions(
            filter_tree=(text("user_metadata.user.id") == "bob")
            | (text("external_id").one_of(["c-1", "d-1"]))
        )
        == 4
    )


def test_racing_workers_create_one_session_on_the_server(
    local_project: Any, tmp_path: Path
) -> None:
    _server, client, _project_id = local_project
    path = tmp_path / "sessions.db"
    create = _creator(client)
    barrier = threading.Barrier(8, timeout=30)
    results: list[str] = []
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            # like one gunicorn worker each; closed after, as every store must be
            with SessionTracker(SQLiteSessionStore(path)) as tracker:
                barrier.wait()
                start = i * S // 10
                record = tracker.session_for_trace(
                    {"session.id": "shared-conv", "user.id": "erin"}, start, start + S
                )
                results.append(tracker.ensure_created(record, create))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and len(results) == 8 and len(set(results)) == 1
    assert len(create.calls) == 1
    assert client.count_sessions(filters=[text("external_id") == "shared-conv"]) == 1
