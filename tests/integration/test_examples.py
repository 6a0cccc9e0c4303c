"""Every example runs against a real local server, and what it sent is there."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
from conftest_cli import BIN, EXAMPLES, REPO, explain, galileo_env, run, sessions_of

pytestmark = pytest.mark.integration


def _by_external_id(sessions: list[dict[str, Any]]) -> dict[str, int]:
    return {str(s.get("external_id")): int(s.get("num_traces") or 0) for s in sessions}


@pytest.mark.parametrize(
    "picks",
    [
        {"OTEL_PYTHON_DISTRO": "galileo", "OTEL_PYTHON_CONFIGURATOR": "galileo"},
        {"OTEL_PYTHON_DISTRO": "galileo"},  # the distro picks our configurator itself
    ],
)
def test_env_only_under_opentelemetry_instrument(local_server: Any, picks: dict[str, str]) -> None:
    # Zero-code: no OTEL_TRACES_EXPORTER, only GALILEO_* (plus the loader's pick of our distro,
    # since opentelemetry-distro, with a distro and a configurator of its own, is in dev too).
    env = {**galileo_env(local_server, project="env-only"), **picks}
    proc = run(
        [str(BIN / "opentelemetry-instrument"), sys.executable, str(EXAMPLES / "env_only.py")], env
    )
    assert proc.returncode == 0, explain(proc)
    assert "via TracerProvider" in proc.stdout, explain(proc)
    # The loader's "Configuration of configurator not loaded, galileo already loaded" is gone.
    assert "not loaded" not in proc.stderr, explain(proc)
    counts = _by_external_id(sessions_of(local_server, "env-only"))
    assert counts == {"conv-a": 3, "conv-b": 2, "conv-c": 1}, explain(proc)


def test_env_only_without_the_instrumenter_says_it_sent_nothing(local_server: Any) -> None:
    proc = run(
        [sys.executable, str(EXAMPLES / "env_only.py")],
        galileo_env(local_server, project="env-plain"),
    )
    assert proc.returncode == 1, explain(proc)
    assert "sent 6 traces" not in proc.stdout
    assert "env_only: sent nothing: no OpenTelemetry SDK is configured" in proc.stderr
    assert "opentelemetry-instrument python examples/env_only.py" in proc.stderr
    assert "pip install opentelemetry-instrumentation" in proc.stderr


def test_fastapi_chat_under_uvicorn_sends(local_server: Any) -> None:
    # As its docstring says: `uvicorn examples.fastapi_chat:app`, then requests, then Ctrl-C.
    import httpx
    from conftest_redis import free_port

    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GALILEO_", "OTEL_"))}
    base.pop("PYTHONPATH", None)
    env = {**base, **galileo_env(local_server, project="fastapi-uvicorn")}
    proc = subprocess.Popen(
        [str(BIN / "uvicorn"), "examples.fastapi_chat:app", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/chat"
        deadline = time.monotonic() + 30
        while True:  # until uvicorn listens (bounded)
            try:
                httpx.post(url, json={"message": "ping"}, headers={"X-Session-Id": "u-0"})
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "uvicorn did not start"
                time.sleep(0.1)
        for session_id, message in [("u-1", "hello"), ("u-1", "again"), ("u-2", "hi")]:
            answer = httpx.post(
                url, json={"message": message}, headers={"X-Session-Id": session_id}
            )
            assert answer.json() == {"reply": f"echo: {message}"}
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C: uvicorn runs the lifespan's shutdown
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    counts = _by_external_id(sessions_of(local_server, "fastapi-uvicorn"))
    assert counts == {"u-0": 1, "u-1": 2, "u-2": 1}, out


@pytest.mark.parametrize(
    ("example", "project", "expected"),
    [
        ("quickstart.py", "quickstart", {"conv-1": 2, "conv-2": 1}),
        ("openai_app.py", "openai-app", {"trip-1": 2, "trip-2": 1}),
        ("fastapi_chat.py", "fastapi-chat", {"web-1": 2, "web-2": 1, "web-3": 1}),
        ("count_sessions.py", "count-sessions", {"support-1": 3, "support-2": 1, "sales-1": 2}),
    ],
)
def test_example(local_server: Any, example: str, project: str, expected: dict[str, int]) -> None:
    proc = run(
        [sys.executable, str(EXAMPLES / example)], galileo_env(local_server, project=project)
    )
    assert proc.returncode == 0, explain(proc)
    assert _by_external_id(sessions_of(local_server, project)) == expected, explain(proc)
    if example == "count_sessions.py":
        assert (
            "total=3 num_traces>=2: 2 support with >1 trace: 1 support-2 or sales-1: 2"
            in proc.stdout
        )
        assert "support sessions: support-1, support-2" in proc.stdout
    if example == "openai_app.py":
        assert "Stub answer to:" in proc.stdout


def test_example_starts_an_embedded_server_when_no_url_is_set(tmp_path: Any) -> None:
    proc = run([sys.executable, str(EXAMPLES / "quickstart.py")], {"XDG_CACHE_HOME": str(tmp_path)})
    assert proc.returncode == 0, explain(proc)
    assert "started a local Galileo-compatible server at http://127.0.0.1:" in proc.stdout
    assert "delivered: True" in proc.stdout and "quickstart: " in proc.stdout
