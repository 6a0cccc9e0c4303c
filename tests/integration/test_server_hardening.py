"""The local server stands up to bad input: body limit, filter depth, fault admin bounds, docs
behind the key, private files, and a key that survives a restart."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from galileo_otel.api.models import MAX_FILTER_TREE_DEPTH
from galileo_otel.server import serve_in_thread
from galileo_otel.server.auth import key_file_for

pytestmark = pytest.mark.integration

KEY = "hardening-key"
LEAF = {"filter": {"type": "text", "column_id": "name", "operator": "eq", "value": "x"}}


@pytest.fixture
def small(tmp_path: Path) -> Iterator[tuple[Any, httpx.Client, str]]:
    """A server with a 64 KiB body limit and the fault admin on; a client; a project id."""
    with serve_in_thread(
        db_path=tmp_path / "g.db", api_key=KEY, max_body_bytes=64 * 1024, fault_admin=True
    ) as server:
        with httpx.Client(base_url=server.url, headers={"Galileo-API-Key": KEY}) as http:
            project = http.post("/projects", json={"name": "p"}).json()["id"]
            yield server, http, project


def _big_trace_body(size: int) -> bytes:
    return json.dumps({"traces": [{"input": "x" * size}]}).encode()


def test_an_oversized_body_gets_413_naming_the_limit(small: tuple[Any, httpx.Client, str]) -> None:
    server, http, project = small
    answer = http.post(
        f"/v2/projects/{project}/traces",
        content=_big_trace_body(100 * 1024),
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 413
    assert (
        "65536 bytes" in answer.json()["detail"] and "--max-body-bytes" in answer.json()["detail"]
    )
    # Streamed without a Content-Length: counted as it arrives.
    chunks = iter([b'{"traces": [{"input": "', b"y" * (80 * 1024), b'"}]}'])
    streamed = http.post(
        f"/v2/projects/{project}/traces",
        content=chunks,
        headers={"Content-Type": "application/json"},
    )
    assert streamed.status_code == 413
    # Nothing was stored, and a body under the limit still goes through.
    assert server.state.stats()["traces"] == 0
    ok = http.post(
        f"/v2/projects/{project}/traces",
        content=_big_trace_body(1024),
        headers={"Content-Type": "application/json"},
    )
    assert ok.status_code == 200, ok.text
    assert server.state.stats()["traces"] == 1


def _not_tree(depth: int) -> dict[str, Any]:
    tree: dict[str, Any] = LEAF
    for _ in range(depth - 1):
        tree = {"not": tree}
    return tree


@pytest.mark.parametrize("route", ["count", "search"])
def test_filter_tree_depth_is_limited_with_a_422(
    small: tuple[Any, httpx.Client, str], route: str
) -> None:
    _, http, project = small
    at_limit = http.post(
        f"/v2/projects/{project}/sessions/{route}",
        json={"filter_tree": _not_tree(MAX_FILTER_TREE_DEPTH)},
    )
    assert at_limit.status_code == 200, at_limit.text
    over = http.post(
        f"/v2/projects/{project}/sessions/{route}",
        json={"filter_tree": _not_tree(MAX_FILTER_TREE_DEPTH + 1)},
    )
    assert over.status_code == 422
    (detail,) = over.json()["detail"]
    assert detail["loc"] == ["body", "filter_tree"]
    assert f"more than {MAX_FILTER_TREE_DEPTH} levels" in detail["msg"]
    # Wide is fine: and/or take lists of any length.
    wide = http.post(
        f"/v2/projects/{project}/sessions/{route}", json={"filter_tree": {"or": [LEAF] * 500}}
    )
    assert wide.status_code == 200


def _log_trace(http: httpx.Client, project: str, stream: str, name: str) -> None:
    answer = http.post(
        f"/v2/projects/{project}/traces",
        json={
            "log_stream_id": stream,
            "traces": [
                {
                    "type": "trace",
                    "input": "q",
                    "output": "a",
                    "name": name,
                    "spans": [
                        {"type": "workflow", "input": "q", "output": "a", "name": name},
                    ],
                }
            ],
        },
    )
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("kind", ["traces", "spans"])
def test_a_filter_tree_at_the_depth_limit_searches_traces_and_spans(
    small: tuple[Any, httpx.Client, str], kind: str
) -> None:
    """SQLite cannot parse 100 nested NOTs: the search splits the tree and still answers right."""
    _, http, project = small
    stream = http.post(f"/v2/projects/{project}/log_streams", json={"name": "s"}).json()["id"]
    _log_trace(http, project, stream, "x")
    _log_trace(http, project, stream, "y")
    # An even number of NOTs is the leaf itself (name = "x"), an odd one its negation.
    for depth, names in ((MAX_FILTER_TREE_DEPTH - 1, {"x"}), (MAX_FILTER_TREE_DEPTH, {"y"})):
        answer = http.post(
            f"/v2/projects/{project}/{kind}/search",
            json={"filter_tree": _not_tree(depth), "limit": 10},
        )
        assert answer.status_code == 200, answer.text
        assert {r["name"] for r in answer.json()["records"]} == names, depth
    over = http.post(
        f"/v2/projects/{project}/{kind}/search",
        json={"filter_tree": _not_tree(MAX_FILTER_TREE_DEPTH + 1)},
    )
    assert over.status_code == 422


def test_json_too_deep_to_parse_is_a_422_not_a_bare_400(local_project: Any) -> None:
    server, _, project = local_project
    with httpx.Client(base_url=server.url, headers={"Galileo-API-Key": server.api_key}) as http:
        for depth in (900, 10_000):
            body = '{"filter_tree":' + '{"and":[' * depth + json.dumps(LEAF) + "]}" * depth + "}"
            answer = http.post(
                f"/v2/projects/{project}/sessions/count",
                content=body,
                headers={"Content-Type": "application/json"},
            )
            assert answer.status_code == 422, (depth, answer.text[:300])
            (detail,) = answer.json()["detail"]
            assert detail["loc"][0] == "body"
            # The answer names the problem without echoing megabytes of nesting back.
            assert len(answer.content) < 1000


@pytest.mark.parametrize(
    "body",
    [
        {"action": "hang", "max_hang_s": 1e9},
        {"action": "latency", "latency_s": -1},
        {"action": "error", "status": 99},
        {"action": "error", "route": {"nested": ["not", "a", "route"]}},
        {"action": "explode"},
        {"action": "error", "typo": 1},
        [{"action": "error"}, {"action": {"x": 1}}],
        [[{"action": "error"}]],
        "error",
    ],
)
def test_fault_admin_validates_and_bounds_its_body(
    small: tuple[Any, httpx.Client, str], body: Any
) -> None:
    server, http, _ = small
    answer = http.post("/local/faults", json=body)
    assert answer.status_code == 422, answer.text
    assert isinstance(answer.json()["detail"], list)
    assert server.faults.to_dict()["rules"] == []


def test_fault_admin_accepts_a_valid_rule(small: tuple[Any, httpx.Client, str]) -> None:
    server, http, _ = small
    answer = http.post("/local/faults", json={"action": "hang", "max_hang_s": 3600, "times": 1})
    assert answer.status_code == 200, answer.text
    assert server.faults.to_dict()["rules"][0]["max_hang_s"] == 3600
    http.delete("/local/faults")


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json"])
def test_docs_need_the_key_when_the_server_has_one(tmp_path: Path, path: str) -> None:
    with serve_in_thread(db_path=tmp_path / "g.db", api_key=KEY) as server:
        with httpx.Client(base_url=server.url) as http:
            assert http.get(path).status_code == 401
            assert http.get(path, headers={"Galileo-API-Key": KEY}).status_code == 200
            token = http.post("/login/api_key", json={"api_key": KEY}).json()["access_token"]
            assert http.get(path, headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_docs_are_open_on_loopback_without_a_given_key(tmp_path: Path) -> None:
    with serve_in_thread(db_path=tmp_path / "g.db") as server:
        with httpx.Client(base_url=server.url) as http:
            spec = http.get("/openapi.json")
            assert spec.status_code == 200
            assert "/otel/traces" in spec.json()["paths"]
            assert http.get("/docs").status_code == 200
            # The API itself still needs the (generated) key.
            assert http.get("/projects").status_code == 401


def test_database_and_key_are_private_and_the_key_survives_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "data" / "galileo.db"
    with serve_in_thread(db_path=db) as first:
        key = first.api_key
        with httpx.Client(base_url=first.url, headers={"Galileo-API-Key": key}) as http:
            assert http.post("/projects", json={"name": "kept"}).status_code == 200
    for path in (db, key_file_for(db)):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    with serve_in_thread(db_path=db) as second:
        assert second.api_key == key
        with httpx.Client(base_url=second.url, headers={"Galileo-API-Key": key}) as http:
            names = [p["name"] for p in http.get("/projects").json()]
    assert names == ["kept"]


def test_default_body_limit_is_64_mib_as_documented(tmp_path: Path) -> None:
    # docs/reference/server.md: a request body over --max-body-bytes (default 64 MiB) answers 413.
    limit = 64 * 1024 * 1024
    with serve_in_thread(db_path=tmp_path / "g.db", api_key=KEY) as server:
        with httpx.Client(
            base_url=server.url, headers={"Galileo-API-Key": KEY}, timeout=60
        ) as http:
            project = http.post("/projects", json={"name": "p"}).json()["id"]
            over = http.post(
                f"/v2/projects/{project}/traces",
                content=b"x" * (limit + 1),
                headers={"Content-Type": "application/json"},
            )
            assert over.status_code == 413
            assert f"{limit} bytes" in over.json()["detail"]
            # at the limit the body is read (and refused as JSON, not for its size)
            at = http.post(
                f"/v2/projects/{project}/traces",
                content=b"x" * limit,
                headers={"Content-Type": "application/json"},
            )
            assert at.status_code == 422, at.text[:200]
