"""SIGTERM during a burst: every trace the app finished arrives, and the process still dies by
the signal (the handler delivers, then re-raises SIGTERM with its default action)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest_exit import app_env, stored_traces

# Real processes start, import the app and end: slow on a loaded machine, hence the timeout.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

BURST_APP = """
import os

from opentelemetry import trace

import galileo_otel

galileo_otel.configure()
tracer = trace.get_tracer("burst")
for i in range(1_000_000):  # ends by SIGTERM long before
    with tracer.start_as_current_span(f"turn {i}", attributes={"session.id": f"c{i % 3}"}):
        with tracer.start_as_current_span("llm"):
            pass
    os.write(1, f"{i}\\n".encode())  # turn i has ended: the test now counts on it
"""

# Turns the app reports finished before the test sends SIGTERM.
BEFORE_SIGNAL = 300


def _burst(url: str, tmp_path: Path, project: str, **env: str) -> tuple[int, int, str]:
    (tmp_path / "burst.py").write_text(BURST_APP)
    errors = tmp_path / "stderr.txt"
    with errors.open("w") as err_file:
        proc = subprocess.Popen(
            [sys.executable, str(tmp_path / "burst.py")],
            env=app_env(url, tmp_path, project, **env),
            stdout=subprocess.PIPE,
            stderr=err_file,
            text=True,
        )
    try:
        assert proc.stdout is not None
        last = -1
        while last + 1 < BEFORE_SIGNAL:  # bounded: the app prints a line per turn
            line = proc.stdout.readline()
            if not line:
                break
            last = int(line)
        proc.send_signal(signal.SIGTERM)
        # The same buffered reader: lines it read ahead are not lost.
        for line in proc.stdout.read().split():
            last = int(line)
        proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
    err = errors.read_text(errors="replace")
    return last, proc.returncode, err


def test_sigterm_during_a_burst_loses_no_finished_trace(local_server: Any, tmp_path: Path) -> None:
    # The bound is generous here: the test is about what is delivered, not how fast.
    last, code, err = _burst(local_server.url, tmp_path, "burst", GALILEO_EXIT_TIMEOUT="60")
    assert code == -signal.SIGTERM, err[-4000:]  # not swallowed: the default action ran
    assert last + 1 >= BEFORE_SIGNAL
    names = Counter(t["name"] for t in stored_traces(local_server.url, "burst"))
    missing = [i for i in range(last + 1) if names[f"turn {i}"] != 1]
    assert missing == [], f"{len(missing)} finished traces lost or doubled: {missing[:20]}"
    # At most the turn the signal interrupted comes on top, complete or not: its root may not
    # have ended, and an incomplete trace is named after the span that did ("llm").
    extra = set(names) - {f"turn {i}" for i in range(last + 2)}
    assert extra <= {"llm"} and names["llm"] <= 1, names
    assert not ("llm" in names and f"turn {last + 1}" in names)
    traces = stored_traces(local_server.url, "burst")
    by_conversation: dict[str, set[str]] = {}
    for t in traces:
        if t["name"] == "llm":
            # The interrupted turn's incomplete part: its session.id was on the root that never
            # ended, so it joins the process's automatic session, not its conversation's.
            continue
        by_conversation.setdefault(t["session_external_id"], set()).add(t["session_id"])
    assert {k: len(v) for k, v in by_conversation.items()} == {"c0": 1, "c1": 1, "c2": 1}
