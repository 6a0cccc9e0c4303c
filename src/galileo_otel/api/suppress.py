"""Run the library's own I/O with OpenTelemetry instrumentation suppressed.

Without this, an app with ``opentelemetry-instrumentation-httpx`` active (what
``opentelemetry-bootstrap -a install`` sets up for any app using httpx, e.g. the openai client)
traces our Log Traces POST, whose span is exported by another POST, which is traced, without end.
The SDK's BatchSpanProcessor and logfire guard their exporters the same way.

Two context keys are set, because instrumentations check either:

- ``_SUPPRESS_INSTRUMENTATION_KEY`` (and its legacy plain-string twin ``"suppress_instrumentation"``):
  every instrumentation built on ``opentelemetry-instrumentation``'s
  ``is_instrumentation_enabled()`` stands down, and the SDK's processors skip our spans.
- ``_SUPPRESS_HTTP_INSTRUMENTATION_KEY``: what the httpx, requests and urllib3 instrumentations
  check through ``is_http_instrumentation_enabled()``.

The keys live in ``opentelemetry.context`` (a private name there, public in practice: the
instrumentations import it from there); a test pins them to the installed packages.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry.context import (
    _SUPPRESS_HTTP_INSTRUMENTATION_KEY,
    _SUPPRESS_INSTRUMENTATION_KEY,
)

__all__ = ["SUPPRESSION_KEYS", "suppress_instrumentation", "suppressed"]

F = TypeVar("F", bound=Callable[..., Any])

SUPPRESSION_KEYS: tuple[str, ...] = (
    _SUPPRESS_INSTRUMENTATION_KEY,
    # opentelemetry-instrumentation still reads the plain string for older callers.
    "suppress_instrumentation",
    _SUPPRESS_HTTP_INSTRUMENTATION_KEY,
)
"""The context keys set while the library does its own I/O."""


@contextmanager
def suppress_instrumentation() -> Iterator[None]:
    """Suppress OpenTelemetry instrumentation (all, and HTTP in particular) inside the block.

    The context is attached on entry and detached on exit in the caller's own context, so an
    ``async`` caller that awaits inside the block suppresses only its own task: other tasks on the
    loop keep their context, and the caller's is restored even when the await is cancelled.
    """
    ctx = otel_context.get_current()
    for key in SUPPRESSION_KEYS:
        ctx = otel_context.set_value(key, True, ctx)
    token = otel_context.attach(ctx)
    try:
        yield
    finally:
        otel_context.detach(token)


def suppressed(fn: F) -> F:
    """``fn`` run inside :func:`suppress_instrumentation`: for the library's background threads.

    Not only HTTP: the spool and the SQLite session store are SQLite, and with
    ``opentelemetry-instrumentation-sqlite3`` active (``opentelemetry-bootstrap`` installs it) every
    query of the export's own threads would be a span, exported by more queries, without end. A
    thread starts with an empty context, so wrapping its target covers everything it does.
    """

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with suppress_instrumentation():
            return fn(*args, **kwargs)

    return run  # type: ignore[return-value]
