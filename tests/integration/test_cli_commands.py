"""The galileo-otel command against a real local server: demo, sessions count/search, doctor."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
from conftest_cli import BIN, explain, run, sessions_of

from galileo_otel import cli

pytestmark = pytest.mark.integration

UNKNOWN_PID = "6a0b3c8e-1f2d-4e5f-9a8b-7c6d5e4f3a2b"


def test_demo_command_counts_match_the_server(local_server: Any) -> None:
    proc = run(
        [
            str(BIN / "galileo-otel"),
            "demo",
            "--json",
            "--api-url",
            local_server.url,
            "--project",
            "demo-check",
        ],
        {"GALILEO_API_KEY": local_server.api_key},
        timeout=50,
    )
    assert proc.returncode == 0, explain(proc)
    report = json.loads(proc.stdout)
    assert report["flushed"] is True  # the run itself is bounded by the subprocess timeout
    sessions = sessions_of(local_server, "demo-check", report["log_stream"])
    assert report["sessions"] == len(sessions) == report["sessions_listed"]
    assert report["traces"] == sum(s["num_traces"] for s in sessions) == report["turns_simulated"]
    assert (
        report["chained_sessions"] == sum(1 for s in sessions if s.get("previous_session_id")) >= 1
    )
    assert report["count_filter"]["count"] == sum(1 for s in sessions if s["num_traces"] >= 3)
    assert report["stats"]["traces_confirmed"] == report["traces"]
    users = report["users"]
    assert sorted(users) == ["alice", "bob", "carol"]
    # alice's first conversation went idle for 45 minutes: it resumed in a new session that
    # points to the old one.
    first, resumed = [s for s in users["alice"] if s["external_id"] == "alice-conv-1"]
    assert resumed["resumed"] and resumed["previous_session_id"] == first["id"]
    assert report["resumed_sessions"] == 1


def test_demo_embedded_default(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(
        ["demo", "--json", "--no-progress", "--users", "2", "--conversations", "1", "--turns", "2"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    report = json.loads(out)
    assert report["api_url"] == "embedded"
    # 2 users x 1 conversation (the first rotated by the idle gap) + 2 automatic user sessions
    assert report["sessions"] == 5 and report["traces"] == report["turns_simulated"] == 6


def test_demo_text_report(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        cli.main(["demo", "--no-progress", "--users", "1", "--conversations", "1", "--turns", "2"])
        == 0
    )
    out = capsys.readouterr().out
    assert "user alice" in out and "after an idle gap" in out and "Count Sessions:" in out
    assert "exporter stats:" in out and "all delivered and confirmed" in out


@pytest.fixture
def seeded(local_project: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    server, client, _ = local_project
    for ext, traces in (("conv-1", 1), ("conv-2", 3), ("other", 2)):
        created = client.create_session(external_id=ext, name=f"session {ext}")
        for i in range(traces):
            client.log_traces(
                [{"type": "trace", "input": f"q{i}", "output": "a", "name": "turn", "spans": []}],
                session_id=str(created.id),
            )
    monkeypatch.setenv("GALILEO_API_URL", server.url)
    monkeypatch.setenv("GALILEO_API_KEY", server.api_key)
    monkeypatch.setenv("GALILEO_PROJECT", "test")
    monkeypatch.setenv("GALILEO_LOG_STREAM", "default")
    return server


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ([], 3),
        (["external_id=conv-1"], 1),
        (["num_traces>2"], 1),
        (["num_traces>=2", "external_id~CONV"], 1),
        (["external_id in conv-1,other"], 2),
        (["external_id not in conv-1,other"], 1),
        (["external_id!=conv-1"], 2),
        (["created_at>2000-01-01"], 3),
    ],
)
def test_sessions_count(
    seeded: Any, filters: list[str], expected: int, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["sessions", "count"]
    for f in filters:
        args += ["--filter", f]
    assert cli.main(args) == 0
    assert capsys.readouterr().out.strip() == str(expected)
    assert cli.main([*args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total_count"] == expected


def test_sessions_search(seeded: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        cli.main(
            ["sessions", "search", "-f", "num_traces>=2", "--sort", "num_traces:asc", "--json"]
        )
        == 0
    )
    records = json.loads(capsys.readouterr().out)["records"]
    assert [r["external_id"] for r in records] == ["other", "conv-2"]
    assert cli.main(["sessions", "search", "-f", "external_id=conv-1"]) == 0
    table = capsys.readouterr().out
    assert "external id" in table and "conv-1" in table and "conv-2" not in table


def test_sessions_unknown_column_is_one_readable_error(
    seeded: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["sessions", "count", "-f", "colour=blue"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("galileo-otel sessions:") and "colour" in err and "Traceback" not in err


def test_sessions_unknown_project_says_it_only_looks_up(
    seeded: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GALILEO_PROJECT", "ghost")
    assert cli.main(["sessions", "count"]) == 1
    err = capsys.readouterr().err
    assert "project 'ghost' does not exist" in err
    assert (
        "sessions and tail only look up, never create" in err
        and "GALILEO_CREATE_MISSING" not in err
    )


def test_doctor_all_good(seeded: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "all good" in out and seeded.api_key not in out
    assert cli.main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and {c["check"] for c in report["checks"]} == {
        "API URL",
        "API key",
        "project",
        "log stream",
        "session store",
        "spool",
    }


def test_doctor_wrong_key(
    seeded: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GALILEO_API_KEY", "wrong-key-123456")
    assert cli.main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] API key: rejected by the API (HTTP 401)" in out and "wrong-key" not in out


def test_doctor_unknown_project_id(
    seeded: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GALILEO_PROJECT")
    monkeypatch.setenv("GALILEO_PROJECT_ID", UNKNOWN_PID)
    assert cli.main(["doctor"]) == 1
    assert f"[FAIL] project: no project with id {UNKNOWN_PID}" in capsys.readouterr().out


def test_doctor_unreachable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("GALILEO_API_URL", f"http://127.0.0.1:{port}")
    assert cli.main(["doctor", "--timeout", "2"]) == 1
    assert f"[FAIL] API URL: cannot reach http://127.0.0.1:{port}" in capsys.readouterr().out


def test_doctor_bad_config(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GALILEO_EXTRA_HEADERS", "[1, 2]")
    assert cli.main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] configuration:" in out and "GALILEO_EXTRA_HEADERS" in out


def test_serve_is_mounted() -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["serve", "--help"])
    assert info.value.code == 0
