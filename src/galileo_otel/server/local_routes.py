"""Local extension route for ``galileo-otel tail``: the traces stored after a cursor, oldest first.

``GET /local/projects/{project_id}/traces?after=&limit=&log_stream_id=&session=&user=`` answers
``{"traces": [...], "cursor": N}``. Each trace is its record without the span tree (with the
totals the store keeps: ``input_tokens``, ``output_tokens``, ``total_tokens``, ``duration_ns``,
``num_llm_calls``, ``num_failed_steps``, ``has_error``), plus ``cursor``, ``num_spans``,
``num_errors`` (its failed steps) and its session's ``session_name``,
``session_external_id`` and ``user`` (``user_metadata["user.id"]``). Pass the answer's
``cursor`` as the next ``after``; without ``after`` the newest ``limit`` traces come back and the
cursor is "now". The cursor is the traces table's rowid: the server's single writer commits rows
in rowid order, so a cursor never skips a trace committed later.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Query
from pydantic import UUID4

if TYPE_CHECKING:
    from galileo_otel.server.app import ServerState
    from galileo_otel.server.store import Store

__all__ = ["MAX_TAIL_LIMIT", "add_tail_route", "traces_after"]

MAX_TAIL_LIMIT = 1000

_SELECT = """
SELECT t.rowid AS cursor, t.id AS id, t.session_id AS session_id, t.body AS body,
       t.is_complete AS is_complete, s.name AS session_name, s.external_id AS session_external_id,
       json_extract(s.user_metadata, '$."user.id"') AS user,
       (SELECT COUNT(*) FROM spans p WHERE p.trace_id = t.id) AS num_spans,
       (SELECT COUNT(*) FROM spans p WHERE p.trace_id = t.id
            AND CAST(json_extract(p.body, '$.status_code') AS INTEGER) >= 400) AS num_errors
FROM traces t LEFT JOIN sessions s ON s.id = t.session_id
WHERE t.project_id = ? AND t.rowid > ? AND t.rowid <= ?
"""


def traces_after(
    store: Store,
    project_id: str,
    *,
    after: int | None,
    limit: int,
    log_stream_id: str | None = None,
    session: str | None = None,
    user: str | None = None,
) -> dict[str, Any]:
    """Traces of a project stored after cursor ``after`` (``None``: the newest ``limit``).

    Args:
        store: The server's store.
        project_id: The project.
        after: The cursor of the last trace already seen, or ``None`` to start from now.
        limit: At most this many traces.
        log_stream_id: Only this log stream.
        session: Only this session (its id or its external id).
        user: Only sessions whose ``user_metadata["user.id"]`` is this.

    Returns:
        ``{"traces": [...], "cursor": N}``, traces oldest first.
    """
    # The store's own per-thread connection: opened and closed by the store.
    conn = store._conn()
    # The high-water mark first, then rows at or below it: a row committed in between waits for
    # the next call instead of being skipped.
    (top,) = conn.execute(
        "SELECT COALESCE(MAX(rowid), 0) FROM traces WHERE project_id = ?", (project_id,)
    ).fetchone()
    sql = _SELECT
    params: list[Any] = [project_id, -1 if after is None else after, top]
    if log_stream_id is not None:
        sql += " AND t.log_stream_id = ?"
        params.append(log_stream_id)
    if session is not None:
        sql += " AND (t.session_id = ? OR s.external_id = ?)"
        params += [session, session]
    if user is not None:
        sql += " AND json_extract(s.user_metadata, '$.\"user.id\"') = ?"
        params.append(user)
    if after is None:
        sql += " ORDER BY t.rowid DESC LIMIT ?"
    else:
        sql += " ORDER BY t.rowid LIMIT ?"
    params.append(limit)
    rows = conn.execute(sql, params).fetchall()
    if after is None:
        rows.reverse()
        cursor = int(top)
    else:
        # A full page may stop short of the mark: the next call carries on from its last row.
        cursor = int(rows[-1]["cursor"]) if len(rows) == limit else int(top)
        cursor = max(cursor, after)
    traces = []
    for row in rows:
        record: dict[str, Any] = json.loads(row["body"])
        record.pop("spans", None)
        record.update(
            cursor=int(row["cursor"]),
            id=row["id"],
            session_id=row["session_id"],
            is_complete=bool(row["is_complete"]),
            session_name=row["session_name"],
            session_external_id=row["session_external_id"],
            user=row["user"],
            num_spans=int(row["num_spans"]),
            num_errors=int(row["num_errors"]),
        )
        traces.append(record)
    return {"traces": traces, "cursor": cursor}


def add_tail_route(api: APIRouter, state: ServerState) -> None:
    """Mount ``GET /local/projects/{project_id}/traces`` on the key-protected router."""
    from galileo_otel.server.app import _project_or_404

    @api.get("/local/projects/{project_id}/traces", tags=["local"])
    def traces_since(
        project_id: UUID4,
        after: Annotated[int | None, Query(ge=0)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_TAIL_LIMIT)] = 100,
        log_stream_id: Annotated[uuid.UUID | None, Query()] = None,
        session: Annotated[str | None, Query()] = None,
        user: Annotated[str | None, Query()] = None,
    ) -> dict[str, Any]:
        """Local extension: traces stored after cursor ``after``, oldest first (``tail``)."""
        _project_or_404(state, project_id)
        return traces_after(
            state.store,
            str(project_id),
            after=after,
            limit=limit,
            log_stream_id=str(log_stream_id) if log_stream_id is not None else None,
            session=session,
            user=user,
        )
