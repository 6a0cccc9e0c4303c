"""Fakes for the export pipeline's unit tests: a scripted Galileo client, a session tracker, spans."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider

from galileo_otel.errors import APIError, TransportError

PROJECT_ID = "11111111-1111-4111-8111-111111111111"
LOG_STREAM_ID = "22222222-2222-4222-8222-222222222222"
DEST = {"project_id": PROJECT_ID, "log_stream_id": LOG_STREAM_ID, "experiment_id": None}


@dataclass
class FakeRecord:
    local_id: str
    key: str
    external_id: str | None
    galileo_id: str | None = None
    user_metadata: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class FakeTracker:
    """One session per `session.id` attribute; creates each session once."""

    def __init__(self) -> None:
        self.records: dict[str, FakeRecord] = {}
        self.created: list[str] = []
        self._lock = threading.Lock()

    def session_for_trace(
        self, attrs: Any, start_ns: int, end_ns: int, *, root_name: str | None = None
    ) -> FakeRecord:
        key = str(attrs.get("session.id", "auto"))
        rec = self.records.get(key)
        if rec is None:
            rec = self.records[key] = FakeRecord(str(uuid.uuid4()), key, key)
        return rec

    def ensure_created(
        self,
        record: FakeRecord,
        create: Callable[[dict[str, Any]], str],
        *,
        timeout_s: float | None = None,
    ) -> str:
        with self._lock:
            if record.galileo_id is None:
                record.galileo_id = create(
                    {"name": record.key, "external_id": record.external_id, "user_metadata": {}}
                )
                self.created.append(record.galileo_id)
            return record.galileo_id


def fake_convert(trace: Any) -> dict[str, Any]:
    root = trace.root or trace.spans[0]
    return {
        "type": "trace",
        "id": str(uuid.UUID(int=trace.trace_id)),
        "name": root.name,
        "input": str((root.attributes or {}).get("input", "")),
        "output": "",
        "spans": [{"type": "workflow", "name": s.name} for s in trace.spans if s is not root],
    }


@dataclass
class Call:
    path: str
    body: dict[str, Any]


class FakeClient:
    """Answers like a Galileo API; `respond(call)` may raise an APIError or block."""

    def __init__(self, respond: Callable[[Call], Any] | None = None) -> None:
        self.respond = respond
        self.calls: list[Call] = []
        self.sessions: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.closed = False

    def log_traces_encoded(
        self,
        traces_json: bytes,
        *,
        project_id: str,
        retry: Any,
        timeout: Any,
        **envelope: Any,
    ) -> Any:
        # The envelope as GalileoClient.log_traces_encoded writes it (tested in test_client).
        body = {"traces": json.loads(traces_json)}
        body.update({k: v for k, v in envelope.items() if v is not None})
        call = Call(f"/v2/projects/{project_id}/traces", body)
        with self.lock:
            self.calls.append(call)
        if self.respond is not None:
            self.respond(call)
        return {"traces_count": len(call.body["traces"])}

    def create_session(self, **kwargs: Any) -> Any:
        if self.respond is not None:
            self.respond(Call("/sessions", kwargs))
        sid = str(uuid.uuid4())
        with self.lock:
            self.sessions.append({**kwargs, "id": sid})
        return type("Created", (), {"id": sid})()

    def resolve_destination(self, **kwargs: Any) -> Any:
        return DEST

    def close(self) -> None:
        self.closed = True

    # helpers for asserts
    def trace_posts(self) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.path.endswith("/traces")]

    def trace_ids(self) -> list[str]:
        return [t["id"] for c in self.trace_posts() for t in c.body["traces"]]


def unavailable(status: int = 503, retry_after: float | None = None) -> APIError:
    return APIError(f"HTTP {status}", status_code=status, retryable=True, retry_after=retry_after)


def refused() -> TransportError:
    return TransportError("connection refused", retryable=True)


class Feed(SpanProcessor):
    """Like GalileoSessionProcessor.on_end: every ended span goes to the pipeline."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline

    def on_end(self, span: ReadableSpan) -> None:
        self.pipeline.submit(span)


def tracer_for(pipeline: Any) -> Any:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(Feed(pipeline))
    return provider.get_tracer("test")


def emit(tracer: Any, session: str = "s1", children: int = 1, payload: str = "") -> None:
    with tracer.start_as_current_span("root", attributes={"session.id": session, "input": payload}):
        for i in range(children):
            with tracer.start_as_current_span(f"child-{i}"):
                pass


def adopting_pipeline(spool_dir: Path, header: Any, payload: bytes) -> tuple[Any, FakeClient]:
    """A batch left in ``spool_dir`` by a process that is gone, and a pipeline that adopts it.

    Another process (API key ``"k"``) wrote ``header`` / ``payload`` and disowned its batch
    (its writer is gone: the next process takes it at once); the returned ExportPipeline, on a
    FakeClient, adopts it at start. The caller shuts the pipeline down.
    """
    from galileo_otel.export.spool import Spool, key_fingerprint

    other = Spool(spool_dir, origin=key_fingerprint("k"))
    assert other.write(header, payload) is not None
    other.disown()
    other.close()
    client = FakeClient()
    return spool_pipeline(spool_dir, client), client


def spool_pipeline(
    spool_dir: Path, client: FakeClient, tracker: Any = None, **settings: Any
) -> Any:
    """An ExportPipeline on ``client`` with its spool in ``spool_dir``.

    API key ``"k"``, batches closed after 10 ms, the first send at once, the spool retried every
    50 ms; ``tracker`` (default a FakeTracker) and further ``settings`` as given. The caller
    shuts it down.
    """
    from galileo_otel.export.pipeline import ExportPipeline
    from galileo_otel.settings import GalileoSettings

    return ExportPipeline(
        GalileoSettings(api_key="k", batch_delay=0.01, spool_dir=str(spool_dir), **settings),
        client=client,
        tracker=FakeTracker() if tracker is None else tracker,
        destination=DEST,
        convert=fake_convert,
        first_delay_s=0.0,
        spool_retry_s=0.05,
    )
