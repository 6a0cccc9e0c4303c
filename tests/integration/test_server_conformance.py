"""Conformance of the local server to the repo's OpenAPI file, checked by schemathesis against the
real uvicorn server: valid bodies never get a server error or an off-schema answer, and invalid
bodies are rejected with a 422 ``HTTPValidationError``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

import galileo_otel.api

pytestmark = pytest.mark.integration

SPEC = Path(galileo_otel.api.__file__).parent / "galileo-openapi.yaml"
KEY = "test-key"
MAX_EXAMPLES = 20
# Invalid variants of the deeply nested Log Traces body are slow to generate; fewer keep CI fast.
NEGATIVE_TRACES_EXAMPLES = 8

# The spec's ids are `format: uuid4` (FastAPI + pydantic UUID4 on the real server); without this
# schemathesis would not know the format and "valid" bodies would carry arbitrary strings.
schemathesis.openapi.format("uuid4", st.uuids(version=4).map(str))
SCHEMA = schemathesis.openapi.from_path(SPEC)
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]


@pytest.fixture
def target(local_project: Any) -> Iterator[tuple[str, str, requests.Session]]:
    server, client, project_id = local_project
    # Something to refer to: a session with a trace, so generated filters can match.
    session = client.create_session(name="seed", external_id="conv-1", user_metadata={"k": "v"})
    client.log_traces([{"input": "q", "output": "a", "tags": ["t"]}], session_id=str(session.id))
    with requests.Session() as http:
        http.headers["Galileo-API-Key"] = KEY
        yield server.url, project_id, http


def _run(
    operation: Any,
    mode: GenerationMode,
    target: tuple[str, str, requests.Session],
    checks: list[Callable[..., Any]],
) -> None:
    base_url, project_id, http = target
    # The spec says format uuid4 for project_id; pin it to a real project so bodies reach the
    # handlers instead of stopping at a 404.
    strategy = operation.as_strategy(mode, path_parameters={"project_id": project_id})

    slow = mode is GenerationMode.NEGATIVE and operation.path.endswith("/traces")

    @settings(
        max_examples=NEGATIVE_TRACES_EXAMPLES if slow else MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def check(case: schemathesis.Case) -> None:
        response = case.call(base_url=base_url, session=http, timeout=10)
        case.validate_response(response, checks=checks)

    check()


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_valid_bodies_get_conforming_answers(
    operation: Any, target: tuple[str, str, requests.Session]
) -> None:
    _run(
        operation,
        GenerationMode.POSITIVE,
        target,
        [
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_invalid_bodies_are_rejected_with_422(
    operation: Any, target: tuple[str, str, requests.Session]
) -> None:
    _run(
        operation,
        GenerationMode.NEGATIVE,
        target,
        [
            not_a_server_error,
            negative_data_rejection,
            content_type_conformance,
            response_schema_conformance,
        ],
    )


# ------------------------------------------------------------------------------------------------
# The routes beyond the Galileo spec file (official SDK, OTLP, fault admin), checked against the
# server's own OpenAPI document: no valid body gets a server error, no invalid one is accepted.
# ------------------------------------------------------------------------------------------------

SPEC_PATHS = set(SCHEMA.raw_schema["paths"])


def _own_operations() -> list[Any]:
    import tempfile

    from galileo_otel.server.app import create_app

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(db_path=Path(tmp) / "spec.db", api_key=KEY, fault_admin=True)
        try:
            spec = app.openapi()
        finally:
            app.state.galileo.close()
    own = schemathesis.openapi.from_dict(spec)
    return [
        op.ok()
        for op in own.get_all_operations()
        if (op.ok().path not in SPEC_PATHS and not op.ok().path.startswith("/local/"))
        or op.ok().path == "/local/faults"
    ]


OWN_OPERATIONS = _own_operations()
# Negative cases need something to break: a body, or a parameter other than the pinned project.
OWN_WITH_INPUT = [
    op
    for op in OWN_OPERATIONS
    if op.definition.raw.get("requestBody")
    or any(p["name"] != "project_id" for p in op.definition.raw.get("parameters") or [])
]


def test_every_new_route_is_covered() -> None:
    paths = {op.path for op in OWN_OPERATIONS}
    for expected in (
        "/login/api_key",
        "/current_user",
        "/projects/{project_id}",
        "/projects/{project_id}/log_streams/paginated",
        "/projects/{project_id}/sessions/search",
        "/v2/projects/{project_id}/spans",
        "/v2/projects/{project_id}/traces/{trace_id}",
        "/v2/projects/{project_id}/spans/{span_id}",
        "/otel/traces",
        "/local/faults",
    ):
        assert expected in paths, expected


@pytest.fixture
def own_target(tmp_path: Path) -> Iterator[tuple[str, str, requests.Session]]:
    from galileo_otel.server import serve_in_thread

    with serve_in_thread(db_path=tmp_path / "g.db", api_key=KEY, fault_admin=True) as server:
        with requests.Session() as http:
            http.headers["Galileo-API-Key"] = KEY
            project = http.post(server.url + "/projects", json={"name": "own"}).json()["id"]
            yield server.url, project, http
            http.delete(server.url + "/local/faults")


@pytest.mark.parametrize("operation", OWN_OPERATIONS, ids=lambda op: op.label)
def test_new_routes_valid_bodies_never_fail_the_server(
    operation: Any, own_target: tuple[str, str, requests.Session]
) -> None:
    # Rules added through /local/faults never apply to /local/faults itself, so generated rules
    # (hangs included) do not stall the run; the fixture removes them afterwards.
    _run(operation, GenerationMode.POSITIVE, own_target, [not_a_server_error])


@pytest.mark.parametrize("operation", OWN_WITH_INPUT, ids=lambda op: op.label)
def test_new_routes_invalid_bodies_are_rejected(
    operation: Any, own_target: tuple[str, str, requests.Session]
) -> None:
    _run(
        operation,
        GenerationMode.NEGATIVE,
        own_target,
        [not_a_server_error, negative_data_rejection],
    )
