"""A local Galileo-compatible server (extra ``[server]``): FastAPI + SQLite, for offline work and tests.

``galileo-otel serve`` or :func:`serve_in_thread` run it; :func:`create_app` builds the app.

Galileo API endpoints (same paths, validation and error bodies as the service; every route but
``/healthcheck`` and ``/login/api_key`` needs the ``Galileo-API-Key`` header or a bearer token
from ``/login/api_key``, else 401):

- ``GET /healthcheck``
- ``GET /projects?project_name=&type=``, ``POST /projects``, ``GET /projects/{project_id}``
- ``GET|POST /v2/projects/{project_id}/log_streams`` (also without ``/v2``),
  ``GET /projects/{project_id}/log_streams/paginated``,
  ``GET /projects/{project_id}/log_streams/{log_stream_id}``
- ``POST /v2/projects/{project_id}/sessions`` (Create Session)
- ``POST /v2/projects/{project_id}/sessions/count`` (Count Sessions)
- ``POST /v2/projects/{project_id}/sessions/search`` (Query Sessions; also without ``/v2``)
- ``POST /v2/projects/{project_id}/traces`` (Log Traces)

For the official ``galileo`` SDK (:mod:`galileo_otel.server.auth`, :mod:`galileo_otel.server.compat`):

- ``POST /login/api_key``, ``GET /current_user``
- ``POST /v2/projects/{project_id}/spans`` (Log Spans, distributed mode)
- ``PATCH /v2/projects/{project_id}/traces/{trace_id}``, ``PATCH|GET .../spans/{span_id}``
- ``POST /projects/{project_id}/traces/search``, ``POST /projects/{project_id}/spans/search``
  (Query Traces / Query Spans, also under ``/v2``: ``galileo.search.get_traces`` / ``get_spans``)

OTLP/HTTP (:mod:`galileo_otel.server.otlp`): ``POST /otel/traces`` and ``POST /v1/traces``.

Docs: ``/docs``, ``/redoc``, ``/openapi.json`` (behind the key unless ``open_docs``).

Local extensions (not in the Galileo API; for the demo, tests and debugging):

- ``GET /v2/projects/{project_id}/sessions/{session_id}``: the session record plus ``traces``
- ``GET /v2/projects/{project_id}/sessions/{session_id}/traces``: ``{"session_id", "traces"}``
- ``GET /v2/projects/{project_id}/traces/{trace_id}``: one trace with its span tree
- ``GET /local/stats``: row counts, pending background writes, faults fired
- ``GET /local/idle?timeout=10``: waits until ``reliable: false`` ingestion is done
- ``GET|POST|DELETE /local/faults``, ``POST /local/faults/release``: fault admin, only when
  started with ``--faults`` / ``fault_admin=True`` (see :mod:`galileo_otel.server.faults`)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from galileo_otel.server.app import ServerState, create_app, default_db_path
    from galileo_otel.server.faults import FaultInjector, FaultRule
    from galileo_otel.server.runner import RunningServer, serve_in_thread

__all__ = [
    "FaultInjector",
    "FaultRule",
    "RunningServer",
    "ServerState",
    "create_app",
    "default_db_path",
    "serve_in_thread",
]

_LAZY = {
    "ServerState": "galileo_otel.server.app",
    "create_app": "galileo_otel.server.app",
    "default_db_path": "galileo_otel.server.app",
    "FaultInjector": "galileo_otel.server.faults",
    "FaultRule": "galileo_otel.server.faults",
    "RunningServer": "galileo_otel.server.runner",
    "serve_in_thread": "galileo_otel.server.runner",
}


def __getattr__(name: str) -> Any:
    # Lazy, so `galileo_otel.server.cli` (mounted by the main CLI) imports without the extra.
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if exc.name not in ("fastapi", "starlette", "uvicorn"):
            raise
        raise ImportError(
            "the local server needs the 'server' extra: pip install 'galileo-otel[server]'"
        ) from exc
    return getattr(module, name)
