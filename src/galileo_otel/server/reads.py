"""Read-only queries over the local store for the web UI and the official SDK's search routes.

Traces and spans are stored as JSON bodies; these queries read them with SQLite's JSON functions
on a connection of their own (``PRAGMA query_only``), so they never take the store's write lock
and never change a row. Totals (tokens, duration, llm calls, failed steps) are read from a
record's own keys when the ingest stored them, else computed here from its spans.

Filters for traces and spans reuse the session filter compiler's semantics
(:mod:`galileo_otel.server.query`) over their own columns.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from galileo_otel.server.query import (
    Column,
    ColumnKind,
    CompiledFilter,
    FilterCompiler,
    FilterError,
    Loc,
    datetime_to_us,
)

__all__ = [
    "SESSION_SORTS",
    "SPAN_COLUMNS",
    "TOTAL_KEYS",
    "TRACE_COLUMNS",
    "TRACE_SORTS",
    "Reads",
    "RecordKind",
    "compile_record_filter",
    "compile_record_sort",
    "search_text_sql",
]

TOTAL_KEYS = (
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "duration_ns",
    "num_llm_calls",
    "num_failed_steps",
)
"""The totals of a trace or session (the ingest may store them; otherwise computed here)."""

RecordKind = Literal["trace", "span"]
_DATETIME = TypeAdapter(datetime)


def _iso_us(value: Any) -> int | None:
    """Microseconds since the epoch of an ISO 8601 time (naive is UTC), or NULL."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = _DATETIME.validate_python(value)
    except PydanticValidationError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return datetime_to_us(parsed)


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _body(alias: str, path: str) -> str:
    return f"json_extract({alias}.body, '$.{path}')"


# --- totals of a trace (alias t), as SQL ---------------------------------------------------------


def _span_sum(metric: str) -> str:
    return (
        f"(SELECT SUM(json_extract(p.body, '$.metrics.{metric}')) FROM spans AS p "
        "WHERE p.trace_id = t.id AND p.type = 'llm')"
    )


_TRACE_TOTALS_SQL: Mapping[str, str] = {
    "input_tokens": f"COALESCE({_body('t', 'input_tokens')}, {_span_sum('num_input_tokens')})",
    "output_tokens": f"COALESCE({_body('t', 'output_tokens')}, {_span_sum('num_output_tokens')})",
    "total_tokens": (
        f"COALESCE({_body('t', 'total_tokens')}, "
        "(SELECT SUM(COALESCE(json_extract(p.body, '$.metrics.num_total_tokens'), "
        "json_extract(p.body, '$.metrics.num_input_tokens') + "
        "json_extract(p.body, '$.metrics.num_output_tokens'))) "
        "FROM spans AS p WHERE p.trace_id = t.id AND p.type = 'llm'))"
    ),
    "duration_ns": (f"COALESCE({_body('t', 'duration_ns')}, {_body('t', 'metrics.duration_ns')})"),
    "num_llm_calls": (
        f"COALESCE({_body('t', 'num_llm_calls')}, "
        "(SELECT COUNT(*) FROM spans AS p WHERE p.trace_id = t.id AND p.type = 'llm'))"
    ),
    "num_failed_steps": (
        f"COALESCE({_body('t', 'num_failed_steps')}, "
        "(SELECT COUNT(*) FROM spans AS p WHERE p.trace_id = t.id "
        "AND json_extract(p.body, '$.status_code') >= 400))"
    ),
}
_TRACE_START_US = f"galileo_iso_us({_body('t', 'created_at')})"
_TRACE_ERROR = f"(COALESCE({_body('t', 'status_code')}, 0) >= 400 OR {_TRACE_TOTALS_SQL['num_failed_steps']} > 0)"


def search_text_sql(alias: str, param: str) -> str:
    """SQL that holds when ``param`` (lower-cased) is in the input or output of ``alias``'s body."""
    return " OR ".join(
        f"instr(galileo_lower(COALESCE(CAST({_body(alias, k)} AS TEXT), '')), {param}) > 0"
        for k in ("input", "output")
    )


def _trace_matches(param: str) -> str:
    """A trace (alias t) whose input/output, or any step's input/output, holds the text."""
    return (
        f"({search_text_sql('t', param)} OR EXISTS (SELECT 1 FROM spans AS q "
        f"WHERE q.trace_id = t.id AND ({search_text_sql('q', param)})))"
    )


# --- columns of the official SDK's trace and span search -----------------------------------------

TRACE_COLUMNS: Mapping[str, Column] = {
    c.name: c
    for c in (
        Column("id", "id", "t.id"),
        Column("trace_id", "id", "t.id"),
        Column("session_id", "id", "t.session_id"),
        Column("log_stream_id", "id", "t.log_stream_id"),
        Column("experiment_id", "id", "t.experiment_id"),
        Column("name", "text", _body("t", "name")),
        Column("input", "text", f"CAST({_body('t', 'input')} AS TEXT)"),
        Column("output", "text", f"CAST({_body('t', 'output')} AS TEXT)"),
        Column("created_at", "date", _TRACE_START_US),
        Column("status_code", "number", _body("t", "status_code")),
        Column("has_error", "boolean", _TRACE_ERROR),
        Column("tags", "collection", f"COALESCE({_body('t', 'tags')}, '[]')", sortable=False),
        *(Column(k, "number", sql) for k, sql in _TRACE_TOTALS_SQL.items()),
    )
}
"""Columns a trace search may filter or sort on (alias ``t``)."""

SPAN_COLUMNS: Mapping[str, Column] = {
    c.name: c
    for c in (
        Column("id", "id", "p.id"),
        Column("trace_id", "id", "p.trace_id"),
        Column("parent_id", "id", "p.parent_step_id"),
        Column("session_id", "id", "t.session_id"),
        Column("log_stream_id", "id", "t.log_stream_id"),
        Column("experiment_id", "id", "t.experiment_id"),
        Column("type", "text", "p.type"),
        Column("name", "text", _body("p", "name")),
        Column("model", "text", _body("p", "model")),
        Column("input", "text", f"CAST({_body('p', 'input')} AS TEXT)"),
        Column("output", "text", f"CAST({_body('p', 'output')} AS TEXT)"),
        Column("created_at", "date", f"galileo_iso_us({_body('p', 'created_at')})"),
        Column("status_code", "number", _body("p", "status_code")),
        Column("has_error", "boolean", f"(COALESCE({_body('p', 'status_code')}, 0) >= 400)"),
        Column("duration_ns", "number", _body("p", "metrics.duration_ns")),
        Column("num_input_tokens", "number", _body("p", "metrics.num_input_tokens")),
        Column("num_output_tokens", "number", _body("p", "metrics.num_output_tokens")),
        Column("tags", "collection", f"COALESCE({_body('p', 'tags')}, '[]')", sortable=False),
    )
}
"""Columns a span search may filter or sort on (alias ``p``, its trace ``t``)."""


class _RecordCompiler(FilterCompiler):
    """The session filter compiler over trace or span columns."""

    def __init__(self, prefix: str, kind: RecordKind) -> None:
        super().__init__(prefix)
        self._kind = kind
        self._columns = TRACE_COLUMNS if kind == "trace" else SPAN_COLUMNS
        self._alias = "t" if kind == "trace" else "p"
        self.row_alias = self._alias
        self.rows_from = (
            "traces AS t" if kind == "trace" else "spans AS p JOIN traces AS t ON t.id = p.trace_id"
        )

    def column(self, column_id: Any, loc: Loc, *, for_sort: bool = False) -> tuple[ColumnKind, str]:
        if not isinstance(column_id, str):
            raise FilterError(loc, "column_id must be a string", column_id)
        column = self._columns.get(column_id)
        if column is not None:
            if for_sort and not column.sortable:
                raise FilterError(loc, f"column '{column_id}' cannot be sorted on", column_id)
            return column.kind, column.sql
        prefix = "user_metadata."
        if column_id.startswith(prefix) and len(column_id) > len(prefix):
            key = self.bind(column_id[len(prefix) :])
            sql = (
                f"(SELECT j.value FROM json_each({self._alias}.body, '$.user_metadata') AS j "
                f"WHERE j.key = {key})"
            )
            return "text", sql
        known = ", ".join([*self._columns, "user_metadata.<key>"])
        raise FilterError(
            loc,
            f"unknown column '{column_id}' for {self._kind}s; known columns: {known}",
            column_id,
        )


def compile_record_filter(
    kind: RecordKind,
    filters: Sequence[Mapping[str, Any]] | None = None,
    filter_tree: Mapping[str, Any] | None = None,
) -> CompiledFilter:
    """Compile a trace or span search's ``filters`` and ``filter_tree`` (session semantics).

    Raises:
        FilterError: An unknown column, or a filter that does not fit it.
    """
    compiler = _RecordCompiler("f", kind)
    frags = [compiler.leaf(flt, ("body", "filters", i)) for i, flt in enumerate(filters or ())]
    if filter_tree is not None:
        frags.append(compiler.node(filter_tree, ("body", "filter_tree")))
    where = compiler.join("AND", frags).sql if frags else "1"
    return CompiledFilter(ctes=compiler.ctes, where=where, params=compiler.params)


def compile_record_sort(
    kind: RecordKind, sort: Mapping[str, Any] | None
) -> tuple[str, dict[str, Any]]:
    """ORDER BY for a trace or span search; default newest first, ties in insertion order.

    Raises:
        FilterError: The column is unknown or cannot be sorted on.
    """
    alias = "t" if kind == "trace" else "p"
    if sort is None:
        column_id: Any = "created_at"
        ascending = False
    else:
        column_id = sort.get("column_id")
        ascending = bool(sort.get("ascending", True))
    compiler = _RecordCompiler("o", kind)
    _, col = compiler.column(column_id, ("body", "sort", "column_id"), for_sort=True)
    direction = "ASC" if ascending else "DESC"
    return f"{col} {direction}, {alias}.rowid {direction}", compiler.params


# --- the UI's sortable columns -------------------------------------------------------------------

TRACE_SORTS: Mapping[str, str] = {
    "started": _TRACE_START_US,
    "name": _body("t", "name"),
    **{k: _TRACE_TOTALS_SQL[k] for k in TOTAL_KEYS},
}
"""The traces list's sortable columns (the ``?sort=`` values)."""

SESSION_SORTS: Mapping[str, str] = {
    "created": "s.created_at_us",
    "first_trace": "agg.first_trace_us",
    "updated": "s.updated_at_us",
    "name": "s.name",
    "traces": "s.num_traces",
    "errors": "s.num_errors",
    **{k: f"agg.{k}" for k in TOTAL_KEYS},
}
"""The sessions list's sortable columns (the ``?sort=`` values)."""


class Reads:
    """Read-only queries over the store's SQLite file.

    Args:
        path: The database file (the store's ``path``).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Reads(path={str(self.path)!r})"

    @contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        # A connection per call: cheap for SQLite, and no state shared between threads.
        with closing(sqlite3.connect(self.path, timeout=30.0, isolation_level=None)) as conn:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA query_only = 1")
            conn.create_function("galileo_lower", 1, _lower, deterministic=True)
            conn.create_function("galileo_iso_us", 1, _iso_us, deterministic=True)
            yield conn

    # --- totals --------------------------------------------------------------------------------

    def trace_totals(self, project_id: str, trace_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The totals of each trace, by id."""
        if not trace_ids:
            return {}
        cols = ", ".join(f"{sql} AS {k}" for k, sql in _TRACE_TOTALS_SQL.items())
        marks = ", ".join("?" for _ in trace_ids)
        with self._conn() as conn:
            rows = conn.execute(
                f"SELECT t.id AS id, {cols} FROM traces AS t "
                f"WHERE t.project_id = ? AND t.id IN ({marks})",
                (project_id, *trace_ids),
            ).fetchall()
        return {str(r["id"]): {k: r[k] for k in TOTAL_KEYS} for r in rows}

    @staticmethod
    def _session_aggregate(only: str = "") -> str:
        """Per-session totals as a subquery ``agg``; ``only`` narrows the traces read (SQL)."""
        # A session's duration is the sum of its traces' (as the store's session totals are).
        per_trace = ", ".join(f"{sql} AS {k}" for k, sql in _TRACE_TOTALS_SQL.items())
        start = _TRACE_START_US
        sums = ", ".join(f"SUM(x.{k}) AS {k}" for k in TOTAL_KEYS)
        return (
            "(SELECT x.session_id AS session_id, "
            f"{sums}, MIN(x.start_us) AS first_trace_us "
            f"FROM (SELECT t.session_id AS session_id, {per_trace}, {start} AS start_us "
            "FROM traces AS t WHERE t.project_id = :project_id "
            f"AND t.session_id IS NOT NULL {only}) AS x GROUP BY x.session_id) AS agg"
        )

    def session_totals(
        self, project_id: str, session_ids: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
        """The totals of each session (sums over its traces, duration included)."""
        if not session_ids:
            return {}
        params: dict[str, Any] = {"project_id": project_id}
        marks = []
        for i, sid in enumerate(session_ids):
            params[f"s{i}"] = sid
            marks.append(f":s{i}")
        with self._conn() as conn:
            # Narrowed inside, so only these sessions' traces are read.
            only = f"AND t.session_id IN ({', '.join(marks)})"
            rows = conn.execute(
                f"SELECT agg.* FROM {self._session_aggregate(only)}", params
            ).fetchall()
        return {
            str(r["session_id"]): {k: r[k] for k in (*TOTAL_KEYS, "first_trace_us")} for r in rows
        }

    # --- the UI's lists ------------------------------------------------------------------------

    def search_sessions(
        self,
        project_id: str,
        scope: Mapping[str, Any],
        compiled: CompiledFilter,
        *,
        text: str = "",
        sort: str = "created",
        descending: bool = True,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[list[str], bool, int]:
        """Ids of one page of matching sessions, whether more follow, and how many match.

        ``compiled`` is a Count/Query Sessions filter over ``sessions AS s``; ``text`` keeps the
        sessions with a trace whose input or output (or a step's) holds it, case-insensitively.

        Raises:
            KeyError: ``sort`` is not one of :data:`SESSION_SORTS`.
        """
        order = SESSION_SORTS[sort]
        clauses = ["s.project_id = :project_id"]
        params: dict[str, Any] = {"project_id": project_id, **compiled.params}
        for key in ("log_stream_id", "experiment_id", "metrics_testing_id"):
            if scope.get(key) is not None:
                clauses.append(f"s.{key} = :{key}")
                params[key] = str(scope[key])
        clauses.append(f"({compiled.where})")
        if text:
            params["q"] = text.lower()
            clauses.append(
                f"EXISTS (SELECT 1 FROM traces AS t WHERE t.session_id = s.id AND {_trace_matches(':q')})"
            )
        where = " AND ".join(clauses)
        direction = "DESC" if descending else "ASC"
        # NULLs (a session without traces has no totals) sort last either way.
        order_by = f"({order}) IS NULL, {order} {direction}, s.rowid {direction}"
        head = compiled.with_clause()
        with self._conn() as conn:
            total = int(
                conn.execute(
                    f"{head}SELECT COUNT(*) FROM sessions AS s WHERE {where}", params
                ).fetchone()[0]
            )
            needs_agg = order.startswith("agg.")
            source = (
                f"sessions AS s LEFT JOIN {self._session_aggregate()} ON agg.session_id = s.id"
                if needs_agg
                else "sessions AS s"
            )
            rows = conn.execute(
                f"{head}SELECT s.id AS id FROM {source} WHERE {where} "
                f"ORDER BY {order_by} LIMIT :limit OFFSET :offset",
                {**params, "limit": limit + 1, "offset": offset},
            ).fetchall()
        ids = [str(r["id"]) for r in rows]
        return ids[:limit], len(ids) > limit, total

    def search_traces(
        self,
        project_id: str,
        *,
        text: str = "",
        session_id: str | None = None,
        errors: bool | None = None,
        sort: str = "started",
        descending: bool = True,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[list[dict[str, Any]], bool, int]:
        """One page of a project's traces (bodies without spans, plus totals), more?, how many.

        Raises:
            KeyError: ``sort`` is not one of :data:`TRACE_SORTS`.
        """
        order = TRACE_SORTS[sort]
        clauses = ["t.project_id = :project_id"]
        params: dict[str, Any] = {"project_id": project_id}
        if text:
            params["q"] = text.lower()
            clauses.append(_trace_matches(":q"))
        if session_id:
            params["session_id"] = session_id
            clauses.append("t.session_id = :session_id")
        if errors is not None:
            clauses.append(_TRACE_ERROR if errors else f"NOT {_TRACE_ERROR}")
        where = " AND ".join(clauses)
        direction = "DESC" if descending else "ASC"
        order_by = f"({order}) IS NULL, {order} {direction}, t.rowid {direction}"
        cols = ", ".join(f"{sql} AS {k}" for k, sql in _TRACE_TOTALS_SQL.items())
        with self._conn() as conn:
            total = int(
                conn.execute(f"SELECT COUNT(*) FROM traces AS t WHERE {where}", params).fetchone()[
                    0
                ]
            )
            rows = conn.execute(
                f"SELECT t.body AS body, {cols}, {_TRACE_ERROR} AS has_error FROM traces AS t "
                f"WHERE {where} ORDER BY {order_by} LIMIT :limit OFFSET :offset",
                {**params, "limit": limit + 1, "offset": offset},
            ).fetchall()
        records = []
        for row in rows[:limit]:
            record: dict[str, Any] = json.loads(row["body"])
            record["totals"] = {k: row[k] for k in TOTAL_KEYS}
            record["has_error"] = bool(row["has_error"])
            records.append(record)
        return records, len(rows) > limit, total

    # --- the official SDK's searches -----------------------------------------------------------

    def query_records(
        self,
        kind: RecordKind,
        project_id: str,
        scope: Mapping[str, Any],
        compiled: CompiledFilter,
        sort: Mapping[str, Any] | None,
        offset: int,
        limit: int,
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page of traces or spans for Query Traces / Query Spans, and whether more follow.

        Records are the stored bodies with the fields the official SDK's ``Extended*Record``
        models require (``project_id``, ``run_id``, ``session_id``, ``trace_id``, ``parent_id``).

        Raises:
            FilterError: The sort column is unknown or cannot be sorted on.
        """
        order, sort_params = compile_record_sort(kind, sort)
        clauses = ["t.project_id = :project_id"]
        params: dict[str, Any] = {"project_id": project_id, **compiled.params, **sort_params}
        for key in ("log_stream_id", "experiment_id", "metrics_testing_id"):
            if scope.get(key) is not None:
                clauses.append(f"t.{key} = :{key}")
                params[key] = str(scope[key])
        clauses.append(f"({compiled.where})")
        where = " AND ".join(clauses)
        params.update(limit=limit + 1, offset=offset)
        if kind == "trace":
            sql = (
                "SELECT t.body AS body, t.session_id AS session_id, t.log_stream_id AS ls, "
                "t.experiment_id AS ex, t.project_id AS project_id, "
                f"(SELECT COUNT(*) FROM spans AS c WHERE c.trace_id = t.id) AS num_spans "
                f"FROM traces AS t WHERE {where} ORDER BY {order} LIMIT :limit OFFSET :offset"
            )
        else:
            sql = (
                "SELECT p.body AS body, p.trace_id AS trace_id, p.parent_step_id AS parent_id, "
                "t.session_id AS session_id, t.log_stream_id AS ls, t.experiment_id AS ex, "
                "t.project_id AS project_id FROM spans AS p JOIN traces AS t ON t.id = p.trace_id "
                f"WHERE {where} ORDER BY {order} LIMIT :limit OFFSET :offset"
            )
        with self._conn() as conn:
            rows = conn.execute(compiled.with_clause() + sql, params).fetchall()
        records = []
        for row in rows[:limit]:
            record: dict[str, Any] = json.loads(row["body"])
            record.pop("spans", None)
            record["project_id"] = row["project_id"]
            record["session_id"] = row["session_id"]
            record["run_id"] = row["ls"] or row["ex"]
            record["log_stream_id"] = row["ls"]
            record["experiment_id"] = row["ex"]
            if kind == "trace":
                record["type"] = "trace"
                record["trace_id"] = record.get("id")
                record["num_spans"] = row["num_spans"]
                record["has_children"] = row["num_spans"] > 0
            else:
                record["trace_id"] = row["trace_id"]
                record["parent_id"] = row["parent_id"]
            records.append(record)
        return records, len(rows) > limit
