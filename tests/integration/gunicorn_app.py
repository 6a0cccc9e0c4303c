"""The WSGI app of test_sessions_gunicorn: configure() at import, so --preload runs it in the master."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry import trace

from galileo_otel import configure
from galileo_otel.middleware import GalileoWSGIMiddleware

handle = configure()
tracer = trace.get_tracer("gunicorn-app")


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    with tracer.start_as_current_span("chat", attributes={"worker.pid": str(os.getpid())}):
        pass
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]


application = GalileoWSGIMiddleware(app, header="X-Session-Id")
