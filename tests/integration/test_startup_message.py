"""A real app process with no logging set up sees where its traces go, once, on stderr."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from conftest_cli import explain, galileo_env, run

pytestmark = pytest.mark.integration

APP = """
import logging, sys
if sys.argv[1] == "logging":
    logging.basicConfig(level=logging.INFO, format="LOG %(message)s")
import galileo_otel
handle = galileo_otel.configure()
handle.shutdown()
"""


def test_app_without_logging_gets_one_startup_line(local_server: Any) -> None:
    env = galileo_env(local_server, project="startup", log_stream="prod")
    proc = run([sys.executable, "-c", APP, "plain"], env)
    assert proc.returncode == 0, explain(proc)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("galileo-otel:")]
    assert len(lines) == 1, explain(proc)
    (line,) = lines
    assert f"sending traces to {local_server.url}, project 'startup'" in line
    assert (
        "log stream 'prod' (" in line and "delivery reliable (confirmed, retried, no spool)" in line
    )
    assert local_server.api_key not in proc.stderr


def test_app_with_logging_gets_it_through_logging_only(local_server: Any) -> None:
    env = galileo_env(local_server, project="startup")
    proc = run([sys.executable, "-c", APP, "logging"], env)
    assert proc.returncode == 0, explain(proc)
    said = [line for line in proc.stderr.splitlines() if "sending traces to" in line]
    assert len(said) == 1 and said[0].startswith("LOG galileo-otel: sending traces to"), explain(
        proc
    )


def test_opt_out_and_disabled(local_server: Any) -> None:
    env = {**galileo_env(local_server, project="startup"), "GALILEO_STARTUP_MESSAGE": "false"}
    proc = run([sys.executable, "-c", APP, "plain"], env)
    assert proc.returncode == 0 and "galileo-otel" not in proc.stderr, explain(proc)
    proc = run([sys.executable, "-c", APP, "plain"], {"GALILEO_LOGGING_DISABLED": "true"})
    assert proc.returncode == 0, explain(proc)
    assert proc.stderr == (
        "galileo-otel: GALILEO_LOGGING_DISABLED is set; traces are not sent to Galileo\n"
    )
