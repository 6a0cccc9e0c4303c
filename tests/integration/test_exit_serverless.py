"""A frozen serverless process holds nothing undelivered: the test SIGSTOPs the app the moment
its handler returns, as AWS Lambda freezes the sandbox, and finds the trace already stored."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest_exit import app_env, stored_traces

# Real processes start, import the app and end: slow on a loaded machine, hence the timeout.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

RUNTIME = """
import asyncio
import json
import os
import sys

from opentelemetry import trace

import galileo_otel

galileo_otel.configure()
tracer = trace.get_tracer("lambda")


class Context:  # the part of AWS Lambda's context the decorator reads
    def get_remaining_time_in_millis(self):
        return 30_000


def work(event):
    with tracer.start_as_current_span(
        f"turn {event['i']}", attributes={"session.id": event["conversation"]}
    ):
        with tracer.start_as_current_span("llm"):
            pass
    return {"statusCode": 200, "i": event["i"]}


@galileo_otel.serverless_handler
def handler(event, context):
    return work(event)


@galileo_otel.serverless_handler
async def async_handler(event, context):
    await asyncio.sleep(0)
    return work(event)


@galileo_otel.serverless_handler(timeout_s=20)
def plain(event):  # no Lambda context: the configured bound
    return work(event)


# The runtime's loop: one invocation per line; the answer goes out once the handler returned.
for line in sys.stdin:
    event = json.loads(line)
    if event["kind"] == "async":
        result = asyncio.run(async_handler(event, Context()))
    elif event["kind"] == "plain":
        result = plain(event)
    else:
        result = handler(event, Context())
    os.write(1, (json.dumps(result) + "\\n").encode())
"""


def test_trace_is_stored_before_the_handler_returns(local_server: Any, tmp_path: Path) -> None:
    (tmp_path / "runtime.py").write_text(RUNTIME)
    proc = subprocess.Popen(
        [sys.executable, str(tmp_path / "runtime.py")],
        env=app_env(local_server.url, tmp_path, "lambda"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    invocations = ["sync", "async", "plain", "sync"]
    try:
        for i, kind in enumerate(invocations):
            event = {"i": i, "kind": kind, "conversation": "conversation-1"}
            proc.stdin.write(json.dumps(event) + "\n")
            proc.stdin.flush()
            answer = proc.stdout.readline()
            os.kill(proc.pid, signal.SIGSTOP)  # frozen: no thread of it runs any more
            try:
                assert json.loads(answer) == {"statusCode": 200, "i": i}
                names = [t["name"] for t in stored_traces(local_server.url, "lambda")]
                assert names == [f"turn {j}" for j in range(i + 1)], kind
            finally:
                os.kill(proc.pid, signal.SIGCONT)
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        proc.stdout.close()
    sessions = {t["session_id"] for t in stored_traces(local_server.url, "lambda")}
    assert len(sessions) == 1
