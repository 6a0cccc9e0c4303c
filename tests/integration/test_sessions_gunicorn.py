"""gunicorn --preload with 4 workers: why the memory store splits conversations, and the fix.

Each worker inherits its own copy of the memory store made in the master, so a conversation
whose turns reach several workers becomes one session per worker. The SQLite store shares one
file between the workers: one session per conversation, created once.
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest_redis import free_port, require

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HERE = Path(__file__).parent
CONVERSATIONS, TURNS = 16, 3


def run_gunicorn(server: Any, tmp_path: Path, store: str) -> tuple[dict[str, set[str]], str]:
    """Serve the app with gunicorn --preload -w 4, drive the conversations, stop it gracefully.

    Returns the worker pids that served each conversation and gunicorn's stderr.
    """
    try:
        import gunicorn  # noqa: F401
    except ImportError:
        require("gunicorn", "pip install -e '.[dev]'")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GALILEO_", "OTEL_"))}
    env.update(
        GALILEO_API_URL=server.url,
        GALILEO_API_KEY=server.api_key,
        GALILEO_PROJECT="test",
        GALILEO_LOG_STREAM="default",
        GALILEO_SPOOL_DIR="off",
        GALILEO_BATCH_DELAY="0.05",
        GALILEO_SESSION_STORE=store,
        PYTHONPATH=str(HERE),
    )
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "gunicorn", "--preload", "-w", "4"),
                *("-b", f"127.0.0.1:{port}", "--control-socket", str(tmp_path / "gunicorn.ctl")),
                "gunicorn_app:application",
            ],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    served: dict[str, set[str]] = collections.defaultdict(set)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:  # until a worker answers (bounded)
            try:
                httpx.get(base + "/", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.05)

        def conversation(i: int) -> None:
            with httpx.Client(base_url=base, timeout=10) as client:
                for _ in range(TURNS):
                    answer = client.get("/", headers={"X-Session-Id": f"conv-{i}"})
                    served[f"conv-{i}"].add(answer.text)

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(conversation, range(CONVERSATIONS)))
    finally:
        proc.send_signal(signal.SIGTERM)  # graceful: each worker flushes at exit
        proc.wait(60)
    return served, log.read_text(errors="replace")


def sessions_by_key(client: Any) -> dict[str, list[dict[str, Any]]]:
    by_key: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for record in client.iter_sessions():
        by_key[record.get("external_id") or ""].append(record)
    return by_key


def test_sqlite_store_one_session_per_conversation_across_preloaded_workers(
    local_project: Any, tmp_path: Path
) -> None:
    server, client, _ = local_project
    served, _log = run_gunicorn(server, tmp_path, f"sqlite:///{tmp_path / 'sessions.db'}")
    by_key = sessions_by_key(client)
    warmup = by_key.pop("", [])  # the readiness probe carried no session id
    assert len(warmup) <= 4
    assert sorted(by_key) == sorted(served)
    assert all(len(v) == 1 and v[0]["num_traces"] == TURNS for v in by_key.values())
    # the point: several workers served most conversations, and still one session each
    assert any(len(pids) > 1 for pids in served.values())


def test_memory_store_under_preload_is_per_worker_and_says_so(
    local_project: Any, tmp_path: Path
) -> None:
    server, client, _ = local_project
    served, log = run_gunicorn(server, tmp_path, "memory")
    by_key = sessions_by_key(client)
    by_key.pop("", None)
    # one session per (conversation, worker that served it): never two in one worker
    for key, pids in served.items():
        assert len(by_key[key]) == len(pids)
        assert sum(s["num_traces"] for s in by_key[key]) == TURNS
    assert "GALILEO_SESSION_STORE=sqlite" in log  # each worker said it once
