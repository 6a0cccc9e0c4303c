"""The web UI's view helpers: step-tree walking, chains and rotations, the timeline axis, filters."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("jinja2")

from galileo_otel.server import ui

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)


def _deep_trace(depth: int) -> dict[str, Any]:
    trace: dict[str, Any] = {"id": "t", "type": "trace", "name": "root", "spans": []}
    parent = trace
    for i in range(depth):
        child = {"id": f"s{i}", "type": "workflow", "name": f"step {i}", "spans": []}
        parent["spans"].append(child)
        parent = child
    return trace


def test_walk_steps_is_balanced_and_depth_first() -> None:
    trace = {
        "spans": [
            {"id": "a", "spans": [{"id": "a1"}, {"id": "a2", "spans": [{"id": "a2x"}]}]},
            {"id": "b"},
        ]
    }
    events = [(e.kind, e.step.get("id"), e.depth) for e in ui.walk_steps(trace)]
    assert events == [
        ("open", "a", 0),
        ("open", "a1", 1),
        ("close", "a1", 1),
        ("open", "a2", 1),
        ("open", "a2x", 2),
        ("close", "a2x", 2),
        ("close", "a2", 1),
        ("close", "a", 0),
        ("open", "b", 0),
        ("close", "b", 0),
    ]
    assert ui.count_steps(trace) == 5


def test_a_very_deep_trace_renders_without_recursion() -> None:
    trace = _deep_trace(3000)
    env = ui._environment()
    html = env.get_template("trace.html").render(
        project={"id": "p", "name": "p"},
        trace=trace,
        session=None,
        events=list(ui.walk_steps(trace)),
        steps=ui.count_steps(trace),
        is_error=ui.is_error,
        error_details=ui.error_details,
        messages_of=ui.messages_of,
        documents_of=ui.documents_of,
        content_parts=ui.content_parts,
    )
    assert html.count("<details open>") == 3000
    assert html.count("</details>") == 3000
    assert "step 2999" in html


def test_templates_escape_markup() -> None:
    env = ui._environment()
    html = env.get_template("locked.html").render(reason="<script>alert(1)</script>")
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html


def _record(sid: str, key: str | None, previous: str | None = None) -> dict[str, Any]:
    return {
        "id": sid,
        "external_id": key,
        "previous_session_id": previous,
        "created_at": T0.isoformat(),
        "updated_at": T0.isoformat(),
        "num_errors": 0,
    }


def _trace(start: datetime, seconds: float) -> dict[str, Any]:
    return {"created_at": start.isoformat(), "metrics": {"duration_ns": int(seconds * 1e9)}}


def test_chain_marks_rotations_of_the_same_key_and_of_automatic_sessions() -> None:
    records = [
        _record("auto1", None),
        _record("c1", "conv"),
        _record("d1", "other", previous="c1"),
        _record("c2", "conv", previous="c1"),
        _record("auto2", None, previous="auto1"),
    ]
    traces = {
        "auto1": [_trace(T0, 1)],
        "c1": [_trace(T0 + timedelta(minutes=1), 2), _trace(T0 + timedelta(minutes=2), 3)],
        "d1": [_trace(T0 + timedelta(minutes=3), 1)],
        "c2": [_trace(T0 + timedelta(minutes=50), 1)],
        "auto2": [_trace(T0 + timedelta(hours=2), 1)],
    }
    chain = {c.id: c for c in ui.build_chain(records, traces)}
    assert not chain["d1"].rotation and chain["d1"].previous is chain["c1"]
    assert chain["c2"].rotation and chain["auto2"].rotation
    # The gap runs from the previous session's last trace end to this one's first start.
    assert chain["c2"].gap_ns == int(
        (timedelta(minutes=48) - timedelta(seconds=3)).total_seconds() * 1e9
    )
    assert chain["c1"].start == T0 + timedelta(minutes=1)
    assert chain["c1"].end == T0 + timedelta(minutes=2, seconds=3)
    assert ui.format_duration(chain["c2"].gap_ns) == "48 min"


def test_timeline_cuts_long_gaps_and_keeps_time_order() -> None:
    intervals = [
        (T0, T0 + timedelta(minutes=2)),
        (T0 + timedelta(minutes=5), T0 + timedelta(minutes=6)),
        (T0 + timedelta(hours=5), T0 + timedelta(hours=5, minutes=1)),
    ]
    axis = ui.TimeAxis(intervals, 100, 800)
    assert len(axis.breaks) == 1 and axis.breaks[0]["label"] == "+4.9 h"
    probes = [
        T0,
        T0 + timedelta(minutes=1),
        T0 + timedelta(minutes=5, seconds=30),
        T0 + timedelta(hours=3),
        T0 + timedelta(hours=5, minutes=1),
    ]
    xs = [axis.x(t) for t in probes]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)
    assert 100 <= xs[0] and xs[-1] <= 900
    # The first 6 busy minutes get far more width than on a linear 5-hour axis (2% of it).
    assert xs[2] - xs[0] > 0.2 * 800


def test_timeline_of_one_instant_does_not_divide_by_zero() -> None:
    axis = ui.TimeAxis([(T0, T0)], 0, 500)
    assert 0 <= axis.x(T0) <= 500 and axis.breaks == []


def test_session_filters_become_count_query_filters() -> None:
    form = ui.SessionFilters(
        user="alice", external_id="Conv", errors="yes", since="2026-01-05T09:00", until=""
    )
    wire = [c.to_filter_dict() for c in form.conditions()]
    assert form.problems == []
    assert wire[0]["column_id"] == "user_metadata.user.id" and wire[0]["operator"] == "eq"
    assert wire[1]["column_id"] == "external_id" and wire[1]["case_sensitive"] is False
    assert wire[2] == {"column_id": "has_error", "operator": "eq", "value": True, "type": "boolean"}
    assert wire[3]["column_id"] == "created_at" and wire[3]["operator"] == "gte"
    assert form.query() == {
        "user": "alice",
        "external_id": "Conv",
        "errors": "yes",
        "since": "2026-01-05T09:00",
    }


def test_bad_filter_values_are_named() -> None:
    form = ui.SessionFilters(errors="maybe", since="noon", log_stream="x")
    assert form.conditions() == []
    form.scope()
    assert any(p.startswith("errors:") for p in form.problems)
    assert any(p.startswith("from: not a date") for p in form.problems)
    assert any(p.startswith("log stream:") for p in form.problems)


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (850_000, "850 µs"),
        (412_000_000, "412 ms"),
        (3_200_000_000, "3.2 s"),
        (45 * 60 * 10**9, "45 min"),
        (None, ""),
    ],
)
def test_format_duration(ns: Any, text: str) -> None:
    assert ui.format_duration(ns) == text


def test_messages_and_content() -> None:
    assert ui.messages_of({"role": "user", "content": "hi"}) == [{"role": "user", "content": "hi"}]
    assert ui.messages_of("plain text") is None
    assert ui.content_parts([{"type": "text", "text": "a"}, {"type": "file", "file_id": "f1"}]) == [
        "a",
        "[file f1]",
    ]
    assert ui.pretty_json('{"a": 1}') == '{\n  "a": 1\n}'
    assert ui.pretty_json("7") == "7" and ui.pretty_json("not json") == "not json"


def test_access_secrets_stay_out_of_repr() -> None:
    access = ui.UIAccess()
    cookie = access.issue_cookie()
    assert access.token not in repr(access) and cookie not in repr(access)
    assert access.token not in cookie
    assert access.token_matches(access.token) and not access.token_matches(None)
    assert not access.token_matches(cookie)
    assert (
        access.login_url("http://127.0.0.1:8088/") == f"http://127.0.0.1:8088/?token={access.token}"
    )


def test_ui_cookie_expires_and_is_bound_to_its_token() -> None:
    now = [1_000_000.0]
    access = ui.UIAccess("token-a", cookie_max_age_s=60, clock=lambda: now[0])
    cookie = access.issue_cookie()
    assert access.cookie_matches(cookie)
    # Another server's token (or a new one) signs differently.
    assert not ui.UIAccess("token-b", clock=lambda: now[0]).cookie_matches(cookie)
    # Tampering with the expiry breaks the signature.
    version, expires, mac = cookie.split(".")
    assert not access.cookie_matches(f"{version}.{int(expires) + 10**6}.{mac}")
    for junk in (None, "", "v1", "v1..", "v2.1.x", "v1.notanumber.x", "v1.1" + "0" * 20 + ".x"):
        assert not access.cookie_matches(junk)
    now[0] += 59
    assert access.cookie_matches(cookie)
    now[0] += 1
    assert not access.cookie_matches(cookie)
    assert access.login_url("http://h:1", "/ui/x?user=a") == "http://h:1/ui/x?user=a&token=token-a"


def test_ui_token_is_stored_next_to_the_database(tmp_path: Any) -> None:
    from galileo_otel.server.auth import load_or_create_ui_token, ui_token_file_for

    db = tmp_path / "sub" / "g.db"
    token = load_or_create_ui_token(db)
    assert load_or_create_ui_token(db) == token and len(token) >= 32
    assert ui_token_file_for(db).stat().st_mode & 0o777 == 0o600
    # Deleting the file revokes the token: the next start makes a new one.
    ui_token_file_for(db).unlink()
    assert load_or_create_ui_token(db) != token


def test_waterfall_places_each_step_on_the_traces_time_axis() -> None:
    trace = {
        "created_at": "2026-01-01T00:00:00Z",
        "metrics": {"duration_ns": 4_000_000_000},
        "spans": [
            {
                "id": "a",
                "created_at": "2026-01-01T00:00:01Z",
                "metrics": {"duration_ns": 1_000_000_000},
                "spans": [
                    # Ends after the trace says it did: the axis stretches to show it whole.
                    {
                        "id": "b",
                        "created_at": "2026-01-01T00:00:03Z",
                        "metrics": {"duration_ns": 2_000_000_000},
                    },
                ],
            },
            {"id": "no-time", "metrics": {"duration_ns": 5}},
        ],
    }
    assert ui.waterfall(trace) == {"a": {"x": 200.0, "w": 200.0}, "b": {"x": 600.0, "w": 400.0}}
    assert ui.waterfall({"spans": []}) == {}


def test_sorting_links_toggle_and_unknown_columns_fall_back() -> None:
    known = {"started": "x", "name": "y", "total_tokens": "z"}
    sorting = ui.Sorting.parse("total_tokens", "desc", known, "started")
    assert sorting.mark("total_tokens") == " ↓" and sorting.mark("name") == ""
    assert sorting.link("total_tokens", {"q": "a b"}, "/t") == "/t?q=a+b&sort=total_tokens&dir=asc"
    # A new column starts descending (most first), except names (A to Z).
    assert sorting.link("started", {}, "/t").endswith("sort=started&dir=desc")
    assert sorting.link("name", {}, "/t").endswith("sort=name&dir=asc")
    fallback = ui.Sorting.parse("drop table", "asc", known, "started")
    assert (fallback.column, fallback.descending, fallback.query()) == ("started", True, {})
    assert ui.format_count(1234) == "1,234" and ui.format_count(None) == "—"
    assert ui.format_count(True) == "—"
