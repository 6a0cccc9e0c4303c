"""Helpers for the CLI / configure / examples integration tests: subprocesses and an OTLP sink."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
BIN = Path(sys.executable).parent
SUBPROCESS_TIMEOUT_S = 60


def run(
    args: list[str], env: Mapping[str, str], *, timeout: float = SUBPROCESS_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    """Run a command from the repo root with a clean GALILEO_*/OTEL_* environment plus ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GALILEO_", "OTEL_"))}
    base.pop("PYTHONPATH", None)
    proc = subprocess.run(
        args,
        env={**base, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return proc


def galileo_env(server: Any, *, project: str, log_stream: str = "default") -> dict[str, str]:
    """The GALILEO_* variables that point a process at ``server``."""
    return {
        "GALILEO_API_URL": server.url,
        "GALILEO_API_KEY": server.api_key,
        "GALILEO_PROJECT": project,
        "GALILEO_LOG_STREAM": log_stream,
        "GALILEO_BATCH_DELAY": "0.05",
        "GALILEO_SPOOL_DIR": "off",
    }


def sessions_of(server: Any, project: str, log_stream: str = "default") -> list[dict[str, Any]]:
    """Every session the server holds for the project / log stream."""
    from galileo_otel.api.client import GalileoClient

    with GalileoClient(api_url=server.url, api_key=server.api_key) as client:
        dest = client.resolve_destination(project=project, log_stream=log_stream, create=False)
        return list(
            client.iter_sessions(project_id=dest.project_id, log_stream_id=dest.log_stream_id)
        )


def explain(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}"


@dataclass
class OtlpSink:
    """A tiny OTLP/HTTP receiver on 127.0.0.1 that counts trace export requests."""

    url: str
    requests: list[tuple[str, int]] = field(default_factory=list)


@contextmanager
def otlp_sink() -> Iterator[OtlpSink]:
    sink_requests: list[tuple[str, int]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            sink_requests.append((self.path, len(body)))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield OtlpSink(url=f"http://127.0.0.1:{server.server_address[1]}", requests=sink_requests)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
