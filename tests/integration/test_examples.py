"""Every example runs against a real local server, and what it sent is there."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from conftest_cli import BIN, EXAMPLES, explain, galileo_env, run, sessions_of

pytestmark = pytest.mark.integration


def _by_external_id(sessions: list[dict[str, Any]]) -> dict[str, int]:
    return {str(s.get("external_id")): int(s.get("num_traces") or 0) for s in sessions}


def test_env_only_under_opentelemetry_instrument(local_server: Any) -> None:
    # Zero-code: no OTEL_TRACES_EXPORTER, only GALILEO_* (plus the loader's pick of our distro
    # and configurator, since opentelemetry-distro is installed in dev too).
    env = {
        **galileo_env(local_server, project="env-only"),
        "OTEL_PYTHON_DISTRO": "galileo",
        "OTEL_PYTHON_CONFIGURATOR": "galileo",
    }
    proc = run(
        [str(BIN / "opentelemetry-instrument"), sys.executable, str(EXAMPLES / "env_only.py")], env
    )
    assert proc.returncode == 0, explain(proc)
    assert "via TracerProvider" in proc.stdout, explain(proc)
    counts = _by_external_id(sessions_of(local_server, "env-only"))
    assert counts == {"conv-a": 3, "conv-b": 2, "conv-c": 1}, explain(proc)


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
