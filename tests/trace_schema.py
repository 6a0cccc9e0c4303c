"""Test helper: check a converted trace against the OpenAPI Trace schema and the pydantic model.

Importable from unit and integration tests (``tests/`` is on sys.path through tests/conftest.py).
"""

from __future__ import annotations

import uuid
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
    from datetime import datetime

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


def assert_valid_trace(trace: dict[str, Any]) -> None:
    """Raise unless `trace` validates against the OpenAPI Trace schema and the pydantic Trace."""
    _validator().validate(trace)
    from galileo_otel.api.models import LogTracesIngestRequest, Trace

    Trace.model_validate(trace)
    LogTracesIngestRequest.model_validate({"traces": [trace]})


def walk(step: dict[str, Any]) -> list[dict[str, Any]]:
    """Every span under `step`, depth first, in order."""
    out: list[dict[str, Any]] = []
    for child in step.get("spans", []):
        out.append(child)
        out.extend(walk(child))
    return out
