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
