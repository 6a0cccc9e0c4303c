"""multiprocessing pools with one task per child: every task's trace arrives.

A forked child of ``multiprocessing.Pool`` ends through ``os._exit`` after its finalizers; a
spawned one exits its interpreter. ``with Pool(...)`` ends by ``terminate()``: SIGTERM to the
children still there, perhaps in the middle of their exit flush. The tasks module calls
``configure()`` at import and nothing else.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest_exit import TASKS_MODULE, app_env, assert_turns_arrived, stored_traces

# Real processes start, import the app and end: slow on a loaded machine, hence the timeout.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

DRIVER = """
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor

import exit_tasks

if __name__ == "__main__":
    kind, method, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    turns = [(i, f"conversation-{i % 3}") for i in range(n)]
    if kind == "pool":
        context = multiprocessing.get_context(method)
        with context.Pool(2, maxtasksperchild=1) as pool:
            done = pool.starmap(exit_tasks.turn, turns, chunksize=1)
    else:
        with ProcessPoolExecutor(2, max_tasks_per_child=1) as executor:
            done = list(executor.map(exit_tasks.turn, *zip(*turns)))
    print(len({pid for _, pid in done}))
"""

# A spawned child imports the app afresh (seconds on a loaded machine): fewer of those.
N_TASKS = {"fork": 9, "spawn": 4, "default": 4}


@pytest.mark.parametrize(
    ("kind", "method"),
    [
        ("pool", "fork"),
        ("pool", "spawn"),
        pytest.param(
            "executor",
            "default",
            marks=pytest.mark.skipif(
                sys.version_info < (3, 11),
                reason="ProcessPoolExecutor(max_tasks_per_child=...) is new in Python 3.11",
            ),
        ),
    ],
)
def test_pool_one_task_per_child_delivers_every_trace(
    local_server: Any, tmp_path: Path, kind: str, method: str
) -> None:
    (tmp_path / "exit_tasks.py").write_text(TASKS_MODULE)
    (tmp_path / "driver.py").write_text(DRIVER)
    project = f"{kind}-{method}"
    n = N_TASKS[method]
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "driver.py"), kind, method, str(n)],
        cwd=tmp_path,
        env=app_env(local_server.url, tmp_path, project),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.split() == [str(n)]  # one task per child process
    assert "Traceback" not in proc.stderr, proc.stderr[-4000:]
    assert_turns_arrived(local_server.url, project, {i: f"conversation-{i % 3}" for i in range(n)})


DRAIN = """
import galileo_otel

import exit_tasks  # configure() at import, as the app's next process does

print(galileo_otel.force_flush(60.0))
"""


def test_a_child_that_cannot_deliver_leaves_its_traces_to_the_next_process(
    local_server: Any, tmp_path: Path
) -> None:
    """The server hangs: each child gives up after exit_timeout with its batch in the spool."""
    (tmp_path / "exit_tasks.py").write_text(TASKS_MODULE)
    (tmp_path / "driver.py").write_text(DRIVER)
    (tmp_path / "drain.py").write_text(DRAIN)
    env = app_env(local_server.url, tmp_path, "spooled", GALILEO_EXIT_TIMEOUT="1")
    n = 4
    local_server.faults.hang("traces", max_hang_s=60.0)
    try:
        proc = subprocess.run(
            [sys.executable, str(tmp_path / "driver.py"), "pool", "fork", str(n)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr[-4000:]
        assert proc.stdout.split() == [str(n)]
    finally:
        local_server.faults.clear()
        local_server.faults.release()
    assert stored_traces(local_server.url, "spooled") == []  # nothing got through
    drain = subprocess.run(
        [sys.executable, str(tmp_path / "drain.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert drain.returncode == 0, drain.stderr[-4000:]
    assert drain.stdout.split() == ["True"], drain.stderr[-4000:]
    assert_turns_arrived(
        local_server.url, "spooled", {i: f"conversation-{i % 3}" for i in range(n)}
    )
