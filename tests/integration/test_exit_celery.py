"""A real Celery worker (prefork, one task per child, Redis broker): every task's trace arrives.

Each pool child runs one task and leaves through ``os._exit`` (billiard), which runs no
``atexit`` hook; the tasks module calls ``configure()`` at import and nothing else. A warm
shutdown (SIGTERM) then ends the worker.
"""

from __future__ import annotations

import gc
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest_exit import TASKS_MODULE, app_env, assert_turns_arrived
from conftest_redis import RedisServer, require

# Real processes start, import the app and end: slow on a loaded machine, hence the timeout.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

CELERY_APP = """
import os

from celery import Celery

import exit_tasks

app = Celery("exit_app", broker=os.environ["BROKER_URL"], backend=os.environ["BROKER_URL"])
app.conf.worker_max_tasks_per_child = 1
app.conf.worker_prefetch_multiplier = 1
app.conf.broker_connection_retry_on_startup = True
app.task(name="turn")(exit_tasks.turn)
"""

N_TASKS = 9
CONCURRENCY = 3
RESULT_TIMEOUT_S = 90.0


def _celery() -> Any:
    try:
        import celery
    except ImportError:
        require("celery", "pip install -e '.[dev]' (it lists celery[redis])")
    return celery


def test_celery_prefork_one_task_per_child_delivers_every_trace(
    local_server: Any, redis_server: RedisServer, tmp_path: Path
) -> None:
    celery = _celery()
    broker = f"redis://127.0.0.1:{redis_server.port}/5"
    client = redis_server.client()
    try:
        client.execute_command("SELECT", 5)
        client.flushdb()
    finally:
        client.close()
    (tmp_path / "exit_tasks.py").write_text(TASKS_MODULE)
    (tmp_path / "exit_app.py").write_text(CELERY_APP)
    env = app_env(local_server.url, tmp_path, "celery", BROKER_URL=broker)
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "exit_app",
            "worker",
            "--pool=prefork",
            f"--concurrency={CONCURRENCY}",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    sender = celery.Celery("sender", broker=broker, backend=broker)
    results: list[Any] = []
    try:
        turns = {i: f"conversation-{i % 3}" for i in range(N_TASKS)}
        results += [sender.send_task("turn", args=(i, turns[i])) for i in turns]
        done = [r.get(timeout=RESULT_TIMEOUT_S) for r in results]
        pids = {pid for _, pid in done}
        assert len(pids) == N_TASKS  # one task per child: every task ran in its own process
        worker.send_signal(signal.SIGTERM)  # warm shutdown
        assert worker.wait(timeout=60) == 0
    finally:
        # Celery's AsyncResult.__del__ unsubscribes on the result backend: let it run now, while
        # redis-server is still up, not at interpreter exit (a refused connection there is an
        # unraisable exception that fails the test run).
        results.clear()
        gc.collect()
        sender.close()
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=10)
        log.close()
    output = (tmp_path / "worker.log").read_text(errors="replace")
    assert "Traceback" not in output, output[-4000:]
    assert_turns_arrived(local_server.url, "celery", turns)
