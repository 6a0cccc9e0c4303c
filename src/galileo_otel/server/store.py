"""SQLite storage of the local server: projects, log streams, sessions, traces and spans.

One file in WAL mode: reads run on per-thread connections while a single writer thread
(:class:`WriteQueue`) applies every change in arrival order, each in one ``BEGIN IMMEDIATE``
transaction, so concurrent requests (and several server processes on one file) stay consistent.
Traces and spans are stored whole (their JSON) and keyed by id: a retried request stores nothing
twice.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import queue
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from galileo_otel.server.query import (
    CompiledFilter,
    compile_session_filter,
    compile_session_sort,
    datetime_to_us,
)

__all__ = [
    "BadReferenceError",
    "ConflictError",
    "NotFoundError",
    "Store",
    "StoreError",
    "WriteQueue",
    "WriterClosedError",
    "create_private_file",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS log_streams (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (project_id, name)
);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    log_stream_id TEXT,
    experiment_id TEXT,
    metrics_testing_id TEXT,
    name TEXT,
    external_id TEXT,
    previous_session_id TEXT,
    user_metadata TEXT NOT NULL DEFAULT '{}',
    logging_method TEXT NOT NULL,
    client_version TEXT,
    created_at TEXT NOT NULL,
    created_at_us INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    updated_at_us INTEGER NOT NULL,
    num_traces INTEGER NOT NULL DEFAULT 0,
    num_spans INTEGER NOT NULL DEFAULT 0,
    num_errors INTEGER NOT NULL DEFAULT 0,
    tags TEXT NOT NULL DEFAULT '[]',
    input TEXT,
    output TEXT
);
CREATE INDEX IF NOT EXISTS sessions_by_project ON sessions (project_id, created_at_us);
CREATE INDEX IF NOT EXISTS sessions_by_external_id ON sessions (project_id, external_id);
CREATE TABLE IF NOT EXISTS traces (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    session_id TEXT,
    log_stream_id TEXT,
    experiment_id TEXT,
    metrics_testing_id TEXT,
    is_complete INTEGER NOT NULL,
    ingested_at_us INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS traces_by_session ON traces (session_id);
CREATE TABLE IF NOT EXISTS spans (
    id TEXT PRIMARY KEY,
    trace_id TEXT NOT NULL,
    project_id TEXT NOT NULL,
    parent_step_id TEXT NOT NULL,
    type TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS spans_by_trace ON spans (trace_id);
"""

_SESSION_FIELDS = (
    "id, project_id, log_stream_id, experiment_id, metrics_testing_id, name, external_id, "
    "previous_session_id, user_metadata, logging_method, client_version, created_at, updated_at, "
    "num_traces, num_spans, num_errors, tags, input, output, input_tokens, output_tokens, "
    "total_tokens, duration_ns, num_llm_calls, num_failed_steps"
)

TOTALS = (
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "duration_ns",
    "num_llm_calls",
    "num_failed_steps",
)
"""The totals kept per trace (in its record) and per session (columns), summed over steps:
tokens of llm steps (agent steps repeat their children's), the trace's duration (a session's is
the sum of its traces'), llm steps, and steps whose ``status_code`` is 400 or more."""

# Columns added after the first release of the schema: (table, column, declaration).
_MIGRATIONS = (
    ("sessions", "num_errors", "INTEGER NOT NULL DEFAULT 0"),
    *(("sessions", name, "INTEGER NOT NULL DEFAULT 0") for name in TOTALS),
)

# A trace's step totals, from its stored spans (whatever order and requests they came in).
_STEP_TOTALS_SQL = """
SELECT
  COALESCE(SUM(CASE WHEN type = 'llm'
      THEN COALESCE(json_extract(body, '$.metrics.num_input_tokens'), 0) END), 0),
  COALESCE(SUM(CASE WHEN type = 'llm'
      THEN COALESCE(json_extract(body, '$.metrics.num_output_tokens'), 0) END), 0),
  COALESCE(SUM(CASE WHEN type = 'llm'
      THEN COALESCE(json_extract(body, '$.metrics.num_total_tokens'),
                    COALESCE(json_extract(body, '$.metrics.num_input_tokens'), 0)
                    + COALESCE(json_extract(body, '$.metrics.num_output_tokens'), 0)) END), 0),
  COALESCE(SUM(type = 'llm'), 0),
  COALESCE(SUM(COALESCE(CAST(json_extract(body, '$.status_code') AS INTEGER), 0) >= 400), 0)
FROM spans WHERE trace_id = ?
"""


class StoreError(Exception):
    """A write that cannot be applied."""


class WriterClosedError(RuntimeError):
    """The server is shutting down and takes no more writes: answered 503."""


class NotFoundError(StoreError):
    """The project (or another path object) does not exist: answered 404."""


class ConflictError(StoreError):
    """A project or log stream of that name already exists: answered 409."""


class BadReferenceError(StoreError):
    """A body field names an object that does not exist in the project: answered 422.

    Attributes:
        loc: Location of the field in the body, FastAPI style.
        input: The offending value.
    """

    def __init__(self, loc: tuple[str | int, ...], msg: str, input: Any = None) -> None:
        super().__init__(msg)
        self.loc = loc
        self.msg = msg
        self.input = input

    def to_detail(self) -> dict[str, Any]:
        """One entry of a FastAPI 422 ``detail`` list."""
        return {"type": "value_error", "loc": list(self.loc), "msg": self.msg, "input": self.input}


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _text(value: Any) -> str | None:
    """A trace input/output as session text: strings as they are, anything else as JSON."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _is_error(status_code: Any) -> bool:
    return isinstance(status_code, int) and status_code >= 400


def _number(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    return int(value)


def _totals_of(record: Mapping[str, Any] | None) -> tuple[dict[str, int], bool]:
    """The totals a stored trace record carries, and whether it counts as an erroneous trace.

    A record stored before totals existed counts as it did then: erroneous by its own status.
    """
    if record is None:
        return dict.fromkeys(TOTALS, 0), False
    totals = {name: _number(record.get(name)) for name in TOTALS}
    has_error = record.get("has_error")
    if not isinstance(has_error, bool):
        has_error = _is_error(record.get("status_code"))
    return totals, has_error


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def create_private_file(path: Path) -> None:
    """Create ``path`` (and its directory) readable and writable by its owner only, if missing.

    An existing file keeps its mode: tightening a file someone else set up is not ours to do.
    SQLite creates the ``-wal`` and ``-shm`` files with the database's own mode, so a 0600
    database keeps its journal private too.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


class Store:
    """The server's SQLite database: thread-safe reads, writes meant for one writer thread.

    Args:
        path: Database file; its directory is created.
        now: Clock for created/updated times (tests pass a fixed one).
    """

    def __init__(self, path: str | Path, *, now: Callable[[], datetime] = _utc_now) -> None:
        self.path = Path(path)
        # Every conversation, prompt and answer lands here: readable by its owner only.
        create_private_file(self.path)
        self._now = now
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._closed = False
        conn = self._conn()
        conn.execute("PRAGMA journal_mode=WAL")
        with self._write_lock:
            conn.executescript(_SCHEMA)
            for table, column, declaration in _MIGRATIONS:
                known = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
                if column not in known:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")

    # --- connections --------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        if self._closed:
            raise StoreError("the store is closed")
        conn = sqlite3.connect(
            self.path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.create_function("galileo_lower", 1, _lower, deterministic=True)
        self._local.conn = conn
        with self._conns_lock:
            self._conns.append(conn)
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def close(self) -> None:
        """Close every connection (idempotent)."""
        with self._conns_lock:
            self._closed = True
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()

    def _stamp(self) -> tuple[str, int]:
        now = self._now()
        if now.tzinfo is None:
            now = now.replace(tzinfo=timezone.utc)
        now = now.astimezone(timezone.utc)
        return now.isoformat(), datetime_to_us(now)

    # --- projects and log streams -------------------------------------------------------------

    def get_project(self, project_id: str) -> dict[str, Any] | None:
        """The project with this id, or None."""
        row = (
            self._conn()
            .execute(
                "SELECT id, name, type, created_at, updated_at FROM projects WHERE id = ?",
                (project_id,),
            )
            .fetchone()
        )
        return dict(row) if row else None

    def find_projects(
        self, name: str | None = None, type: str | None = None
    ) -> list[dict[str, Any]]:
        """Projects, optionally only those of this name and type, oldest first."""
        rows = (
            self._conn()
            .execute(
                "SELECT id, name, type, created_at, updated_at FROM projects "
                "WHERE (:name IS NULL OR name = :name) AND (:type IS NULL OR type = :type) "
                "ORDER BY rowid",
                {"name": name, "type": type},
            )
            .fetchall()
        )
        return [dict(r) for r in rows]

    def create_project(self, name: str, type: str = "gen_ai") -> dict[str, Any]:
        """Create a project.

        Raises:
            ConflictError: A project of that name exists.
        """
        stamp, _ = self._stamp()
        project = {
            "id": str(uuid.uuid4()),
            "name": name,
            "type": type,
            "created_at": stamp,
            "updated_at": stamp,
        }
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM projects WHERE name = ?", (name,)).fetchone():
                raise ConflictError(f"a project named {name!r} already exists")
            conn.execute(
                "INSERT INTO projects (id, name, type, created_at, updated_at) "
                "VALUES (:id, :name, :type, :created_at, :updated_at)",
                project,
            )
        return project

    def list_log_streams(self, project_id: str) -> list[dict[str, Any]]:
        """The log streams of a project, oldest first."""
        rows = (
            self._conn()
            .execute(
                "SELECT id, name, project_id, created_at, updated_at FROM log_streams "
                "WHERE project_id = ? ORDER BY rowid",
                (project_id,),
            )
            .fetchall()
        )
        return [dict(r) for r in rows]

    def create_log_stream(self, project_id: str, name: str) -> dict[str, Any]:
        """Create a log stream in a project.

        Raises:
            NotFoundError: No such project.
            ConflictError: The project has a log stream of that name.
        """
        stamp, _ = self._stamp()
        stream = {
            "id": str(uuid.uuid4()),
            "name": name,
            "project_id": project_id,
            "created_at": stamp,
            "updated_at": stamp,
        }
        with self._write() as conn:
            self._require_project(conn, project_id)
            if conn.execute(
                "SELECT 1 FROM log_streams WHERE project_id = ? AND name = ?", (project_id, name)
            ).fetchone():
                raise ConflictError(f"the project already has a log stream named {name!r}")
            conn.execute(
                "INSERT INTO log_streams (id, name, project_id, created_at, updated_at) "
                "VALUES (:id, :name, :project_id, :created_at, :updated_at)",
                stream,
            )
        return stream

    @staticmethod
    def _require_project(conn: sqlite3.Connection, project_id: str) -> str:
        row = conn.execute("SELECT name FROM projects WHERE id = ?", (project_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"project {project_id} not found")
        return str(row[0])

    @staticmethod
    def _check_log_stream(conn: sqlite3.Connection, project_id: str, log_stream_id: Any) -> None:
        if log_stream_id is None:
            return
        if not conn.execute(
            "SELECT 1 FROM log_streams WHERE id = ? AND project_id = ?",
            (log_stream_id, project_id),
        ).fetchone():
            raise BadReferenceError(
                ("body", "log_stream_id"),
                f"log stream {log_stream_id} does not exist in project {project_id}",
                log_stream_id,
            )

    @staticmethod
    def _session_exists(conn: sqlite3.Connection, project_id: str, session_id: str) -> bool:
        return (
            conn.execute(
                "SELECT 1 FROM sessions WHERE id = ? AND project_id = ?", (session_id, project_id)
            ).fetchone()
            is not None
        )

    # --- sessions -----------------------------------------------------------------------------

    def create_session(self, project_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create a session from a Create Session body (wire JSON, plus an optional ``id``).

        Returns:
            The Create Session answer.

        Raises:
            NotFoundError: No such project.
            BadReferenceError: ``previous_session_id`` or ``log_stream_id`` is not in the project.
        """
        with self._write() as conn:
            return self._insert_session(conn, project_id, body)

    def _insert_session(
        self, conn: sqlite3.Connection, project_id: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        project_name = self._require_project(conn, project_id)
        self._check_log_stream(conn, project_id, body.get("log_stream_id"))
        previous = body.get("previous_session_id")
        if previous is not None and not self._session_exists(conn, project_id, previous):
            raise BadReferenceError(
                ("body", "previous_session_id"),
                f"previous session {previous} does not exist in project {project_id}",
                previous,
            )
        stamp, stamp_us = self._stamp()
        session_id = body.get("id") or str(uuid.uuid4())
        conn.execute(
            "INSERT INTO sessions (id, project_id, log_stream_id, experiment_id, "
            "metrics_testing_id, name, external_id, previous_session_id, user_metadata, "
            "logging_method, client_version, created_at, created_at_us, updated_at, updated_at_us) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                session_id,
                project_id,
                body.get("log_stream_id"),
                body.get("experiment_id"),
                body.get("metrics_testing_id"),
                body.get("name"),
                body.get("external_id"),
                previous,
                json.dumps(body.get("user_metadata") or {}, ensure_ascii=False),
                body.get("logging_method") or "api_direct",
                body.get("client_version"),
                stamp,
                stamp_us,
                stamp,
                stamp_us,
            ),
        )
        return {
            "id": session_id,
            "name": body.get("name"),
            "project_id": project_id,
            "project_name": project_name,
            "previous_session_id": previous,
            "external_id": body.get("external_id"),
        }

    def count_sessions(
        self, project_id: str, scope: Mapping[str, Any], compiled: CompiledFilter
    ) -> int:
        """How many sessions of the project, within ``scope``, match a compiled filter."""
        where, params = self._scoped(project_id, scope, compiled)
        sql = f"{compiled.with_clause()}SELECT COUNT(*) FROM sessions AS s WHERE {where}"
        return int(self._conn().execute(sql, params).fetchone()[0])

    def search_sessions(
        self,
        project_id: str,
        scope: Mapping[str, Any],
        compiled: CompiledFilter,
        sort: Mapping[str, Any] | None,
        offset: int,
        limit: int,
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page of matching sessions and whether more follow.

        Raises:
            FilterError: The sort column is unknown or cannot be sorted on.
        """
        where, params = self._scoped(project_id, scope, compiled)
        order, sort_params = compile_session_sort(sort)
        params.update(sort_params)
        params.update(limit=limit + 1, offset=offset)
        sql = (
            f"{compiled.with_clause()}SELECT {_SESSION_FIELDS} FROM sessions AS s WHERE {where} "
            f"ORDER BY {order} LIMIT :limit OFFSET :offset"
        )
        rows = self._conn().execute(sql, params).fetchall()
        return [self._session_record(r) for r in rows[:limit]], len(rows) > limit

    @staticmethod
    def _scoped(
        project_id: str, scope: Mapping[str, Any], compiled: CompiledFilter
    ) -> tuple[str, dict[str, Any]]:
        clauses = ["s.project_id = :project_id"]
        params: dict[str, Any] = {"project_id": project_id, **compiled.params}
        for key in ("log_stream_id", "experiment_id", "metrics_testing_id"):
            if scope.get(key) is not None:
                clauses.append(f"s.{key} = :{key}")
                params[key] = str(scope[key])
        clauses.append(f"({compiled.where})")
        return " AND ".join(clauses), params

    @staticmethod
    def _session_record(row: sqlite3.Row) -> dict[str, Any]:
        record = dict(row)
        record["type"] = "session"
        record["user_metadata"] = json.loads(record["user_metadata"])
        record["tags"] = json.loads(record["tags"])
        record["has_children"] = record["num_traces"] > 0
        record["has_error"] = record["num_errors"] > 0
        # The official SDK's records name the log stream (or experiment) ``run_id``.
        record["run_id"] = record["log_stream_id"] or record["experiment_id"]
        return record

    def get_session(self, project_id: str, session_id: str) -> dict[str, Any] | None:
        """A session record, or None."""
        row = (
            self._conn()
            .execute(
                f"SELECT {_SESSION_FIELDS} FROM sessions WHERE id = ? AND project_id = ?",
                (session_id, project_id),
            )
            .fetchone()
        )
        return self._session_record(row) if row else None

    def session_traces(self, project_id: str, session_id: str) -> list[dict[str, Any]]:
        """Every trace of a session, with its span tree, in arrival order."""
        conn = self._conn()
        rows = conn.execute(
            "SELECT id, body FROM traces WHERE session_id = ? AND project_id = ? ORDER BY rowid",
            (session_id, project_id),
        ).fetchall()
        return [self._assemble(conn, row["id"], row["body"]) for row in rows]

    def get_trace(self, project_id: str, trace_id: str) -> dict[str, Any] | None:
        """One trace with its span tree, or None."""
        conn = self._conn()
        row = conn.execute(
            "SELECT id, body FROM traces WHERE id = ? AND project_id = ?", (trace_id, project_id)
        ).fetchone()
        return self._assemble(conn, row["id"], row["body"]) if row else None

    @staticmethod
    def _assemble(conn: sqlite3.Connection, trace_id: str, body: str) -> dict[str, Any]:
        trace: dict[str, Any] = json.loads(body)
        children: dict[str, list[dict[str, Any]]] = {}
        for row in conn.execute(
            "SELECT id, parent_step_id, body FROM spans WHERE trace_id = ? ORDER BY rowid",
            (trace_id,),
        ):
            span = json.loads(row["body"])
            children.setdefault(row["parent_step_id"], []).append(span)
        trace["spans"] = children.get(trace_id, [])
        for spans in children.values():
            for span in spans:
                # Spans sent on their own (distributed mode) may predate their trace's session.
                span["session_id"] = trace.get("session_id")
                if span.get("type") not in ("llm", "control"):
                    span["spans"] = children.get(span["id"], [])
        return trace

    def stats(self) -> dict[str, int]:
        """Row counts of every table."""
        row = (
            self._conn()
            .execute(
                "SELECT (SELECT COUNT(*) FROM projects) AS projects, "
                "(SELECT COUNT(*) FROM log_streams) AS log_streams, "
                "(SELECT COUNT(*) FROM sessions) AS sessions, "
                "(SELECT COUNT(*) FROM traces) AS traces, "
                "(SELECT COUNT(*) FROM spans) AS spans"
            )
            .fetchone()
        )
        return {key: int(row[key]) for key in row.keys()}

    # --- traces -------------------------------------------------------------------------------

    def ingest_traces(self, project_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Store a Log Traces body (wire JSON; traces may carry pre-assigned ids).

        A trace or span whose id is stored already is skipped, so a retried request changes
        nothing; a stored incomplete trace is replaced by a complete one.

        Returns:
            The Log Traces answer (counts are of the request, so a retry answers the same).

        Raises:
            NotFoundError: No such project.
            BadReferenceError: ``session_id`` or ``log_stream_id`` is not in the project.
        """
        with self._write() as conn:
            project_name = self._require_project(conn, project_id)
            self._check_log_stream(conn, project_id, body.get("log_stream_id"))
            session_id = self._resolve_session(conn, project_id, body)
            is_complete = bool(body.get("is_complete", True))
            stamp, stamp_us = self._stamp()
            trace_ids: list[str] = []
            spans_count = 0
            for index, trace in enumerate(body["traces"]):
                trace_session = session_id or trace.get("session_id")
                if trace_session is not None and trace_session != session_id:
                    if not self._session_exists(conn, project_id, trace_session):
                        raise BadReferenceError(
                            ("body", "traces", index, "session_id"),
                            f"session {trace_session} does not exist in project {project_id}",
                            trace_session,
                        )
                trace_id, spans = self._store_trace(
                    conn, project_id, body, trace, trace_session, is_complete, stamp, stamp_us
                )
                trace_ids.append(trace_id)
                spans_count += spans
        answer: dict[str, Any] = {
            "project_id": project_id,
            "project_name": project_name,
            "records_count": len(trace_ids) + spans_count,
            "traces_count": len(trace_ids),
            "spans_count": spans_count,
            "log_stream_id": body.get("log_stream_id"),
            "experiment_id": body.get("experiment_id"),
            "metrics_testing_id": body.get("metrics_testing_id"),
            "session_id": session_id,
            "trace_ids": trace_ids if body.get("include_trace_ids") else None,
        }
        return answer

    def _resolve_session(
        self, conn: sqlite3.Connection, project_id: str, body: Mapping[str, Any]
    ) -> str | None:
        session_id = body.get("session_id")
        if session_id is not None:
            if not self._session_exists(conn, project_id, session_id):
                raise BadReferenceError(
                    ("body", "session_id"),
                    f"session {session_id} does not exist in project {project_id}",
                    session_id,
                )
            return str(session_id)
        external_id = body.get("session_external_id")
        if external_id is None:
            return None
        row = conn.execute(
            "SELECT id FROM sessions WHERE project_id = ? AND external_id = ? "
            "ORDER BY created_at_us DESC, rowid DESC LIMIT 1",
            (project_id, external_id),
        ).fetchone()
        if row is not None:
            return str(row[0])
        created = self._insert_session(
            conn,
            project_id,
            {
                "external_id": external_id,
                "log_stream_id": body.get("log_stream_id"),
                "experiment_id": body.get("experiment_id"),
                "metrics_testing_id": body.get("metrics_testing_id"),
                "logging_method": body.get("logging_method"),
                "client_version": body.get("client_version"),
            },
        )
        return str(created["id"])

    def _store_trace(
        self,
        conn: sqlite3.Connection,
        project_id: str,
        body: Mapping[str, Any],
        trace: Mapping[str, Any],
        session_id: str | None,
        is_complete: bool,
        stamp: str,
        stamp_us: int,
    ) -> tuple[str, int]:
        trace_id = str(trace.get("id") or uuid.uuid4())
        record = {k: v for k, v in trace.items() if k != "spans"}
        record.update(id=trace_id, trace_id=trace_id, session_id=session_id)
        encoded = json.dumps(record, ensure_ascii=False)
        inserted = conn.execute(
            "INSERT OR IGNORE INTO traces (id, project_id, session_id, log_stream_id, "
            "experiment_id, metrics_testing_id, is_complete, ingested_at_us, body) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                trace_id,
                project_id,
                session_id,
                body.get("log_stream_id"),
                body.get("experiment_id"),
                body.get("metrics_testing_id"),
                int(is_complete),
                stamp_us,
                encoded,
            ),
        ).rowcount
        before: Mapping[str, Any] | None = None
        replaced = False
        totals_session = session_id
        if not inserted:
            row = conn.execute(
                "SELECT body, is_complete, session_id FROM traces WHERE id = ?", (trace_id,)
            ).fetchone()
            before = json.loads(row["body"])
            totals_session = row["session_id"]  # totals went where the trace was first stored
            if is_complete and not row["is_complete"]:
                # The completed version of a trace first sent with is_complete: false; it
                # keeps the totals counted so far until they are made again below.
                replaced = True
                kept = {k: before[k] for k in (*TOTALS, "has_error") if k in before}
                conn.execute(
                    "UPDATE traces SET body = ?, is_complete = 1 WHERE id = ?",
                    (json.dumps({**record, **kept}, ensure_ascii=False), trace_id),
                )
        if inserted:
            # Spans sent on their own before their trace (distributed mode) join its session now.
            spans_early = conn.execute(
                "SELECT COUNT(*) FROM spans WHERE trace_id = ?", (trace_id,)
            ).fetchone()[0]
        spans_seen, spans_new = self._store_spans(conn, project_id, trace_id, session_id, trace)
        if inserted:
            spans_new += int(spans_early)
        if session_id is not None and (inserted or spans_new):
            self._touch_session(
                conn, session_id, record, bool(inserted), spans_new, stamp, stamp_us
            )
        if inserted or spans_new or replaced:
            self._retotal(conn, trace_id, totals_session, before)
        return trace_id, spans_seen

    @staticmethod
    def _retotal(
        conn: sqlite3.Connection,
        trace_id: str,
        session_id: str | None,
        before: Mapping[str, Any] | None,
    ) -> None:
        """Make a trace's totals again from its stored spans, and move its session's by the change.

        ``before`` is the trace's record as it was (None for a trace just stored). A trace is
        erroneous when its own status or any of its steps' is 400 or more; its session's
        ``num_errors`` counts erroneous traces.
        """
        row = conn.execute(
            "SELECT json_extract(body, '$.status_code'), "
            "json_extract(body, '$.metrics.duration_ns') FROM traces WHERE id = ?",
            (trace_id,),
        ).fetchone()
        if row is None:
            return
        tokens_in, tokens_out, tokens_total, llm_calls, failed = conn.execute(
            _STEP_TOTALS_SQL, (trace_id,)
        ).fetchone()
        after = {
            "input_tokens": int(tokens_in),
            "output_tokens": int(tokens_out),
            "total_tokens": int(tokens_total),
            "duration_ns": _number(row[1]),
            "num_llm_calls": int(llm_calls),
            "num_failed_steps": int(failed),
        }
        has_error = _is_error(row[0]) or after["num_failed_steps"] > 0
        old, old_error = _totals_of(before)
        conn.execute(
            "UPDATE traces SET body = json_set(body, '$.input_tokens', ?, '$.output_tokens', ?, "
            "'$.total_tokens', ?, '$.duration_ns', ?, '$.num_llm_calls', ?, "
            "'$.num_failed_steps', ?, '$.has_error', json(?)) WHERE id = ?",
            (*after.values(), "true" if has_error else "false", trace_id),
        )
        if session_id is None:
            return
        delta = {name: after[name] - old[name] for name in TOTALS}
        errors = int(has_error) - int(old_error)
        if errors or any(delta.values()):
            conn.execute(
                "UPDATE sessions SET input_tokens = input_tokens + ?, "
                "output_tokens = output_tokens + ?, total_tokens = total_tokens + ?, "
                "duration_ns = duration_ns + ?, num_llm_calls = num_llm_calls + ?, "
                "num_failed_steps = num_failed_steps + ?, num_errors = num_errors + ? "
                "WHERE id = ?",
                (*delta.values(), errors, session_id),
            )

    @staticmethod
    def _store_spans(
        conn: sqlite3.Connection,
        project_id: str,
        trace_id: str,
        session_id: str | None,
        trace: Mapping[str, Any],
        root_parent_id: str | None = None,
    ) -> tuple[int, int]:
        seen = new = 0
        # Iterative pre-order walk: deep span trees must not hit Python's recursion limit.
        stack: list[tuple[str, Mapping[str, Any]]] = [
            (root_parent_id or trace_id, span) for span in reversed(trace.get("spans") or [])
        ]
        while stack:
            parent_id, span = stack.pop()
            seen += 1
            span_id = str(span.get("id") or uuid.uuid4())
            record = {k: v for k, v in span.items() if k != "spans"}
            record.update(id=span_id, trace_id=trace_id, session_id=session_id)
            record["parent_id"] = record.get("parent_id") or parent_id
            new += conn.execute(
                "INSERT OR IGNORE INTO spans (id, trace_id, project_id, parent_step_id, type, body) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    span_id,
                    trace_id,
                    project_id,
                    parent_id,
                    str(span.get("type")),
                    json.dumps(record, ensure_ascii=False),
                ),
            ).rowcount
            stack.extend((span_id, child) for child in reversed(span.get("spans") or []))
        return seen, new

    @staticmethod
    def _touch_session(
        conn: sqlite3.Connection,
        session_id: str,
        trace: Mapping[str, Any],
        new_trace: bool,
        new_spans: int,
        stamp: str,
        stamp_us: int,
    ) -> None:
        row = conn.execute("SELECT tags FROM sessions WHERE id = ?", (session_id,)).fetchone()
        tags = set(json.loads(row[0])) if row else set()
        if new_trace:
            tags.update(str(t) for t in trace.get("tags") or [])
        conn.execute(
            "UPDATE sessions SET num_traces = num_traces + ?, num_spans = num_spans + ?, "
            "tags = ?, input = coalesce(input, ?), "
            "output = coalesce(?, output), updated_at = ?, updated_at_us = ? WHERE id = ?",
            (
                int(new_trace),
                new_spans,
                json.dumps(sorted(tags), ensure_ascii=False),
                _text(trace.get("input")) if new_trace else None,
                _text(trace.get("output")) if new_trace else None,
                stamp,
                stamp_us,
                session_id,
            ),
        )

    # --- distributed mode: spans on their own, updates -----------------------------------------

    def ingest_spans(self, project_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Append spans (with their subtrees) under ``parent_id`` in trace ``trace_id``.

        The trace need not be stored yet: the official SDK sends a trace and its spans
        concurrently, so spans may come first; they join the trace's session when it arrives.
        A span whose id is stored already is skipped, so a retry changes nothing.

        Returns:
            The Log Spans answer.

        Raises:
            NotFoundError: No such project.
            BadReferenceError: ``log_stream_id`` is not in the project, or the trace belongs to
                another project.
        """
        trace_id = str(body["trace_id"])
        parent_id = str(body["parent_id"])
        with self._write() as conn:
            project_name = self._require_project(conn, project_id)
            self._check_log_stream(conn, project_id, body.get("log_stream_id"))
            row = conn.execute(
                "SELECT project_id, session_id FROM traces WHERE id = ?", (trace_id,)
            ).fetchone()
            if row is not None and row["project_id"] != project_id:
                raise BadReferenceError(
                    ("body", "trace_id"),
                    f"trace {trace_id} is not in project {project_id}",
                    trace_id,
                )
            session_id = row["session_id"] if row is not None else None
            before = None
            if row is not None:
                stored = conn.execute(
                    "SELECT body FROM traces WHERE id = ?", (trace_id,)
                ).fetchone()
                before = json.loads(stored[0])
            seen, new = self._store_spans(
                conn, project_id, trace_id, session_id, {"spans": body["spans"]}, parent_id
            )
            if session_id is not None and new:
                stamp, stamp_us = self._stamp()
                conn.execute(
                    "UPDATE sessions SET num_spans = num_spans + ?, updated_at = ?, "
                    "updated_at_us = ? WHERE id = ?",
                    (new, stamp, stamp_us, session_id),
                )
            if row is not None and new:
                # Spans of a trace not stored yet are counted when the trace arrives.
                self._retotal(conn, trace_id, session_id, before)
        return {
            "project_id": project_id,
            "project_name": project_name,
            "session_id": session_id,
            "trace_id": trace_id,
            "records_count": seen,
            "log_stream_id": body.get("log_stream_id"),
            "experiment_id": body.get("experiment_id"),
        }

    def update_trace(
        self, project_id: str, trace_id: str, changes: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Overwrite a stored trace's input, output, status, duration; add tags; mark complete.

        Fields that are None are left as they are.

        Raises:
            NotFoundError: No such project or trace.
        """
        with self._write() as conn:
            project_name = self._require_project(conn, project_id)
            row = conn.execute(
                "SELECT body, session_id FROM traces WHERE id = ? AND project_id = ?",
                (trace_id, project_id),
            ).fetchone()
            if row is None:
                raise NotFoundError(f"trace {trace_id} not found in project {project_id}")
            record = json.loads(row["body"])
            before = dict(record)
            self._apply_changes(record, changes)
            complete = bool(changes.get("is_complete"))
            conn.execute(
                "UPDATE traces SET body = ?, is_complete = max(is_complete, ?) WHERE id = ?",
                (json.dumps(record, ensure_ascii=False), int(complete), trace_id),
            )
            session_id = row["session_id"]
            if session_id is not None:
                stamp, stamp_us = self._stamp()
                conn.execute(
                    "UPDATE sessions SET output = coalesce(?, output), "
                    "input = coalesce(input, ?), "
                    "updated_at = ?, updated_at_us = ? WHERE id = ?",
                    (
                        _text(changes.get("output")),
                        _text(changes.get("input")),
                        stamp,
                        stamp_us,
                        session_id,
                    ),
                )
            self._retotal(conn, trace_id, session_id, before)
        return {
            "project_id": project_id,
            "project_name": project_name,
            "session_id": session_id,
            "trace_id": trace_id,
            "records_count": 1,
            "log_stream_id": changes.get("log_stream_id"),
            "experiment_id": changes.get("experiment_id"),
        }

    def update_span(
        self, project_id: str, span_id: str, changes: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Overwrite a stored span's input, output, status, duration; add tags.

        Raises:
            NotFoundError: No such project or span.
        """
        with self._write() as conn:
            project_name = self._require_project(conn, project_id)
            row = conn.execute(
                "SELECT body, trace_id FROM spans WHERE id = ? AND project_id = ?",
                (span_id, project_id),
            ).fetchone()
            if row is None:
                raise NotFoundError(f"span {span_id} not found in project {project_id}")
            record = json.loads(row["body"])
            self._apply_changes(record, changes)
            conn.execute(
                "UPDATE spans SET body = ? WHERE id = ?",
                (json.dumps(record, ensure_ascii=False), span_id),
            )
            trace = conn.execute(
                "SELECT body, session_id FROM traces WHERE id = ?", (row["trace_id"],)
            ).fetchone()
            if trace is not None:  # a failed (or recovered) step changes its trace's totals
                self._retotal(conn, row["trace_id"], trace["session_id"], json.loads(trace[0]))
        return {
            "project_id": project_id,
            "project_name": project_name,
            "span_id": span_id,
            "trace_id": row["trace_id"],
            "records_count": 1,
            "log_stream_id": changes.get("log_stream_id"),
            "experiment_id": changes.get("experiment_id"),
        }

    @staticmethod
    def _apply_changes(record: dict[str, Any], changes: Mapping[str, Any]) -> None:
        for key in ("input", "output", "status_code"):
            if changes.get(key) is not None:
                record[key] = changes[key]
        if changes.get("duration_ns") is not None:
            metrics = dict(record.get("metrics") or {})
            metrics["duration_ns"] = changes["duration_ns"]
            record["metrics"] = metrics
        if changes.get("tags"):
            tags = list(record.get("tags") or [])
            tags.extend(t for t in changes["tags"] if t not in tags)
            record["tags"] = tags

    def get_span(self, project_id: str, span_id: str) -> dict[str, Any] | None:
        """One span with its subtree, or None."""
        conn = self._conn()
        row = conn.execute(
            "SELECT trace_id FROM spans WHERE id = ? AND project_id = ?", (span_id, project_id)
        ).fetchone()
        if row is None:
            return None
        found: list[dict[str, Any]] = []
        trace = conn.execute("SELECT body FROM traces WHERE id = ?", (row[0],)).fetchone()
        tree = self._assemble(conn, row[0], trace[0] if trace else json.dumps({"id": row[0]}))
        stack = list(tree["spans"])
        while stack:
            span = stack.pop()
            if span["id"] == span_id:
                found.append(span)
                break
            stack.extend(span.get("spans") or [])
        if not found:
            # A span whose parent has not arrived yet: not reachable from the trace root.
            body = conn.execute("SELECT body FROM spans WHERE id = ?", (span_id,)).fetchone()
            return dict(json.loads(body[0]))
        return found[0]

    def get_log_stream(self, project_id: str, log_stream_id: str) -> dict[str, Any] | None:
        """One log stream of a project, or None."""
        row = (
            self._conn()
            .execute(
                "SELECT id, name, project_id, created_at, updated_at FROM log_streams "
                "WHERE id = ? AND project_id = ?",
                (log_stream_id, project_id),
            )
            .fetchone()
        )
        return dict(row) if row else None

    def count_with(self, project_id: str, filters: Any = None, filter_tree: Any = None) -> int:
        """Count sessions of a project for wire-JSON filters (a convenience for tests and tools)."""
        return self.count_sessions(project_id, {}, compile_session_filter(filters, filter_tree))


class WriteQueue:
    """The single writer: runs write jobs one at a time, in arrival order, on its own thread.

    ``submit`` returns a future; a reliable request awaits it, a fire-and-forget one does not (its
    failure is logged and counted). ``wait_idle`` lets tests wait for background work without sleeps.
    """

    def __init__(self, name: str = "galileo-otel-writer") -> None:
        self._queue: queue.SimpleQueue[
            tuple[Callable[[], Any], concurrent.futures.Future[Any], bool] | None
        ] = queue.SimpleQueue()
        self._idle = threading.Condition()
        self._pending = 0
        self._closed = False
        self.completed = 0
        self.failed_background = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Jobs queued or running."""
        return self._pending

    def submit(
        self, job: Callable[[], T], *, background: bool = False
    ) -> concurrent.futures.Future[T]:
        """Queue a job; ``background`` jobs log their failure instead of leaving it to a caller.

        Raises:
            WriterClosedError: The queue is closed.
        """
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._idle:
            if self._closed:
                raise WriterClosedError("the server is shutting down")
            self._pending += 1
        self._queue.put((job, future, background))
        return future

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            job, future, background = item
            try:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(job())
                    except BaseException as exc:  # a failed job must not stop the writer
                        future.set_exception(exc)
                        if background:
                            self.failed_background += 1
                            logger.warning("background ingestion failed: %s", exc)
            finally:
                with self._idle:
                    self._pending -= 1
                    self.completed += 1
                    self._idle.notify_all()

    def wait_idle(self, timeout: float | None = 10.0) -> bool:
        """Wait until no job is queued or running; False if ``timeout`` seconds passed first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float = 5.0) -> bool:
        """Finish queued jobs (for at most ``timeout`` seconds) and stop; True if it stopped."""
        with self._idle:
            if not self._closed:
                self._closed = True
                self._queue.put(None)
        self._thread.join(timeout)
        return not self._thread.is_alive()
