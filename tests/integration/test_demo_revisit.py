"""``galileo-otel demo`` leaves its sessions where ``galileo-otel serve`` finds them.

The demo runs with the default database (under a temporary ``XDG_DATA_HOME``, set by the
autouse fixture, so nothing touches the real home); then the real ``galileo-otel serve`` process
starts on it, and the UI URL and the ``sessions show`` line the demo printed are used as printed
(only the port differs: the test's server listens on a free one, not 8088).
"""

from __future__ import annotations

import os
import queue
import re
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from galileo_otel import cli

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent / "galileo-otel"


@pytest.fixture
def demo_output(capsys: pytest.CaptureFixture[str]) -> str:
    code = cli.main(
        ["demo", "--no-progress", "--users", "1", "--conversations", "1", "--turns", "2"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    return out


@contextmanager
def _serve(port_env: dict[str, str]) -> Iterator[tuple[str, list[str]]]:
    proc = subprocess.Popen(
        [str(BIN), "serve", "--port", "0", "--log-level", "warning"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=port_env,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        seen: list[str] = []
        while not any("web UI:" in line for line in seen):
            line = lines.get(timeout=30)
            assert line is not None, seen
            seen.append(line)
        url = next(line for line in seen if "web UI:" in line).split("web UI:", 1)[1].strip()
        yield url, seen
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:  # pragma: no cover - a hung server fails the test
            proc.kill()
            proc.wait(5)
        assert proc.stdout is not None
        proc.stdout.close()


def test_serve_after_the_demo_shows_its_sessions_at_the_printed_url(demo_output: str) -> None:
    data_home = Path(os.environ["XDG_DATA_HOME"])
    db = data_home / "galileo-otel" / "galileo.db"
    assert db.exists() and db.stat().st_mode & 0o777 == 0o600
    assert f"the sessions are stored in {db}" in demo_output
    assert "  galileo-otel serve\n" in demo_output
    # The times are labelled for what they are.
    assert "back-dated" in demo_output and "(simulated)" in demo_output
    printed = re.search(
        r"then open the web UI: (http://127\.0\.0\.1:8088/\?token=\S+)", demo_output
    )
    assert printed is not None, demo_output
    show = re.search(r"or, in another terminal: (.+ galileo-otel sessions show \S+)", demo_output)
    assert show is not None, demo_output

    env = {k: v for k, v in os.environ.items() if not k.startswith(("GALILEO_", "OTEL_"))}
    with _serve(env) as (served_url, printed_lines):
        assert not any("no sessions yet" in line for line in printed_lines)
        base = served_url.split("/?", 1)[0]
        # serve prints the very URL the demo printed, on its own port.
        assert served_url == printed.group(1).replace("http://127.0.0.1:8088", base)
        ui_url = printed.group(1).replace("http://127.0.0.1:8088", base)
        with httpx.Client() as client:
            home = client.get(ui_url, follow_redirects=True)
            assert home.status_code == 200
            assert "alice-conv-1" in home.text and "support chat alice-conv-1" in home.text

        # The sessions show line, run as printed (through a shell: it reads the key file).
        line = show.group(1).replace("http://127.0.0.1:8088", base)
        assert line.startswith(f"GALILEO_API_URL={base} GALILEO_API_KEY=$(cat ")
        command = line.replace(
            "galileo-otel sessions show", f"{shlex.quote(str(BIN))} sessions show"
        )
        result = subprocess.run(
            ["/bin/sh", "-c", command], env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        assert "alice-conv-1" in result.stdout


def test_demo_db_option_writes_elsewhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "mine.db"
    code = cli.main(
        [
            "demo",
            "--no-progress",
            "--db",
            str(db),
            "--users",
            "1",
            "--conversations",
            "1",
            "--turns",
            "1",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert db.exists() and Path(str(db) + ".ui-token").exists()
    assert f"  galileo-otel serve --db {db}\n" in out
    assert not (Path(os.environ["XDG_DATA_HOME"]) / "galileo-otel").exists()
    assert cli.main(["demo", "--db", str(db), "--api-url", "http://127.0.0.1:9"]) == 2


def test_serve_on_an_empty_database_says_how_to_fill_it() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GALILEO_", "OTEL_"))}
    with _serve(env) as (_url, printed_lines):
        (hint,) = [line for line in printed_lines if "no sessions yet" in line]
        assert "run 'galileo-otel demo'" in hint and "GALILEO_API_URL=http://127.0.0.1:" in hint
