"""Test helper: check a converted trace against every referee we have.

1. The OpenAPI Trace schema (the shared contract) and our pydantic models (the local server's).
2. The official SDK's Log Traces request models (``galileo.schema.trace.TracesIngestRequest``,
   whose traces are ``LoggedTrace`` trees of galileo-core spans). Those models coerce silently:
   a message that does not validate becomes a JSON string with role ``user``, an llm output of
   ``null`` becomes an empty assistant message, an unknown field is dropped. So a parse is not
   enough: the parsed model is dumped again and every field we sent must come back unchanged.

Importable from unit and integration tests (``tests/`` is on sys.path through tests/conftest.py).
Every conversion test goes through :func:`assert_valid_trace`.
"""

from __future__ import annotations

import json
import math
import uuid
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

OPENAPI = (
    Path(__file__).resolve().parents[1] / "src" / "galileo_otel" / "api" / "galileo-openapi.yaml"
)

_formats = jsonschema.FormatChecker()


@_formats.checks("uuid4", raises=ValueError)
def _is_uuid4(value: object) -> bool:
    # The real API is FastAPI + pydantic UUID4: version 4 and the RFC 4122 variant.
    if not isinstance(value, str):
        return True
    parsed = uuid.UUID(value)
    return parsed.version == 4 and parsed.variant == uuid.RFC_4122


@_formats.checks("date-time", raises=ValueError)
def _is_datetime(value: object) -> bool:
    if not isinstance(value, str):
        return True
    return datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None


@cache
def _validator() -> jsonschema.protocols.Validator:
    spec = yaml.safe_load(OPENAPI.read_text())
    schema = {"$ref": "#/components/schemas/Trace", "components": spec["components"]}
    cls = jsonschema.validators.validator_for(
        {"$schema": "https://json-schema.org/draft/2020-12/schema"}
    )
    return cls(schema, format_checker=_formats)


class OfficialModelMismatch(AssertionError):
    """The official models parsed the trace but changed what we sent (a silent coercion)."""


def _same(sent: Any, got: Any, path: str) -> None:
    """Every value in `sent` must come back in `got`; keys only in `got` are its defaults."""
    if isinstance(sent, dict):
        if not isinstance(got, dict):
            raise OfficialModelMismatch(f"{path}: sent an object, the official model has {got!r}")
        for key, value in sent.items():
            if key not in got:
                raise OfficialModelMismatch(f"{path}.{key}: dropped by the official model")
            _same(value, got[key], f"{path}.{key}")
        return
    if isinstance(sent, list):
        if not isinstance(got, list) or len(got) != len(sent):
            raise OfficialModelMismatch(
                f"{path}: sent {sent!r:.200}, official model has {got!r:.200}"
            )
        for i, (a, b) in enumerate(zip(sent, got, strict=True)):
            _same(a, b, f"{path}[{i}]")
        return
    if path.endswith(".created_at") and isinstance(sent, str) and isinstance(got, str):
        a = datetime.fromisoformat(sent.replace("Z", "+00:00"))
        b = datetime.fromisoformat(got.replace("Z", "+00:00"))
        if a != b:
            raise OfficialModelMismatch(f"{path}: sent {sent}, official model has {got}")
        return
    if isinstance(sent, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
        if not math.isclose(sent, got):
            raise OfficialModelMismatch(f"{path}: sent {sent}, official model has {got}")
        return
    if type(sent) is not type(got) or sent != got:
        raise OfficialModelMismatch(f"{path}: sent {sent!r:.200}, official model has {got!r:.200}")


@cache
def _logged_span() -> Any:
    from galileo.schema.logged import LoggedSpan
    from pydantic import TypeAdapter

    return TypeAdapter(LoggedSpan)


def _official_step(step: dict[str, Any]) -> Any:
    """One step as the official SDK builds it: its children first, each with the SDK's own
    ingest model for its type.

    The SDK never parses a whole tree from JSON: it builds ``LoggedLlmSpan`` (and the other
    widened models) one by one and hangs them under their parents. That matters under tool and
    retriever steps, whose ``spans`` are typed with galileo-core's narrower models: parsing a
    dict there would turn media into a JSON string, which the SDK itself never does.
    """
    if "spans" not in step:
        return _logged_span().validate_python(step)
    return _logged_span().validate_python(
        {**step, "spans": [_official_step(child) for child in step["spans"]]}
    )


def assert_official_trace(trace: dict[str, Any]) -> None:
    """Raise unless the official Log Traces request models take `trace` exactly as sent."""
    from galileo.schema.logged import LoggedTrace
    from galileo.schema.trace import TracesIngestRequest

    sent = json.loads(json.dumps(trace))  # what a server receives
    spans = [_official_step(child) for child in sent.get("spans", [])]
    parsed = LoggedTrace.model_validate({**sent, "spans": spans})
    request = TracesIngestRequest(traces=[parsed], reliable=True)
    # As the SDK serialises it (model_dump), each step by its own model.
    dumped = request.model_dump(mode="json", serialize_as_any=True)["traces"][0]
    _same(sent, dumped, "trace")


def assert_valid_trace(trace: dict[str, Any]) -> None:
    """Raise unless `trace` validates against the OpenAPI Trace schema, our pydantic Trace and
    the official SDK's request models (without any silent coercion)."""
    _validator().validate(trace)
    from galileo_otel.api.models import LogTracesIngestRequest, Trace

    Trace.model_validate(trace)
    LogTracesIngestRequest.model_validate({"traces": [trace]})
    assert_official_trace(trace)


def walk(step: dict[str, Any]) -> list[dict[str, Any]]:
    """Every span under `step`, depth first, in order."""
    out: list[dict[str, Any]] = []
    for child in step.get("spans", []):
        out.append(child)
        out.extend(walk(child))
    return out
