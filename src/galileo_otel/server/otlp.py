"""OTLP/HTTP trace ingestion at ``POST /otel/traces`` (and ``/v1/traces``): any OTel SDK can send here.

The body is an ``ExportTraceServiceRequest`` (protobuf or JSON, optionally gzip/deflate),
decoded with ``opentelemetry-proto``. Its spans become SDK ``ReadableSpan`` objects and then take
the client's own path, the same code galileo-otel runs in-process (no copy):
:class:`~galileo_otel.export.assemble.TraceAssembler` gathers each trace until its root ends,
:class:`~galileo_otel.sessions.tracker.SessionTracker` picks (and creates once) its session, and
:func:`~galileo_otel.export.convert.convert_trace` makes the Galileo trace, which is validated
with the shared :class:`~galileo_otel.api.models.LogTracesIngestRequest` and stored.

Headers, as the official galileo OpenTelemetry exporter sends them: ``Galileo-API-Key``,
``project`` (a name; created when missing), ``logstream`` (a name; created when missing;
``default`` when absent) or ``experimentid``. A span whose resource carries
``galileo.project.name`` (with ``galileo.logstream.name`` or ``galileo.experiment.id``), as the
official exporter stamps it, goes there instead. A root span (or resource) carrying
``galileo.session.id`` of an existing session is logged to that session, as the official
integration's ``start_session`` expects; other traces are grouped into sessions by the
tracker (``session.id``, ``gen_ai.conversation.id``, ... else the user, else the service).

Threading: every step runs as one job on the server's single writer thread, so the assemblers
and trackers (not thread-safe) are only ever touched there and need no lock. Traces whose root
has not arrived are held (bounded by the assembler) and shipped incomplete after their idle
timeout by a timer that queues an expiry job on the same thread, and at shutdown.
"""

from __future__ import annotations

import asyncio
import binascii
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import ReadableSpan
from pydantic import ValidationError

from galileo_otel._version import __version__
from galileo_otel.api.models import LogTracesIngestRequest
from galileo_otel.export.assemble import AssembledTrace, TraceAssembler
from galileo_otel.export.convert import convert_trace
from galileo_otel.export.sdk_span import span_attributes
from galileo_otel.otlp import (
    JSON_TYPE,
    PROTOBUF_TYPES,
    OtlpDecodeError,
    decode_request,
    spans_from_request,
)
from galileo_otel.server.auth import require_auth
from galileo_otel.server.limits import gunzip_bounded
from galileo_otel.server.store import (
    BadReferenceError,
    ConflictError,
    Store,
    WriteQueue,
    create_private_file,
)
from galileo_otel.sessions.store import SQLiteSessionStore
from galileo_otel.sessions.tracker import SessionTracker
from galileo_otel.settings import GalileoSettings

if TYPE_CHECKING:
    from galileo_otel.server.app import ServerState

__all__ = [
    "DEFAULT_LOG_STREAM",
    "GALILEO_SESSION_ID",
    "OtlpDecodeError",
    "OtlpIngestor",
    "decode_request",
    "otlp_router",
    "spans_from_request",
]

logger = logging.getLogger(__name__)

DEFAULT_LOG_STREAM = "default"
GALILEO_SESSION_ID = "galileo.session.id"
"""Attribute (span or resource) by which the official integration names an existing session."""
GALILEO_PROJECT_NAME = "galileo.project.name"
GALILEO_LOGSTREAM_NAME = "galileo.logstream.name"
GALILEO_EXPERIMENT_ID = "galileo.experiment.id"

_PROTOBUF_TYPES = PROTOBUF_TYPES
_JSON_TYPE = JSON_TYPE
_EXPIRE_EVERY_S = 1.0


# --- assembly, sessions, storage ----------------------------------------------------------------


@dataclass
class _Destination:
    project_id: str
    log_stream_id: str | None
    experiment_id: str | None
    assembler: TraceAssembler
    trackers: dict[str, SessionTracker] = field(default_factory=dict)


class OtlpIngestor:
    """Turns decoded OTLP spans into stored traces, on the writer thread.

    Only :meth:`submit` and :meth:`close` may be called from other threads.

    Args:
        store: The server's store.
        writer: The server's single writer; all work is queued there.
        sessions_path: SQLite file of the session tracker (created 0600), next to the database.
        clock_ns: Wall clock for the assembler's idle timeout (tests pass a fixed one).
        expire_every_s: How often held traces are checked for expiry; ``None``: never by a
            timer (tests call :meth:`expire`).
        trace_timeout_s: A trace none of whose spans arrived for this long ships incomplete
            (default: the client's ``GALILEO_TRACE_TIMEOUT`` default).
    """

    def __init__(
        self,
        store: Store,
        writer: WriteQueue,
        sessions_path: Path,
        *,
        clock_ns: Callable[[], int] = time.time_ns,
        expire_every_s: float | None = _EXPIRE_EVERY_S,
        trace_timeout_s: float | None = None,
    ) -> None:
        # The client's own defaults bound what one held trace may cost (GalileoSettings, not env:
        # the server's environment is not a client's configuration).
        self._settings = GalileoSettings.model_construct()
        self._store = store
        self._writer = writer
        self._sessions_path = sessions_path
        self._session_store: SQLiteSessionStore | None = None
        self._clock_ns = clock_ns
        timeout_s = self._settings.trace_timeout if trace_timeout_s is None else trace_timeout_s
        self._trace_timeout_ns = int(timeout_s * 1e9)
        self._destinations: dict[tuple[str, str | None, str | None], _Destination] = {}
        self.stats: dict[str, int] = {
            "otlp_requests": 0,
            "otlp_spans": 0,
            "otlp_spans_rejected": 0,
            "otlp_traces_stored": 0,
            "otlp_traces_failed": 0,
        }
        self._expire_every_s = expire_every_s
        # Traces held now (written on the writer thread, read by the timer: a plain int).
        self._held = 0
        # Set once, by close(); the timer thread starts with the first OTLP request.
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None

    # --- entry points (any thread) ----------------------------------------------------------

    def submit(
        self, spans: list[ReadableSpan], headers: Mapping[str, str], rejected: int = 0
    ) -> asyncio.Future[int]:
        """Queue the ingestion of ``spans`` on the writer thread.

        The future tells how many spans were lost with traces that could not be stored.
        """
        future = self._writer.submit(lambda: self._ingest(spans, headers, rejected))
        return asyncio.wrap_future(future)

    def expire(self) -> None:
        """Ship (incomplete) the held traces that have been idle too long; writer thread only."""
        now = self._clock_ns()
        for dest in list(self._destinations.values()):
            for trace in dest.assembler.expire(now):
                self._store_trace(dest, trace)
        self._count_held()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the timer and ship every held trace (bounded by ``timeout``); idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        timer = self._timer
        if timer is not None:
            timer.join(timeout)
        try:
            self._writer.submit(self._drain).result(timeout)
        except Exception as exc:  # closing must not fail the server's shutdown
            logger.warning("OTLP: traces still held at shutdown were not stored: %s", exc)
        finally:
            if self._session_store is not None:
                self._session_store.close()

    def _expire_loop(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            if not self._held:
                continue  # nothing held: no job, so the writer stays idle
            try:
                self._writer.submit(self.expire, background=True)
            except Exception:  # the writer is closing
                return

    def _count_held(self) -> None:
        self._held = sum(d.assembler.stats()["open_traces"] for d in self._destinations.values())
        if self._timer is None and self._expire_every_s is not None and not self._stop.is_set():
            # Started here, on the writer thread, the first time a request comes: a server
            # that never sees OTLP runs no timer.
            self._timer = threading.Thread(
                target=self._expire_loop,
                args=(self._expire_every_s,),
                name="galileo-otel-otlp-expiry",
                daemon=True,
            )
            self._timer.start()

    # --- writer thread ----------------------------------------------------------------------

    def _drain(self) -> None:
        for dest in list(self._destinations.values()):
            for trace in dest.assembler.drain():
                self._store_trace(dest, trace)

    def _ingest(self, spans: list[ReadableSpan], headers: Mapping[str, str], rejected: int) -> int:
        self.stats["otlp_requests"] += 1
        self.stats["otlp_spans"] += len(spans)
        lost = 0
        for span in spans:
            dest = self._destination(_route(span, headers))
            for trace in dest.assembler.add(span):
                if not self._store_trace(dest, trace):
                    lost += len(trace.spans)
        self.stats["otlp_spans_rejected"] += rejected + lost
        self._count_held()
        return lost

    def _destination(self, headers: Mapping[str, str]) -> _Destination:
        project_name = (headers.get("project") or "").strip()
        experiment = (headers.get("experimentid") or "").strip() or None
        stream_name = (headers.get("logstream") or "").strip() or None
        if experiment is not None:
            stream_name = None
        elif stream_name is None:
            stream_name = DEFAULT_LOG_STREAM
        cache_key = (project_name, stream_name, experiment)
        known = self._destinations.get(cache_key)
        if known is not None:
            return known
        found = self._store.find_projects(project_name)
        project = found[0] if found else self._store.create_project(project_name)
        project_id = str(project["id"])
        stream_id = None
        if stream_name is not None:
            streams = [
                s for s in self._store.list_log_streams(project_id) if s["name"] == stream_name
            ]
            if streams:
                stream_id = str(streams[0]["id"])
            else:
                try:
                    stream_id = str(self._store.create_log_stream(project_id, stream_name)["id"])
                except ConflictError:  # created by another server process on the same file
                    streams = [
                        s
                        for s in self._store.list_log_streams(project_id)
                        if s["name"] == stream_name
                    ]
                    stream_id = str(streams[0]["id"])
        dest = _Destination(
            project_id=project_id,
            log_stream_id=stream_id,
            experiment_id=experiment,
            assembler=TraceAssembler(
                max_spans_per_trace=self._settings.max_spans_per_trace,
                max_open_traces=self._settings.max_open_traces,
                trace_timeout_ns=self._trace_timeout_ns,
            ),
        )
        self._destinations[cache_key] = dest
        return dest

    def _tracker(self, dest: _Destination, service_name: str | None) -> SessionTracker:
        key = service_name or ""
        tracker = dest.trackers.get(key)
        if tracker is None:
            if self._session_store is None:
                create_private_file(self._sessions_path)
                self._session_store = SQLiteSessionStore(self._sessions_path)
            tracker = SessionTracker(
                self._session_store,
                service_name=service_name,
                namespace=f"{dest.project_id}/{dest.log_stream_id or dest.experiment_id}",
            )
            dest.trackers[key] = tracker
        return tracker

    def _session_id(self, dest: _Destination, root: ReadableSpan) -> str:
        attrs = span_attributes(root)
        resource_attrs = root.resource.attributes if root.resource is not None else {}
        named = attrs.get(GALILEO_SESSION_ID) or resource_attrs.get(GALILEO_SESSION_ID)
        if isinstance(named, str) and self._store.get_session(dest.project_id, named) is not None:
            return named
        service = resource_attrs.get("service.name")
        tracker = self._tracker(dest, service if isinstance(service, str) else None)
        start_ns = root.start_time or 0
        record = tracker.session_for_trace(
            attrs, start_ns, root.end_time or start_ns, root_name=root.name
        )

        def create(payload: dict[str, Any]) -> str:
            body = {
                **payload,
                "id": str(uuid.uuid4()),
                "log_stream_id": dest.log_stream_id,
                "experiment_id": dest.experiment_id,
                "logging_method": "api_direct",
                "client_version": f"galileo-otel-server/{__version__} (otlp)",
            }
            try:
                return str(self._store.create_session(dest.project_id, body)["id"])
            except BadReferenceError:
                # The app named a previous session this server does not have: start a new chain.
                body["previous_session_id"] = None
                return str(self._store.create_session(dest.project_id, body)["id"])

        return tracker.ensure_created(record, create)

    def _store_trace(self, dest: _Destination, trace: AssembledTrace) -> bool:
        root = trace.root if trace.root is not None else trace.spans[0]
        try:
            session_id = self._session_id(dest, root)
            data = convert_trace(trace)
            data["session_id"] = session_id
            body = LogTracesIngestRequest.model_validate(
                {
                    "traces": [data],
                    "session_id": session_id,
                    "log_stream_id": dest.log_stream_id,
                    "experiment_id": dest.experiment_id,
                    "is_complete": trace.complete,
                    "logging_method": "api_direct",
                    "client_version": f"galileo-otel-server/{__version__} (otlp)",
                }
            ).model_dump(mode="json", by_alias=True)
            self._store.ingest_traces(dest.project_id, body)
        except (ValidationError, BadReferenceError, ValueError) as exc:
            self.stats["otlp_traces_failed"] += 1
            logger.warning("OTLP: trace %032x not stored: %s", trace.trace_id, exc)
            return False
        self.stats["otlp_traces_stored"] += 1
        return True


def _route(span: ReadableSpan, headers: Mapping[str, str]) -> Mapping[str, str]:
    """Where a span goes: its resource's ``galileo.*`` target, else the request's headers.

    The official exporter stamps the target of each span on its resource, while its headers
    name only one target per request (that of the batch's last span), so the resource is the
    more precise of the two when a batch mixes projects.
    """
    attrs = span.resource.attributes if span.resource is not None else {}
    project = attrs.get(GALILEO_PROJECT_NAME)
    if not isinstance(project, str) or not project.strip():
        return headers
    experiment = attrs.get(GALILEO_EXPERIMENT_ID)
    stream = attrs.get(GALILEO_LOGSTREAM_NAME)
    return {
        "project": project,
        "logstream": stream if isinstance(stream, str) else "",
        "experimentid": experiment if isinstance(experiment, str) else "",
    }


# --- the route ----------------------------------------------------------------------------------


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _answer(media: str, response: ExportTraceServiceResponse, status: int = 200) -> Response:
    if media == _JSON_TYPE:
        return JSONResponse(json_format.MessageToDict(response), status_code=status)
    return Response(response.SerializeToString(), status_code=status, media_type=_PROTOBUF_TYPES[0])


def otlp_router(state: ServerState) -> APIRouter:
    """``POST /otel/traces`` and ``POST /v1/traces`` over ``state``'s OTLP ingestor."""
    router = APIRouter(tags=["otlp"])
    ingestor = state.otlp

    @router.post("/otel/traces", dependencies=[Depends(require_auth(state.auth))])
    @router.post("/v1/traces", dependencies=[Depends(require_auth(state.auth))])
    async def export_traces(request: Request) -> Response:
        """OTLP/HTTP trace export: protobuf or JSON, optionally gzip; headers name the target."""
        media = _media_type(request)
        if media not in (*_PROTOBUF_TYPES, _JSON_TYPE):
            return JSONResponse(
                {
                    "detail": f"unsupported Content-Type {media or '(none)'!r}: send "
                    "application/x-protobuf or application/json"
                },
                status_code=415,
            )
        if not (request.headers.get("project") or "").strip():
            return JSONResponse(
                {"detail": "missing 'project' header: the project (name) to log to"},
                status_code=400,
            )
        experiment = (request.headers.get("experimentid") or "").strip()
        if experiment:
            try:
                uuid.UUID(experiment, version=4)
            except ValueError:
                return JSONResponse(
                    {"detail": f"'experimentid' header is not a UUID: {experiment!r}"},
                    status_code=400,
                )
        body = await request.body()
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        try:
            if encoding in ("gzip", "deflate"):
                body = gunzip_bounded(body, state.max_body_bytes)
            elif encoding not in ("identity", ""):
                return JSONResponse(
                    {"detail": f"unsupported Content-Encoding {encoding!r}: use gzip or none"},
                    status_code=415,
                )
            decoded = decode_request(body, media)
        except (OtlpDecodeError, binascii.Error, ValueError) as exc:
            return JSONResponse({"detail": str(exc)}, status_code=400)
        spans, rejected, reason = spans_from_request(decoded)
        headers = {k: request.headers.get(k, "") for k in ("project", "logstream", "experimentid")}
        lost = await ingestor.submit(spans, headers, rejected)
        if lost:
            rejected += lost
            reason = reason or "a trace did not convert to a valid Galileo trace (see server log)"
        response = ExportTraceServiceResponse()
        if rejected:
            response.partial_success.CopyFrom(
                ExportTracePartialSuccess(rejected_spans=rejected, error_message=reason)
            )
        return _answer(media, response)

    return router
