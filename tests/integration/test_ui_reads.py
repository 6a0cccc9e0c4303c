"""The UI's daily pages over plain HTTP against a real server: deep links with the token, the
traces list, search over inputs and outputs, sorting, totals, the trace waterfall, empty states.

The browser tests (test_ui_browser.py) click through the same pages in Chromium.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from galileo_otel.api.client import GalileoClient

pytestmark = pytest.mark.integration

KEY = "ui-reads-key"
T0 = "2026-11-27T10:00:00+00:00"


def _llm(name: str, start: str, ms: int, tin: int, tout: int, *, error: bool = False) -> dict:
    span: dict[str, Any] = {
        "type": "llm",
        "name": name,
        "created_at": start,
        "input": [{"role": "user", "content": "q"}],
        "output": {"role": "assistant", "content": "a"},
        "metrics": {
            "duration_ns": ms * 1_000_000,
            "num_input_tokens": tin,
            "num_output_tokens": tout,
        },
    }
    if error:
        span["status_code"] = 500
    return span


def _trace(question: str, answer: str, start: str, ms: int, spans: list[dict]) -> dict:
    return {
        "type": "trace",
        "name": "turn",
        "input": question,
        "output": answer,
        "created_at": start,
        "metrics": {"duration_ns": ms * 1_000_000},
        "spans": spans,
    }


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[tuple[Any, str, dict[str, str]]]:
    """A server with two sessions: refunds (2 traces, one failed step) and shipping (1 trace)."""
    from galileo_otel.server import serve_in_thread

    with serve_in_thread(db_path=tmp_path / "ui.db", api_key=KEY) as server:
        with GalileoClient(api_url=server.url, api_key=KEY) as client:
            dest = client.resolve_destination(project="shop", log_stream="default")
            pid = dest.project_id
            ids = {}
            for ext in ("refunds", "shipping"):
                ids[ext] = str(client.create_session(project_id=pid, external_id=ext).id)
        traces = {
            "refunds": [
                _trace(
                    "Can I get a REFUND for order 17?",
                    "Refunds take 14 days.",
                    T0,
                    900,
                    [_llm("chat", "2026-11-27T10:00:00.100+00:00", 500, 100, 20)],
                ),
                _trace(
                    "Is my refund sent?",
                    "The payment service failed.",
                    "2026-11-27T10:05:00+00:00",
                    2000,
                    [
                        _llm("chat", "2026-11-27T10:05:00+00:00", 400, 300, 30),
                        _llm("retry", "2026-11-27T10:05:01+00:00", 900, 50, 5, error=True),
                    ],
                ),
            ],
            "shipping": [
                _trace(
                    "How long to Lisbon?",
                    "Three to five days via the parcel service.",
                    "2026-11-27T11:00:00+00:00",
                    300,
                    [_llm("chat", "2026-11-27T11:00:00+00:00", 250, 40, 10)],
                )
            ],
        }
        with httpx.Client(base_url=server.url, headers={"Galileo-API-Key": KEY}) as http:
            for ext, batch in traces.items():
                answer = http.post(
                    f"/v2/projects/{pid}/traces",
                    json={"session_id": ids[ext], "traces": batch, "reliable": True},
                )
                assert answer.status_code == 200, answer.text
        yield server, str(pid), ids


def _login(server: Any, client: httpx.Client) -> None:
    assert client.get(server.ui_url.removeprefix(server.url)).status_code == 303


def _rows(html: str, attr: str) -> list[str]:
    return re.findall(rf'data-{attr}="([^"]+)"', html)


def test_the_token_opens_any_deep_link_and_drops_out_of_the_url(seeded: Any) -> None:
    server, pid, ids = seeded
    token = server.ui_url.split("token=", 1)[1]
    deep = [
        f"/ui/projects/{pid}/chain?user=alice",
        f"/ui/projects/{pid}/sessions/{ids['refunds']}",
        f"/ui/projects/{pid}/traces?q=refund",
    ]
    for path in deep:
        with httpx.Client(base_url=server.url) as client:
            assert client.get(path).status_code == 401, path
            sep = "&" if "?" in path else "?"
            login = client.get(f"{path}{sep}token={token}")
            assert login.status_code == 303, path
            assert login.headers["location"] == path  # the same page, without the token
            cookie = login.headers["set-cookie"].lower()
            assert "max-age=" in cookie and "httponly" in cookie and "samesite=lax" in cookie
            assert client.get(path).status_code == 200, path
    with httpx.Client(base_url=server.url) as client:
        wrong = client.get(f"{deep[1]}?token=nope")
        assert wrong.status_code == 403 and "set-cookie" not in wrong.headers


def test_the_cookie_survives_a_server_restart_on_the_same_database(tmp_path: Path) -> None:
    from galileo_otel.server import serve_in_thread

    with serve_in_thread(db_path=tmp_path / "a.db", api_key=KEY) as first:
        url = first.ui_url
        with httpx.Client(base_url=first.url) as client:
            client.get(url.removeprefix(first.url))
            cookie = next(iter(client.cookies.values()))
    assert (tmp_path / "a.db.ui-token").stat().st_mode & 0o777 == 0o600
    with serve_in_thread(db_path=tmp_path / "a.db", api_key=KEY) as again:
        # The same token (stored next to the database), so the printed URL still works...
        assert again.ui_url.split("token=")[1] == url.split("token=")[1]
        name = f"galileo_otel_ui_{again.port}"
        # ... and so does a cookie issued before the restart.
        assert httpx.get(again.url + "/", cookies={name: cookie}).status_code == 200
        forged = cookie.rsplit(".", 1)[0] + ".AAAA"
        assert httpx.get(again.url + "/", cookies={name: forged}).status_code == 401


def test_traces_list_search_sort_and_totals(seeded: Any) -> None:
    server, pid, _ = seeded
    with httpx.Client(base_url=server.url) as client:
        _login(server, client)
        page = client.get(f"/ui/projects/{pid}/traces")
        assert page.status_code == 200
        assert "Traces 1\N{EN DASH}3 of 3" in page.text
        starts = _rows(page.text, "trace")
        assert len(starts) == 3
        # Newest first by default: the shipping trace (11:00) leads.
        assert "How long to Lisbon?" in page.text.split(f'data-trace="{starts[0]}"')[1][:600]

        # Search is case-insensitive over the trace's input and output...
        found = client.get(f"/ui/projects/{pid}/traces", params={"q": "refund"})
        assert len(_rows(found.text, "trace")) == 2
        # ... and over any step's input or output (only the llm steps say "q" / "a").
        assert len(_rows(client.get(f"/ui/projects/{pid}/traces?q=parcel").text, "trace")) == 1
        none = client.get(f"/ui/projects/{pid}/traces", params={"q": "zebra"})
        assert _rows(none.text, "trace") == [] and "No traces match" in none.text

        # Sorted by tokens, most first: 385, 120, 50.
        by_tokens = client.get(
            f"/ui/projects/{pid}/traces", params={"sort": "total_tokens", "dir": "desc"}
        )
        cells = re.findall(r'title="input [^"]*">([\d,—]+)</td>', by_tokens.text)
        assert cells == ["385", "120", "50"]
        ascending = client.get(
            f"/ui/projects/{pid}/traces", params={"sort": "total_tokens", "dir": "asc"}
        )
        assert re.findall(r'title="input [^"]*">([\d,—]+)</td>', ascending.text) == [
            "50",
            "120",
            "385",
        ]
        # The header links toggle the direction of the sorted column.
        assert "sort=total_tokens&amp;dir=asc" in by_tokens.text

        failing = client.get(f"/ui/projects/{pid}/traces", params={"errors": "yes"})
        assert len(_rows(failing.text, "trace")) == 1 and "Is my refund sent?" in failing.text


def test_sessions_list_sorts_by_totals_and_searches_their_traces(seeded: Any) -> None:
    server, pid, ids = seeded
    with httpx.Client(base_url=server.url) as client:
        _login(server, client)
        page = client.get("/", params={"project": pid, "sort": "total_tokens", "dir": "desc"})
        assert _rows(page.text, "session") == [ids["refunds"], ids["shipping"]]
        page = client.get("/", params={"project": pid, "sort": "total_tokens", "dir": "asc"})
        assert _rows(page.text, "session") == [ids["shipping"], ids["refunds"]]
        # Totals: refunds has 505 tokens, 3 llm calls, and traces of 0.9 s + 2 s.
        row = page.text.split(f'data-session="{ids["refunds"]}"')[1].split("</tr>")[0]
        assert ">505<" in row and ">3<" in row and "2.9 s" in row
        found = client.get("/", params={"project": pid, "q": "lisbon"})
        assert _rows(found.text, "session") == [ids["shipping"]]
        none = client.get("/", params={"project": pid, "q": "zebra"})
        assert _rows(none.text, "session") == []
        assert "No sessions match these filters" in none.text


def test_session_page_sorts_its_traces_and_keeps_their_arrival_number(seeded: Any) -> None:
    server, pid, ids = seeded
    path = f"/ui/projects/{pid}/sessions/{ids['refunds']}"
    with httpx.Client(base_url=server.url) as client:
        _login(server, client)

        def turns(**params: str) -> list[str]:
            page = client.get(path, params=params)
            assert page.status_code == 200, page.text
            return re.findall(r'class="trace-link" href="[^"]+">(\d+)</a>', page.text)

        # Arrival order by default; the 2nd trace has 385 tokens, the 1st 120.
        page = client.get(path)
        assert "in arrival order" in page.text
        assert turns() == ["1", "2"]
        assert turns(sort="total_tokens", dir="desc") == ["2", "1"]
        assert turns(sort="total_tokens", dir="asc") == ["1", "2"]
        assert turns(sort="duration_ns", dir="desc") == ["2", "1"]
        assert turns(sort="turn", dir="desc") == ["2", "1"]
        assert turns(sort="nonsense") == ["1", "2"]  # an unknown column: the default
        sorted_page = client.get(path, params={"sort": "total_tokens", "dir": "desc"})
        assert "# is the arrival order" in sorted_page.text
        # The header links toggle the sorted column's direction and keep the table in view.
        assert "sort=total_tokens&amp;dir=asc#traces" in sorted_page.text
        assert "sort=turn&amp;dir=desc#traces" in page.text


def test_trace_page_shows_totals_and_a_waterfall_bar_per_step(seeded: Any) -> None:
    server, pid, _ = seeded
    with httpx.Client(base_url=server.url) as client:
        _login(server, client)
        traces = client.get(f"/ui/projects/{pid}/traces", params={"q": "refund sent"}).text
        (trace_id,) = _rows(traces, "trace")
        page = client.get(f"/ui/projects/{pid}/traces/{trace_id}").text
        totals = page.split('id="trace-totals"')[1].split("</table>")[0]
        assert "385" in totals and "350 in / 35 out" in totals
        assert re.search(r"failed steps</th><td><span class=\"err\">1</span>", totals)
        waterfall, steps = page.split('id="waterfall"')[1].split('id="steps"')
        bar = r'<rect class="wf-bar" x="([\d.]+)" y="1" width="([\d.]+)"'
        # The trace runs 2 s: chat at 0 s for 0.4 s, retry at 1 s for 0.9 s; the same bars in
        # the waterfall overview and in the collapsible tree.
        for part in (waterfall, steps):
            bars = re.findall(bar, part)
            assert [(float(x), float(w)) for x, w in bars] == [(0.0, 200.0), (500.0, 450.0)]
        assert re.findall(r'href="#step-([0-9a-f-]+)"', waterfall) == re.findall(
            r'id="step-([0-9a-f-]+)"', steps
        )
        assert page.count("<details open>") == 2 and 'id="collapse-all"' in page


def test_empty_states_say_what_to_do(tmp_path: Path) -> None:
    from galileo_otel.server import serve_in_thread

    with serve_in_thread(db_path=tmp_path / "empty.db", api_key=KEY) as server:
        with httpx.Client(base_url=server.url) as client:
            _login(server, client)
            home = client.get("/")
            assert "No sessions yet" in home.text and "galileo-otel demo" in home.text
            assert f"GALILEO_API_URL={server.url}" in home.text
            assert KEY not in home.text
            unknown = client.get("/", params={"project": "nope"})
            assert unknown.status_code == 404
            assert "no project nope" in unknown.text and "does not exist" in unknown.text
            with GalileoClient(api_url=server.url, api_key=KEY) as api:
                pid = api.resolve_destination(project="fresh", log_stream="default").project_id
            fresh = client.get("/", params={"project": pid})
            assert "No sessions in fresh yet" in fresh.text
            traces = client.get(f"/ui/projects/{pid}/traces")
            assert "No traces in fresh yet" in traces.text


def test_a_trace_without_llm_calls_counts_zero_tokens_and_sorts_as_zero(seeded: Any) -> None:
    server, pid, ids = seeded
    bare = _trace("ping", "pong", "2026-11-27T12:00:00+00:00", 5, [])
    with httpx.Client(base_url=server.url, headers={"Galileo-API-Key": KEY}) as http:
        answer = http.post(
            f"/v2/projects/{pid}/traces",
            json={"session_id": ids["shipping"], "traces": [bare], "reliable": True},
        )
        assert answer.status_code == 200, answer.text
    with httpx.Client(base_url=server.url) as client:
        _login(server, client)
        for direction, expected in (
            ("desc", ["385", "120", "50", "0"]),
            ("asc", ["0", "50", "120", "385"]),
        ):
            page = client.get(
                f"/ui/projects/{pid}/traces", params={"sort": "total_tokens", "dir": direction}
            )
            assert re.findall(r'title="input [^"]*">([\d,—]+)</td>', page.text) == expected
