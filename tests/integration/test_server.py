"""The local Galileo-compatible server over real HTTP (uvicorn on 127.0.0.1): every endpoint, auth,
422 bodies, persistence across restarts, idempotent ingestion, the reliable flag and faults."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from galileo_otel import __version__
from galileo_otel.api.client import GalileoClient, RetryPolicy
from galileo_otel.errors import AuthError, NotFoundError, TransportError, ValidationError
from galileo_otel.server import FaultInjector, RunningServer, serve_in_thread

pytestmark = pytest.mark.integration

KEY = "test-key"
FAST_RETRY = RetryPolicy(max_attempts=4, backoff_initial_s=0.01, backoff_max_s=0.02, jitter=0.0)


@pytest.fixture
def project(local_project: Any) -> Iterator[tuple[RunningServer, GalileoClient, str, httpx.Client]]:
    server, client, project_id = local_project
    with _raw(server) as raw:
        yield server, client, project_id, raw


def _raw(server: RunningServer, key: str | None = KEY) -> httpx.Client:
    headers = {"Galileo-API-Key": key} if key is not None else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=10)


@pytest.fixture
def raw(local_server: RunningServer) -> Iterator[httpx.Client]:
    with _raw(local_server) as client:
        yield client


def _trace(n: int = 0, *, spans: int = 1, tags: list[str] | None = None) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "input": f"question {n}",
        "output": f"answer {n}",
        "tags": tags or [],
        "spans": [
            {
                "type": "workflow",
                "id": str(uuid.uuid4()),
                "spans": [
                    {
                        "type": "llm",
                        "id": str(uuid.uuid4()),
                        "input": [{"role": "user", "content": f"question {n}"}],
                        "output": {"role": "assistant", "content": f"answer {n}"},
                    }
                    for _ in range(spans)
                ],
            }
        ],
    }


def _session(server: RunningServer, project_id: str, session_id: str) -> dict[str, Any]:
    with _raw(server) as raw:
        answer = raw.get(f"/v2/projects/{project_id}/sessions/{session_id}")
        assert answer.status_code == 200, answer.text
        return answer.json()  # type: ignore[no-any-return]


# --- health, auth ---------------------------------------------------------------------------


def test_healthcheck_needs_no_key(local_server: RunningServer) -> None:
    with GalileoClient(api_url=local_server.url, api_key="wrong") as client:
        assert client.healthcheck() is True
    answer = httpx.get(local_server.url + "/healthcheck")
    assert answer.status_code == 200
    assert answer.json()["version"] == __version__


@pytest.mark.parametrize("key", [None, "wrong-key", "TEST-KEY"])
def test_every_api_route_needs_the_key(local_server: RunningServer, key: str | None) -> None:
    pid = str(uuid.uuid4())
    sid = str(uuid.uuid4())
    routes = [
        ("GET", "/projects", None),
        ("POST", "/projects", {"name": "x"}),
        ("GET", f"/v2/projects/{pid}/log_streams", None),
        ("POST", f"/v2/projects/{pid}/log_streams", {"name": "x"}),
        ("POST", f"/v2/projects/{pid}/sessions", {}),
        ("POST", f"/v2/projects/{pid}/sessions/count", {}),
        ("POST", f"/v2/projects/{pid}/sessions/search", {}),
        ("POST", f"/v2/projects/{pid}/traces", {"traces": [{}]}),
        ("GET", f"/v2/projects/{pid}/sessions/{sid}", None),
        ("GET", f"/v2/projects/{pid}/sessions/{sid}/traces", None),
        ("GET", f"/v2/projects/{pid}/traces/{sid}", None),
        ("GET", "/local/stats", None),
        ("GET", "/local/idle", None),
    ]
    with _raw(local_server, key) as raw:
        for method, path, body in routes:
            answer = raw.request(method, path, json=body)
            assert answer.status_code == 401, (method, path, answer.text)
            assert "Galileo-API-Key" in answer.json()["detail"]
            assert KEY not in answer.text
        # Auth comes before body validation: a bad body with no key is still a 401.
        answer = raw.post(f"/v2/projects/{pid}/sessions", json={"reliable": "nope"})
        assert answer.status_code == 401


def test_client_with_a_wrong_key_gets_auth_error(local_server: RunningServer) -> None:
    with GalileoClient(api_url=local_server.url, api_key="nope") as client:
        with pytest.raises(AuthError) as info:
            client.get_project("x")
    assert info.value.status_code == 401


def test_api_key_comes_from_env_or_is_generated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GALILEO_API_KEY", "from-env")
    with serve_in_thread(db_path=tmp_path / "a.db") as server:
        assert server.api_key == "from-env"
        assert "from-env" not in repr(server) and "from-env" not in repr(server.state)
    monkeypatch.delenv("GALILEO_API_KEY")
    with serve_in_thread(db_path=tmp_path / "b.db") as server:
        assert len(server.api_key) >= 20
        with GalileoClient(api_url=server.url, api_key=server.api_key) as client:
            assert client.get_project("none") is None


# --- projects and log streams ---------------------------------------------------------------


def test_projects_and_log_streams(local_server: RunningServer, raw: httpx.Client) -> None:
    with GalileoClient(api_url=local_server.url, api_key=KEY) as client:
        assert client.get_project("shop") is None
        created = client.create_project("shop")
        assert created.name == "shop" and created.type == "gen_ai"
        found = client.get_project("shop")
        assert found is not None and found.id == created.id
        dup = raw.post("/projects", json={"name": "shop"})
        assert dup.status_code == 409 and "already exists" in dup.json()["detail"]
        client.create_project("other")
        listed = raw.get("/projects").json()
        assert [p["name"] for p in listed] == ["shop", "other"]
        assert raw.get("/projects", params={"project_name": "other"}).json()[0]["name"] == "other"

        pid = str(created.id)
        assert client.list_log_streams(pid) == []
        stream = client.create_log_stream(pid, "default")
        assert stream.name == "default" and str(stream.project_id) == pid
        assert [s.id for s in client.list_log_streams(pid)] == [stream.id]
        dup = raw.post(f"/v2/projects/{pid}/log_streams", json={"name": "default"})
        assert dup.status_code == 409
        # The same name in another project is fine.
        client.create_log_stream(str(client.get_project("other").id), "default")  # type: ignore[union-attr]

        dest = client.resolve_destination(project="shop", log_stream="default", create=False)
        assert dest.project_id == pid and dest.log_stream_id == str(stream.id)


def test_unknown_project_is_404(local_server: RunningServer, raw: httpx.Client) -> None:
    pid = str(uuid.uuid4())
    for method, path, body in [
        ("GET", f"/v2/projects/{pid}/log_streams", None),
        ("POST", f"/v2/projects/{pid}/log_streams", {"name": "x"}),
        ("POST", f"/v2/projects/{pid}/sessions", {}),
        ("POST", f"/v2/projects/{pid}/sessions", {"reliable": False}),
        ("POST", f"/v2/projects/{pid}/sessions/count", {}),
        ("POST", f"/v2/projects/{pid}/sessions/search", {}),
        ("POST", f"/v2/projects/{pid}/traces", {"traces": [{}], "reliable": False}),
    ]:
        answer = raw.request(method, path, json=body)
        assert answer.status_code == 404, (method, path, answer.text)
        assert pid in answer.json()["detail"]
    with GalileoClient(api_url=local_server.url, api_key=KEY) as client:
        with pytest.raises(NotFoundError):
            client.count_sessions(project_id=pid)
        with pytest.raises(NotFoundError):
            client.resolve_destination(project_id=pid)


# --- 422 bodies -----------------------------------------------------------------------------


def test_bad_bodies_get_fastapi_422(project: Any) -> None:
    _, client, pid, raw = project
    answer = raw.post(f"/v2/projects/{pid}/sessions", json={"previous_session_id": "nope"})
    assert answer.status_code == 422
    (item,) = answer.json()["detail"]
    assert item["loc"] == ["body", "previous_session_id"] and item["type"] == "uuid_parsing"
    assert {"loc", "msg", "type", "input"} <= set(item)

    answer = raw.post(f"/v2/projects/{pid}/sessions", json={"logging_method": "carrier_pigeon"})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "logging_method"]

    answer = raw.post(f"/v2/projects/{pid}/traces", json={"traces": []})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "traces"]

    answer = raw.post(
        f"/v2/projects/{pid}/traces",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["type"] == "json_invalid"

    # The real API enforces uuid4 for path ids (format: uuid4).
    uuid1 = str(uuid.uuid1())
    answer = raw.post(f"/v2/projects/{uuid1}/sessions/count", json={})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["path", "project_id"]

    with pytest.raises(ValidationError) as info:
        client.request_json(
            "POST",
            f"/v2/projects/{pid}/sessions/count",
            json={
                "filters": [
                    {"type": "text", "column_id": "name", "operator": "between", "value": "x"}
                ]
            },
        )
    assert info.value.status_code == 422
    assert "operator" in str(info.value.detail)


def test_unknown_column_and_type_mismatch_say_which(project: Any) -> None:
    _, client, pid, raw = project
    url = f"/v2/projects/{pid}/sessions/count"
    answer = raw.post(
        url,
        json={
            "filters": [{"type": "text", "column_id": "colour", "operator": "eq", "value": "red"}]
        },
    )
    assert answer.status_code == 422
    (item,) = answer.json()["detail"]
    assert item["loc"] == ["body", "filters", 0, "column_id"]
    assert "unknown column 'colour'" in item["msg"] and "num_traces" in item["msg"]

    answer = raw.post(
        url,
        json={
            "filter_tree": {
                "and": [
                    {
                        "not": {
                            "filter": {
                                "type": "text",
                                "column_id": "num_traces",
                                "operator": "eq",
                                "value": "3",
                            }
                        }
                    }
                ]
            }
        },
    )
    assert answer.status_code == 422
    (item,) = answer.json()["detail"]
    assert item["loc"] == ["body", "filter_tree", "and", 0, "not", "filter", "type"]
    assert "'num_traces' is a number column" in item["msg"] and "text" in item["msg"]

    answer = raw.post(
        url,
        json={
            "filters": [
                {"type": "text", "column_id": "name", "operator": "one_of", "value": "solo"}
            ]
        },
    )
    assert answer.status_code == 422
    assert "needs a list" in answer.json()["detail"][0]["msg"]

    answer = raw.post(url, json={"filters": [{"type": "fully_annotated"}]})
    assert answer.status_code == 422
    assert "annotation-queue" in answer.json()["detail"][0]["msg"]

    answer = raw.post(
        f"/v2/projects/{pid}/sessions/search", json={"sort": {"column_id": "tags"}, "limit": 0}
    )
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "limit"]
    answer = raw.post(f"/v2/projects/{pid}/sessions/search", json={"sort": {"column_id": "nope"}})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "sort", "column_id"]

    with pytest.raises(ValidationError) as info:
        client.count_sessions(
            filters=[
                {"type": "number", "column_id": "user_metadata.age", "operator": "gt", "value": 3}
            ]
        )
    assert "user_metadata.age" in str(info.value.detail)


def test_sql_looking_input_is_only_data(project: Any) -> None:
    _, client, pid, raw = project
    evil = "x'); DROP TABLE sessions; --"
    session = client.create_session(name=evil, external_id=evil, user_metadata={evil: evil})
    flt = {"type": "text", "column_id": f"user_metadata.{evil}", "operator": "eq", "value": evil}
    assert client.count_sessions(filters=[flt]) == 1
    assert client.count_sessions(filters=[{**flt, "column_id": "name"}]) == 1
    answer = raw.post(
        f"/v2/projects/{pid}/sessions/count",
        json={
            "filters": [
                {"type": "text", "column_id": "name) OR 1=1 --", "operator": "eq", "value": "x"}
            ]
        },
    )
    assert answer.status_code == 422
    assert _session(project[0], pid, str(session.id))["name"] == evil


# --- sessions -------------------------------------------------------------------------------


def test_create_session_keeps_every_field(project: Any) -> None:
    server, client, pid, _ = project
    first = client.create_session(
        name="first", external_id="conv-1", user_metadata={"user": "ada", "tier": "gold"}
    )
    assert first.name == "first" and first.external_id == "conv-1"
    assert first.project_name == "test" and str(first.project_id) == pid
    second = client.create_session(
        name="second", external_id="conv-1", previous_session_id=str(first.id)
    )
    assert second.previous_session_id == first.id and second.id != first.id

    record = _session(server, pid, str(second.id))
    assert record["previous_session_id"] == str(first.id)
    assert record["logging_method"] == "python_client"
    assert record["client_version"] == __version__
    assert record["num_traces"] == 0 and record["traces"] == []
    assert record["log_stream_id"] == client.log_stream_id
    first_record = _session(server, pid, str(first.id))
    assert first_record["user_metadata"] == {"user": "ada", "tier": "gold"}
    assert first_record["created_at"] <= record["created_at"]


def test_unknown_previous_or_session_id_is_rejected(project: Any) -> None:
    server, client, pid, raw = project
    ghost = str(uuid.uuid4())
    with pytest.raises(ValidationError) as info:
        client.create_session(previous_session_id=ghost)
    assert info.value.status_code == 422
    (item,) = info.value.detail
    assert item["loc"] == ["body", "previous_session_id"] and ghost in item["msg"]

    with pytest.raises(ValidationError) as info:
        client.log_traces([_trace()], session_id=ghost)
    assert info.value.detail[0]["loc"] == ["body", "session_id"]

    # A session of another project does not exist in this one.
    other = raw.post("/projects", json={"name": "elsewhere"}).json()
    elsewhere = raw.post(f"/v2/projects/{other['id']}/sessions", json={}).json()
    with pytest.raises(ValidationError):
        client.log_traces([_trace()], session_id=elsewhere["id"])
    with pytest.raises(ValidationError):
        client.create_session(previous_session_id=elsewhere["id"])
    answer = raw.post(f"/v2/projects/{pid}/sessions", json={"log_stream_id": str(uuid.uuid4())})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "log_stream_id"]
    assert client.count_sessions() == 0
    assert server.state.stats()["traces"] == 0


def test_search_pages_and_sorts(project: Any) -> None:
    _, client, pid, raw = project
    names = ["delta", "alpha", "echo", "charlie", "bravo"]
    ids = {}
    for i, name in enumerate(names):
        ids[name] = str(client.create_session(name=name, user_metadata={"rank": str(9 - i)}).id)
        for n in range(i % 3):
            client.log_traces([_trace(n)], session_id=ids[name])

    page = client.search_sessions(limit=2, sort={"column_id": "name", "ascending": True})
    assert [r["name"] for r in page.records] == ["alpha", "bravo"]
    assert page.paginated and page.next_starting_token == 2 and page.last_row_id == ids["bravo"]
    page = client.search_sessions(limit=2, starting_token=4, sort={"column_id": "name"})
    assert [r["name"] for r in page.records] == ["echo"]
    assert not page.paginated and page.next_starting_token is None

    every = list(client.iter_sessions(limit=2, sort={"column_id": "name", "ascending": False}))
    assert [r["name"] for r in every] == sorted(names, reverse=True)
    newest_first = [r["name"] for r in client.iter_sessions(limit=3)]
    assert newest_first == names[::-1]
    by_meta = client.search_sessions(sort={"column_id": "user_metadata.rank"})
    assert [r["name"] for r in by_meta.records] == names[::-1]
    by_traces = client.search_sessions(sort={"column_id": "num_traces", "ascending": False})
    assert [r["num_traces"] for r in by_traces.records] == [2, 1, 1, 0, 0]

    record = next(r for r in every if r["name"] == "echo")
    assert record["type"] == "session" and record["has_children"] is True
    assert record["num_traces"] == 2 and record["num_spans"] == 4
    assert record["input"] == "question 0" and record["output"] == "answer 1"
    filtered = client.search_sessions(
        filters=[{"type": "text", "column_id": "name", "operator": "contains", "value": "a"}]
    )
    assert {r["name"] for r in filtered.records} == {"delta", "alpha", "charlie", "bravo"}
    answer = raw.post(f"/v2/projects/{pid}/sessions/search", json={"limit": 10_001})
    assert answer.status_code == 422


# --- traces ---------------------------------------------------------------------------------


def test_log_traces_stores_whole_trees(project: Any) -> None:
    server, client, pid, raw = project
    session = client.create_session(name="s")
    traces = [_trace(0, spans=2, tags=["x"]), _trace(1, spans=1, tags=["y", "x"])]
    traces[1]["spans"].append(
        {
            "type": "tool",
            "input": "2+2",
            "output": "4",
            "spans": [
                {
                    "type": "retriever",
                    "input": "q",
                    "output": [{"content": "doc", "metadata": {"a": 1}}],
                }
            ],
        }
    )
    answer = client.log_traces(traces, session_id=str(session.id), include_trace_ids=True)
    assert answer.traces_count == 2 and answer.spans_count == 3 + 4
    assert answer.records_count == 9 and answer.session_id == session.id
    assert [str(t) for t in answer.trace_ids or []] == [t["id"] for t in traces]

    stored = raw.get(f"/v2/projects/{pid}/traces/{traces[1]['id']}").json()
    assert stored["input"] == "question 1" and stored["session_id"] == str(session.id)
    workflow, tool = stored["spans"]
    assert workflow["type"] == "workflow" and workflow["parent_id"] == traces[1]["id"]
    (llm,) = workflow["spans"]
    assert llm["output"]["content"] == "answer 1" and llm["parent_id"] == workflow["id"]
    assert llm["trace_id"] == traces[1]["id"]
    (retriever,) = tool["spans"]
    assert retriever["output"] == [{"content": "doc", "metadata": {"a": 1}}]

    listing = raw.get(f"/v2/projects/{pid}/sessions/{session.id}/traces").json()
    assert [t["id"] for t in listing["traces"]] == [t["id"] for t in traces]
    record = _session(server, pid, str(session.id))
    assert record["num_traces"] == 2 and record["num_spans"] == 7 and record["tags"] == ["x", "y"]
    assert raw.get(f"/v2/projects/{pid}/traces/{uuid.uuid4()}").status_code == 404
    assert raw.get(f"/v2/projects/{pid}/sessions/{uuid.uuid4()}").status_code == 404
    assert raw.get(f"/v2/projects/{pid}/sessions/{uuid.uuid4()}/traces").status_code == 404

    stats = raw.get("/local/stats").json()
    assert stats["traces"] == 2 and stats["spans"] == 7 and stats["sessions"] == 1


def test_ingestion_is_idempotent(project: Any) -> None:
    server, client, pid, raw = project
    session = client.create_session(name="retry")
    sid = str(session.id)
    traces = [_trace(0, spans=2), _trace(1, spans=1)]
    first = client.log_traces(traces, session_id=sid)
    again = client.log_traces(traces, session_id=sid)  # a retry after a lost answer
    assert again.traces_count == first.traces_count == 2
    record = _session(server, pid, sid)
    assert record["num_traces"] == 2 and record["num_spans"] == 5
    assert server.state.stats()["spans"] == 5

    # A retried trace that grew a span adds only the new span.
    traces[0]["spans"][0]["spans"].append({"type": "tool", "id": str(uuid.uuid4()), "input": "t"})
    client.log_traces([traces[0]], session_id=sid)
    record = _session(server, pid, sid)
    assert record["num_traces"] == 2 and record["num_spans"] == 6
    count = client.count_sessions(
        filters=[{"type": "number", "column_id": "num_traces", "operator": "eq", "value": 2}]
    )
    assert count == 1

    # An incomplete trace is replaced by its complete version, still counted once.
    partial = _trace(2, spans=0)
    partial["output"] = None
    client.log_traces([partial], session_id=sid, is_complete=False)
    partial["output"] = "done"
    client.log_traces([partial], session_id=sid, is_complete=True)
    stored = raw.get(f"/v2/projects/{pid}/traces/{partial['id']}").json()
    assert stored["output"] == "done"
    assert _session(server, pid, sid)["num_traces"] == 3


def test_session_external_id_finds_or_creates_the_session(project: Any) -> None:
    server, client, pid, _ = project
    first = client.log_traces([_trace(0)], session_external_id="otel-conv-9")
    assert first.session_id is not None
    second = client.log_traces([_trace(1)], session_external_id="otel-conv-9")
    assert second.session_id == first.session_id
    record = _session(server, pid, str(first.session_id))
    assert record["external_id"] == "otel-conv-9" and record["num_traces"] == 2
    named = client.create_session(external_id="otel-conv-10")
    third = client.log_traces([_trace(2)], session_external_id="otel-conv-10")
    assert third.session_id == named.id


def test_traces_without_session_or_ids(project: Any) -> None:
    _, client, pid, raw = project
    answer = client.log_traces(
        [{"input": "no ids", "spans": [{"type": "tool"}]}], include_trace_ids=True
    )
    assert answer.session_id is None and answer.trace_ids and len(answer.trace_ids) == 1
    stored = raw.get(f"/v2/projects/{pid}/traces/{answer.trace_ids[0]}").json()
    assert stored["session_id"] is None and len(stored["spans"]) == 1
    assert uuid.UUID(stored["spans"][0]["id"])


# --- reliable -------------------------------------------------------------------------------


class _BlockedWriter:
    """Holds the server's single writer busy until released."""

    def __init__(self, server: RunningServer) -> None:
        self._gate = threading.Event()
        self._started = threading.Event()

        def hold() -> None:
            self._started.set()
            self._gate.wait(10)

        server.state.writer.submit(hold)
        assert self._started.wait(5)

    def release(self) -> None:
        self._gate.set()


def test_reliable_false_answers_before_storing(project: Any) -> None:
    server, client, pid, _ = project
    session = client.create_session(name="base")
    blocked = _BlockedWriter(server)
    try:
        quick = client.create_session(name="quick", reliable=False)
        assert quick.name == "quick" and quick.project_name == "test"
        answer = client.log_traces(
            [_trace(0), _trace(1)],
            session_id=str(session.id),
            reliable=False,
            include_trace_ids=True,
        )
        assert answer.traces_count == 2 and answer.spans_count == 4 and answer.trace_ids
        assert client.count_sessions() == 1  # nothing stored yet
    finally:
        blocked.release()
    assert server.wait_idle(10)
    assert client.count_sessions() == 2
    assert _session(server, pid, str(session.id))["num_traces"] == 2
    assert _session(server, pid, str(quick.id))["name"] == "quick"


def test_reliable_true_answers_after_commit(project: Any) -> None:
    server, client, pid, _ = project
    session = client.create_session(name="base")
    blocked = _BlockedWriter(server)
    results: list[Any] = []
    sender = threading.Thread(
        target=lambda: results.append(client.log_traces([_trace()], session_id=str(session.id)))
    )
    try:
        sender.start()
        sender.join(0.3)
        assert sender.is_alive() and not results  # still waiting for the commit
    finally:
        blocked.release()
    sender.join(10)
    assert results and results[0].traces_count == 1
    # No waiting needed: the answer came after the commit.
    assert _session(server, pid, str(session.id))["num_traces"] == 1


def test_background_failure_is_only_logged(project: Any, caplog: pytest.LogCaptureFixture) -> None:
    _, client, pid, raw = project
    ghost = str(uuid.uuid4())
    answer = client.log_traces([_trace()], session_id=ghost, reliable=False)
    assert answer.session_id == uuid.UUID(ghost)
    created = client.create_session(previous_session_id=ghost, reliable=False)
    assert raw.get("/local/idle", params={"timeout": 5}).json() == {"idle": True}
    stats = raw.get("/local/stats").json()
    assert stats["background_failures"] == 2 and stats["traces"] == 0 and stats["sessions"] == 0
    assert raw.get(f"/v2/projects/{pid}/sessions/{created.id}").status_code == 404
    assert any("background ingestion failed" in r.getMessage() for r in caplog.records)
    assert KEY not in caplog.text


# --- persistence ----------------------------------------------------------------------------


def test_data_survives_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "keep.db"
    with serve_in_thread(db_path=db, api_key=KEY) as server:
        with GalileoClient(api_url=server.url, api_key=KEY) as client:
            dest = client.resolve_destination(project="kept", log_stream="main")
            session = client.create_session(
                project_id=dest.project_id, name="kept", log_stream_id=dest.log_stream_id
            )
            trace = _trace(spans=2)
            client.log_traces([trace], project_id=dest.project_id, session_id=str(session.id))
            client.log_traces(
                [_trace()], project_id=dest.project_id, session_id=str(session.id), reliable=False
            )
    # stop() finished the queued fire-and-forget write before closing the database.
    with serve_in_thread(db_path=db, api_key="new-key") as server:
        with GalileoClient(api_url=server.url, api_key="new-key") as client:
            again = client.resolve_destination(project="kept", log_stream="main", create=False)
            assert again == dest or (again.project_id, again.log_stream_id) == (
                dest.project_id,
                dest.log_stream_id,
            )
            assert client.count_sessions(project_id=dest.project_id) == 1
            record = _session_with(server, "new-key", dest.project_id, str(session.id))
            assert record["num_traces"] == 2 and record["name"] == "kept"
            # Idempotency holds across restarts too.
            client.log_traces([trace], project_id=dest.project_id, session_id=str(session.id))
            record = _session_with(server, "new-key", dest.project_id, str(session.id))
            assert record["num_traces"] == 2 and record["num_spans"] == 5


def _session_with(server: RunningServer, key: str, pid: str, sid: str) -> dict[str, Any]:
    with _raw(server, key) as raw:
        return raw.get(f"/v2/projects/{pid}/sessions/{sid}").json()  # type: ignore[no-any-return]


def test_concurrent_writers_lose_nothing(project: Any) -> None:
    server, client, pid, _ = project
    session = client.create_session(name="busy")
    errors: list[BaseException] = []

    def send(worker: int) -> None:
        try:
            with GalileoClient(api_url=server.url, api_key=KEY, project_id=pid) as own:
                for n in range(10):
                    own.log_traces(
                        [_trace(worker * 100 + n)], session_id=str(session.id), reliable=bool(n % 2)
                    )
                    own.create_session(name=f"w{worker}-{n}")
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert server.wait_idle(10)
    assert _session(server, pid, str(session.id))["num_traces"] == 60
    assert server.state.stats()["sessions"] == 61


# --- faults ---------------------------------------------------------------------------------


def test_fail_next_n_then_recover(project: Any) -> None:
    server, _, pid, raw = project
    server.faults.fail("traces", status=503, times=2, retry_after_s=0)
    statuses = [
        raw.post(f"/v2/projects/{pid}/traces", json={"traces": [{}]}).status_code for _ in range(3)
    ]
    assert statuses == [503, 503, 200]
    server.faults.fail("sessions.create", status=500, times=2)
    with GalileoClient(api_url=server.url, api_key=KEY, project_id=pid, retry=FAST_RETRY) as c:
        assert c.create_session(name="after two 500s").name == "after two 500s"
    assert server.faults.stats()["error"] == 4


def test_rate_limit_sends_retry_after(project: Any) -> None:
    server, _, pid, raw = project
    server.faults.rate_limit("sessions.count", retry_after_s=0.05, times=1)
    answer = raw.post(f"/v2/projects/{pid}/sessions/count", json={})
    assert answer.status_code == 429 and answer.headers["Retry-After"] == "0.05"
    server.faults.rate_limit("sessions.count", retry_after_s=2, times=1)
    answer = raw.post(f"/v2/projects/{pid}/sessions/count", json={})
    assert answer.headers["Retry-After"] == "2"
    assert raw.post(f"/v2/projects/{pid}/sessions/count", json={}).status_code == 200
    server.faults.rate_limit("sessions.count", retry_after_s=0.01, times=1)
    with GalileoClient(api_url=server.url, api_key=KEY, project_id=pid, retry=FAST_RETRY) as c:
        assert c.count_sessions() == 0


def test_seeded_fraction_is_repeatable(tmp_path: Path) -> None:
    def run(seed: int) -> list[int]:
        faults = FaultInjector(seed=seed)
        faults.fail("healthcheck", status=500, fraction=0.5)
        with serve_in_thread(db_path=tmp_path / f"f{seed}.db", api_key=KEY, faults=faults) as s:
            with _raw(s) as raw:
                return [raw.get("/healthcheck").status_code for _ in range(20)]

    first, second = run(1), run(1)
    assert first == second and {200, 500} == set(first)
    assert run(2) != first


def test_latency_then_answer(project: Any) -> None:
    server, _, pid, raw = project
    server.faults.latency("GET /v2/projects/*/log_streams", seconds=0.05, times=1)
    assert raw.get(f"/v2/projects/{pid}/log_streams").status_code == 200
    assert server.faults.stats()["latency"] == 1


def test_drop_closes_without_answer(project: Any) -> None:
    server, _, pid, raw = project
    server.faults.drop("traces", times=1)
    with pytest.raises(httpx.RemoteProtocolError):
        raw.post(f"/v2/projects/{pid}/traces", json={"traces": [{}]})
    server.faults.drop("traces", times=1)
    with GalileoClient(
        api_url=server.url, api_key=KEY, project_id=pid, retry=RetryPolicy.none()
    ) as c:
        with pytest.raises(TransportError):
            c.log_traces([_trace()])
    assert raw.post(f"/v2/projects/{pid}/traces", json={"traces": [{}]}).status_code == 200


def test_hang_is_released_and_stop_is_bounded(tmp_path: Path) -> None:
    server = serve_in_thread(db_path=tmp_path / "h.db", api_key=KEY)
    server.faults.hang("healthcheck", max_hang_s=60)
    outcome: list[BaseException | int] = []

    def call() -> None:
        try:
            outcome.append(httpx.get(server.url + "/healthcheck", timeout=30).status_code)
        except httpx.HTTPError as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    while server.faults.stats()["hang"] == 0:  # bounded: the call arrives or the join fails
        caller.join(0.01)
        assert caller.is_alive()
    with GalileoClient(api_url=server.url, api_key=KEY, timeout=0.2, retry=RetryPolicy.none()) as c:
        with pytest.raises(TransportError):
            c.request_json("GET", "/healthcheck")
    server.faults.release()  # ends both hangs
    assert server.stop(timeout=5) is True
    caller.join(10)
    assert not caller.is_alive()
    assert isinstance(outcome[0], httpx.HTTPError)


def test_stop_ends_a_hang_in_progress(tmp_path: Path) -> None:
    server = serve_in_thread(db_path=tmp_path / "h2.db", api_key=KEY)
    server.faults.hang("*", max_hang_s=120)
    caller = threading.Thread(
        target=lambda: _ignore(lambda: httpx.get(server.url + "/x", timeout=60))
    )
    caller.start()
    while server.faults.stats()["hang"] == 0:
        caller.join(0.01)
        assert caller.is_alive()
    assert server.stop(timeout=5) is True
    caller.join(10)
    assert not caller.is_alive()


def _ignore(fn: Any) -> None:
    try:
        fn()
    except httpx.HTTPError:
        pass


def test_fault_admin_only_when_enabled(local_server: RunningServer, tmp_path: Path) -> None:
    with _raw(local_server) as raw:
        assert raw.get("/local/faults").status_code == 404
    with serve_in_thread(db_path=tmp_path / "adm.db", api_key=KEY, fault_admin=True) as server:
        with _raw(server) as raw:
            assert raw.get("/local/faults").json()["rules"] == []
            added = raw.post(
                "/local/faults",
                json=[
                    {"action": "error", "route": "healthcheck", "status": 503, "times": 1},
                    {"action": "latency", "route": "GET /projects", "latency_s": 0.01},
                ],
            )
            assert added.status_code == 200 and len(added.json()["rules"]) == 2
            assert raw.get("/healthcheck").status_code == 503
            assert raw.get("/healthcheck").status_code == 200
            assert raw.get("/projects").status_code == 200
            listed = raw.get("/local/faults").json()
            assert listed["fired"]["error"] == 1 and listed["fired"]["latency"] == 1
            bad = raw.post("/local/faults", json={"action": "explode"})
            assert bad.status_code == 422
            bad = raw.post("/local/faults", json={"action": "drop", "rout": "*"})
            assert bad.status_code == 422 and "rout" in bad.text
            # Admin routes are never faulted, and need the key.
            raw.post("/local/faults", json={"action": "error", "route": "*"})
            assert raw.get("/projects").status_code == 500
            assert raw.post("/local/faults/release").status_code == 200
            assert raw.delete("/local/faults").json()["rules"] == []
            assert raw.get("/projects").status_code == 200
            assert httpx.get(server.url + "/local/faults").status_code == 401


def test_non_loopback_bind_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="non-loopback"):
        serve_in_thread(db_path=tmp_path / "r.db", host="0.0.0.0")
    with pytest.raises(ValueError, match="non-loopback"):
        serve_in_thread(db_path=tmp_path / "r.db", host="0.0.0.0", allow_remote=True)
