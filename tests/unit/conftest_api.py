"""Helpers for the api/ unit tests: a scripted fake Galileo API and a fake clock (no sockets)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

API_KEY = "sk-test-0123456789abcdef"
PROJECT_ID = "6f1c2a1e-3b4d-4c5e-8f60-718293a4b5c6"
LOG_STREAM_ID = "0a1b2c3d-4e5f-4a6b-8c7d-8e9fa0b1c2d3"
EXPERIMENT_ID = "1b2c3d4e-5f60-4718-9a0b-1c2d3e4f5a6b"
SESSION_ID = "2c3d4e5f-6071-4829-8b1c-2d3e4f5a6b7c"
BASE = "http://galileo.test"

OPENAPI = (
    Path(__file__).resolve().parents[2] / "src" / "galileo_otel" / "api" / "galileo-openapi.yaml"
)

Step = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


@dataclass
class FakeAPI:
    """A MockTransport handler that answers from a script, in order, and records every request."""

    script: list[Step] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not self.script:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        if callable(step) and not isinstance(step, httpx.Response):
            return step(request)
        return step

    def bodies(self) -> list[Any]:
        return [json.loads(r.content) if r.content else None for r in self.requests]

    @property
    def last_body(self) -> Any:
        return json.loads(self.requests[-1].content)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


@dataclass
class FakeClock:
    """A monotonic clock that only moves when the client sleeps."""

    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)


def ok(payload: Any = None, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=payload, headers=headers)


def session_answer(**extra: Any) -> dict[str, Any]:
    return {
        "id": SESSION_ID,
        "name": None,
        "project_id": PROJECT_ID,
        "project_name": "proj",
        **extra,
    }


def new_uuid() -> str:
    return str(uuid.uuid4())


FORMATS = jsonschema.FormatChecker()


@FORMATS.checks("uuid4", raises=ValueError)
def _is_uuid4(value: object) -> bool:
    # jsonschema does not know "uuid4"; the real API (pydantic UUID4) insists on version 4.
    return not isinstance(value, str) or uuid.UUID(value).version == 4


@FORMATS.checks("date-time", raises=ValueError)
def _is_datetime(value: object) -> bool:
    # jsonschema checks date-time only with an extra package; an aware ISO 8601 time is enough.
    if not isinstance(value, str):
        return True
    return datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None


@lru_cache(maxsize=1)
def _openapi() -> tuple[dict[str, Any], Registry]:
    doc = yaml.safe_load(OPENAPI.read_text())
    resource = Resource.from_contents(doc, default_specification=DRAFT202012)
    # The document's $refs are local ("#/components/..."): register it under one URI and
    # point at its schemas through that URI.
    return doc, Registry().with_resource("urn:galileo-openapi", resource)


def schema_validator(name: str) -> jsonschema.Draft202012Validator:
    """A validator for ``#/components/schemas/<name>`` of the OpenAPI file, $refs resolved."""
    doc, registry = _openapi()
    assert name in doc["components"]["schemas"], name
    return jsonschema.Draft202012Validator(
        {"$ref": f"urn:galileo-openapi#/components/schemas/{name}"},
        registry=registry,
        format_checker=FORMATS,
    )


def request_schema(path_template: str) -> str:
    """The component name of the request body schema of ``POST <path_template>``."""
    doc, _ = _openapi()
    ref = doc["paths"][path_template]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]["$ref"]
    return str(ref.rsplit("/", 1)[1])


def filter_tree_schema_name() -> str:
    doc, _ = _openapi()
    return next(n for n in doc["components"]["schemas"] if n.startswith("FilterExpression_"))
