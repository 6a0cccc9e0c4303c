"""The FastAPI app of the local Galileo-compatible server: routes, auth, error bodies, reliable mode.

Request bodies are validated with the shared models of :mod:`galileo_otel.api.models`, so a bad
body gets FastAPI's 422 ``HTTPValidationError`` exactly as the real (FastAPI) API answers it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import UUID4, BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from galileo_otel._version import __version__
from galileo_otel.api.models import (
    FILTER_TREE_TOO_DEEP,
    LogRecordsQueryCountRequest,
    LogRecordsQueryRequest,
    LogStreamCreateRequest,
    LogTracesIngestRequest,
    ProjectCreateRequest,
    SessionCreateRequest,
)
from galileo_otel.server.auth import (
    API_KEY_HEADER,
    DEFAULT_TOKEN_TTL_S,
    Authenticator,
    AuthFailedError,
    load_or_create_key,
    login_router,
    require_auth,
)
from galileo_otel.server.compat import log_stream_record, project_record, sdk_router
from galileo_otel.server.faults import MAX_DELAY_S, MAX_TIMES, FaultInjector, FaultRule
from galileo_otel.server.limits import (
    DEFAULT_MAX_BODY_BYTES,
    BodyTooLargeError,
    body_too_large_response,
    content_length,
    limit_body,
)
from galileo_otel.server.local_routes import add_tail_route
from galileo_otel.server.otlp import OtlpIngestor, otlp_router
from galileo_otel.server.query import FilterError, compile_session_filter
from galileo_otel.server.store import (
    BadReferenceError,
    ConflictError,
    NotFoundError,
    Store,
    WriteQueue,
    WriterClosedError,
)
from galileo_otel.server.ui import mount_ui

__all__ = ["API_KEY_HEADER", "GalileoServerApp", "ServerState", "create_app", "default_db_path"]

logger = logging.getLogger(__name__)

MAX_QUERY_LIMIT = 10_000
_DEPTH_ERRORS = (FILTER_TREE_TOO_DEEP, "recursion_depth_exceeded")
_MAX_OFFSET = 2**53

T = TypeVar("T")


def default_db_path() -> Path:
    """``$XDG_DATA_HOME/galileo-otel/galileo.db`` (``~/.local/share`` when unset)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return Path(base) / "galileo-otel" / "galileo.db"


class ServerState:
    """What one app instance owns: the store, the writer thread, the faults and the credentials.

    Reachable as ``app.state.galileo``. The key is kept out of ``repr``.
    """

    def __init__(
        self,
        store: Store,
        faults: FaultInjector,
        api_key: str,
        *,
        fault_admin: bool,
        token_ttl_s: float = DEFAULT_TOKEN_TTL_S,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self.store = store
        self.writer = WriteQueue()
        self.faults = faults
        self.fault_admin = fault_admin
        self.auth = Authenticator(api_key, token_ttl_s=token_ttl_s)
        self.max_body_bytes = max_body_bytes
        self.otlp = OtlpIngestor(
            store, self.writer, store.path.with_name(store.path.name + ".otlp-sessions")
        )
        self._api_key = api_key
        self._closed = False

    def __repr__(self) -> str:
        return f"ServerState(db={str(self.store.path)!r})"

    @property
    def api_key(self) -> str:
        """The key clients must send in ``Galileo-API-Key`` (or exchange for a token)."""
        return self._api_key

    def key_matches(self, candidate: str | None) -> bool:
        """Constant-time comparison of a presented key."""
        return self.auth.key_matches(candidate)

    def wait_idle(self, timeout: float | None = 10.0) -> bool:
        """Wait until background (``reliable: false``) ingestion is done; False on timeout."""
        return self.writer.wait_idle(timeout)

    def stats(self) -> dict[str, Any]:
        """Row counts, writer and fault counters (the ``/local/stats`` answer)."""
        return {
            **self.store.stats(),
            "pending_writes": self.writer.pending,
            "background_failures": self.writer.failed_background,
            "faults_fired": self.faults.stats(),
            **self.otlp.stats,
        }

    def close(self, timeout: float = 5.0) -> None:
        """Release faults, finish queued writes (bounded) and close the database; idempotent."""
        if self._closed:
            return
        self._closed = True
        self.faults.close()
        self.otlp.close(timeout / 2)
        self.writer.close(timeout)
        self.store.close()


class GalileoServerApp(FastAPI):
    """FastAPI app whose faults and body limit act before anything else."""

    galileo: ServerState

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry: injected faults first, then the body limit, then FastAPI."""
        if scope["type"] == "http":
            state = self.galileo
            if await state.faults.handle(scope, receive, send):
                return
            limit = state.max_body_bytes
            announced = content_length(scope.get("headers") or [])
            if announced is not None and announced > limit:
                await body_too_large_response(BodyTooLargeError(limit), receive, send, drain=True)
                return
            receive = limit_body(receive, limit)
        await super().__call__(scope, receive, send)


def _error(status: int, detail: Any, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=dict(headers or {}))


def _install_error_handlers(app: FastAPI) -> None:
    async def not_found(_: Request, exc: Exception) -> JSONResponse:
        return _error(404, str(exc))

    async def conflict(_: Request, exc: Exception) -> JSONResponse:
        return _error(409, str(exc))

    async def unprocessable(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, (FilterError, BadReferenceError))
        return _error(422, [exc.to_detail()])

    async def bad_unicode(_: Request, exc: Exception) -> JSONResponse:
        return _error(
            422, [{"type": "value_error", "loc": ["body"], "msg": f"not storable: {exc}"}]
        )

    async def database_error(_: Request, exc: Exception) -> JSONResponse:
        logger.warning("database error: %s", exc)
        if "locked" in str(exc) or "busy" in str(exc):
            return _error(503, f"database busy: {exc}", {"Retry-After": "1"})
        return _error(500, f"database error: {exc}")

    async def shutting_down(_: Request, exc: Exception) -> JSONResponse:
        return _error(503, str(exc), {"Retry-After": "1"})

    async def too_large(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, BodyTooLargeError)
        return JSONResponse(exc.to_body(), status_code=413)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        # FastAPI turns any failure while reading and parsing a body into a bare 400: the two
        # failures a client can fix get their own answer instead.
        cause = exc.__cause__
        if isinstance(cause, BodyTooLargeError):
            return await too_large(request, cause)
        if isinstance(cause, RecursionError):
            return _error(
                422,
                [
                    {
                        "type": "json_too_deep",
                        "loc": ["body"],
                        "msg": "the JSON body is nested too deeply to parse",
                    }
                ],
            )
        return await http_exception_handler(request, exc)

    async def invalid(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        # FastAPI's own answer, except that an error about nesting does not echo the nested
        # input back (it can be megabytes, and too deep to encode at all).
        errors = [
            {k: v for k, v in e.items() if k not in ("input", "ctx")}
            if e.get("type") in _DEPTH_ERRORS
            else e
            for e in exc.errors()
        ]
        try:
            detail = jsonable_encoder(errors)
        except RecursionError:
            detail = jsonable_encoder(
                [{k: v for k, v in e.items() if k not in ("input", "ctx")} for e in errors]
            )
        return _error(422, detail)

    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(BodyTooLargeError, too_large)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(NotFoundError, not_found)
    app.add_exception_handler(ConflictError, conflict)
    app.add_exception_handler(FilterError, unprocessable)
    app.add_exception_handler(BadReferenceError, unprocessable)
    app.add_exception_handler(UnicodeEncodeError, bad_unicode)
    app.add_exception_handler(sqlite3.OperationalError, database_error)
    app.add_exception_handler(WriterClosedError, shutting_down)


def _count_spans(traces: Iterable[Mapping[str, Any]]) -> int:
    count = 0
    stack = [span for trace in traces for span in trace.get("spans") or []]
    while stack:
        span = stack.pop()
        count += 1
        stack.extend(span.get("spans") or [])
    return count


def _query_bounds(starting_token: int, limit: int) -> None:
    problems = []
    if not 1 <= limit <= MAX_QUERY_LIMIT:
        problems.append(("limit", f"limit must be between 1 and {MAX_QUERY_LIMIT}", limit))
    if not 0 <= starting_token <= _MAX_OFFSET:
        problems.append(("starting_token", "starting_token must be >= 0", starting_token))
    if problems:
        raise _Unprocessable(
            [
                {"type": "value_error", "loc": ["body", f], "msg": m, "input": v}
                for f, m, v in problems
            ]
        )


class _Unprocessable(Exception):
    def __init__(self, detail: list[dict[str, Any]]) -> None:
        super().__init__("unprocessable")
        self.detail = detail


def create_app(
    *,
    db_path: str | os.PathLike[str] | None = None,
    api_key: str | None = None,
    faults: FaultInjector | Iterable[FaultRule | Mapping[str, Any]] | None = None,
    fault_admin: bool = False,
    open_docs: bool = False,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    token_ttl_s: float = DEFAULT_TOKEN_TTL_S,
) -> FastAPI:
    """Build the local Galileo-compatible server app.

    Args:
        db_path: SQLite file (created 0600 if missing; kept across restarts). Default:
            :func:`default_db_path`.
        api_key: The key clients must send in ``Galileo-API-Key`` (or exchange at
            ``/login/api_key`` for a token). Default: ``GALILEO_API_KEY``, else the key stored
            next to the database (``<db>.api-key``, generated and stored 0600 on first use).
        faults: A :class:`FaultInjector` (kept live, so tests can change it) or rules to start with.
        fault_admin: Serve the ``/local/faults`` admin endpoints (``galileo-otel serve --faults``).
        open_docs: Serve ``/docs``, ``/redoc`` and ``/openapi.json`` without a key. The runner and
            the CLI set it only on a loopback address with no key given; otherwise they need one.
        max_body_bytes: Largest request body (and decompressed OTLP body) accepted; more is
            answered 413.
        token_ttl_s: Lifetime of the tokens ``/login/api_key`` hands out.

    Returns:
        The app; ``app.state.galileo`` is its :class:`ServerState` (``wait_idle()``, ``stats()``,
        ``close()``; closed by the app's lifespan shutdown).

    Raises:
        ValueError: ``max_body_bytes`` is below 1 KiB.
    """
    if max_body_bytes < 1024:
        raise ValueError("max_body_bytes must be at least 1024")
    path = Path(db_path) if db_path is not None else default_db_path()
    key = api_key or os.environ.get("GALILEO_API_KEY") or load_or_create_key(path)[0]
    injector = faults if isinstance(faults, FaultInjector) else FaultInjector(faults or ())
    state = ServerState(
        Store(path),
        injector,
        key,
        fault_admin=fault_admin,
        token_ttl_s=token_ttl_s,
        max_body_bytes=max_body_bytes,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(state.close)

    app_kwargs: dict[str, Any] = {}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters:
        # FastAPI with native OpenTelemetry traces itself through the global provider. When the
        # server runs inside an app that exports to it (demo, examples), its own requests would
        # come back as one more session, so it stays silent.
        app_kwargs["telemetry"] = {"tracing": False, "metrics": False, "logs": False}
    app = GalileoServerApp(
        title="galileo-otel local server",
        version=__version__,
        description=(
            "A local stand-in for the Galileo API: galileo-otel's endpoints, the official "
            "galileo SDK's, and OTLP/HTTP trace ingestion."
        ),
        lifespan=lifespan,
        # Served below, behind the same key rule as the API.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        **app_kwargs,
    )
    app.galileo = state
    app.state.galileo = state
    _install_error_handlers(app)

    async def unprocessable(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, _Unprocessable)
        return _error(422, exc.detail)

    app.add_exception_handler(_Unprocessable, unprocessable)

    async def auth_failed(_: Request, exc: Exception) -> JSONResponse:
        return _error(
            401, f"missing or invalid {API_KEY_HEADER} header (or Authorization: Bearer token)"
        )

    app.add_exception_handler(AuthFailedError, auth_failed)

    @app.get("/healthcheck", tags=["health"])
    async def healthcheck() -> dict[str, str]:
        """Answers 200 while the server is up (no key needed)."""
        return {"status": "ok", "server": "galileo-otel", "version": __version__}

    authed = [Depends(require_auth(state.auth))]
    docs = [] if open_docs else authed
    # One line per router: each module builds its routes over the shared state.
    app.include_router(docs_router(app), dependencies=docs, include_in_schema=False)
    app.include_router(login_router(state.auth))
    app.include_router(_api_router(state), dependencies=authed)
    app.include_router(sdk_router(state), dependencies=authed)
    app.include_router(otlp_router(state))
    mount_ui(app)  # the web UI at "/" (its own cookie rule; see galileo_otel.server.ui)
    return app


def docs_router(app: FastAPI) -> APIRouter:
    """``/openapi.json``, ``/docs`` (Swagger UI) and ``/redoc`` of ``app``."""
    router = APIRouter()

    @router.get("/openapi.json")
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @router.get("/docs")
    def swagger() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - docs")

    @router.get("/redoc")
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=f"{app.title} - ReDoc")

    return router


def _api_router(state: ServerState) -> APIRouter:
    api = APIRouter()
    _add_api_routes(api, state)
    _add_local_routes(api, state)
    add_tail_route(api, state)
    return api


async def _write(state: ServerState, job: Callable[[], T], *, reliable: bool) -> T | None:
    """Run a write on the writer thread; wait for it only when the request is reliable."""
    future = state.writer.submit(job, background=not reliable)
    if not reliable:
        return None
    return await asyncio.wrap_future(future)


def _project_or_404(state: ServerState, project_id: uuid.UUID) -> dict[str, Any]:
    project = state.store.get_project(str(project_id))
    if project is None:
        raise NotFoundError(f"project {project_id} not found")
    return project


def _add_api_routes(api: APIRouter, state: ServerState) -> None:
    store = state.store

    auth = state.auth

    @api.get("/projects", tags=["projects"])
    def list_projects(
        project_name: str | None = Query(None), type: str | None = Query(None)
    ) -> list[dict[str, Any]]:
        """Projects, optionally only those with this name (and type)."""
        return [project_record(auth, p) for p in store.find_projects(project_name, type)]

    @api.post("/projects", tags=["projects"])
    async def create_project(body: ProjectCreateRequest) -> dict[str, Any]:
        """Create a project; 409 if the name is taken."""
        result = await _write(
            state, lambda: store.create_project(body.name, body.type), reliable=True
        )
        assert result is not None
        return project_record(auth, result)

    # The official SDK uses the same two routes without /v2.
    @api.get("/v2/projects/{project_id}/log_streams", tags=["log_streams"])
    @api.get("/projects/{project_id}/log_streams", tags=["log_streams"])
    def list_log_streams(project_id: UUID4) -> list[dict[str, Any]]:
        """The log streams of a project."""
        _project_or_404(state, project_id)
        return [log_stream_record(auth, s) for s in store.list_log_streams(str(project_id))]

    @api.post("/v2/projects/{project_id}/log_streams", tags=["log_streams"])
    @api.post("/projects/{project_id}/log_streams", tags=["log_streams"])
    async def create_log_stream(project_id: UUID4, body: LogStreamCreateRequest) -> dict[str, Any]:
        """Create a log stream; 409 if the project has one of that name."""
        pid = str(project_id)
        result = await _write(state, lambda: store.create_log_stream(pid, body.name), reliable=True)
        assert result is not None
        return log_stream_record(auth, result)

    @api.post("/v2/projects/{project_id}/sessions", tags=["trace"])
    async def create_session(project_id: UUID4, body: SessionCreateRequest) -> dict[str, Any]:
        """Create Session. ``reliable: false`` answers before the session is stored."""
        project = _project_or_404(state, project_id)
        data = body.model_dump(mode="json")
        data["id"] = str(uuid.uuid4())
        pid = str(project_id)
        result = await _write(
            state, lambda: store.create_session(pid, data), reliable=body.reliable
        )
        if result is not None:
            return result
        return {
            "id": data["id"],
            "name": data["name"],
            "project_id": pid,
            "project_name": project["name"],
            "previous_session_id": data["previous_session_id"],
            "external_id": data["external_id"],
        }

    @api.post("/v2/projects/{project_id}/sessions/count", tags=["trace"])
    def count_sessions(project_id: UUID4, body: LogRecordsQueryCountRequest) -> dict[str, int]:
        """Count Sessions: how many sessions match ``filters`` and ``filter_tree``."""
        _project_or_404(state, project_id)
        data = body.model_dump(mode="json", by_alias=True)
        compiled = compile_session_filter(data["filters"], data["filter_tree"])
        return {"total_count": store.count_sessions(str(project_id), data, compiled)}

    @api.post("/v2/projects/{project_id}/sessions/search", tags=["trace"])
    @api.post("/projects/{project_id}/sessions/search", tags=["trace"])
    def query_sessions(project_id: UUID4, body: LogRecordsQueryRequest) -> dict[str, Any]:
        """Query Sessions: one page of matching sessions, sorted (default: newest first)."""
        _project_or_404(state, project_id)
        _query_bounds(body.starting_token, body.limit)
        data = body.model_dump(mode="json", by_alias=True)
        compiled = compile_session_filter(data["filters"], data["filter_tree"])
        records, more = store.search_sessions(
            str(project_id), data, compiled, data["sort"], body.starting_token, body.limit
        )
        return {
            "starting_token": body.starting_token,
            "limit": body.limit,
            "paginated": more,
            "next_starting_token": body.starting_token + len(records) if more else None,
            "last_row_id": records[-1]["id"] if records else None,
            "records": records,
        }

    @api.post("/v2/projects/{project_id}/traces", tags=["trace"])
    async def log_traces(project_id: UUID4, body: LogTracesIngestRequest) -> dict[str, Any]:
        """Log Traces. ``reliable: false`` answers before the traces are stored."""
        project = _project_or_404(state, project_id)
        data = body.model_dump(mode="json", by_alias=True)
        for trace in data["traces"]:
            # Ids are fixed now so a fire-and-forget answer can list them.
            trace["id"] = trace.get("id") or str(uuid.uuid4())
        pid = str(project_id)
        result = await _write(state, lambda: store.ingest_traces(pid, data), reliable=body.reliable)
        if result is not None:
            return result
        spans = _count_spans(data["traces"])
        return {
            "project_id": pid,
            "project_name": project["name"],
            "records_count": len(data["traces"]) + spans,
            "traces_count": len(data["traces"]),
            "spans_count": spans,
            "log_stream_id": data["log_stream_id"],
            "experiment_id": data["experiment_id"],
            "metrics_testing_id": data["metrics_testing_id"],
            "session_id": data["session_id"],
            "trace_ids": [t["id"] for t in data["traces"]] if body.include_trace_ids else None,
        }


class FaultRuleBody(BaseModel):
    """One rule of ``POST /local/faults``: typed and bounded, unknown keys refused."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["latency", "error", "rate_limit", "hang", "drop"]
    route: StrictStr = Field("*", max_length=1000)
    times: StrictInt | None = Field(None, ge=0, le=MAX_TIMES)
    fraction: StrictFloat = Field(1.0, ge=0.0, le=1.0)
    status: StrictInt = Field(500, ge=100, le=599)
    retry_after_s: StrictFloat | None = Field(None, ge=0.0, le=MAX_DELAY_S)
    latency_s: StrictFloat = Field(0.0, ge=0.0, le=MAX_DELAY_S)
    max_hang_s: StrictFloat = Field(30.0, ge=0.0, le=MAX_DELAY_S)


def _add_local_routes(api: APIRouter, state: ServerState) -> None:
    store = state.store

    @api.get("/v2/projects/{project_id}/sessions/{session_id}", tags=["local"])
    def get_session(project_id: UUID4, session_id: uuid.UUID) -> dict[str, Any]:
        """Local extension: one session record with its traces (span trees included)."""
        _project_or_404(state, project_id)
        record = store.get_session(str(project_id), str(session_id))
        if record is None:
            raise NotFoundError(f"session {session_id} not found in project {project_id}")
        record["traces"] = store.session_traces(str(project_id), str(session_id))
        return record

    @api.get("/v2/projects/{project_id}/sessions/{session_id}/traces", tags=["local"])
    def get_session_traces(project_id: UUID4, session_id: uuid.UUID) -> dict[str, Any]:
        """Local extension: the traces of a session, in arrival order."""
        _project_or_404(state, project_id)
        if store.get_session(str(project_id), str(session_id)) is None:
            raise NotFoundError(f"session {session_id} not found in project {project_id}")
        traces = store.session_traces(str(project_id), str(session_id))
        return {"session_id": str(session_id), "traces": traces}

    @api.get("/v2/projects/{project_id}/traces/{trace_id}", tags=["local"])
    def get_trace(project_id: UUID4, trace_id: uuid.UUID) -> dict[str, Any]:
        """Local extension: one trace with its span tree."""
        _project_or_404(state, project_id)
        trace = store.get_trace(str(project_id), str(trace_id))
        if trace is None:
            raise NotFoundError(f"trace {trace_id} not found in project {project_id}")
        return trace

    @api.get("/local/stats", tags=["local"])
    def stats() -> dict[str, Any]:
        """Local extension: row counts, pending background writes, faults fired."""
        return state.stats()

    @api.get("/local/idle", tags=["local"])
    def idle(timeout: float = Query(10.0, ge=0, le=60)) -> dict[str, bool]:
        """Local extension: wait (at most ``timeout`` s) until background ingestion is done."""
        return {"idle": state.wait_idle(timeout)}

    if not state.fault_admin:
        return

    @api.get("/local/faults", tags=["local"])
    def get_faults() -> dict[str, Any]:
        """Fault admin (``serve --faults``): the rules and counters."""
        return state.faults.to_dict()

    @api.post("/local/faults", tags=["local"])
    async def add_faults(body: FaultRuleBody | list[FaultRuleBody]) -> Any:
        """Fault admin: add one rule or a list of rules (see ``galileo_otel.server.faults``)."""
        rules = body if isinstance(body, list) else [body]
        try:
            parsed = [FaultRule(**rule.model_dump()) for rule in rules]
        except ValueError as exc:
            return _error(422, [{"type": "value_error", "loc": ["body"], "msg": str(exc)}])
        for rule in parsed:
            state.faults.add(rule)
        return state.faults.to_dict()

    @api.delete("/local/faults", tags=["local"])
    def clear_faults() -> dict[str, Any]:
        """Fault admin: remove every rule (and release hangs)."""
        state.faults.clear()
        return state.faults.to_dict()

    @api.post("/local/faults/release", tags=["local"])
    def release_faults() -> dict[str, Any]:
        """Fault admin: end the hangs in progress."""
        state.faults.release()
        return state.faults.to_dict()
