"""uvicorn, then SIGTERM: every request's trace arrives, one session per conversation, in each
way the deployment guide gives: ``configure()`` before uvicorn serves (2 workers), zero-code
(``opentelemetry-instrument uvicorn``), and ``uvicorn module:app`` with a lifespan flush.

On SIGTERM a uvicorn worker drains, restores the SIGTERM handler it found when it started
serving and raises the signal again. When ``configure()`` ran first, that handler is
galileo-otel's, which delivers before the process ends. ``uvicorn module:app`` from the command
line imports the app only after installing its own handler: it then restores the default
action, and the worker ends by SIGTERM without running any exit hook (see the deployment guide).
"""

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
from conftest_redis import free_port

# Real processes start, import the app and end: slow on a loaded machine, hence the timeout.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

# The app; {setup} is what the way in needs at import, {on_shutdown} what its lifespan
# shutdown runs.
ASGI_APP = """
import os
from urllib.parse import parse_qs

from opentelemetry import trace

import galileo_otel

{setup}
tracer = trace.get_tracer("uvicorn-exit")


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                {on_shutdown}
                await send({"type": "lifespan.shutdown.complete"})
                return
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    if "i" in query:
        with tracer.start_as_current_span(f"turn {query['i']}", attributes={"session.id": query["c"]}):
            with tracer.start_as_current_span("llm"):
                pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(os.getpid()).encode()})
"""

# Launched as `python serve.py`: configure() first; uvicorn's spawned workers import this
# module again (as __mp_main__), so configure() runs first in each of them too.
LAUNCHER = """
import galileo_otel
import uvicorn

galileo_otel.configure()

if __name__ == "__main__":
    import sys

    import inspect

    options = dict(host="127.0.0.1", port=int(sys.argv[1]), workers=2)
    if "timeout_worker_healthcheck" in inspect.signature(uvicorn.Config).parameters:
        # A worker imports this module (and configure()s) before it answers health checks:
        # seconds on a loaded machine, longer than the default 5 s.
        options["timeout_worker_healthcheck"] = 120
    uvicorn.run("exit_asgi:app", **options)
"""

N_REQUESTS = 8
START_TIMEOUT_S = 90.0


BIN = Path(sys.executable).parent


def _serve_then_sigterm(
    local_server: Any,
    tmp_path: Path,
    project: str,
    command: list[str],
    *,
    setup: str = "galileo_otel.configure()",
    on_shutdown: str = "pass",
    **env: str,
) -> tuple[dict[int, str], int, str]:
    """Serve ``exit_asgi:app`` by ``command`` (``{port}`` filled in), make N_REQUESTS turns in
    3 conversations, SIGTERM the server; returns the turns, its exit code and its output."""
    app = ASGI_APP.replace("{setup}", setup).replace("{on_shutdown}", on_shutdown)
    (tmp_path / "exit_asgi.py").write_text(app)
    (tmp_path / "serve.py").write_text(LAUNCHER)
    port = free_port()
    command = [part.replace("{port}", str(port)) for part in command]
    log = tmp_path / "uvicorn.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command,
            env=app_env(local_server.url, tmp_path, project, **env),
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    turns = {i: f"conversation-{i % 3}" for i in range(N_REQUESTS)}
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:  # until a worker answers (bounded); that probe makes no trace
            try:
                httpx.get(base + "/", timeout=5)
                break
            except httpx.TransportError:
                assert proc.poll() is None, log.read_text(errors="replace")
                assert time.monotonic() < deadline, "uvicorn did not start"
                time.sleep(0.05)
        for i, conversation in turns.items():
            answer = httpx.get(base + "/", params={"i": i, "c": conversation}, timeout=30)
            assert answer.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    return turns, code, log.read_text(errors="replace")


def test_uvicorn_workers_deliver_every_trace_on_sigterm(local_server: Any, tmp_path: Path) -> None:
    command = [sys.executable, "serve.py", "{port}"]
    turns, code, output = _serve_then_sigterm(local_server, tmp_path, "uvicorn", command)
    assert code == 0, output[-4000:]
    assert "Traceback" not in output, output[-4000:]
    assert_turns_arrived(local_server.url, "uvicorn", turns)


def test_zero_code_uvicorn_delivers_every_trace_on_sigterm(
    local_server: Any, tmp_path: Path
) -> None:
    """``opentelemetry-instrument uvicorn module:app``: our configurator runs before uvicorn
    serves, so the handler uvicorn puts back at exit is ours. The app has no line of ours."""
    command = [str(BIN / "opentelemetry-instrument"), str(BIN / "uvicorn"), "exit_asgi:app"]
    command += ["--host", "127.0.0.1", "--port", "{port}"]
    turns, code, output = _serve_then_sigterm(
        local_server,
        tmp_path,
        "uvicorn-zero-code",
        command,
        setup="",
        OTEL_PYTHON_DISTRO="galileo",
        OTEL_PYTHON_CONFIGURATOR="galileo",
    )
    assert "Traceback" not in output, output[-4000:]
    assert_turns_arrived(local_server.url, "uvicorn-zero-code", turns)
    assert code in (0, -signal.SIGTERM), output[-4000:]


def test_uvicorn_command_line_delivers_every_trace_on_sigterm(
    local_server: Any, tmp_path: Path
) -> None:
    """``uvicorn module:app``, one process: uvicorn 0.47 and later import the app before they
    install their SIGTERM handler, so the one they put back at exit is ours."""
    uvicorn = pytest.importorskip("uvicorn")
    if _version(uvicorn.__version__) < (0, 47):
        pytest.skip(f"uvicorn {uvicorn.__version__} imports the app after its SIGTERM handler")
    command = [str(BIN / "uvicorn"), "exit_asgi:app", "--host", "127.0.0.1", "--port", "{port}"]
    turns, code, output = _serve_then_sigterm(local_server, tmp_path, "uvicorn-cli", command)
    assert "Traceback" not in output, output[-4000:]
    assert_turns_arrived(local_server.url, "uvicorn-cli", turns)
    assert code in (0, -signal.SIGTERM), output[-4000:]


def test_uvicorn_workers_from_the_command_line_deliver_with_a_lifespan_flush(
    local_server: Any, tmp_path: Path
) -> None:
    """``uvicorn module:app --workers 2``: each worker imports the app after installing its
    own SIGTERM handler, so it ends by the default action; the lifespan shutdown's
    ``aforce_flush`` delivers first."""
    command = [str(BIN / "uvicorn"), "exit_asgi:app", "--host", "127.0.0.1", "--port", "{port}"]
    command += ["--workers", "2"]
    turns, code, output = _serve_then_sigterm(
        local_server,
        tmp_path,
        "uvicorn-lifespan",
        command,
        on_shutdown="assert await galileo_otel.aforce_flush(timeout_s=30)",
    )
    assert "Traceback" not in output, output[-4000:]
    assert_turns_arrived(local_server.url, "uvicorn-lifespan", turns)
    assert code == 0, output[-4000:]


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:2] if part.isdigit())
