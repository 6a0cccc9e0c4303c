"""The local server's SQLite store and its single writer: migrations, two stores on one file,
background failures counted, bounded close."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from galileo_otel.server.store import (
    BadReferenceError,
    ConflictError,
    NotFoundError,
    Store,
    WriteQueue,
    WriterClosedError,
)


def test_an_older_database_is_migrated(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:  # the first schema, before num_errors existed
        conn.execute(
            "CREATE TABLE sessions (id TEXT PRIMARY KEY, project_id TEXT NOT NULL, "
            "log_stream_id TEXT, experiment_id TEXT, metrics_testing_id TEXT, name TEXT, "
            "external_id TEXT, previous_session_id TEXT, user_metadata TEXT NOT NULL DEFAULT '{}', "
            "logging_method TEXT NOT NULL, client_version TEXT, created_at TEXT NOT NULL, "
            "created_at_us INTEGER NOT NULL, updated_at TEXT NOT NULL, "
            "updated_at_us INTEGER NOT NULL, num_traces INTEGER NOT NULL DEFAULT 0, "
            "num_spans INTEGER NOT NULL DEFAULT 0, tags TEXT NOT NULL DEFAULT '[]', "
            "input TEXT, output TEXT)"
        )
    conn.close()
    store = Store(db)
    try:
        pid = store.create_project("p")["id"]
        sid = store.create_session(pid, {})["id"]
        store.ingest_traces(pid, {"session_id": sid, "traces": [{"status_code": 503}]})
        record = store.get_session(pid, sid)
        assert record is not None and record["num_errors"] == 1 and record["has_error"] is True
    finally:
        store.close()
    Store(db).close()  # opening again is a no-op migration


def test_two_stores_on_one_file_see_each_other(tmp_path: Path) -> None:
    first, second = Store(tmp_path / "shared.db"), Store(tmp_path / "shared.db")
    try:
        pid = first.create_project("p")["id"]
        sid = second.create_session(pid, {"name": "from second"})["id"]
        first.ingest_traces(pid, {"session_id": sid, "traces": [{"id": None}]})
        assert second.count_with(pid) == 1
        record = first.get_session(pid, sid)
        assert record is not None and record["num_traces"] == 1
        with pytest.raises(ConflictError):
            second.create_project("p")
        first.create_log_stream(pid, "a")
        with pytest.raises(ConflictError):
            second.create_log_stream(pid, "a")
        with pytest.raises(NotFoundError):
            first.create_log_stream("00000000-0000-4000-8000-000000000000", "a")
    finally:
        first.close()
        second.close()


def test_writer_runs_in_order_counts_background_failures_and_closes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    writer = WriteQueue()
    order: list[int] = []
    gate = threading.Event()
    writer.submit(lambda: gate.wait(5))
    for n in range(5):
        writer.submit(lambda n=n: order.append(n), background=True)

    def fail() -> None:
        raise BadReferenceError(("body", "session_id"), "session x does not exist")

    failed = writer.submit(fail, background=True)
    assert writer.pending == 7 and not writer.wait_idle(0)
    gate.set()
    assert writer.wait_idle(5)
    assert order == [0, 1, 2, 3, 4]
    assert isinstance(failed.exception(), BadReferenceError)
    assert writer.failed_background == 1
    assert "background ingestion failed: session x does not exist" in caplog.text
    assert writer.close(5)
    with pytest.raises(WriterClosedError):
        writer.submit(lambda: None)


def test_close_is_bounded_when_a_job_hangs() -> None:
    writer = WriteQueue()
    gate = threading.Event()
    writer.submit(lambda: gate.wait(10))
    assert writer.close(timeout=0.05) is False
    gate.set()
    assert writer.close(timeout=5) is True
