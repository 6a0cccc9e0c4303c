"""``galileo-otel serve`` as a real process: generated key printed once, auth, persistence, Ctrl-C."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from galileo_otel.api.client import GalileoClient

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent / "galileo-otel"
START_TIMEOUT_S = 30


@contextmanager
def _serve(
    *args: str, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("GALILEO_", "OTEL_"))}
    proc = subprocess.Popen(
        [str(BIN), "serve", "--log-level", "warning", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**base, **(env or {})},
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    try:
        while not any("listening on" in line for line in seen):
            line = lines.get(timeout=START_TIMEOUT_S)
            if line is None:
                break
            seen.append(line)
        yield proc, seen
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:  # pragma: no cover - reported by the assert below
                proc.kill()
                proc.wait(5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def _url(lines: list[str]) -> str:
    match = re.search(r"listening on (http://\S+)", "".join(lines))
    assert match, lines
    return match.group(1)


def test_serve_generates_a_key_serves_and_persists(tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    with _serve("--port", "0", "--db", str(db)) as (proc, lines):
        url = _url(lines)
        keys = [m.group(1) for line in lines if (m := re.search(r"API key.*: (\S+)$", line))]
        assert len(keys) == 1, lines
        key = keys[0]
        assert str(db) in "".join(lines)
        assert httpx.get(url + "/healthcheck").status_code == 200
        assert httpx.get(url + "/projects").status_code == 401
        with GalileoClient(api_url=url, api_key=key) as client:
            dest = client.resolve_destination(project="cli", log_stream="default")
            client.create_session(project_id=dest.project_id, name="kept")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
    # A chosen key (env) is not printed; the data is still there.
    with _serve("--port", "0", "--db", str(db), env={"GALILEO_API_KEY": "chosen"}) as (_, lines):
        assert not any("API key" in line for line in lines)
        with GalileoClient(api_url=_url(lines), api_key="chosen") as client:
            dest = client.resolve_destination(project="cli", create=False)
            assert client.count_sessions(project_id=dest.project_id) == 1


def test_serve_reuses_its_stored_key_after_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "kept.db"
    with _serve("--port", "0", "--db", str(db)) as (_, lines):
        (key,) = [m.group(1) for line in lines if (m := re.search(r"API key.*: (\S+)$", line))]
        assert f"{db}.api-key" in "".join(lines)
    assert (tmp_path / "kept.db.api-key").read_text().strip() == key
    with _serve("--port", "0", "--db", str(db)) as (_, lines):
        text = "".join(lines)
        assert "generated" not in text and key not in text  # not printed again
        assert f"API key read from {db}.api-key" in text
        with GalileoClient(api_url=_url(lines), api_key=key) as client:
            assert client.resolve_destination(project="after-restart", log_stream="default")


def test_serve_reports_a_taken_port(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [
                str(BIN),
                "serve",
                "--port",
                str(port),
                "--db",
                str(tmp_path / "p.db"),
                "--api-key",
                "k",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr


def test_serve_with_faults_mounts_the_admin(tmp_path: Path) -> None:
    with _serve("--port", "0", "--db", str(tmp_path / "f.db"), "--api-key", "k", "--faults") as (
        _,
        lines,
    ):
        url = _url(lines)
        headers = {"Galileo-API-Key": "k"}
        rule = {"action": "error", "route": "healthcheck", "status": 503, "times": 1}
        assert httpx.post(url + "/local/faults", json=rule, headers=headers).status_code == 200
        assert httpx.get(url + "/healthcheck").status_code == 503
        assert httpx.get(url + "/healthcheck").status_code == 200
