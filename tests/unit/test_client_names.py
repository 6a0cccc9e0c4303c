"""The client resolves its project / log stream names once, lazily, and per-call ids win."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from conftest_api import API_KEY, BASE, LOG_STREAM_ID, PROJECT_ID, new_uuid

from galileo_otel.api.client import AsyncGalileoClient, GalileoClient, RetryPolicy
from galileo_otel.errors import ConfigError

NOW = "2025-01-01T00:00:00Z"


class RoutedAPI:
    """Answers by route: one project "chat" with one log stream "prod"; records every request."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path == "/projects":
            name = request.url.params.get("project_name")
            found = name == "chat"
            project = {"id": PROJECT_ID, "name": "chat", "type": "gen_ai", "created_at": NOW}
            return httpx.Response(200, json=[project] if found else [])
        if path.endswith("/log_streams"):
            stream = {"id": LOG_STREAM_ID, "name": "prod", "project_id": PROJECT_ID}
            stream.update(created_at=NOW, updated_at=NOW)
            return httpx.Response(200, json=[stream])
        if path.endswith("/sessions/count"):
            return httpx.Response(200, json={"total_count": 7})
        raise AssertionError(f"unexpected {request.method} {request.url}")

    def lookups(self) -> int:
        return sum(1 for r in self.requests if not r.url.path.endswith("/count"))

    def count_bodies(self) -> list[tuple[str, dict[str, object]]]:
        return [
            (r.url.path, json.loads(r.content))
            for r in self.requests
            if r.url.path.endswith("/count")
        ]


def _client(api: RoutedAPI, **kw: Any) -> GalileoClient:
    return GalileoClient(api_url=BASE, api_key=API_KEY, transport=httpx.MockTransport(api), **kw)


def test_names_resolved_once_on_first_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GALILEO_PROJECT", "chat")
    monkeypatch.setenv("GALILEO_LOG_STREAM", "prod")
    api = RoutedAPI()
    with _client(api) as client:
        assert api.requests == []  # lazily: constructing the client sends nothing
        assert client.count_sessions() == 7
        assert client.count_sessions() == 7
    assert api.lookups() == 2  # GET /projects and GET log_streams, once
    for path, body in api.count_bodies():
        assert path == f"/v2/projects/{PROJECT_ID}/sessions/count"
        assert body["log_stream_id"] == LOG_STREAM_ID


def test_per_call_ids_win_and_need_no_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GALILEO_PROJECT", "chat")
    other_pid, other_lsid = new_uuid(), new_uuid()
    api = RoutedAPI()
    with _client(api, log_stream="prod") as client:
        client.count_sessions(project_id=other_pid, log_stream_id=other_lsid)
    assert api.lookups() == 0
    ((path, body),) = api.count_bodies()
    assert path == f"/v2/projects/{other_pid}/sessions/count"
    assert body["log_stream_id"] == other_lsid


def test_project_argument_beats_an_id_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GALILEO_PROJECT_ID", new_uuid())
    api = RoutedAPI()
    with _client(api, project="chat", log_stream="prod") as client:
        assert client.project_id is None
        client.count_sessions()
    ((path, _),) = api.count_bodies()
    assert PROJECT_ID in path


def test_no_project_at_all_says_how_to_name_one() -> None:
    api = RoutedAPI()
    with _client(api) as client, pytest.raises(ConfigError, match="GALILEO_PROJECT") as info:
        client.count_sessions()
    assert "project=" in str(info.value)
    assert api.requests == []


def test_async_client_resolves_once_too() -> None:
    api = RoutedAPI()

    async def scenario() -> list[int]:
        async with AsyncGalileoClient(
            api_url=BASE,
            api_key=API_KEY,
            project="chat",
            log_stream="prod",
            transport=httpx.MockTransport(api),
        ) as client:
            return [await client.count_sessions(), await client.count_sessions()]

    assert asyncio.run(scenario()) == [7, 7]
    assert api.lookups() == 2


# --- a URL that answers, but not as the Galileo API ----------------------------------------------

PAGE = (
    "<!DOCTYPE html>\n<html>\n<head>\n  <title>\n   Galileo Console\n  </title>\n</head>\n"
    + "<body>\n"
    + "  <div>app</div>\n" * 15
    + "</body>\n</html>\n"
)


def _page(status: int) -> httpx.MockTransport:
    return httpx.MockTransport(
        lambda request: httpx.Response(
            status, text=PAGE, headers={"content-type": "text/html; charset=utf-8"}
        )
    )


@pytest.mark.parametrize("status", [200, 404])
def test_a_web_page_in_place_of_the_api_is_one_line(status: int) -> None:
    from galileo_otel.errors import APIError

    with (
        GalileoClient(
            api_url=BASE, api_key=API_KEY, project="chat", transport=_page(status)
        ) as client,
        pytest.raises(APIError) as info,
    ):
        client.count_sessions()
    message = info.value.message
    assert "\n" not in message and "<div>" not in message
    assert "an HTML page ('Galileo Console'), not the Galileo API" in message
    assert "is GALILEO_API_URL the API URL" in message


def test_a_proxy_error_page_is_not_blamed_on_the_url() -> None:
    from galileo_otel.errors import APIError

    with (
        GalileoClient(
            api_url=BASE,
            api_key=API_KEY,
            project_id=PROJECT_ID,
            transport=_page(502),
            retry=RetryPolicy.none(),
        ) as client,
        pytest.raises(APIError) as info,
    ):
        client.list_log_streams()
    assert info.value.message.endswith("HTTP 502 Bad Gateway: an HTML page ('Galileo Console')")


def test_configure_warns_in_one_line_about_a_web_page(caplog: pytest.LogCaptureFixture) -> None:
    from galileo_otel.configure import resolve_destination
    from galileo_otel.settings import GalileoSettings

    settings = GalileoSettings(api_url=BASE, api_key=API_KEY, project="chat")
    with caplog.at_level("WARNING", logger="galileo_otel.configure"):
        assert resolve_destination(settings, transport=_page(200)) is None
    (record,) = caplog.records
    text = record.getMessage()
    assert "\n" not in text and "got no usable answer from the Galileo API" in text
    assert "not the Galileo API: is GALILEO_API_URL the API URL" in text


def test_configure_check_is_one_request_bounded_by_three_seconds() -> None:
    """docs/get-started.md: configure()'s one wait is a single request with a 3 s timeout."""
    from galileo_otel.configure import resolve_destination
    from galileo_otel.settings import GalileoSettings

    seen: list[httpx.Request] = []

    def hang(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        raise httpx.ReadTimeout("no answer", request=request)

    settings = GalileoSettings(api_url=BASE, api_key=API_KEY, project="chat")
    assert resolve_destination(settings, transport=httpx.MockTransport(hang)) is None
    assert len(seen) == 1  # no retry
    timeouts = seen[0].extensions["timeout"]
    assert 0 < timeouts["read"] <= 3.0 and 0 < timeouts["connect"] <= 3.0
