"""Sessions that heal: a local server that lost its sessions while a SQLite store remembers them.

The server is the real local server over HTTP on 127.0.0.1. It is restored from a backup taken
before the conversations began (its projects and log streams are there, its sessions are not),
on the same port; the next traces of those conversations must arrive in recreated sessions,
with nothing dead-lettered.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest_delivery import KEY, get, project_id, settings_for
from test_delivery_faults import App, pipeline_for

from galileo_otel.api.client import GalileoClient
from galileo_otel.export.spool import dead_in, pending_in
from galileo_otel.server import serve_in_thread

pytestmark = pytest.mark.integration


def backup(db: Path, to: Path) -> None:
    """A consistent copy of a live SQLite database (SQLite's online backup)."""
    src, dst = sqlite3.connect(db), sqlite3.connect(to)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


def sessions_of(url: str) -> list[dict[str, Any]]:
    pid = project_id(url)
    req = {"limit": 100}
    import json
    import urllib.request

    request = urllib.request.Request(
        f"{url}/v2/projects/{pid}/sessions/search",
        data=json.dumps(req).encode(),
        headers={"Galileo-API-Key": KEY, "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return list(json.loads(resp.read())["records"])


@pytest.mark.parametrize(
    ("same_process", "reliable"),
    # Fire-and-forget is not here: the server answers ``reliable: false`` before it stores the
    # traces, so its answer cannot say that the session is gone.
    [(True, True), (False, True)],
    ids=["same-process", "next-process"],
)
def test_a_server_restored_without_its_sessions_gets_them_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, same_process: bool, reliable: bool
) -> None:
    db, saved = tmp_path / "galileo.db", tmp_path / "before.db"
    store = tmp_path / "sessions.db"
    with serve_in_thread(db_path=db, api_key=KEY) as first:
        port = first.port
        with GalileoClient(api_url=first.url, api_key=KEY) as client:
            client.resolve_destination(project="delivery", log_stream="default", create=True)
        backup(db, saved)  # the project and its log stream, no sessions yet
        settings = settings_for(
            first.url, tmp_path / "spool", session_store=f"sqlite:///{store}", reliable=reliable
        )
        app = App(pipeline_for(settings))
        app.turns(6, sessions=3)
        assert app.pipeline.force_flush(20.0) is True
        before = {s["external_id"]: s["id"] for s in sessions_of(first.url)}
        assert sorted(before) == ["conv-0", "conv-1", "conv-2"]
        if not same_process:
            assert app.pipeline.shutdown(10.0) is True

    # The server comes back from the backup, on the same address: it never heard of them.
    with serve_in_thread(db_path=saved, api_key=KEY, port=port) as second:
        assert sessions_of(second.url) == []
        if not same_process:
            app = App(pipeline_for(settings))  # the next run: only the store remembers
        with caplog.at_level(logging.WARNING, logger="galileo_otel.sessions.tracker"):
            app.turns(6, sessions=3, start=6)  # the same conversations go on
            assert app.pipeline.force_flush(20.0) is True
        stats = app.pipeline.stats()
        assert stats["traces_dead_lettered"] == 0
        assert stats["sessions.sessions_recreated"] == 3
        assert stats["sessions.sessions_healed"] == 3
        after = {s["external_id"]: s for s in sessions_of(second.url)}
        assert sorted(after) == ["conv-0", "conv-1", "conv-2"]
        for key, session in after.items():
            assert session["id"] != before[key]  # a new session, made again
            traces = get(
                second.url, f"/v2/projects/{project_id(second.url)}/sessions/{session['id']}/traces"
            )["traces"]
            assert len(traces) == 2  # this run's two turns of the conversation
        assert get(second.url, "/local/stats")["traces"] == 6
        # One log line, naming the store; the spool holds nothing set aside.
        lines = [
            r.getMessage() for r in caplog.records if "does not know session" in r.getMessage()
        ]
        assert len(lines) == 1 and f"SQLite session store {store}" in lines[0]
        assert app.pipeline.shutdown(10.0) is True
    if reliable:
        assert dead_in(tmp_path / "spool") == [] and pending_in(tmp_path / "spool") == []
    else:
        assert stats["traces_failed"] == 0
    # The store now holds the new ids: a later run uses them as they are.
    conn = sqlite3.connect(store)
    try:
        ids = {row[0] for row in conn.execute("SELECT galileo_id FROM sessions")}
    finally:
        conn.close()
    assert {s["id"] for s in after.values()} <= ids
