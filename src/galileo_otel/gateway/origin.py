"""Which client sent a request's spans: the OTLP resource's language as Galileo's logging method.

Galileo records, on every session and Log Traces request, who logged it (``logging_method``:
the official SDK's ``LoggingMethod``). The gateway forwards spans made by other programs, so
it must not claim they came from the Python client: each span's resource says which
OpenTelemetry SDK made it (``telemetry.sdk.language``, set by every stock SDK), and that picks
the logging method Galileo shows:

- ``python`` -> ``python_client``;
- ``nodejs``, ``webjs`` (the JavaScript SDKs) -> ``typescript_client``;
- any other language, or none -> ``api_direct`` (spans sent straight to the API).
"""

from __future__ import annotations

from typing import Any

from galileo_otel.api.models import LoggingMethod

__all__ = ["SDK_LANGUAGE", "logging_method_of", "logging_method_of_language"]

SDK_LANGUAGE = "telemetry.sdk.language"
"""The resource attribute naming the OpenTelemetry SDK's language."""

_BY_LANGUAGE = {
    "python": LoggingMethod.python_client.value,
    "nodejs": LoggingMethod.typescript_client.value,
    "webjs": LoggingMethod.typescript_client.value,
}


def logging_method_of_language(language: Any) -> str:
    """The logging method of spans whose SDK language is ``language`` (any value, or ``None``)."""
    if isinstance(language, str):
        return _BY_LANGUAGE.get(language.strip().lower(), LoggingMethod.api_direct.value)
    return LoggingMethod.api_direct.value


def logging_method_of(span: Any) -> str:
    """The logging method of a span, from its resource's ``telemetry.sdk.language``."""
    resource = getattr(span, "resource", None)
    attributes = getattr(resource, "attributes", None) or {}
    return logging_method_of_language(attributes.get(SDK_LANGUAGE))
