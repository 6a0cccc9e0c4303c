"""gunicorn --preload --max-requests 1: each worker serves one request and is replaced; every
request's trace arrives, one session per conversation. ``configure()`` runs once, in the master
(at import of the app), and the workers are plain ``os.fork()`` children of it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest_exit import app_env, assert_turns_arrived
from conftest_redis import free_port, require

# Real processes start, import the app and end: slow on a loaded machine, hence the timeout.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

WSGI_APP = '''
import os

from opentelemetry import trace

import galileo_otel

galileo_otel.configure()
tracer = trace.get_tracer("gunicorn-exit")


def application(environ, start_response):
    """One turn per request: ?i=3&c=conversation-0."""
    query = dict(p.split("=") for p in environ.get("QUERY_STRING", "").split("&") if "=" in p)
    if "i" in query:
        with tracer.start_as_current_span(f"turn {query['i']}", attributes={"session.id": query["c"]}):
            with tracer.start_as_current_span("llm"):
                pass
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]
'''

N_REQUESTS = 6
START_TIMEOUT_S = 60.0


def test_gunicorn_max_requests_workers_deliver_every_trace(
    local_server: Any, tmp_path: Path
) -> None:
    try:
        import gunicorn  # noqa: F401
    except ImportError:
        require("gunicorn", "pip install -e '.[dev]'")
    (tmp_path / "exit_wsgi.py").write_text(WSGI_APP)
    port = free_port()
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "gunicorn", "--preload", "-w", "2"),
                *("--max-requests", "1", "-b", f"127.0.0.1:{port}"),
                # A worker forked just as SIGTERM arrives may miss it (gunicorn sets its signal
                # handlers after the fork) and is killed after this; it holds no trace yet.
                *("--graceful-timeout", "5"),
                *("--control-socket", str(tmp_path / "gunicorn.ctl")),
                "exit_wsgi:application",
            ],
            env=app_env(local_server.url, tmp_path, "gunicorn"),
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    turns = {i: f"conversation-{i % 3}" for i in range(N_REQUESTS)}
    pids: set[str] = set()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:  # until a worker answers (bounded); that probe makes no trace
            try:
                pids.add(httpx.get(base + "/", timeout=5).text)
                break
            except httpx.TransportError:
                assert proc.poll() is None, log.read_text(errors="replace")
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.05)
        for i, conversation in turns.items():
            answer = httpx.get(base + "/", params={"i": i, "c": conversation}, timeout=30)
            assert answer.status_code == 200
            pids.add(answer.text)
    finally:
        proc.send_signal(signal.SIGTERM)  # graceful: the last workers end too
        code = proc.wait(60)
    output = log.read_text(errors="replace")
    assert code == 0, output[-4000:]
    assert len(pids) == N_REQUESTS + 1  # a new worker for every request
    assert "Traceback" not in output, output[-4000:]
    assert_turns_arrived(local_server.url, "gunicorn", turns)
