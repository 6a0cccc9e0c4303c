"""Session stores: exactly one session per key under 16 threads or 4 processes; leases; bounds."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import sys
import threading
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import pytest
from conftest_sessions import _close_sqlite_stores  # noqa: F401 (autouse fixture)

from galileo_otel.sessions.store import (
    MemorySessionStore,
    SessionRecord,
    SessionStore,
    SQLiteSessionStore,
    store_from_settings,
)
from galileo_otel.sessions.tracker import SessionTracker
from galileo_otel.settings import GalileoSettings
from session_fakes import CountingCreate

S = 1_000_000_000
JOIN_TIMEOUT_S = 60


def _race_threads(make_tracker: Any, n: int = 16) -> tuple[set[str], set[str], int]:
    create = CountingCreate()
    barrier = threading.Barrier(n, timeout=30)
    local_ids: list[str] = []
    galileo_ids: list[str] = []
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            tracker = make_tracker(i)
            barrier.wait()
            start = i * S // 100  # all within the idle window: one session
            record = tracker.session_for_trace(
                {"session.id": "race", "user.id": "u"}, start, start + S
            )
            local_ids.append(record.local_id)
            galileo_ids.append(tracker.ensure_created(record, create))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_TIMEOUT_S)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert len(local_ids) == len(galileo_ids) == n
    return set(local_ids), set(galileo_ids), len(create.calls)


def test_16_threads_memory_store_one_session() -> None:
    tracker = SessionTracker(MemorySessionStore())
    local_ids, galileo_ids, calls = _race_threads(lambda i: tracker)
    assert len(local_ids) == 1 and len(galileo_ids) == 1 and calls == 1


def test_16_threads_one_sqlite_store_one_session(tmp_path: Path) -> None:
    tracker = SessionTracker(SQLiteSessionStore(tmp_path / "s.db"))
    local_ids, galileo_ids, calls = _race_threads(lambda i: tracker)
    assert len(local_ids) == 1 and len(galileo_ids) == 1 and calls == 1


def test_16_threads_own_sqlite_connections_one_session(tmp_path: Path) -> None:
    # Each thread has its own store (its own connection), like separate processes would.
    path = tmp_path / "s.db"
    local_ids, galileo_ids, calls = _race_threads(
        lambda i: SessionTracker(SQLiteSessionStore(path))
    )
    assert len(local_ids) == 1 and len(galileo_ids) == 1 and calls == 1


# --- processes ------------------------------------------------------------------------------------


def _count_create(counter_path: str) -> str:
    """Create Session stand-in for processes: one row per call in a shared SQLite file."""
    galileo_id = str(uuid.uuid4())
    conn = sqlite3.connect(counter_path, timeout=30, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO calls (pid, galileo_id) VALUES (?, ?)", (os.getpid(), galileo_id))
        conn.execute("COMMIT")
    finally:
        conn.close()
    time.sleep(0.05)  # widen the window in which others could wrongly create too
    return galileo_id


def _race_process(db_path: str, counter_path: str, barrier: Any, results: Any, i: int) -> None:
    try:
        tracker = SessionTracker(SQLiteSessionStore(db_path))
        barrier.wait(30)
        start = 1_000 * S + i * S // 100
        record = tracker.session_for_trace({"gen_ai.conversation.id": "conv-p"}, start, start + S)
        galileo_id = tracker.ensure_created(record, lambda payload: _count_create(counter_path))
        results.put((record.local_id, galileo_id))
    except BaseException as exc:
        results.put(("error", repr(exc)))


def test_4_processes_sqlite_store_one_session(tmp_path: Path) -> None:
    db_path, counter_path = tmp_path / "sessions.db", tmp_path / "calls.db"
    with sqlite3.connect(counter_path) as conn:
        conn.execute("CREATE TABLE calls (pid INTEGER, galileo_id TEXT)")
    conn.close()
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=_race_process, args=(str(db_path), str(counter_path), barrier, results, i)
        )
        for i in range(4)
    ]
    for p in procs:
        p.start()
    try:
        got = [results.get(timeout=JOIN_TIMEOUT_S) for _ in procs]
    finally:
        for p in procs:
            p.join(JOIN_TIMEOUT_S)
            if p.is_alive():
                p.kill()
                p.join(5)
    results.close()
    results.join_thread()
    assert all(p.exitcode == 0 for p in procs)
    assert not [g for g in got if g[0] == "error"], got
    assert len({local for local, _ in got}) == 1
    assert len({gid for _, gid in got}) == 1
    conn = sqlite3.connect(counter_path)
    try:
        rows = conn.execute("SELECT galileo_id FROM calls").fetchall()
    finally:
        conn.close()
    assert rows == [(got[0][1],)]  # Create Session was called exactly once, across processes


def _fork_child(store: SQLiteSessionStore, results: Any) -> None:
    tracker = SessionTracker(store)
    record = tracker.session_for_trace({"session.id": "forked"}, 2 * S, 3 * S)
    results.put(record.local_id)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX only")
def test_forked_child_reopens_sqlite_connection(tmp_path: Path) -> None:
    store = SQLiteSessionStore(tmp_path / "s.db")
    parent = SessionTracker(store).session_for_trace({"session.id": "forked"}, 0, S)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads alive
        ctx = multiprocessing.get_context("fork")
        results = ctx.Queue()
        proc = ctx.Process(target=_fork_child, args=(store, results))
        proc.start()
    try:
        child_local_id = results.get(timeout=JOIN_TIMEOUT_S)
    finally:
        proc.join(JOIN_TIMEOUT_S)
    results.close()
    results.join_thread()
    assert proc.exitcode == 0
    assert child_local_id == parent.local_id
    # the parent's connection still works after the child used (and exited with) its own
    assert store.latest("key:forked").local_id == parent.local_id  # type: ignore[union-attr]


# --- leases and waits -----------------------------------------------------------------------------


def _record(local_id: str | None = None) -> SessionRecord:
    return SessionRecord(local_id=local_id or str(uuid.uuid4()), key="key:k", external_id="k")


def test_sqlite_lease_of_crashed_creator_is_taken_over(tmp_path: Path) -> None:
    now = [1000.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += 50.0  # each wait moves the shared wall clock on

    path = tmp_path / "s.db"
    crashed = SQLiteSessionStore(path, lease_s=120, clock=lambda: now[0])
    other = SQLiteSessionStore(path, lease_s=120, clock=lambda: now[0], sleep=sleep)
    record = _record()
    crashed.put(record)
    assert crashed._claim(record.local_id) == (True, None)  # then "crashes" before answering
    calls: list[int] = []
    galileo_id = other.create_once(record.local_id, lambda: str(calls.append(1) or uuid.uuid4()))
    assert calls == [1]
    assert len(sleeps) == 3  # 1050, 1100 still leased until 1120; 1150: taken over
    assert crashed.get(record.local_id).galileo_id == galileo_id  # type: ignore[union-attr]
    # the crashed creator, coming back, sees the answer instead of creating again
    assert crashed.create_once(record.local_id, lambda: "never") == galileo_id


def test_sqlite_wait_timeout(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    holder = SQLiteSessionStore(path)
    waiter = SQLiteSessionStore(path, sleep=lambda s: None)
    record = _record()
    holder.put(record)
    holder._claim(record.local_id)
    with pytest.raises(TimeoutError):
        waiter.create_once(record.local_id, lambda: "x", timeout_s=0)


def test_memory_wait_timeout() -> None:
    store = MemorySessionStore()
    record = _record()
    store.put(record)
    entered, release = threading.Event(), threading.Event()

    def slow() -> str:
        entered.set()
        release.wait(30)
        return str(uuid.uuid4())

    t = threading.Thread(target=store.create_once, args=(record.local_id, slow))
    t.start()
    assert entered.wait(30)
    with pytest.raises(TimeoutError):
        store.create_once(record.local_id, lambda: "x", timeout_s=0)
    release.set()
    t.join(30)
    assert store.get(record.local_id).galileo_id is not None  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_failed_create_lets_a_waiter_retry(kind: str, tmp_path: Path) -> None:
    store: SessionStore = (
        MemorySessionStore() if kind == "memory" else SQLiteSessionStore(tmp_path / "s.db")
    )
    record = _record()
    store.put(record)
    entered, release = threading.Event(), threading.Event()
    outcome: list[str] = []

    def failing() -> str:
        entered.set()
        release.wait(30)
        raise RuntimeError("server down")

    def first() -> None:
        try:
            store.create_once(record.local_id, failing)
        except RuntimeError:
            outcome.append("failed")

    t1 = threading.Thread(target=first)
    t1.start()
    assert entered.wait(30)
    t2 = threading.Thread(
        target=lambda: outcome.append(store.create_once(record.local_id, lambda: "second"))
    )
    t2.start()
    release.set()
    t1.join(30)
    t2.join(30)
    # the order of the two appends is up to the scheduler; what matters is that both happened
    assert sorted(outcome) == ["failed", "second"]
    assert store.get(record.local_id).galileo_id == "second"  # type: ignore[union-attr]


# --- put, bounds, settings ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_put_merges_known_galileo_id(kind: str, tmp_path: Path) -> None:
    store: SessionStore = (
        MemorySessionStore() if kind == "memory" else SQLiteSessionStore(tmp_path / "s.db")
    )
    record = _record()
    store.put(record)
    gid = store.create_once(record.local_id, lambda: str(uuid.uuid4()))
    copy = SessionRecord.from_dict({**record.to_dict(), "galileo_id": None})
    store.put(copy)
    assert copy.galileo_id == gid
    assert store.get("missing") is None and store.latest("key:missing") is None


def test_sqlite_forgets_rotated_sessions(tmp_path: Path) -> None:
    store = SQLiteSessionStore(tmp_path / "s.db", max_tracked=4)
    tracker = SessionTracker(store, idle_timeout_s=1)
    for i in range(200):
        record = tracker.session_for_trace(
            {"session.id": "k", "user.id": "u"}, i * 10 * S, i * 10 * S + 1
        )
        tracker.ensure_created(record, lambda payload: str(uuid.uuid4()))
    stats = store.stats()
    assert stats["scopes"] == 1 and stats["users"] == 1
    assert stats["sessions"] <= 2 + 16 + 64  # needed ones + the tail + one sweep interval
    store.close()


def test_sqlite_lru_over_scopes(tmp_path: Path) -> None:
    store = SQLiteSessionStore(tmp_path / "s.db", max_tracked=5)
    tracker = SessionTracker(store)
    for i in range(20):
        tracker.session_for_trace({"session.id": f"k{i}", "user.id": f"u{i}"}, i * S, i * S + 1)
    stats = store.stats()
    assert stats["scopes"] == 5 and stats["users"] == 5
    assert store.latest("key:k19") is not None and store.latest("key:k0") is None


def test_store_from_settings(tmp_path: Path) -> None:
    assert isinstance(store_from_settings(GalileoSettings()), MemorySessionStore)
    store = store_from_settings(GalileoSettings(session_store=f"sqlite:///{tmp_path}/x/s.db"))
    assert isinstance(store, SQLiteSessionStore) and store.path == tmp_path / "x" / "s.db"
    store.close()
    default = store_from_settings(GalileoSettings(session_store="sqlite"))
    assert isinstance(default, SQLiteSessionStore)
    assert default.path.name == "sessions.db"
    default.close()


def test_stores_satisfy_protocol(tmp_path: Path) -> None:
    assert isinstance(MemorySessionStore(), SessionStore)
    assert isinstance(SQLiteSessionStore(tmp_path / "s.db"), SessionStore)
    with pytest.raises(ValueError):
        MemorySessionStore(max_tracked=0)


def test_sqlite_sweep_keeps_uncreated_chains(tmp_path: Path) -> None:
    store = SQLiteSessionStore(tmp_path / "s.db", max_tracked=1)
    tracker = SessionTracker(store, idle_timeout_s=1)
    records = [
        tracker.session_for_trace({"session.id": "k"}, i * 10 * S, i * 10 * S + 1)
        for i in range(100)
    ]
    assert store.stats()["sessions"] == 100  # swept at least once, but all still needed
    calls: list[dict[str, Any]] = []

    def create(payload: dict[str, Any]) -> str:
        calls.append(payload)
        return str(uuid.uuid4())

    tracker.ensure_created(records[-1], create)
    assert len(calls) == 100
    assert calls[0]["previous_session_id"] is None
    assert all(c["previous_session_id"] for c in calls[1:])
    # once created, the old ones are no longer needed and the next sweeps forget them
    for i in range(100, 228):
        tracker.ensure_created(
            tracker.session_for_trace({"session.id": "k"}, i * 10 * S, i * 10 * S + 1), create
        )
    assert store.stats()["sessions"] <= 2 + 16 + 64


def _memory_fork_child(tracker: SessionTracker, results: Any) -> None:
    import logging

    messages: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    logging.getLogger("galileo_otel").addHandler(Keep())
    store = tracker.store
    uncreated = store.latest("key:uncreated")
    created = store.latest("key:created")
    joined = tracker.session_for_trace({"session.id": "created"}, 2 * S, 3 * S)
    fresh = tracker.session_for_trace({"session.id": "uncreated"}, 2 * S, 3 * S)
    tracker.session_for_trace({"session.id": "other"}, 2 * S, 3 * S)
    results.put(
        (
            uncreated is None,
            created.galileo_id if created else None,
            joined.galileo_id,
            fresh.local_id,
            sum("forked" in m and "GALILEO_SESSION_STORE" in m for m in messages),
        )
    )


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX only")
def test_memory_store_inherited_through_fork(tmp_path: Path) -> None:
    """gunicorn --preload: each worker has its own copy; it must not create the parent's
    uncreated sessions a second time, and it says (once) to use a shared store."""
    tracker = SessionTracker(MemorySessionStore())
    parent_uncreated = tracker.session_for_trace({"session.id": "uncreated"}, 0, S)
    created = tracker.session_for_trace({"session.id": "created"}, 0, S)
    gid = tracker.ensure_created(created, lambda payload: str(uuid.uuid4()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads alive
        ctx = multiprocessing.get_context("fork")
        results = ctx.Queue()
        proc = ctx.Process(target=_memory_fork_child, args=(tracker, results))
        proc.start()
    try:
        forgot, inherited_gid, joined_gid, fresh_local_id, warned = results.get(
            timeout=JOIN_TIMEOUT_S
        )
    finally:
        proc.join(JOIN_TIMEOUT_S)
    results.close()
    results.join_thread()
    assert proc.exitcode == 0
    assert forgot and fresh_local_id != parent_uncreated.local_id
    assert inherited_gid == gid and joined_gid == gid  # created sessions are joined, not redone
    assert warned == 1
    # the parent is untouched
    assert tracker.store.latest("key:uncreated") == parent_uncreated


def test_redis_url_without_the_redis_package_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from galileo_otel.errors import ConfigError

    monkeypatch.setitem(sys.modules, "redis", None)  # as if not installed
    settings = GalileoSettings(session_store="redis://:hunter2@127.0.0.1:6379/0")
    with pytest.raises(ConfigError, match=r"galileo-otel\[redis\]") as caught:
        store_from_settings(settings)
    assert "hunter2" not in str(caught.value)


def test_a_new_sqlite_store_is_private_whatever_the_umask(tmp_path: Path) -> None:
    import stat

    old = os.umask(0)
    try:
        store = SQLiteSessionStore(tmp_path / "s" / "sessions.db")
    finally:
        os.umask(old)
    try:
        tracker_free = store.open_or_join(
            "key:c",
            user_key=None,
            end_ns=1,
            is_live=lambda _c, _e: True,
            open_new=lambda _s, _u: SessionRecord(local_id="l", key="key:c"),
        )
        assert tracker_free.local_id == "l"
        for name in ("sessions.db", "sessions.db-wal", "sessions.db-shm"):
            path = tmp_path / "s" / name
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
    finally:
        store.close()
