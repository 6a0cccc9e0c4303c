"""The web UI's access rule over plain HTTP (no browser needed): token -> cookie -> pages.

The browser tests (test_ui_browser.py) check the same in Chromium; these run wherever the server
extra is installed, and cover ``galileo-otel serve`` printing the UI's URL.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from galileo_otel.api.client import GalileoClient

pytestmark = pytest.mark.integration

KEY = "ui-http-key"
BIN = Path(sys.executable).parent / "galileo-otel"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Any]:
    from galileo_otel.server import serve_in_thread

    with serve_in_thread(db_path=tmp_path / "ui.db", api_key=KEY) as running:
        with GalileoClient(api_url=running.url, api_key=KEY) as client:
            dest = client.resolve_destination(project="secret-project", log_stream="default")
            client.create_session(
                project_id=dest.project_id, name="<i>private</i> chat", external_id="conv-9"
            )
        yield running


def token_of(server: Any) -> str:
    prefix = server.url + "/?token="
    assert server.ui_url.startswith(prefix)
    return str(httpx.QueryParams(server.ui_url.split("?", 1)[1])["token"])


def test_ui_url_is_the_server_url_with_a_token(server: Any) -> None:
    token = token_of(server)
    assert len(token) >= 32
    assert token != server.api_key
    assert token not in repr(server) and token not in repr(server.app.state.galileo_ui)


def test_no_cookie_no_data(server: Any) -> None:
    with httpx.Client(base_url=server.url) as client:
        for path in ("/", "/?project=x", "/ui/poll"):
            answer = client.get(path)
            assert answer.status_code == 401, path
            assert "secret-project" not in answer.text and "private" not in answer.text
        wrong = client.get("/", params={"token": token_of(server) + "x"})
        assert wrong.status_code == 403
        assert "set-cookie" not in wrong.headers
        assert "secret-project" not in wrong.text


def test_token_sets_a_cookie_and_redirects_to_the_clean_url(server: Any) -> None:
    with httpx.Client(base_url=server.url) as client:
        login = client.get("/", params={"token": token_of(server), "user": "bob"})
        assert login.status_code == 303
        assert login.headers["location"] == "/?user=bob"  # other parameters kept
        cookie = login.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie
        # Persistent: it outlives a browser restart, and expires on its own.
        assert "max-age=2592000" in cookie
        assert token_of(server).lower() not in cookie
        page = client.get("/")
        assert page.status_code == 200
        assert "secret-project" in page.text
        # Escaped, not markup.
        assert "&lt;i&gt;private&lt;/i&gt; chat" in page.text and "<i>private" not in page.text
        poll = client.get("/ui/poll")
        assert poll.status_code == 200 and poll.json()["version"]
        # The cookie opens the UI only: the API still wants its key.
        assert client.get("/projects").status_code == 401
        assert client.get("/projects", headers={"Galileo-API-Key": KEY}).status_code == 200


def test_a_cookie_from_another_server_does_not_open_this_one(server: Any, tmp_path: Path) -> None:
    from galileo_otel.server import serve_in_thread

    with serve_in_thread(db_path=tmp_path / "other.db", api_key=KEY) as other:
        with httpx.Client() as client:
            client.get(other.ui_url)
            assert client.get(other.url + "/").status_code == 200
            # Same host, other port: a separate cookie, and the other server's value anyway.
            cookies = dict(client.cookies)
            assert client.get(server.url + "/").status_code == 401
            name = next(iter(cookies))
            forged = httpx.get(
                server.url + "/",
                headers={"cookie": f"galileo_otel_ui_{server.port}={cookies[name]}"},
            )
            assert forged.status_code == 401


def test_unknown_pages_say_not_found_without_data(server: Any) -> None:
    with httpx.Client(base_url=server.url) as client:
        client.get(server.ui_url.removeprefix(server.url))
        missing = client.get("/ui/projects/nope/sessions/nope")
        assert missing.status_code == 404
        assert "no project nope" in missing.text and "does not exist" in missing.text
        assert "secret-project" in missing.text  # the projects that do exist, to pick from
        pid = server.state.store.find_projects("secret-project")[0]["id"]
        missing = client.get(f"/ui/projects/{pid}/sessions/nope")
        assert missing.status_code == 404 and "no session nope" in missing.text


def test_serve_prints_the_ui_url(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GALILEO_", "OTEL_"))}
    proc = subprocess.Popen(
        [
            str(BIN),
            "serve",
            "--port",
            "0",
            "--db",
            str(tmp_path / "s.db"),
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**env, "GALILEO_API_KEY": KEY},
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
        assert "?token=" in url
        with httpx.Client() as client:
            assert client.get(url.split("?")[0]).status_code == 401
            assert client.get(url, follow_redirects=True).status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:  # pragma: no cover - a hung server fails the test
            proc.kill()
            proc.wait(5)
        assert proc.stdout is not None
        proc.stdout.close()


def test_empty_server_and_unknown_user_render(tmp_path: Path) -> None:
    from galileo_otel.server import serve_in_thread

    with serve_in_thread(db_path=tmp_path / "empty.db", api_key=KEY) as empty:
        with httpx.Client(base_url=empty.url) as client:
            client.get(empty.ui_url.removeprefix(empty.url))
            page = client.get("/")
            assert page.status_code == 200 and "No sessions yet" in page.text
            assert "galileo-otel demo" in page.text
            with GalileoClient(api_url=empty.url, api_key=KEY) as api:
                pid = api.resolve_destination(project="p", log_stream="default").project_id
            chain = client.get(f"/ui/projects/{pid}/chain", params={"user": "nobody"})
            assert chain.status_code == 200 and "0 sessions" in chain.text
            bad = client.get("/", params={"since": "noon", "errors": "maybe"})
            assert bad.status_code == 422
            assert "from: not a date" in bad.text and "errors: expected" in bad.text


def test_without_jinja2_the_ui_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from galileo_otel.server import serve_in_thread, ui

    def no_jinja2() -> Any:
        raise ImportError("No module named 'jinja2'", name="jinja2")

    monkeypatch.setattr(ui, "_environment", no_jinja2)
    with serve_in_thread(db_path=tmp_path / "nj.db", api_key=KEY) as bare:
        answer = httpx.get(bare.url + "/")
        assert answer.status_code == 503
        assert "pip install 'galileo-otel[server]'" in answer.text
        assert httpx.get(bare.url + "/healthcheck").status_code == 200
