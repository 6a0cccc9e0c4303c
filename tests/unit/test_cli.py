"""The galileo-otel command without a server: argument parsing, --filter parsing, errors."""

from __future__ import annotations

import io
import itertools
import random
from typing import Any

import pytest

from galileo_otel import cli
from galileo_otel.cli import parse_filter
from galileo_otel.demo import ProgressBar, plan_turns
from galileo_otel.errors import ConfigError


def _wire(spec: str) -> dict[str, Any]:
    return parse_filter(spec).to_filter_dict()


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            "external_id=conv-1",
            {"type": "text", "column_id": "external_id", "operator": "eq", "value": "conv-1"},
        ),
        ("external_id != conv-1", {"type": "text", "operator": "ne", "value": "conv-1"}),
        (
            "name~Refund",
            {"type": "text", "operator": "contains", "value": "Refund", "case_sensitive": False},
        ),
        (
            "external_id in conv-1, conv-2",
            {"type": "text", "operator": "one_of", "value": ["conv-1", "conv-2"]},
        ),
        ("external_id in [a,'b']", {"type": "text", "operator": "one_of", "value": ["a", "b"]}),
        ("external_id not in a,b", {"type": "text", "operator": "not_in", "value": ["a", "b"]}),
        (
            "num_traces>2",
            {"type": "number", "column_id": "num_traces", "operator": "gt", "value": 2},
        ),
        ("num_traces >= 2.5", {"type": "number", "operator": "gte", "value": 2.5}),
        ("num_traces<2", {"type": "number", "operator": "lt", "value": 2}),
        ("num_traces<=2", {"type": "number", "operator": "lte", "value": 2}),
        ("num_traces=3", {"type": "number", "operator": "eq", "value": 3}),
        ("num_traces!=3", {"type": "number", "operator": "ne", "value": 3}),
        ("number:custom_score>0.5", {"type": "number", "column_id": "custom_score", "value": 0.5}),
        ("created_at>=2025-01-31", {"type": "date", "operator": "gte"}),
        ("created_at<2025-01-31T12:00:00Z", {"type": "date", "operator": "lt"}),
        ("id=3f1e1a2b-7c4d-4e5f-8a9b-0c1d2e3f4a5b", {"type": "id", "operator": "eq"}),
        ("previous_session_id~3f1e", {"type": "id", "operator": "contains", "value": "3f1e"}),
        ("text:num_traces=abc", {"type": "text", "column_id": "num_traces", "value": "abc"}),
        ("external_id='quoted value'", {"type": "text", "value": "quoted value"}),
        ("has_children=true", {"type": "boolean", "value": True}),
        ("has_error!=false", {"type": "boolean", "operator": "ne", "value": False}),
        (
            "num_errors>0",
            {"type": "number", "column_id": "num_errors", "operator": "gt", "value": 0},
        ),
        ("tags~beta", {"type": "collection", "operator": "contains", "value": "beta"}),
        ("tags in a,b", {"type": "collection", "operator": "one_of", "value": ["a", "b"]}),
        ("user_metadata.channel=web", {"type": "text", "column_id": "user_metadata.channel"}),
    ],
)
def test_parse_filter(spec: str, expected: dict[str, Any]) -> None:
    wire = _wire(spec)
    for key, value in expected.items():
        assert wire[key] == value, (key, wire)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("external_id", "expected 'column OP value'"),
        ("num_traces>many", "is not a number"),
        ("num_traces~2", "does not apply to a number column"),
        ("created_at>yesterday", "is not an ISO date"),
        ("created_at~2025", "a date column takes"),
        ("id>3", "an id column takes"),
        ("weird:col=1", "unknown column type"),
        ("external_id>3", "a text column takes"),
    ],
)
def test_parse_filter_errors_are_one_readable_line(spec: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_filter(spec)
    assert words in str(info.value)
    assert "\n" not in str(info.value)


def test_parser_has_the_subcommands() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(["sessions", "count", "--filter", "num_traces>2", "--json"])
    assert args.filter == ["num_traces>2"] and args.json
    args = parser.parse_args(
        ["sessions", "search", "-f", "a=b", "--limit", "5", "--sort", "created_at:asc"]
    )
    assert args.limit == 5
    assert parser.parse_args(["doctor"]).command == "doctor"
    assert parser.parse_args(["demo", "--json", "--users", "2"]).users == 2
    assert parser.parse_args(["serve"]).command == "serve"


def test_no_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main([])
    assert info.value.code == 2


def test_missing_key_is_one_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["sessions", "count", "--api-url", "http://127.0.0.1:9", "--project", "p"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.strip().count("\n") == 0
    assert "no Galileo API key" in err and "GALILEO_API_KEY" in err


def test_bad_filter_fails_before_any_request(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["sessions", "count", "--filter", "num_traces>lots"])
    assert code == 2  # a usage error, as docs/reference/cli.md says
    assert "is not a number" in capsys.readouterr().err


def test_bad_extra_headers_is_one_clear_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GALILEO_EXTRA_HEADERS", "{not json")
    code = cli.main(["sessions", "count", "--api-key", "k", "--project", "p"])
    err = capsys.readouterr().err
    assert code == 1
    assert "GALILEO_EXTRA_HEADERS" in err and "not valid JSON" in err
    assert "Traceback" not in err


def test_sort_parsing() -> None:
    assert cli._parse_sort("created_at") == {"column_id": "created_at", "ascending": False}
    assert cli._parse_sort("num_traces:asc") == {"column_id": "num_traces", "ascending": True}
    with pytest.raises(ConfigError):
        cli._parse_sort("x:sideways")


def test_mask_hides_the_key() -> None:
    masked = cli._mask("gal-secret-key-123456")
    assert "secret" not in masked and masked.endswith("56") and masked.startswith("gal")
    assert cli._mask("short") == "*****"


def test_progress_bar_draws_on_its_stream_only_when_enabled() -> None:
    out = io.StringIO()
    bar = ProgressBar(4, stream=out, enabled=True, width=8)
    bar.advance(1, "one")
    bar.advance(1)
    bar.finish()
    text = out.getvalue()
    assert "\r[##------]  25% 1/4 one" in text
    assert "[########] 100% 4/4 done" in text and text.endswith("\n")
    quiet = io.StringIO()  # not a terminal: nothing drawn by default
    ProgressBar(3, stream=quiet).advance(1)
    assert quiet.getvalue() == ""


def test_demo_plan_has_an_idle_gap_and_one_offs() -> None:
    plan = plan_turns(users=3, conversations=2, turns=3, start_ns=0, rng=random.Random(1))
    assert len(plan) == 3 * 2 * 3 + 3
    assert [t.start_ns for t in plan] == sorted(t.start_ns for t in plan)
    first = [t for t in plan if t.conversation == "alice-conv-1"]
    gaps = [b.start_ns - a.start_ns for a, b in itertools.pairwise(first)]
    assert max(gaps) > 30 * 60 * 1_000_000_000  # longer than the idle timeout: rotates
    assert sum(1 for t in plan if t.conversation is None) == 3


def test_demo_read_back_without_the_local_trace_listing() -> None:
    from galileo_otel import demo
    from galileo_otel.errors import APIError, NotFoundError

    class NoListing:
        def request_json(self, method: str, path: str) -> Any:
            raise NotFoundError("Not Found", status_code=404)

    class Broken:
        def request_json(self, method: str, path: str) -> Any:
            raise APIError("boom", status_code=500)

    class Local:
        def request_json(self, method: str, path: str) -> Any:
            return {"session_id": "s", "traces": [{"id": "t", "spans": [{"spans": [{}]}, {}]}]}

    assert demo._session_traces(NoListing(), "p", "s") is None
    with pytest.raises(APIError):
        demo._session_traces(Broken(), "p", "s")
    (listed,) = demo._session_traces(Local(), "p", "s") or []
    assert demo._count_spans(listed) == 3


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["sessions", "search", "--limit", "-1"], "--limit -1: must be at least 1"),
        (["sessions", "search", "--sort", "bogus:up"], "the direction is 'asc' or 'desc'"),
        (["sessions", "search", "--sort", ":asc"], "name a column"),
        (["sessions", "count", "-f", "num_traces>>2"], "'>2' is not a number"),
        (["sessions", "count", "-f", "what"], "expected 'column OP value'"),
        (["demo", "--users", "0"], "--users 0: must be between 1 and 50"),
    ],
)
def test_usage_errors_exit_2_before_any_request(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # No API key and no URL are set: a request would fail with exit 1, so 2 proves none was made.
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert says in err and "error:" in err
    assert err.strip().count("\n") == 0


def test_demo_ends_with_the_ui_url_while_its_server_runs() -> None:
    from galileo_otel import demo

    class ServerWithUI:
        ui_url = "http://127.0.0.1:40001/?token=abc"

    assert demo._ui_url(ServerWithUI()) == ServerWithUI.ui_url
    out = io.StringIO()
    report = {
        "serving": "http://127.0.0.1:40001",
        "project": "p",
        "log_stream": "demo-1",
        "ui_url": ServerWithUI.ui_url,
        "api_url": "embedded",
        "db": "/data/galileo.db",
        "users": {"bob": [{"external_id": "bob-conv-1"}]},
    }
    demo._print_where_to_look(report, out.write)
    text = out.getvalue()
    assert "  web UI: http://127.0.0.1:40001/?token=abc" in text.splitlines()
    assert (
        "GALILEO_API_URL=http://127.0.0.1:40001 GALILEO_API_KEY=$(cat /data/galileo.db.api-key) "
        "GALILEO_PROJECT=p GALILEO_LOG_STREAM=demo-1 galileo-otel sessions show bob-conv-1"
    ) in text


_LATER_SERVE_REPORT = {
    "api_url": "embedded",
    "project": "my demo",
    "ui_url": "http://127.0.0.1:8088/?token=abc",
    "db": "/data/x y.db",
    "default_db": False,
    "log_stream": "demo-2",
    "users": {},
}


def test_demo_without_serve_points_at_a_later_serve_on_the_same_database(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from galileo_otel import demo

    monkeypatch.delenv("GALILEO_API_KEY", raising=False)
    out = io.StringIO()
    demo._print_where_to_look(dict(_LATER_SERVE_REPORT), out.write)
    lines = out.getvalue().splitlines()
    assert "  galileo-otel serve --db '/data/x y.db'" in lines
    assert "then open the web UI: http://127.0.0.1:8088/?token=abc" in lines
    assert lines[-1].endswith(
        "GALILEO_API_KEY=$(cat '/data/x y.db.api-key') GALILEO_PROJECT='my demo' "
        "GALILEO_LOG_STREAM=demo-2 galileo-otel sessions show alice-conv-1"
    )


def test_demo_leaves_the_shells_key_to_a_later_serve_that_will_accept_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`serve` accepts GALILEO_API_KEY when it is set, so the printed commands must not swap it
    for the key file's (which that server would refuse)."""
    from galileo_otel import demo

    monkeypatch.setenv("GALILEO_API_KEY", "the-shells-key")
    out = io.StringIO()
    demo._print_where_to_look(dict(_LATER_SERVE_REPORT), out.write)
    last = out.getvalue().splitlines()[-1]
    assert "GALILEO_API_KEY" not in last and ".api-key" not in last
    assert last.endswith(
        "GALILEO_API_URL=http://127.0.0.1:8088 GALILEO_PROJECT='my demo' "
        "GALILEO_LOG_STREAM=demo-2 galileo-otel sessions show alice-conv-1"
    )


def test_the_servers_totals_are_number_columns_on_the_command_line() -> None:
    from galileo_otel.cli import NUMBER_COLUMNS
    from galileo_otel.server.store import TOTALS

    assert set(TOTALS) <= NUMBER_COLUMNS
    assert parse_filter("total_tokens>1000").to_filter_dict()["operator"] == "gt"
    assert parse_filter("total_tokens>1000").to_filter_dict()["type"] == "number"
