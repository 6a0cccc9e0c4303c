"""sessions show, sessions search's columns and tail against a real local server."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from galileo_otel import cli

pytestmark = pytest.mark.integration


def _trace(question: str, answer: str, *, tool_fails: bool = False) -> dict[str, Any]:
    return {
        "type": "trace",
        "name": "turn",
        "input": question,
        "output": answer,
        "metrics": {"duration_ns": 900_000_000},
        # The server counts a session's errors by its traces' status.
        "status_code": 504 if tool_fails else 200,
        "spans": [
            {
                "type": "llm",
                "name": "chat",
                "model": "gpt-4o",
                "input": [{"role": "user", "content": question}],
                "output": {"role": "assistant", "content": answer},
                "metrics": {"num_input_tokens": 5, "num_output_tokens": 3, "duration_ns": 1},
            },
            {
                "type": "tool",
                "name": "lookup",
                "input": question,
                "output": "timeout" if tool_fails else "found",
                "status_code": 504 if tool_fails else 200,
            },
        ],
    }


@pytest.fixture
def chat(local_project: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """alice: conv-1 (2 traces) -> conv-1 again after a gap (1 trace, a tool error); bob: one."""
    server, client, _ = local_project
    first = client.create_session(
        external_id="conv-1", name="refunds", user_metadata={"user.id": "alice"}
    )
    client.log_traces([_trace("hi", "hello")], session_id=str(first.id))
    client.log_traces([_trace("refund?", "14 days")], session_id=str(first.id))
    second = client.create_session(
        external_id="conv-1",
        name="refunds",
        previous_session_id=str(first.id),
        user_metadata={"user.id": "alice"},
    )
    client.log_traces([_trace("again?", "sorry", tool_fails=True)], session_id=str(second.id))
    third = client.create_session(external_id="bob-1", user_metadata={"user.id": "bob"})
    client.log_traces([_trace("yo", "hey")], session_id=str(third.id))
    server.wait_idle()
    monkeypatch.setenv("GALILEO_API_URL", server.url)
    monkeypatch.setenv("GALILEO_API_KEY", server.api_key)
    monkeypatch.setenv("GALILEO_PROJECT", "test")
    return {
        "server": server,
        "client": client,
        "ids": [str(first.id), str(second.id), str(third.id)],
    }


def test_show_by_external_id_has_the_chain_and_the_step_trees(
    chat: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second, _ = chat["ids"]
    assert cli.main(["sessions", "show", "conv-1", "--width", "0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 sessions have external id 'conv-1'; showing the newest")
    assert f"session {second}  refunds" in out and "  user         alice" in out
    assert f"  previous     {first}" in out
    assert "chain: 2 session(s), oldest first" in out
    assert f"  1. {first[:8]}" in out and f"▶ 2. {second[:8]}" in out
    assert "trace 1/1" in out and "in:  again?" in out
    assert "├─ llm chat  model gpt-4o  tokens 5 in / 3 out" in out
    assert "└─ tool lookup  ERROR 504" in out and "out: timeout" in out


def test_show_by_id_the_first_of_the_chain(chat: Any, capsys: pytest.CaptureFixture[str]) -> None:
    first, second, _ = chat["ids"]
    assert cli.main(["sessions", "show", first, "--brief"]) == 0
    out = capsys.readouterr().out
    assert "have external id" not in out
    assert f"▶ 1. {first[:8]}" in out and f"  2. {second[:8]}" in out
    assert "trace 1/2" in out and "trace 2/2" in out
    assert "user: hi" not in out  # --brief: headings only
    assert cli.main(["sessions", "show", first, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [s["id"] for s in shown["chain"]] == [first, second]
    assert [t["input"] for t in shown["traces"]] == ["hi", "refund?"]


def test_show_unknown_session_is_one_clear_error(
    chat: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["sessions", "show", "conv-404"]) == 1
    err = capsys.readouterr().err
    assert "no session with id or external id 'conv-404'" in err and err.count("\n") == 1


def test_search_has_user_name_and_error_columns(
    chat: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["sessions", "search", "--sort", "created_at:asc"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0].split()
    assert header[:8] == ["id", "external", "id", "name", "user", "traces", "errors", "previous"]
    rows = [line.split() for line in lines[1:]]
    assert [(r[1], r[2], r[3], r[4], r[5]) for r in rows[:2]] == [
        ("conv-1", "refunds", "alice", "2", "0"),
        ("conv-1", "refunds", "alice", "1", "1"),
    ]


def test_tail_prints_the_last_traces_then_new_ones_with_filters(
    chat: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    client, server = chat["client"], chat["server"]
    second = chat["ids"][1]
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:  # a new trace arrives while tail waits
        sleeps.append(seconds)
        now[0] += seconds
        if len(sleeps) == 1:
            client.log_traces([_trace("late?", "here")], session_id=second)
            client.log_traces([_trace("bob late", "ok")], session_id=chat["ids"][2])
            server.wait_idle()

    monkeypatch.setattr(cli, "_tail_sleep", sleep)
    monkeypatch.setattr(cli, "_tail_clock", lambda: now[0])
    assert cli.main(["tail", "-n", "2", "--for", "2", "--interval", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("  ")[-1] for line in lines] == [
        "again? → sorry",
        "yo → hey",
        "late? → here",
        "bob late → ok",
    ]
    assert "  alice  conv-1  turn  2 spans  900ms  5/3 tok  ERROR 504  " in lines[0]
    assert sleeps == [1.0, 1.0]

    assert cli.main(["tail", "--user", "alice", "-n", "5", "--for", "0"]) == 0
    alice = capsys.readouterr().out.splitlines()
    assert [line.split("  ")[-1] for line in alice] == [
        "hi → hello",
        "refund? → 14 days",
        "again? → sorry",
        "late? → here",
    ]
    assert cli.main(["tail", "--session", "bob-1", "--json", "--for", "0"]) == 0
    bob = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(t["input"], t["user"], t["num_spans"]) for t in bob] == [
        ("yo", "bob", 2),
        ("bob late", "bob", 2),
    ]


def test_tail_route_pages_by_cursor(chat: Any) -> None:
    server = chat["server"]
    pid = chat["client"].project_id
    with httpx.Client(base_url=server.url, headers={"Galileo-API-Key": server.api_key}) as http:
        url = f"/local/projects/{pid}/traces"
        newest = http.get(url, params={"limit": 2}).json()
        assert [t["input"] for t in newest["traces"]] == ["again?", "yo"]
        first = http.get(url, params={"after": 0, "limit": 3}).json()
        assert [t["input"] for t in first["traces"]] == ["hi", "refund?", "again?"]
        rest = http.get(url, params={"after": first["cursor"], "limit": 3}).json()
        assert [t["input"] for t in rest["traces"]] == ["yo"]
        assert rest["cursor"] == newest["cursor"]
        done = http.get(url, params={"after": rest["cursor"]}).json()
        assert done == {"traces": [], "cursor": rest["cursor"]}
        assert http.get(url, params={"limit": 0}).status_code == 422
        assert (
            httpx.get(server.url + url, params={"limit": 1}).status_code == 401
        )  # the API key rule holds


def test_tail_against_an_api_without_the_route_says_what_it_needs(
    chat: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from galileo_otel.api.client import GalileoClient

    real = GalileoClient.request_json

    def no_local_routes(self: Any, method: str, path: str, **kw: Any) -> Any:
        if path.startswith("/local/"):
            path = "/local/no-such-route"
        return real(self, method, path, **kw)

    monkeypatch.setattr(GalileoClient, "request_json", no_local_routes)
    assert cli.main(["tail", "--for", "0"]) == 1
    err = capsys.readouterr().err
    assert "local-server extension" in err and "galileo-otel serve" in err


def test_demo_serve_keeps_the_server_up_and_its_hint_works(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io
    import shlex

    from galileo_otel.demo import DemoOptions, run_demo

    looked: list[str] = []
    out = io.StringIO()

    def look_around() -> None:  # stands for the user, while the demo waits for Ctrl-C
        hint = next(line for line in out.getvalue().splitlines() if "sessions show" in line)
        # The key is read from the file next to the database, as the shell would.
        key_file = re.search(r"\$\(cat (\S+)\)", hint)
        assert key_file is not None, hint
        key = Path(shlex.split(key_file.group(1))[0]).read_text().strip()
        hint = hint.replace(key_file.group(0), shlex.quote(key))
        *assignments, _, _, _, external_id = shlex.split(hint)
        for assignment in assignments:
            name, _, value = assignment.partition("=")
            monkeypatch.setenv(name, value)
        assert cli.main(["sessions", "show", external_id, "--brief"]) == 0
        looked.append(capsys.readouterr().out)

    options = DemoOptions(
        users=1, conversations=1, turns=2, progress=False, serve=True, out=out, wait=look_around
    )
    assert run_demo(options) == 0
    (shown,) = looked
    assert "external id  alice-conv-1" in shown and "chain: 2 session(s)" in shown
    assert "keeps running at http://127.0.0.1:" in out.getvalue()
    assert cli.main(["demo", "--serve", "--api-url", "http://127.0.0.1:9"]) == 2
