"""The web UI in a real browser: headless Chromium (Playwright) against a real local server.

Data comes from the real pipeline: the demo's simulated chat app through ``configure()``, plus
conversations sent here with ``configure()`` and ``galileo_otel.session``. Chromium is the system's
(``UI_TEST_CHROMIUM``, else ``chromium`` on PATH, else /usr/bin/chromium). Without Playwright or a
Chromium binary these tests skip, except under ``CI=true`` where they fail.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode

from galileo_otel import configure, session
from galileo_otel.api.filters import boolean, text

pytestmark = [pytest.mark.integration, pytest.mark.slow]

API_KEY = "ui-test-key"
PROJECT = "galileo-otel-demo"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The page polls every 2 s; waits are bounded and end as soon as the page shows the change.
LIVE_WAIT_MS = 20_000

HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"><b>bold</b>'


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the browser tests must run)")
    pytest.skip(reason)


def _chromium() -> str:
    path = (
        os.environ.get("UI_TEST_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
        or "/usr/bin/chromium"
    )
    if not Path(path).exists():
        _missing(f"no Chromium binary at {path} (apt-get install chromium)")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[dev]')")
    executable = _chromium()
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class Sender:
    """An app configured with configure(): ``send(turn)`` makes one trace."""

    handle: Any
    provider: TracerProvider
    send: Callable[[dict[str, Any]], None]

    def close(self) -> None:
        self.handle.shutdown(30)
        self.provider.shutdown()


def send_turns(
    server: Any,
    spool: Path,
    turns: list[dict[str, Any]],
    *,
    log_stream: str = "ui-tests",
    keep_open: bool = False,
) -> Sender | None:
    """Send one trace per turn through configure() (the real pipeline) and flush.

    A turn: ``key`` (conversation), ``user``, ``name``, ``question``, ``answer``, ``error``.
    With ``keep_open`` the app stays configured and is returned, to send more later.
    """
    provider = TracerProvider()
    handle = configure(
        tracer_provider=provider,
        api_url=server.url,
        api_key=API_KEY,
        project=PROJECT,
        log_stream=log_stream,
        create_missing=True,
        batch_delay=0.05,
        spool_dir=str(spool),
    )
    tracer = provider.get_tracer("ui-tests")

    def send(turn: dict[str, Any]) -> None:
        with session(turn["key"], user_id=turn["user"], name=turn.get("name")):
            with tracer.start_as_current_span("invoke_agent helper") as root:
                root.set_attribute("gen_ai.operation.name", "invoke_agent")
                root.set_attribute("user.id", turn["user"])
                with tracer.start_as_current_span("chat gpt-4o-mini") as chat:
                    chat.set_attribute("gen_ai.operation.name", "chat")
                    chat.set_attribute("gen_ai.provider.name", "openai")
                    chat.set_attribute("gen_ai.request.model", "gpt-4o-mini")
                    chat.set_attribute("gen_ai.usage.input_tokens", 11)
                    chat.set_attribute("gen_ai.usage.output_tokens", 7)
                    chat.set_attribute(
                        "gen_ai.input.messages",
                        json.dumps(
                            [
                                {
                                    "role": "user",
                                    "parts": [{"type": "text", "content": turn["question"]}],
                                }
                            ]
                        ),
                    )
                    chat.set_attribute(
                        "gen_ai.output.messages",
                        json.dumps(
                            [
                                {
                                    "role": "assistant",
                                    "parts": [{"type": "text", "content": turn["answer"]}],
                                    "finish_reason": "stop",
                                }
                            ]
                        ),
                    )
                if turn.get("error"):
                    with tracer.start_as_current_span("execute_tool refund") as tool:
                        tool.set_attribute("gen_ai.operation.name", "execute_tool")
                        tool.set_attribute("gen_ai.tool.name", "refund")
                        tool.record_exception(RuntimeError(turn["error"]))
                        tool.set_status(Status(StatusCode.ERROR, turn["error"]))
                    root.set_status(Status(StatusCode.ERROR, turn["error"]))

    for turn in turns:
        send(turn)
    assert handle.force_flush(30), handle.stats()
    sender = Sender(handle, provider, send)
    if keep_open:
        return sender
    sender.close()
    return None


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A local server holding the demo's traffic, one failed turn and one hostile turn."""
    from galileo_otel.demo import DemoOptions, run_demo
    from galileo_otel.server import serve_in_thread

    tmp = tmp_path_factory.mktemp("ui")
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith(("GALILEO_", "OTEL_")):
                mp.delenv(name)
        with serve_in_thread(db_path=tmp / "ui.db", api_key=API_KEY) as server:
            out = io.StringIO()
            code = run_demo(
                DemoOptions(api_url=server.url, api_key=API_KEY, progress=False, out=out)
            )
            assert code == 0, out.getvalue()
            send_turns(
                server,
                tmp / "spool-extra",
                [
                    {
                        "key": "erin-refund",
                        "user": "erin",
                        "name": "refund that fails",
                        "question": "Refund order 77 please",
                        "answer": "Trying...",
                        "error": "payments service timed out",
                    },
                    {
                        "key": f"conv {HOSTILE}",
                        "user": f"mallory{HOSTILE}",
                        "name": f"name {HOSTILE}",
                        "question": f"prompt {HOSTILE}",
                        "answer": f"answer {HOSTILE}",
                    },
                ],
            )
            yield server


def project_id(server: Any) -> str:
    (project,) = server.state.store.find_projects(PROJECT)
    return str(project["id"])


def sessions(server: Any, *filters: Any) -> list[dict[str, Any]]:
    from galileo_otel.server.query import compile_session_filter

    compiled = compile_session_filter([f.to_filter_dict() for f in filters])
    records, more = server.state.store.search_sessions(
        project_id(server), {}, compiled, None, 0, 1000
    )
    assert not more
    return records


def logged_in(browser: Any, server: Any) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(server.ui_url)
    return page


# --- access ---------------------------------------------------------------------------------


def test_without_the_token_the_ui_shows_nothing(browser: Any, ui_server: Any) -> None:
    context = browser.new_context()
    page = context.new_page()
    some = sessions(ui_server)[0]
    pid = project_id(ui_server)
    for path in (
        "/",
        f"/ui/projects/{pid}/sessions/{some['id']}",
        f"/ui/projects/{pid}/chain?user=alice",
        "/?project=" + pid,
    ):
        response = page.goto(ui_server.url + path)
        assert response is not None and response.status == 401
        assert page.locator("#locked").is_visible()
        body = page.content()
        assert "alice" not in body and some["id"] not in body and PROJECT not in body
    poll = page.request.get(ui_server.url + "/ui/poll")
    assert poll.status == 401
    context.close()


def test_a_wrong_token_shows_nothing_and_sets_no_cookie(browser: Any, ui_server: Any) -> None:
    context = browser.new_context()
    page = context.new_page()
    response = page.goto(ui_server.url + "/?token=not-the-token")
    assert response is not None and response.status == 403
    assert "not this server" in page.inner_text("#locked")
    assert "alice" not in page.content()
    assert context.cookies() == []
    context.close()


def test_the_token_url_sets_an_httponly_cookie_and_redirects_to_the_clean_url(
    browser: Any, ui_server: Any
) -> None:
    token = ui_server.ui_url.split("token=", 1)[1]
    context = browser.new_context()
    page = context.new_page()
    response = page.goto(ui_server.ui_url)
    assert response is not None and response.status == 200
    assert page.url == ui_server.url + "/"  # the token is gone from the address bar
    (cookie,) = context.cookies()
    assert cookie["httpOnly"] is True
    # Lax: a link to a page from a chat or a terminal opens it logged in.
    assert cookie["sameSite"] == "Lax"
    # Persistent (an expiry, not a browser-session cookie): about 30 days from now.
    assert cookie["expires"] > time.time() + 29 * 86400
    assert cookie["value"] != token  # the cookie is not the token itself
    assert page.evaluate("document.cookie") == ""  # scripts cannot read it
    assert page.locator("#sessions tbody tr").count() > 0
    # The cookie opens the UI only: the API keeps its key rule.
    api = page.request.get(ui_server.url + "/projects")
    assert api.status == 401
    # A second browser is still locked out until it opens the URL itself.
    other = browser.new_context().new_page()
    other.goto(ui_server.url + "/")
    assert other.locator("#locked").is_visible()
    other.context.close()
    context.close()


# --- list -> chain -> session -> trace --------------------------------------------------------


def test_click_through_list_chain_session_trace(browser: Any, ui_server: Any) -> None:
    page = logged_in(browser, ui_server)
    everything = sessions(ui_server)
    rows = page.locator("#sessions tbody tr")
    assert rows.count() == len(everything)
    assert page.inner_text("#summary").startswith(
        f"Sessions 1\N{EN DASH}{len(everything)} of {len(everything)}"
    )

    alice = sessions(ui_server, text("user_metadata.user.id") == "alice")
    page.locator("#sessions a.user-link", has_text="alice").first.click()
    page.wait_for_selector("#timeline")
    assert "user=alice" in page.url
    assert page.locator("#timeline rect.bar").count() == len(alice)
    assert page.locator("#chain li").count() == len(alice)
    # The demo idles one of alice's conversations for 45 minutes: exactly one rotation.
    rotated = page.locator("#chain li.rotation")
    assert rotated.count() == 1
    # 45 minutes of idle plus the 30-120 s the demo puts between turns.
    assert re.search(r"rotated after 4[5-7] min idle", rotated.inner_text())
    # The demo's clock is simulated, and the page says so where it names the gap.
    assert "idle (simulated)" in rotated.inner_text()
    assert "(simulated)" in (page.locator("#timeline text.link-label").text_content() or "")
    assert page.locator("#timeline path.link.rotation").count() == 1
    chained = sum(1 for s in alice if s["previous_session_id"])
    assert page.locator("#timeline path.link").count() == chained

    rotated.locator("a.session-link").click()
    page.wait_for_selector("#traces")
    sid = page.url.rsplit("/", 1)[1]
    record = next(s for s in alice if s["id"] == sid)
    assert page.inner_text("#session-fields").count(record["external_id"]) >= 1
    previous = page.locator("#previous-link")
    assert previous.get_attribute("href", timeout=1000).endswith(record["previous_session_id"])
    assert "continues it after a rotation" in page.inner_text("#chain-links")
    assert page.locator("#traces tbody tr").count() == record["num_traces"]

    # Back to the first session of that conversation: its traces in order, then one trace.
    previous.click()
    page.wait_for_selector("#traces")
    pid = project_id(ui_server)
    stored = ui_server.state.store.session_traces(pid, record["previous_session_id"])
    trace_rows = page.locator("#traces tbody tr")
    assert [trace_rows.nth(i).get_attribute("data-trace") for i in range(trace_rows.count())] == [
        t["id"] for t in stored
    ]
    page.locator("#traces tbody tr").first.locator("a.trace-link").last.click()
    page.wait_for_selector("#steps")
    trace = stored[0]
    assert trace["id"] in page.inner_text("#trace-summary")
    steps = page.locator("#steps li.step")
    assert steps.count() == _count_steps(trace)
    llm = _first(trace, "llm")
    llm_step = page.locator(f'li.step[data-step="{llm["id"]}"]')
    summary = llm_step.locator("summary").first.inner_text()
    assert llm["model"] in summary
    metrics = llm["metrics"]
    assert f"{metrics['num_input_tokens']} → {metrics['num_output_tokens']} tok" in summary
    assert llm["input"][-1]["content"] in llm_step.inner_text()
    tool = _first(trace, "tool")
    if tool is not None:  # tool topics: the call and its result are both shown
        tool_step = page.locator(f'li.step[data-step="{tool["id"]}"]')
        assert tool["tool_call_id"] in tool_step.inner_text()
        assert json.loads(tool["output"]) == json.loads(
            tool_step.locator(".io").last.locator("pre").inner_text()
        )
    page.context.close()


def _walk(step: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for child in step.get("spans") or []:
        yield child
        yield from _walk(child)


def _count_steps(trace: dict[str, Any]) -> int:
    return sum(1 for _ in _walk(trace))


def _first(trace: dict[str, Any], kind: str) -> Any:
    return next((s for s in _walk(trace) if s["type"] == kind), None)


def test_errors_show_in_the_list_the_chain_and_the_trace(browser: Any, ui_server: Any) -> None:
    page = logged_in(browser, ui_server)
    failing = sessions(ui_server, boolean("has_error").is_true())
    assert [s["external_id"] for s in failing] == ["erin-refund"]
    page.select_option("select[name=errors]", "yes")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**errors=yes**")
    rows = page.locator("#sessions tbody tr")
    assert rows.count() == 1
    assert rows.first.get_attribute("data-session") == failing[0]["id"]
    assert "has-error" in (rows.first.get_attribute("class") or "")
    rows.first.locator("a.session-link").click()
    page.locator("#traces a.trace-link").first.click()
    page.wait_for_selector("#steps")
    # The tool failed, and so did the agent step around it.
    assert page.locator("li.step.error").count() == 2
    failed = page.locator("li.step.type-tool.error")
    assert "payments service timed out" in failed.inner_text()
    assert "error 500" in failed.locator("summary").first.inner_text()
    assert "payments service timed out" in page.inner_text("#trace-summary + p.problem")
    page.context.close()


def test_filters_and_paging_match_query_sessions(browser: Any, ui_server: Any) -> None:
    page = logged_in(browser, ui_server)
    bob = sessions(ui_server, text("user_metadata.user.id") == "bob")
    page.fill("input[name=user]", "bob")
    page.click("#filters button[type=submit]")
    page.wait_for_url("**user=bob**")
    shown = page.locator("#sessions tbody tr")
    assert [shown.nth(i).get_attribute("data-session") for i in range(shown.count())] == [
        s["id"] for s in bob
    ]

    conv = sessions(ui_server, text("external_id").contains("CONV-1", case_sensitive=False))
    page.goto(ui_server.url + "/?external_id=CONV-1")
    assert page.locator("#sessions tbody tr").count() == len(conv) > 0

    # Paging: three at a time, newest first, no session twice, all of them reached.
    everything = sessions(ui_server)
    seen: list[str | None] = []
    page.goto(ui_server.url + "/?limit=3")
    for _ in range(len(everything)):
        rows = page.locator("#sessions tbody tr")
        seen += [rows.nth(i).get_attribute("data-session") for i in range(rows.count())]
        if page.locator("#next-page").count() == 0:
            break
        page.click("#next-page")
        page.wait_for_selector("#prev-page")
    assert seen == [s["id"] for s in everything]

    # A time range that ends before anything was created matches nothing.
    page.goto(ui_server.url + "/?until=2000-01-01T00:00")
    assert "No sessions match" in page.inner_text("#summary")
    page.goto(ui_server.url + "/?since=yesterday")
    assert "not a date and time" in page.inner_text("main")
    page.context.close()


def test_user_content_is_escaped_everywhere(browser: Any, ui_server: Any) -> None:
    page = logged_in(browser, ui_server)
    (hostile,) = sessions(ui_server, text("external_id").contains("<script>"))
    pid = project_id(ui_server)
    (trace,) = ui_server.state.store.session_traces(pid, hostile["id"])
    user = hostile["user_metadata"]["user.id"]
    urls = [
        ui_server.url + "/",
        f"{ui_server.url}/ui/projects/{pid}/sessions/{hostile['id']}",
        f"{ui_server.url}/ui/projects/{pid}/traces/{trace['id']}",
        f"{ui_server.url}/ui/projects/{pid}/chain?" + httpx.QueryParams({"user": user}).__str__(),
    ]
    for url in urls:
        page.goto(url)
        main = page.locator("main")
        assert HOSTILE in main.inner_text(), url  # shown as text, character for character
        assert main.locator("script").count() == 0, url
        assert main.locator("img").count() == 0, url
        assert main.locator("b", has_text="bold").count() == 0, url
        assert page.evaluate("window.__pwned") is None, url
    page.context.close()


def test_security_headers_forbid_inline_script(ui_server: Any) -> None:
    with httpx.Client(base_url=ui_server.url) as client:
        login = client.get(ui_server.ui_url.removeprefix(ui_server.url))
        assert login.status_code == 303 and login.headers["location"] == "/"
        page = client.get("/")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert page.headers["cache-control"] == "no-store"


# --- live ---------------------------------------------------------------------------------------


def test_a_new_trace_appears_without_reloading(
    browser: Any, ui_server: Any, tmp_path: Path
) -> None:
    turn = {"key": "live-conv", "user": "liv", "question": "first question", "answer": "one"}
    app = send_turns(ui_server, tmp_path / "spool", [turn], keep_open=True)
    assert app is not None
    try:
        (live,) = sessions(ui_server, text("external_id") == "live-conv")
        pid = project_id(ui_server)
        page = logged_in(browser, ui_server)
        listing = logged_in(browser, ui_server)  # a window of its own: never a background tab
        before = listing.locator("#sessions tbody tr").count()
        page.goto(f"{ui_server.url}/ui/projects/{pid}/sessions/{live['id']}")
        assert page.locator("#traces tbody tr").count() == 1
        page.evaluate("window.__same_page = true")
        # A page whose own data does not change keeps what the reader did with it.
        (other,) = sessions(ui_server, text("external_id") == "erin-refund")
        (other_trace,) = ui_server.state.store.session_traces(pid, other["id"])
        untouched = logged_in(browser, ui_server)
        untouched.goto(f"{ui_server.url}/ui/projects/{pid}/traces/{other_trace['id']}")
        untouched.locator("#steps > li.step > details > summary").first.click()  # fold it
        assert untouched.locator("#steps > li.step > details[open]").count() == 0

        app.send({**turn, "question": "second question", "answer": "two"})
        app.send({**turn, "key": "live-conv-2", "question": "elsewhere", "answer": "three"})
        assert app.handle.force_flush(30)

        from playwright.sync_api import expect

        expect(page.locator("#traces tbody tr")).to_have_count(2, timeout=LIVE_WAIT_MS)
        assert "second question" in page.inner_text("#traces")
        assert page.evaluate("window.__same_page") is True  # updated in place, not reloaded
        expect(listing.locator("#sessions tbody tr")).to_have_count(
            before + 1, timeout=LIVE_WAIT_MS
        )
        # The trace page fetched the new version too, and left its folded step folded.
        expect(untouched.locator("#live-status")).to_contain_text("updated", timeout=LIVE_WAIT_MS)
        assert untouched.locator("#steps > li.step > details[open]").count() == 0
        for window in (page, listing, untouched):
            window.context.close()
    finally:
        app.close()


# --- the README's screenshots ---------------------------------------------------------------------


def test_the_screenshot_script_photographs_every_page(browser: Any, tmp_path: Path) -> None:
    # A process of its own: Playwright's sync API does not nest in this one's running instance.
    script = Path(__file__).parents[2] / "docs" / "make_screenshots.py"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GALILEO_", "OTEL_"))}
    done = subprocess.run(
        [sys.executable, str(script), "--out", str(tmp_path), "--chromium", _chromium()],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    for name in (
        "ui-sessions",
        "ui-chain",
        "ui-session",
        "ui-trace",
        "ui-traces",
        "ui-trace-error",
    ):
        png = (tmp_path / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 20_000, name


# --- every day: deep links, a restart, traces, search, sorting, the waterfall -----------------


def test_the_token_opens_a_deep_link_and_leaves_the_address_bar(
    browser: Any, ui_server: Any
) -> None:
    token = ui_server.ui_url.split("token=", 1)[1]
    pid = project_id(ui_server)
    context = browser.new_context()
    page = context.new_page()
    deep = f"{ui_server.url}/ui/projects/{pid}/chain?user=alice"
    response = page.goto(f"{deep}&token={token}")
    assert response is not None and response.status == 200
    assert page.url == deep  # the same page, the token gone
    assert page.locator("#timeline rect.bar").count() > 0
    one = sessions(ui_server)[0]
    page.goto(f"{ui_server.url}/ui/projects/{pid}/sessions/{one['id']}")
    assert page.locator("#session-fields").is_visible()
    context.close()


def test_the_cookie_survives_a_browser_restart(
    browser: Any, ui_server: Any, tmp_path: Path
) -> None:
    profile = tmp_path / "profile"
    chromium = browser.browser_type
    first = chromium.launch_persistent_context(
        str(profile), executable_path=_chromium(), args=CHROMIUM_ARGS
    )
    page = first.new_page()
    page.goto(ui_server.ui_url)
    assert page.locator("#sessions").is_visible()
    first.close()
    # The same profile, a new browser process: a browser-session cookie would be gone.
    again = chromium.launch_persistent_context(
        str(profile), executable_path=_chromium(), args=CHROMIUM_ARGS
    )
    page = again.new_page()
    response = page.goto(ui_server.url + "/")
    assert response is not None and response.status == 200
    assert page.locator("#sessions").is_visible()
    again.close()


def _steps(step: dict[str, Any]) -> list[dict[str, Any]]:
    out, stack = [], list(step.get("spans") or [])
    while stack:
        child = stack.pop()
        out.append(child)
        stack.extend(child.get("spans") or [])
    return out


def _token_cells(page: Any) -> list[int]:
    cells = page.locator("#traces tbody tr td:nth-child(6)").all_inner_texts()
    return [int(c.replace(",", "")) for c in cells]


def test_traces_list_search_and_sort_by_clicking_headers(browser: Any, ui_server: Any) -> None:
    page = logged_in(browser, ui_server)
    page.click("#nav-traces")
    page.wait_for_selector("#traces")
    total = page.locator("#traces tbody tr").count()
    assert total > 10
    page.fill("#search", "REFUND")
    page.click("#trace-filters button[type=submit]")
    page.wait_for_selector("#summary")
    found = page.locator("#traces tbody tr")
    # The same traces as a plain scan of what the server holds: the trace's or any step's
    # input or output holds the text, case-insensitively.
    expected = {
        t["id"]
        for s in sessions(ui_server)
        for t in ui_server.state.store.session_traces(project_id(ui_server), s["id"])
        if any(
            "refund" in json.dumps(step.get(k), ensure_ascii=False).lower()
            for step in [t, *_steps(t)]
            for k in ("input", "output")
        )
    }
    assert 0 < len(expected) < total
    shown = {found.nth(i).get_attribute("data-trace") for i in range(found.count())}
    assert shown == expected
    assert "q=REFUND" in page.url
    page.fill("#search", "")
    page.click("#trace-filters button[type=submit]")
    page.locator("a.sort[data-sort=total_tokens]").click()
    page.wait_for_url(re.compile(r"sort=total_tokens"))
    most_first = _token_cells(page)
    assert most_first == sorted(most_first, reverse=True) and len(set(most_first)) > 1
    page.locator("a.sort[data-sort=total_tokens]").click()
    page.wait_for_url(re.compile(r"dir=asc"))
    assert _token_cells(page) == sorted(most_first)
    page.context.close()


def test_search_finds_a_session_by_what_was_said(browser: Any, ui_server: Any) -> None:
    page = logged_in(browser, ui_server)
    page.fill("#search", "refund order 77")
    page.click("#filters button[type=submit]")
    page.wait_for_selector("#summary")
    rows = page.locator("#sessions tbody tr")
    assert rows.count() == 1 and "refund that fails" in rows.inner_text()
    page.context.close()


def test_trace_waterfall_and_collapsible_tree(browser: Any, ui_server: Any) -> None:
    page = logged_in(browser, ui_server)
    page.click("#nav-traces")
    page.fill("#search", "Refund order 77")
    page.click("#trace-filters button[type=submit]")
    page.locator("#traces a.trace-link").first.click()
    page.wait_for_selector("#steps")
    steps = page.locator("#steps li.step").count()
    assert steps >= 3
    bars = page.locator("#steps svg.wf rect.wf-bar")
    assert bars.count() == steps
    # Each bar lies inside the trace's time axis.
    for i in range(bars.count()):
        x = float(bars.nth(i).get_attribute("x") or "nan")
        w = float(bars.nth(i).get_attribute("width") or "nan")
        assert 0 <= x and x + w <= 1000.5
    assert "1" in page.inner_text("#trace-totals")
    # The waterfall overview: a row per step, each linking to the step in the tree.
    assert page.locator("#waterfall tr").count() == steps
    assert page.locator("#waterfall rect.wf-bar").count() == steps
    page.locator("#waterfall a").last.click()
    target = page.url.split("#", 1)[1]
    assert target.startswith("step-") and page.locator(f"#{target}").is_visible()
    page.click("#collapse-all")
    assert page.locator("#steps details[open]").count() == 0
    assert not page.locator("#steps li.step li.step").first.is_visible()
    page.click("#expand-all")
    assert page.locator("#steps details[open]").count() == page.locator("#steps details").count()
    # One step folded by hand: its children hide, its siblings stay.
    page.locator("#steps > li.step > details > summary").first.click()
    assert not page.locator("#steps > li.step li.step").first.is_visible()
    page.context.close()


def test_empty_server_says_how_to_fill_it(browser: Any, tmp_path: Path) -> None:
    from galileo_otel.server import serve_in_thread

    with serve_in_thread(db_path=tmp_path / "empty.db", api_key=API_KEY) as empty:
        page = logged_in(browser, empty)
        assert "No sessions yet" in page.inner_text("#empty")
        assert "galileo-otel demo" in page.inner_text("#empty")
        response = page.goto(empty.url + "/?project=nope")
        assert response is not None and response.status == 404
        assert "does not exist" in page.inner_text("#missing")
        page.context.close()
