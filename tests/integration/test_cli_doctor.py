"""galileo-otel doctor lists every problem at once, explains a wrong URL, and reads the spool."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from galileo_otel import cli

pytestmark = pytest.mark.integration

CONSOLE_PAGE = (
    b"<!doctype html>\n<html>\n<head><title>Galileo</title></head>\n<body>\n"
    + b"<script src='/app.js'></script>\n" * 15
    + b"</body>\n</html>\n"
)


@pytest.fixture
def web_page_url() -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 that answers every path with a web page (a console)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(CONSOLE_PAGE)))
            self.end_headers()
            self.wfile.write(CONSOLE_PAGE)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def seeded(local_project: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """GALILEO_* pointing at a local server with project "test" and log stream "default"."""
    server, _, _ = local_project
    monkeypatch.setenv("GALILEO_API_URL", server.url)
    monkeypatch.setenv("GALILEO_API_KEY", server.api_key)
    monkeypatch.setenv("GALILEO_PROJECT", "test")
    monkeypatch.setenv("GALILEO_LOG_STREAM", "default")
    return server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_every_problem_at_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GALILEO_API_URL", f"http://127.0.0.1:{_free_port()}")
    monkeypatch.setenv("GALILEO_PROJCT", "chat")  # the user meant GALILEO_PROJECT
    assert cli.main(["doctor", "--json", "--timeout", "2"]) == 1
    report = json.loads(capsys.readouterr().out)
    found = {(c["check"], c["status"]) for c in report["checks"]}
    assert {
        ("API key", "FAIL"),
        ("project", "FAIL"),
        ("API URL", "FAIL"),
        ("environment", "WARN"),
    } <= found
    (typo,) = [c["message"] for c in report["checks"] if c["check"] == "environment"]
    assert "GALILEO_PROJCT" in typo and "did you mean GALILEO_PROJECT?" in typo


def test_a_web_page_instead_of_the_api_is_one_line(
    web_page_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("GALILEO_API_URL", web_page_url)
    monkeypatch.setenv("GALILEO_API_KEY", "k-0123456789abc")
    monkeypatch.setenv("GALILEO_PROJECT", "chat")
    assert cli.main(["doctor", "--timeout", "2"]) == 1
    out = capsys.readouterr().out
    (line,) = [x for x in out.splitlines() if "[FAIL] API URL" in x]
    assert f"{web_page_url} answers, but not as the Galileo API" in line
    assert "an HTML page" in line and "not the console URL?" in line
    assert "<script" not in out
    # configure() says the same in one warning line, not the page.
    from opentelemetry.sdk.trace import TracerProvider

    import galileo_otel

    with caplog.at_level("WARNING", logger="galileo_otel"):
        handle = galileo_otel.configure(spool_dir="off", tracer_provider=TracerProvider())
    handle.shutdown(timeout_s=1)
    (warning,) = [
        r.getMessage() for r in caplog.records if "to resolve the project" in r.getMessage()
    ]
    assert "\n" not in warning and "<script" not in warning
    assert "an HTML page ('Galileo'), not the Galileo API" in warning


def test_spool_backlog_and_dead_letters_say_what_to_do(
    seeded: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from galileo_otel.export.spool import Spool

    with Spool(tmp_path / "spool") as spool:
        for _ in range(2):
            entry = spool.write({"project_id": "p"}, b"[]")
            assert entry is not None
            entry.release()
        spool.dead_letter_new(
            {"project_id": "p"},
            b"[]",
            {"status_code": 422, "message": "traces.0.input: field required"},
        )
    monkeypatch.setenv("GALILEO_SPOOL_DIR", str(tmp_path / "spool"))
    assert cli.main(["doctor"]) == 0  # a backlog is a warning, not a configuration problem
    out = capsys.readouterr().out
    assert f"2 batch(es) wait in {tmp_path / 'spool'} to be sent" in out
    assert f"1 batch(es) were rejected for good and set aside in {tmp_path / 'spool'}" in out
    assert "the oldest: HTTP 422: traces.0.input: field required" in out
    assert "galileo-otel doctor --clear-dead" in out
    assert "no problems; see the WARN lines above" in out
    # --clear-dead removes the dead letters, and only them: the backlog still waits.
    assert cli.main(["doctor", "--clear-dead"]) == 0
    assert "removed 1 dead-lettered batch(es)" in capsys.readouterr().out
    with Spool(tmp_path / "spool") as again:
        assert again.dead_names() == [] and len(again.pending_names()) == 2


def test_missing_spool_dir_is_not_created(
    seeded: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GALILEO_SPOOL_DIR", str(tmp_path / "never"))
    assert cli.main(["doctor"]) == 0
    assert "[ ok ] spool:" in capsys.readouterr().out
    assert not (tmp_path / "never").exists()


def test_wrong_key_and_no_project_are_both_reported(
    local_server: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GALILEO_API_URL", local_server.url)
    monkeypatch.setenv("GALILEO_API_KEY", "wrong-key-0123456789")
    assert cli.main(["doctor", "--json"]) == 1
    checks = {
        c["check"]: (c["status"], c["message"])
        for c in json.loads(capsys.readouterr().out)["checks"]
    }
    assert checks["project"][0] == "FAIL"
    assert checks["API key"] == ("FAIL", "rejected by the API (HTTP 401): check GALILEO_API_KEY")
    assert checks["API URL"][0] == "ok"
    monkeypatch.setenv("GALILEO_API_KEY", local_server.api_key)
    assert cli.main(["doctor", "--json"]) == 1  # still no project
    checks = {c["check"]: c["status"] for c in json.loads(capsys.readouterr().out)["checks"]}
    assert checks["API key"] == "ok" and checks["project"] == "FAIL"
