"""GalileoClient / AsyncGalileoClient against httpx.MockTransport: no sockets, no real waiting."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from conftest_api import (
    API_KEY,
    BASE,
    EXPERIMENT_ID,
    LOG_STREAM_ID,
    PROJECT_ID,
    SESSION_ID,
    FakeAPI,
    FakeClock,
    new_uuid,
    ok,
    session_answer,
)

import galileo_otel
from galileo_otel.api.client import (
    AsyncGalileoClient,
    Destination,
    GalileoClient,
    RetryPolicy,
    parse_retry_after,
)
from galileo_otel.api.filters import number, text
from galileo_otel.api.models import (
    LogRecordsTextFilter,
    QuerySort,
    SessionCreateResponse,
    Trace,
)
from galileo_otel.errors import (
    APIError,
    AuthError,
    ConfigError,
    GalileoError,
    NotFoundError,
    RateLimitError,
    TransportError,
    ValidationError,
)
from galileo_otel.settings import GalileoSettings

NO_JITTER = RetryPolicy(jitter=0.0, backoff_initial_s=0.5, backoff_max_s=8.0, deadline_s=60.0)


def make(api: FakeAPI, clock: FakeClock | None = None, **kw: Any) -> GalileoClient:
    clock = clock or FakeClock()
    kw.setdefault("api_key", API_KEY)
    kw.setdefault("api_url", BASE)
    kw.setdefault("project_id", PROJECT_ID)
    kw.setdefault("retry", NO_JITTER)
    return GalileoClient(transport=api.transport(), sleep=clock.sleep, clock=clock, **kw)


def make_async(api: FakeAPI, clock: FakeClock | None = None, **kw: Any) -> AsyncGalileoClient:
    clock = clock or FakeClock()
    kw.setdefault("api_key", API_KEY)
    kw.setdefault("api_url", BASE)
    kw.setdefault("project_id", PROJECT_ID)
    kw.setdefault("retry", NO_JITTER)
    return AsyncGalileoClient(transport=api.transport(), sleep=clock.async_sleep, clock=clock, **kw)


# ------------------------------------------------------------------------------------------------
# Headers, URLs, configuration
# ------------------------------------------------------------------------------------------------


def test_every_request_carries_key_user_agent_and_extra_headers() -> None:
    api = FakeAPI([ok({"total_count": 1})])
    settings = GalileoSettings(extra_headers={"X-Team": "ml"})
    with make(api, settings=settings) as client:
        client.count_sessions()
    req = api.requests[0]
    assert req.headers["Galileo-API-Key"] == API_KEY
    assert req.headers["User-Agent"].startswith(f"galileo-otel/{galileo_otel.__version__} ")
    assert req.headers["X-Team"] == "ml"
    assert req.headers["Content-Type"] == "application/json"
    assert req.headers["Accept"] == "application/json"
    assert req.url == f"{BASE}/v2/projects/{PROJECT_ID}/sessions/count"


def test_prebuilt_headers_and_urls_are_per_request_right() -> None:
    # Headers are built once per client and URLs parsed once: a body-less request after a
    # POST carries no Content-Type, and more distinct paths than the parsed-URL cache holds
    # still each go to their own URL.
    paths = [f"/v2/projects/{uuid.UUID(int=i)}/traces" for i in range(300)]
    api = FakeAPI([ok({})] * (len(paths) + 3))
    with make(api) as client:
        client.request_json("POST", paths[0], json={"a": 1})
        client.request_json("GET", "/healthcheck", require_key=False)
        for path in paths:
            client.request_json("POST", path, content=b"{}")
        client.request_json("POST", paths[0], content=b"{}")
    post, get = api.requests[0], api.requests[1]
    assert post.headers["Content-Type"] == "application/json"
    assert "Content-Type" not in get.headers
    assert get.headers["Galileo-API-Key"] == API_KEY
    assert [str(r.url) for r in api.requests[2:]] == [BASE + p for p in [*paths, paths[0]]]
    assert all(r.headers["Galileo-API-Key"] == API_KEY for r in api.requests)


def test_api_url_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GALILEO_API_URL", "https://api.example.test/")
    monkeypatch.setenv("GALILEO_API_KEY", API_KEY)
    api = FakeAPI([ok({"total_count": 0})])
    with GalileoClient(transport=api.transport(), project_id=PROJECT_ID) as client:
        assert client.base_url == "https://api.example.test"
        client.count_sessions()
    assert str(api.requests[0].url).startswith("https://api.example.test/v2/projects/")
    assert api.requests[0].headers["Galileo-API-Key"] == API_KEY


@pytest.mark.parametrize(
    ("console", "api"),
    [
        ("https://app.galileo.ai", "https://api.galileo.ai"),
        ("https://console.acme.example.com", "https://api.acme.example.com"),
        ("http://localhost:3000", "http://localhost:8088"),
        ("http://127.0.0.1:3000", "http://localhost:8088"),
    ],
)
def test_api_url_derived_from_console_url(
    monkeypatch: pytest.MonkeyPatch, console: str, api: str
) -> None:
    monkeypatch.setenv("GALILEO_CONSOLE_URL", console)
    with GalileoClient(api_key=API_KEY, transport=FakeAPI().transport()) as client:
        assert client.base_url == api


def test_default_api_url_is_galileo_cloud() -> None:
    with GalileoClient(api_key=API_KEY, transport=FakeAPI().transport()) as client:
        assert client.base_url == "https://api.galileo.ai"


def test_argument_wins_over_env_and_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GALILEO_API_URL", "https://env.example.test")
    settings = GalileoSettings(reliable=True)
    with GalileoClient(
        settings=settings, api_url=BASE, reliable=False, transport=FakeAPI().transport()
    ) as client:
        assert client.base_url == BASE
        assert client.reliable is False


def test_base_url_path_prefix_is_kept() -> None:
    api = FakeAPI([ok({"total_count": 0})])
    with make(api, api_url="http://galileo.test/prefix") as client:
        client.count_sessions()
    assert api.requests[0].url.path == f"/prefix/v2/projects/{PROJECT_ID}/sessions/count"


def test_timeouts_come_from_settings() -> None:
    settings = GalileoSettings(connect_timeout=2, read_timeout=7)
    seen: list[dict[str, float]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return ok({"total_count": 0})

    api = FakeAPI([handler])
    with make(api, settings=settings, retry=RetryPolicy(deadline_s=None)) as client:
        client.count_sessions()
    assert seen[0]["connect"] == 2.0
    assert seen[0]["read"] == 7.0


def test_attempt_timeout_never_outlives_the_deadline() -> None:
    seen: list[dict[str, float]] = []
    clock = FakeClock()

    def slow_fail(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return ok({"detail": "busy"}, status=503)

    api = FakeAPI([slow_fail, slow_fail])
    policy = RetryPolicy(max_attempts=2, deadline_s=10.0, backoff_initial_s=4.0, jitter=0.0)
    with make(api, clock, retry=policy, timeout=30.0) as client, pytest.raises(APIError):
        client.count_sessions()
    assert seen[0]["read"] == 10.0
    assert seen[1]["read"] == pytest.approx(6.0)  # 10s deadline minus the 4s wait


def test_invalid_logging_method_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="logging_method"):
        GalileoClient(api_key=API_KEY, logging_method="carrier_pigeon")


def test_bad_argument_fails_like_a_bad_env_var() -> None:
    with pytest.raises(ConfigError, match="project_id"):
        GalileoClient(api_key=API_KEY, project_id="not-a-uuid")


# ------------------------------------------------------------------------------------------------
# API key: required at request time, never shown
# ------------------------------------------------------------------------------------------------


def test_missing_api_key_is_a_config_error_naming_the_env_var() -> None:
    api = FakeAPI([ok({"total_count": 0})])
    with make(api, api_key=None) as client:  # constructing without a key is fine
        with pytest.raises(ConfigError, match="GALILEO_API_KEY"):
            client.count_sessions()
        with pytest.raises(ConfigError, match="GALILEO_API_KEY"):
            client.create_session()
    assert api.requests == []


def test_api_key_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GALILEO_API_KEY", "env-key")
    api = FakeAPI([ok(session_answer())])
    with GalileoClient(api_url=BASE, project_id=PROJECT_ID, transport=api.transport()) as client:
        client.create_session()
    assert api.requests[0].headers["Galileo-API-Key"] == "env-key"


def test_key_in_extra_headers_counts_as_credentials() -> None:
    api = FakeAPI([ok({"total_count": 0})])
    settings = GalileoSettings(extra_headers={"Galileo-API-Key": "hdr-key"})
    with make(api, api_key=None, settings=settings) as client:
        client.count_sessions()
    assert api.requests[0].headers["Galileo-API-Key"] == "hdr-key"


def test_healthcheck_needs_no_key() -> None:
    api = FakeAPI([ok({"status": "ok"})])
    with make(api, api_key=None) as client:
        assert client.healthcheck() is True
    assert "Galileo-API-Key" not in api.requests[0].headers


def test_api_key_never_in_repr_logs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    echo = f"invalid key {API_KEY}"
    api = FakeAPI(
        [
            ok({"detail": echo}, status=503),
            httpx.ConnectError(f"refused {API_KEY}"),
            ok({"detail": echo}, status=401),
        ]
    )
    clock = FakeClock()
    with make(api, clock) as client:
        assert API_KEY not in repr(client)
        assert API_KEY not in str(client.settings)
        assert API_KEY not in repr(client.settings)
        with pytest.raises(AuthError) as info:
            client.count_sessions()
    err = info.value
    assert API_KEY not in str(err)
    assert API_KEY not in repr(err)
    assert API_KEY not in json.dumps(err.detail)
    assert "invalid key ***" in str(err)
    assert len(clock.sleeps) == 2  # the 503 and the connection error were retried (and logged)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "retrying" in logged
    assert API_KEY not in logged


def test_api_key_not_in_config_error_of_bad_settings() -> None:
    with pytest.raises(ConfigError) as info:
        GalileoClient(api_key=API_KEY, api_url="ftp://nope")
    assert API_KEY not in str(info.value)


# ------------------------------------------------------------------------------------------------
# Create Session
# ------------------------------------------------------------------------------------------------


def test_create_session_stamps_method_version_and_reliable() -> None:
    api = FakeAPI([ok(session_answer(name="chat", external_id="conv-1"))])
    prev = new_uuid()
    with make(api, log_stream_id=LOG_STREAM_ID) as client:
        answer = client.create_session(
            name="chat",
            external_id="conv-1",
            previous_session_id=prev,
            user_metadata={"user.id": "u1"},
        )
    assert isinstance(answer, SessionCreateResponse)
    assert str(answer.id) == SESSION_ID
    assert answer.external_id == "conv-1"
    assert api.last_body == {
        "logging_method": "python_client",
        "client_version": galileo_otel.__version__,
        "reliable": True,
        "name": "chat",
        "external_id": "conv-1",
        "previous_session_id": prev,
        "user_metadata": {"user.id": "u1"},
        "log_stream_id": LOG_STREAM_ID,
    }
    assert api.requests[0].url.path == f"/v2/projects/{PROJECT_ID}/sessions"


def test_create_session_reliable_from_client_and_per_call() -> None:
    api = FakeAPI([ok(session_answer()), ok(session_answer())])
    with make(api, reliable=False) as client:
        client.create_session()
        client.create_session(reliable=True)
    assert [b["reliable"] for b in api.bodies()] == [False, True]


def test_caller_can_override_logging_method_and_client_version() -> None:
    api = FakeAPI([ok(session_answer())])
    with make(api, logging_method="api_direct", client_version="app/9") as client:
        client.create_session()
    assert api.last_body["logging_method"] == "api_direct"
    assert api.last_body["client_version"] == "app/9"


def test_experiment_wins_over_log_stream_default() -> None:
    api = FakeAPI([ok(session_answer()), ok(session_answer())])
    with make(api, log_stream_id=LOG_STREAM_ID, experiment_id=EXPERIMENT_ID) as client:
        client.create_session()
        other = new_uuid()
        client.create_session(log_stream_id=other)
    first, second = api.bodies()
    assert first["experiment_id"] == EXPERIMENT_ID and "log_stream_id" not in first
    assert second["log_stream_id"] == other and "experiment_id" not in second


def test_create_session_rejects_bad_ids_before_sending() -> None:
    api = FakeAPI()
    with make(api) as client:
        with pytest.raises(ConfigError, match="previous_session_id"):
            client.create_session(previous_session_id="nope")
        with pytest.raises(ConfigError, match="not a UUID"):
            client.create_session(project_id="../etc")
    assert api.requests == []


def test_no_project_is_a_config_error() -> None:
    with make(FakeAPI(), project_id=None) as client, pytest.raises(ConfigError, match="project"):
        client.create_session()


# ------------------------------------------------------------------------------------------------
# Count / Query Sessions
# ------------------------------------------------------------------------------------------------


def test_count_sessions_accepts_dsl_models_and_dicts() -> None:
    api = FakeAPI([ok({"total_count": 7})])
    with make(api, log_stream_id=LOG_STREAM_ID) as client:
        n = client.count_sessions(
            filters=[
                text("external_id") == "conv-1",
                LogRecordsTextFilter(column_id="name", operator="contains", value="x"),
                {"type": "number", "column_id": "num_traces", "operator": "gte", "value": 2},
            ],
            filter_tree=(number("num_traces") > 1) | ~(text("input").contains("refund")),
        )
    assert n == 7
    body = api.last_body
    assert body["log_stream_id"] == LOG_STREAM_ID
    assert [f["column_id"] for f in body["filters"]] == ["external_id", "name", "num_traces"]
    assert body["filters"][0] == {
        "type": "text",
        "column_id": "external_id",
        "operator": "eq",
        "value": "conv-1",
        "case_sensitive": True,
    }
    assert body["filter_tree"]["or"][1]["not"]["filter"]["operator"] == "contains"


def test_count_sessions_filter_tree_as_dict() -> None:
    api = FakeAPI([ok({"total_count": 0})])
    tree = {"and": [{"filter": {"type": "boolean", "column_id": "has_error", "value": True}}]}
    with make(api) as client:
        client.count_sessions(filter_tree=tree)
    assert api.last_body["filter_tree"] == {
        "and": [
            {
                "filter": {
                    "type": "boolean",
                    "column_id": "has_error",
                    "value": True,
                    "operator": "eq",
                }
            }
        ]
    }


def test_count_sessions_bad_filter_is_a_config_error() -> None:
    api = FakeAPI()
    with make(api) as client:
        with pytest.raises(ConfigError, match="'gt' is not allowed for a text filter"):
            client.count_sessions(
                filters=[{"type": "text", "column_id": "x", "operator": "gt", "value": "a"}]
            )
        with pytest.raises(ConfigError, match="filter_tree"):
            client.count_sessions(filters=[~(text("a") == "b")])
    assert api.requests == []


def test_search_sessions_body_and_page() -> None:
    page = {
        "records": [{"id": "a"}],
        "next_starting_token": 1,
        "paginated": True,
        "limit": 1,
        "starting_token": 0,
        "unknown_extra": 1,
    }
    api = FakeAPI([ok(page)])
    with make(api) as client:
        answer = client.search_sessions(
            filters=[text("name") == "n"], limit=1, sort=QuerySort(column_id="created_at")
        )
    assert answer.records == [{"id": "a"}]
    assert answer.next_starting_token == 1
    body = api.last_body
    assert body["limit"] == 1 and body["starting_token"] == 0
    assert body["sort"] == {"column_id": "created_at", "ascending": True, "sort_type": "column"}
    assert api.requests[0].url.path.endswith("/sessions/search")


def test_search_sessions_sort_by_column_name() -> None:
    api = FakeAPI([ok({"records": []})])
    with make(api) as client:
        client.search_sessions(sort="updated_at")
    assert api.last_body["sort"] == {
        "column_id": "updated_at",
        "ascending": True,
        "sort_type": "column",
    }


def _page(records: list[int], token: int, nxt: int | None) -> httpx.Response:
    return ok(
        {
            "records": [{"n": r} for r in records],
            "starting_token": token,
            "next_starting_token": nxt,
            "paginated": nxt is not None,
            "limit": 2,
        }
    )


def test_iter_sessions_walks_every_page() -> None:
    api = FakeAPI([_page([1, 2], 0, 2), _page([3, 4], 2, 4), _page([5], 4, None)])
    with make(api) as client:
        records = list(client.iter_sessions(limit=2, filters=iter([text("a") == "b"])))
    assert [r["n"] for r in records] == [1, 2, 3, 4, 5]
    assert [b["starting_token"] for b in api.bodies()] == [0, 2, 4]
    assert all(b["filters"][0]["value"] == "b" for b in api.bodies())


def test_iter_sessions_stops_when_the_token_does_not_advance() -> None:
    api = FakeAPI([_page([1], 0, 3), _page([2], 3, 3)])
    with make(api) as client:
        assert [r["n"] for r in client.iter_sessions()] == [1, 2]
    assert len(api.requests) == 2


# ------------------------------------------------------------------------------------------------
# Log Traces
# ------------------------------------------------------------------------------------------------


def _ingest_answer(**extra: Any) -> dict[str, Any]:
    return {
        "project_id": PROJECT_ID,
        "project_name": "proj",
        "records_count": 2,
        "traces_count": 1,
        "spans_count": 1,
        **extra,
    }


def test_log_traces_body_and_answer() -> None:
    trace_id = new_uuid()
    api = FakeAPI([ok(_ingest_answer(session_id=SESSION_ID, trace_ids=[trace_id]))])
    trace = {
        "id": trace_id,
        "input": "hi",
        "output": "hello",
        "spans": [{"type": "tool", "input": "q", "output": "a", "name": "lookup"}],
    }
    with make(api, log_stream_id=LOG_STREAM_ID) as client:
        answer = client.log_traces(
            [trace, Trace(input="second")],
            session_id=SESSION_ID,
            session_external_id="conv-1",
            include_trace_ids=True,
            reliable=False,
        )
    assert answer.traces_count == 1
    assert [str(t) for t in answer.trace_ids or []] == [trace_id]
    body = api.last_body
    assert body["logging_method"] == "python_client"
    assert body["client_version"] == galileo_otel.__version__
    assert body["reliable"] is False
    assert body["session_id"] == SESSION_ID
    assert body["session_external_id"] == "conv-1"
    assert body["include_trace_ids"] is True and body["is_complete"] is True
    assert body["log_stream_id"] == LOG_STREAM_ID
    assert body["traces"][0]["spans"][0]["type"] == "tool"
    assert body["traces"][1]["input"] == "second"


def test_log_traces_rejects_bad_input_before_sending() -> None:
    api = FakeAPI()
    with make(api) as client:
        with pytest.raises(ConfigError, match="traces"):
            client.log_traces([])
        with pytest.raises(ConfigError, match="traces"):
            client.log_traces([{"spans": [{"type": "nope"}]}])
    assert api.requests == []


def test_log_traces_raw_sends_the_bytes_as_given() -> None:
    api = FakeAPI([ok(_ingest_answer())])
    raw = b'{"traces":[{"input":"x"}],"reliable":true}'
    with make(api) as client:
        answer = client.log_traces_raw(raw, project_id=PROJECT_ID)
    assert answer["records_count"] == 2
    assert api.requests[0].content == raw
    assert api.requests[0].headers["Content-Type"] == "application/json"
    assert api.requests[0].url.path == f"/v2/projects/{PROJECT_ID}/traces"


def test_build_log_traces_body_stamps_without_pydantic() -> None:
    with make(FakeAPI(), log_stream_id=LOG_STREAM_ID, reliable=False) as client:
        body = client.build_log_traces_body([{"input": "x"}], session_id=SESSION_ID)
    assert body == {
        "traces": [{"input": "x"}],
        "logging_method": "python_client",
        "client_version": galileo_otel.__version__,
        "reliable": False,
        "is_complete": True,
        "include_trace_ids": False,
        "log_stream_id": LOG_STREAM_ID,
        "session_id": SESSION_ID,
    }


def test_request_json_returns_parsed_json_or_none() -> None:
    api = FakeAPI([ok({"a": [1]}), httpx.Response(204)])
    with make(api) as client:
        assert client.request_json("POST", "/x", json={"k": "v"}) == {"a": [1]}
        assert client.request_json("GET", "y") is None
    assert json.loads(api.requests[0].content) == {"k": "v"}
    assert api.requests[1].url.path == "/y"


def test_non_json_body_is_a_config_error() -> None:
    with make(FakeAPI()) as client, pytest.raises(ConfigError, match="JSON"):
        client.request_json("POST", "/x", json={"bad": float("nan")})


def test_success_that_is_not_json_is_an_api_error() -> None:
    api = FakeAPI([httpx.Response(200, text="<html>")])
    with make(api) as client, pytest.raises(APIError, match="not JSON"):
        client.request_json("GET", "/x")


def test_unexpected_answer_shape_is_an_api_error_not_pydantic() -> None:
    api = FakeAPI([ok({"count": 3})])
    with make(api) as client, pytest.raises(APIError, match="Count Sessions") as info:
        client.count_sessions()
    assert type(info.value) is APIError


# ------------------------------------------------------------------------------------------------
# Projects, log streams, resolve_destination
# ------------------------------------------------------------------------------------------------

P2 = "3d4e5f60-7182-4a3b-9c4d-5e6f7a8b9c0d"


def _project(name: str, pid: str = PROJECT_ID) -> dict[str, Any]:
    return {"id": pid, "name": name, "type": "gen_ai", "created_by": "someone"}


def _stream(name: str, sid: str = LOG_STREAM_ID, pid: str = PROJECT_ID) -> dict[str, Any]:
    ts = "2025-01-01T00:00:00Z"
    return {"id": sid, "name": name, "project_id": pid, "created_at": ts, "updated_at": ts}


def test_get_project_matches_the_exact_name() -> None:
    api = FakeAPI([ok([_project("app-old", P2), _project("app")]), ok([])])
    with make(api, project_id=None) as client:
        found = client.get_project("app")
        assert found is not None and str(found.id) == PROJECT_ID
        assert client.get_project("missing") is None
    params = api.requests[0].url.params
    assert params["project_name"] == "app" and params["type"] == "gen_ai"
    assert api.requests[0].method == "GET" and api.requests[0].url.path == "/projects"


def test_create_project_and_log_stream() -> None:
    api = FakeAPI([ok(_project("app")), ok(_stream("prod"))])
    with make(api) as client:
        assert client.create_project("app").name == "app"
        stream = client.create_log_stream(PROJECT_ID, "prod")
    assert str(stream.project_id) == PROJECT_ID
    assert api.bodies() == [{"name": "app", "type": "gen_ai"}, {"name": "prod"}]
    assert api.requests[1].url.path == f"/v2/projects/{PROJECT_ID}/log_streams"


def test_list_log_streams() -> None:
    api = FakeAPI([ok([_stream("a"), _stream("b", new_uuid())])])
    with make(api) as client:
        assert [s.name for s in client.list_log_streams()] == ["a", "b"]


def test_resolve_existing_names() -> None:
    api = FakeAPI([ok([_project("app")]), ok([_stream("other", new_uuid()), _stream("prod")])])
    with make(api, project_id=None) as client:
        dest = client.resolve_destination(project="app", log_stream="prod")
    assert dest == Destination(PROJECT_ID, "app", LOG_STREAM_ID, None, "prod")
    assert [r.method for r in api.requests] == ["GET", "GET"]


def test_resolve_creates_missing_project_and_default_log_stream() -> None:
    api = FakeAPI([ok([]), ok(_project("new")), ok([]), ok(_stream("default"))])
    with make(api, project_id=None) as client:
        dest = client.resolve_destination(project="new")
    assert dest.project_id == PROJECT_ID and dest.log_stream_id == LOG_STREAM_ID
    assert [(r.method, r.url.path) for r in api.requests] == [
        ("GET", "/projects"),
        ("POST", "/projects"),
        ("GET", f"/v2/projects/{PROJECT_ID}/log_streams"),
        ("POST", f"/v2/projects/{PROJECT_ID}/log_streams"),
    ]
    assert api.bodies()[3] == {"name": "default"}


def test_resolve_missing_project_without_create_is_not_found() -> None:
    api = FakeAPI([ok([])])
    with make(api, project_id=None) as client:
        with pytest.raises(NotFoundError, match="'ghost' does not exist"):
            client.resolve_destination(project="ghost", create=False)


def test_resolve_missing_log_stream_without_create_is_not_found() -> None:
    api = FakeAPI([ok([_stream("other")])])
    with make(api) as client, pytest.raises(NotFoundError, match="'prod' does not exist"):
        client.resolve_destination(project_id=PROJECT_ID, log_stream="prod", create=False)


def test_resolve_unknown_project_id_is_not_found() -> None:
    api = FakeAPI([ok({"detail": "Project not found"}, status=404)])
    with make(api) as client, pytest.raises(NotFoundError, match=PROJECT_ID):
        client.resolve_destination(project_id=PROJECT_ID)


def test_resolve_unknown_log_stream_id_is_not_found() -> None:
    api = FakeAPI([ok([_stream("a")])])
    with make(api) as client, pytest.raises(NotFoundError, match="log stream"):
        client.resolve_destination(project_id=PROJECT_ID, log_stream_id=new_uuid())


def test_resolve_experiment_needs_no_log_stream() -> None:
    api = FakeAPI([ok([])])
    with make(api) as client:
        dest = client.resolve_destination(project_id=PROJECT_ID, experiment_id=EXPERIMENT_ID)
    assert dest == Destination(PROJECT_ID, None, None, EXPERIMENT_ID)


def test_resolve_uses_settings_and_ids_win_over_names() -> None:
    settings = GalileoSettings(
        project="by-name", project_id=PROJECT_ID, log_stream_id=LOG_STREAM_ID
    )
    api = FakeAPI([ok([_stream("x")])])
    with make(api, settings=settings) as client:
        dest = client.resolve_destination()
    assert dest.project_id == PROJECT_ID and dest.log_stream_id == LOG_STREAM_ID
    assert len(api.requests) == 1  # no lookup by name


def test_resolve_without_any_project_is_a_config_error() -> None:
    with make(FakeAPI(), project_id=None) as client:
        with pytest.raises(ConfigError, match="GALILEO_PROJECT"):
            client.resolve_destination()


def test_resolve_race_on_create_uses_the_winner() -> None:
    api = FakeAPI(
        [
            ok([]),
            ok({"detail": "exists"}, status=409),
            ok([_project("app")]),
            ok([]),
            ok({"detail": "exists"}, status=409),
            ok([_stream("default")]),
        ]
    )
    with make(api, project_id=None) as client:
        dest = client.resolve_destination(project="app")
    assert dest.project_id == PROJECT_ID and dest.log_stream_id == LOG_STREAM_ID


# ------------------------------------------------------------------------------------------------
# Error mapping
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "cls", "retryable"),
    [
        (400, APIError, False),
        (401, AuthError, False),
        (403, AuthError, False),
        (404, NotFoundError, False),
        (409, APIError, False),
        (422, ValidationError, False),
        (408, APIError, True),
        (429, RateLimitError, True),
        (500, APIError, True),
        (502, APIError, True),
        (503, APIError, True),
        (504, APIError, True),
    ],
)
def test_status_maps_to_error_class(status: int, cls: type[APIError], retryable: bool) -> None:
    api = FakeAPI([ok({"detail": f"server says {status}"}, status=status)])
    with make(api, retry=RetryPolicy.none()) as client, pytest.raises(cls) as info:
        client.count_sessions()
    err = info.value
    assert type(err) is cls
    assert err.status_code == status
    assert err.retryable is retryable
    assert f"server says {status}" in str(err)
    assert err.method == "POST"
    assert err.url == f"{BASE}/v2/projects/{PROJECT_ID}/sessions/count"


def test_422_carries_the_server_detail() -> None:
    detail = [
        {
            "loc": ["body", "traces", 0, "input"],
            "msg": "Field required",
            "type": "missing",
            "input": {},
        },
    ]
    api = FakeAPI([ok({"detail": detail}, status=422)])
    with make(api) as client, pytest.raises(ValidationError) as info:
        client.log_traces([{"input": "x"}])
    assert info.value.detail == detail
    assert "body.traces.0.input: Field required" in str(info.value)
    assert len(api.requests) == 1


def test_error_body_that_is_not_json_is_quoted() -> None:
    api = FakeAPI([httpx.Response(400, text="bad gateway config")])
    with make(api) as client, pytest.raises(APIError, match="bad gateway config"):
        client.count_sessions()


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_permanent_errors_are_not_retried(status: int) -> None:
    clock = FakeClock()
    api = FakeAPI([ok({"detail": "no"}, status=status), ok({"total_count": 1})])
    with make(api, clock) as client, pytest.raises(APIError):
        client.count_sessions()
    assert len(api.requests) == 1
    assert clock.sleeps == []


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("refused"),
        httpx.ConnectTimeout("slow connect"),
        httpx.ReadTimeout("slow read"),
        httpx.RemoteProtocolError("server hung up"),
        httpx.ReadError("reset"),
    ],
)
def test_transport_errors_are_retried_and_mapped(exc: Exception) -> None:
    clock = FakeClock()
    api = FakeAPI([exc, ok({"total_count": 4})])
    with make(api, clock) as client:
        assert client.count_sessions() == 4
    assert clock.sleeps == [0.5]


def test_transport_error_does_not_leak_httpx() -> None:
    api = FakeAPI([httpx.ConnectError("refused")])
    with make(api, retry=RetryPolicy.none()) as client, pytest.raises(TransportError) as info:
        client.count_sessions()
    err = info.value
    assert not isinstance(err, httpx.HTTPError)
    assert isinstance(err, GalileoError)
    assert err.status_code is None and err.retryable is True
    assert "ConnectError" in str(err) and "refused" in str(err)


def test_non_transient_httpx_error_is_not_retried() -> None:
    clock = FakeClock()
    api = FakeAPI([httpx.UnsupportedProtocol("gopher://")])
    with make(api, clock) as client, pytest.raises(TransportError) as info:
        client.count_sessions()
    assert info.value.retryable is False
    assert clock.sleeps == []


# ------------------------------------------------------------------------------------------------
# Retries, backoff, Retry-After, deadlines
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retried(status: int) -> None:
    clock = FakeClock()
    api = FakeAPI([ok({}, status=status), ok({}, status=status), ok({"total_count": 2})])
    with make(api, clock) as client:
        assert client.count_sessions() == 2
    assert clock.sleeps == [0.5, 1.0]  # exponential, no jitter


def test_backoff_is_exponential_capped_and_attempts_bounded() -> None:
    clock = FakeClock()
    policy = RetryPolicy(
        max_attempts=6, deadline_s=None, backoff_initial_s=1.0, backoff_max_s=5.0, jitter=0.0
    )
    api = FakeAPI([ok({}, status=500) for _ in range(6)])
    with make(api, clock, retry=policy) as client, pytest.raises(APIError) as info:
        client.count_sessions()
    assert clock.sleeps == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert len(api.requests) == 6
    assert info.value.status_code == 500


def test_jitter_shortens_waits_randomly() -> None:
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=3, deadline_s=None, backoff_initial_s=2.0, jitter=0.5)
    rolls = iter([1.0, 0.0])
    api = FakeAPI([ok({}, status=503), ok({}, status=503), ok({"total_count": 0})])
    with make(api, clock, retry=policy, rand=lambda: next(rolls)) as client:
        client.count_sessions()
    assert clock.sleeps == [1.0, 4.0]  # 2*(1-0.5*1.0), 4*(1-0.5*0.0)


def test_retry_after_seconds_is_honoured() -> None:
    clock = FakeClock()
    api = FakeAPI(
        [ok({"detail": "slow down"}, status=429, **{"Retry-After": "7"}), ok({"total_count": 1})]
    )
    with make(api, clock) as client:
        assert client.count_sessions() == 1
    assert clock.sleeps == [7.0]


def test_retry_after_http_date_is_honoured() -> None:
    clock = FakeClock()
    now = datetime(2025, 6, 1, 12, 0, 0, tzinfo=timezone.utc)
    header = format_datetime(now + timedelta(seconds=12), usegmt=True)
    api = FakeAPI([ok({}, status=503, **{"Retry-After": header}), ok({"total_count": 1})])
    with make(api, clock, wall_clock=now.timestamp) as client:
        assert client.count_sessions() == 1
    assert clock.sleeps == [12.0]


def test_rate_limit_error_carries_retry_after_when_not_waited_for() -> None:
    clock = FakeClock()
    api = FakeAPI([ok({"detail": "quota"}, status=429, **{"Retry-After": "3600"})])
    with make(api, clock) as client, pytest.raises(RateLimitError) as info:
        client.count_sessions()
    assert info.value.retry_after == 3600.0
    assert clock.sleeps == []  # longer than max_retry_after_s: raised for the caller to schedule


def test_retries_stop_at_the_deadline() -> None:
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=100, deadline_s=10.0, backoff_initial_s=1.0, jitter=0.0)
    api = FakeAPI([ok({}, status=503) for _ in range(100)])
    with make(api, clock, retry=policy) as client, pytest.raises(APIError):
        client.count_sessions()
    assert clock.sleeps == [1.0, 2.0, 4.0]  # the next wait (8s) would end past 10s
    assert sum(clock.sleeps) < 10.0
    assert len(api.requests) == 4


def test_retry_after_past_the_deadline_is_not_waited_for() -> None:
    clock = FakeClock()
    policy = RetryPolicy(deadline_s=5.0, jitter=0.0)
    api = FakeAPI([ok({}, status=429, **{"Retry-After": "30"})])
    with make(api, clock, retry=policy) as client, pytest.raises(RateLimitError):
        client.count_sessions()
    assert clock.sleeps == []


def test_retry_policy_none_is_a_single_attempt() -> None:
    clock = FakeClock()
    api = FakeAPI([ok({}, status=503)])
    with make(api, clock, retry=RetryPolicy.none()) as client, pytest.raises(APIError):
        client.count_sessions()
    assert len(api.requests) == 1 and clock.sleeps == []


def test_per_request_policy_wins_over_the_client_default() -> None:
    clock = FakeClock()
    api = FakeAPI([ok({}, status=503)])
    with make(api, clock) as client, pytest.raises(APIError):
        client.request_json("POST", "/x", json={}, retry=RetryPolicy.none())
    assert len(api.requests) == 1


def test_reconnect_once_retries_only_a_request_that_never_left() -> None:
    clock = FakeClock()
    policy = RetryPolicy.reconnect_once()
    api = FakeAPI([httpx.ConnectError("refused"), ok({"x": 1})])
    with make(api, clock) as client:
        assert client.log_traces_raw(b"{}", project_id=PROJECT_ID, retry=policy) == {"x": 1}
    assert len(api.requests) == 2

    for first in (httpx.ReadTimeout("maybe delivered"), ok({}, status=503)):
        api = FakeAPI([first, ok({"x": 1})])
        with make(api, clock) as client, pytest.raises(APIError):
            client.log_traces_raw(b"{}", project_id=PROJECT_ID, retry=policy)
        assert len(api.requests) == 1

    api = FakeAPI([httpx.ConnectError("a"), httpx.ConnectError("b"), ok({})])
    with make(api, clock) as client, pytest.raises(TransportError):
        client.log_traces_raw(b"{}", project_id=PROJECT_ID, retry=policy)
    assert len(api.requests) == 2


def test_retry_policy_validates_itself() -> None:
    with pytest.raises(ConfigError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ConfigError):
        RetryPolicy(jitter=2.0)
    with pytest.raises(ConfigError):
        RetryPolicy(deadline_s=0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("5", 5.0),
        (" 1.5 ", 1.5),
        ("-3", 0.0),
        ("Sun, 01 Jun 2025 12:00:30 GMT", 30.0),
        ("Sun, 01 Jun 2025 11:00:00 GMT", 0.0),
        ("soon", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    now = datetime(2025, 6, 1, 12, 0, 0, tzinfo=timezone.utc).timestamp()
    assert parse_retry_after(value, now=now) == expected


def test_healthcheck_false_when_down_and_never_retried() -> None:
    clock = FakeClock()
    api = FakeAPI([ok({}, status=503), httpx.ConnectError("refused")])
    with make(api, clock) as client:
        assert client.healthcheck() is False
        assert client.healthcheck() is False
    assert clock.sleeps == []
    assert [r.url.path for r in api.requests] == ["/healthcheck", "/healthcheck"]


def test_context_manager_closes_the_pool() -> None:
    client = make(FakeAPI())
    with client:
        pass
    assert client._http.is_closed


# ------------------------------------------------------------------------------------------------
# Async client: the same rules, awaited
# ------------------------------------------------------------------------------------------------


def test_async_create_session_and_count() -> None:
    api = FakeAPI([ok(session_answer()), ok({"total_count": 3})])

    async def main() -> tuple[SessionCreateResponse, int]:
        async with make_async(api, log_stream_id=LOG_STREAM_ID) as client:
            created = await client.create_session(external_id="conv-9")
            n = await client.count_sessions(filters=[text("external_id") == "conv-9"])
            return created, n

    created, n = asyncio.run(main())
    assert str(created.id) == SESSION_ID and n == 3
    first, second = api.bodies()
    assert first["logging_method"] == "python_client"
    assert first["client_version"] == galileo_otel.__version__
    assert first["reliable"] is True
    assert first["external_id"] == "conv-9"
    assert second["filters"][0]["value"] == "conv-9"
    assert api.requests[0].headers["Galileo-API-Key"] == API_KEY


def test_async_retries_with_async_sleep_and_maps_errors() -> None:
    clock = FakeClock()
    api = FakeAPI(
        [
            ok({}, status=503),
            httpx.ConnectError("refused"),
            ok({"total_count": 1}),
            ok({"detail": [{"loc": ["body"], "msg": "bad", "type": "x"}]}, status=422),
        ]
    )

    async def main() -> None:
        async with make_async(api, clock) as client:
            assert await client.count_sessions() == 1
            with pytest.raises(ValidationError) as info:
                await client.count_sessions()
            assert info.value.detail[0]["msg"] == "bad"

    asyncio.run(main())
    assert clock.sleeps == [0.5, 1.0]


def test_async_iter_sessions_and_log_traces_and_resolve() -> None:
    api = FakeAPI(
        [
            _page([1, 2], 0, 2),
            _page([3], 2, None),
            ok(_ingest_answer()),
            ok([_project("app")]),
            ok([_stream("default")]),
            ok({"status": "ok"}),
        ]
    )

    async def main() -> tuple[list[int], int, Destination, bool]:
        async with make_async(api) as client:
            got = [r["n"] async for r in client.iter_sessions(limit=2)]
            answer = await client.log_traces([{"input": "x"}], session_id=SESSION_ID)
            dest = await client.resolve_destination(project="app")
            healthy = await client.healthcheck()
            return got, answer.records_count, dest, healthy

    got, records, dest, healthy = asyncio.run(main())
    assert got == [1, 2, 3] and records == 2 and healthy
    assert dest.log_stream_id == LOG_STREAM_ID
    assert api.bodies()[2]["session_id"] == SESSION_ID


def test_async_missing_key_and_raw() -> None:
    api = FakeAPI([ok({"ok": True})])

    async def main() -> None:
        async with make_async(api, api_key=None) as client:
            with pytest.raises(ConfigError, match="GALILEO_API_KEY"):
                await client.log_traces_raw(b"{}", project_id=PROJECT_ID)
        async with make_async(api) as client:
            assert await client.log_traces_raw(b"{}", project_id=PROJECT_ID) == {"ok": True}
            assert API_KEY not in repr(client)

    asyncio.run(main())
    assert len(api.requests) == 1


def test_async_client_shares_the_sync_client_rules() -> None:
    # Both clients run the same operations; a stray difference would show up here.
    sync_api, async_api = FakeAPI([ok(session_answer())]), FakeAPI([ok(session_answer())])
    prev = str(uuid.uuid4())
    with make(sync_api) as client:
        client.create_session(name="n", previous_session_id=prev, user_metadata={"a": "b"})

    async def main() -> None:
        async with make_async(async_api) as client:
            await client.create_session(
                name="n", previous_session_id=prev, user_metadata={"a": "b"}
            )

    asyncio.run(main())
    assert sync_api.bodies() == async_api.bodies()
    assert sync_api.requests[0].url == async_api.requests[0].url


def test_non_ascii_headers_fail_at_construction_without_the_key() -> None:
    with pytest.raises(ConfigError, match="GALILEO_EXTRA_HEADERS"):
        GalileoClient(api_key=API_KEY, settings=GalileoSettings(extra_headers={"X-Name": "Zoë"}))
    with pytest.raises(ConfigError, match="GALILEO_API_KEY") as info:
        GalileoClient(api_key="clé-secrète")
    assert "clé-secrète" not in str(info.value)


def test_invalid_url_from_httpx_is_mapped() -> None:
    api = FakeAPI([httpx.InvalidURL("bad url")])
    with make(api) as client, pytest.raises(TransportError, match="InvalidURL"):
        client.count_sessions()


def test_resolve_log_stream_id_in_any_case() -> None:
    api = FakeAPI([ok([_stream("a")]), ok([_stream("a")])])
    with make(api) as client:
        dest = client.resolve_destination(log_stream_id=LOG_STREAM_ID.upper())
        assert dest.log_stream_id == LOG_STREAM_ID
        with pytest.raises(ConfigError, match="not a UUID"):
            client.resolve_destination(log_stream_id="stream-1")
