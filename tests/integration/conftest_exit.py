"""Helpers of the tests of processes that end: the app's environment, the traces that arrived.

Each test runs an app as a user would (its own interpreter, ``configure()`` from ``GALILEO_*``
variables) against the local server of the test process, then reads what the server stored.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

from conftest_delivery import KEY, get, project_id

ROOT = Path(__file__).resolve().parents[2]

# The batch delay is far away: after the first batch (which ships once the short first delay
# after a quiet start runs out), nothing ships on its own while the app runs, so the later
# traces that arrive were delivered by the way their process ended.
TASKS_MODULE = '''
"""An app's task code: configure() at import, nothing else of ours."""
import os

from opentelemetry import trace

import galileo_otel

galileo_otel.configure()
tracer = trace.get_tracer("exit-tasks")


def turn(i, conversation):
    """One turn of a conversation: a trace of two spans."""
    with tracer.start_as_current_span(f"turn {i}", attributes={"session.id": conversation}):
        with tracer.start_as_current_span("llm"):
            pass
    return i, os.getpid()
'''


def app_env(url: str, tmp_path: Path, project: str, **extra: str) -> dict[str, str]:
    """The environment of an app process: ``GALILEO_*`` pointing at the local server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GALILEO_", "OTEL_"))}
    env.update(
        GALILEO_API_KEY=KEY,
        GALILEO_API_URL=url,
        GALILEO_PROJECT=project,
        GALILEO_LOG_STREAM="default",
        GALILEO_SPOOL_DIR=str(tmp_path / "spool"),
        GALILEO_SESSION_STORE=f"sqlite:///{tmp_path / 'sessions.db'}",
        GALILEO_BATCH_DELAY="60",
        GALILEO_STARTUP_MESSAGE="false",
        # The exit flush's bound (default 5 s): generous here, so a machine busy with other
        # tests does not turn "delivered at exit" into "left in the spool for the next process".
        GALILEO_EXIT_TIMEOUT="30",
        PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT / "tests")]),
    )
    env.update(extra)
    return env


def stored_traces(url: str, project: str) -> list[dict[str, Any]]:
    """Every trace of ``project`` on the local server, with its session's external id."""
    pid = project_id(url, project)
    out: list[dict[str, Any]] = []
    after = 0
    while True:
        page = get(url, f"/local/projects/{pid}/traces?after={after}&limit=1000")
        out += page["traces"]
        if page["cursor"] == after or not page["traces"]:
            return out
        after = page["cursor"]


def assert_turns_arrived(url: str, project: str, turns: dict[int, str]) -> None:
    """Each turn ``i`` arrived once, in one session per conversation ``turns[i]``."""
    traces = stored_traces(url, project)
    names = Counter(t["name"] for t in traces)
    missing = sorted(i for i in turns if names[f"turn {i}"] == 0)
    assert missing == [], f"{len(missing)} of {len(turns)} traces lost: {missing}"
    assert sorted(names.elements()) == sorted(f"turn {i}" for i in turns)
    sessions: dict[str, set[str]] = {}
    for t in traces:
        i = int(t["name"].split()[1])
        assert t["session_external_id"] == turns[i]
        sessions.setdefault(turns[i], set()).add(t["session_id"])
    assert {c: len(ids) for c, ids in sessions.items()} == {c: 1 for c in set(turns.values())}
