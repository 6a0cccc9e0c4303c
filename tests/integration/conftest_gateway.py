"""A real ``galileo-otel gateway`` subprocess for the tests, in front of the local server."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
from conftest_redis import free_port

START_TIMEOUT_S = 60.0
KEY = "gateway-test-key-0123456789"  # what the local server requires (the gateway's upstream key)


def gateway_env(
    server_url: str, state: Path, *, project: str = "gw-project", **extra: str
) -> dict[str, str]:
    """The environment of a gateway process pointed at the local server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GALILEO_", "OTEL_"))}
    env.update(
        {
            "GALILEO_API_URL": server_url,
            "GALILEO_API_KEY": KEY,
            "GALILEO_PROJECT": project,
            "GALILEO_LOG_STREAM": "gw-stream",
            "GALILEO_GATEWAY_DIR": str(state / "gateway"),
            "GALILEO_SPOOL_DIR": str(state / "spool"),
            "GALILEO_BATCH_DELAY": "0.05",
            "GALILEO_STARTUP_MESSAGE": "false",
            "XDG_CACHE_HOME": str(state / "cache"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


class GatewayProcess:
    """``python -m galileo_otel.cli gateway`` on 127.0.0.1 and a free port."""

    def __init__(
        self, env: Mapping[str, str], log: Path, port: int | None = None, grpc: bool = False
    ) -> None:
        self.env = dict(env)
        self.port = port or free_port()
        self.grpc_port = free_port() if grpc else None
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def traces_url(self) -> str:
        return self.url + "/v1/traces"

    def start(self, *, ready: bool = True) -> GatewayProcess:
        handle = open(self.log, "ab")
        try:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "galileo_otel.cli",
                    "gateway",
                    "--port",
                    str(self.port),
                    *(["--grpc-port", str(self.grpc_port)] if self.grpc_port else []),
                ],
                env=self.env,
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
        finally:
            handle.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        path = "/readyz" if ready else "/healthz"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited ({self.proc.returncode}):\n{self.output()}")
            try:
                if httpx.get(self.url + path, timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"gateway not {path} within {START_TIMEOUT_S}s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """``kill -9``: no shutdown code runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, then wait (bounded); the exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def metrics(self) -> dict[str, float]:
        """``/metrics`` as ``{'name{labels}': value}``."""
        text = httpx.get(self.url + "/metrics", timeout=5.0).text
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out


def wait_for(check: Any, timeout_s: float, what: str, every_s: float = 0.1) -> Any:
    """Poll ``check()`` until it returns something truthy (bounded); fail with ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(every_s)


def startup_line(output: str) -> str:
    found = re.search(r"^galileo-otel gateway: OTLP/HTTP on .*$", output, re.MULTILINE)
    assert found, output
    return found.group(0)


# --- reading back what the local server stored ----------------------------------------------------


def sessions_of(server: Any, project: str) -> list[dict[str, Any]]:
    """Every session of ``project`` on the local server, oldest first ([] before it exists)."""
    from galileo_otel.server.query import compile_session_filter

    server.wait_idle(10.0)
    store = server.state.store
    found = store.find_projects(project)
    if not found:
        return []
    records, _ = store.search_sessions(
        found[0]["id"], {}, compile_session_filter([], None), None, 0, 1000
    )
    return sorted(records, key=lambda r: r["created_at"])


def stored_ids(server: Any, project: str) -> set[str]:
    """The ids of every trace and step stored in ``project``."""
    ids: set[str] = set()
    store = server.state.store

    def walk(step: dict[str, Any]) -> None:
        ids.add(step["id"])
        for child in step.get("spans") or []:
            walk(child)

    for record in sessions_of(server, project):
        for trace in store.session_traces(record["project_id"], record["id"]):
            walk(trace)
    return ids


def galileo_id(trace_id: int, span_id: int, is_root: bool) -> str:
    """The Galileo id the conversion gives an OTel span (a root is the trace itself)."""
    from galileo_otel.export.convert import span_uuid, trace_uuid

    return trace_uuid(trace_id) if is_root else span_uuid(trace_id, span_id)
