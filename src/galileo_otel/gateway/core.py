"""The gateway's core: OTLP spans in, written ahead to disk, then the export pipeline out.

A request's spans go through three steps, under one lock, before it is answered 200:

1. room: the destination's pipeline queue must have room for all of them (else 429);
2. the write-ahead log commits them to disk (else 503 when it is full);
3. they are handed to the destination's pipeline (``make_pipeline``: the same assembly,
   sessions, conversion, batching, spool and delivery as the in-process path).

**Who sent them.** Galileo shows which client logged a session and its traces
(``logging_method``). Spans are told apart by their resource's ``telemetry.sdk.language``
(:mod:`~galileo_otel.gateway.origin`): each language gets a pipeline of its own per destination,
whose session tracker stamps its logging method (Python: none, the client's ``python_client``)
on every session it opens, and so on its Create Session and each batch's Log Traces.

**One conversation, one session.** The trackers of a destination's pipelines share one session
store and namespace, so spans of several languages with the same ``session.id`` land in one
Galileo session; it carries the logging method of the pipeline that opened it (the first
language whose trace of it completed), and so do the traces later logged into it. With
``GALILEO_EXPORT_PROCESS`` each pipeline's worker process opens its own store: they share
sessions through a SQLite (the gateway's default) or Redis store, not a memory one.

**When a log row is deleted.** A checkpointer thread deletes a row once (a) none of the row's
traces may still be held open by the pipeline's assembler (:mod:`~galileo_otel.gateway.tracking`:
their local root was submitted, or they have been idle past ``trace_timeout`` plus a margin), and
(b) a ``force_flush`` of every pipeline, started after (a) was seen, returned ``True``: in
reliable mode every batch made from those spans was confirmed by Galileo (fire-and-forget: sent),
and (c) no pipeline counted a loss since the last look (else the rows are handed over again).
Until then the row stays, so a ``kill -9`` at any moment loses nothing: the next start replays
every row still in the log into the pipeline before it reports ready. A replayed trace that had
already been delivered is sent again with the same deterministic ids (at-least-once).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from galileo_otel.api.models import LoggingMethod
from galileo_otel.export import Pipeline, make_pipeline
from galileo_otel.gateway.config import GatewaySettings
from galileo_otel.gateway.origin import logging_method_of
from galileo_otel.gateway.tracking import OpenTraces
from galileo_otel.gateway.wal import WalFullError, WriteAheadLog
from galileo_otel.otlp import spans_from_request
from galileo_otel.settings import GalileoSettings

__all__ = ["ROUTING_HEADERS", "Gateway", "Refused"]

_log = logging.getLogger(__name__)

ROUTING_HEADERS = ("project", "logstream", "experimentid")
"""Request headers that override the gateway's destination (the official exporter's names)."""

_REPLAY_POLL_S = 0.05
# Pipeline counters that mean spans it was handed will not reach Galileo. traces_failed counts
# only in reliable mode: fire-and-forget gives up on failures by choice.
_LOSS_KEYS = ("dropped.spool_full", "traces_failed", "dropped.queue_full")
_PYTHON = LoggingMethod.python_client.value
_PipelineKey = tuple[str, str, str, str]  # (project, logstream, experimentid, logging method)
# Past this share of GALILEO_SPOOL_MAX_BYTES the gateway answers 503 rather than let the spool
# fill (a full spool drops batches).
_SPOOL_TIGHT = 0.9


class Refused(Exception):
    """The request cannot be taken now or at all.

    Attributes:
        status: The HTTP status to answer (400, 413, 429 or 503).
        reason: A message for the client (never a secret).
        retry_after_s: Seconds for ``Retry-After`` (429/503), else ``None``.
    """

    def __init__(self, status: int, reason: str, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Accepted:
    """What happened to an accepted request: its log row and how many spans went in."""

    wal_id: int
    spans: int


def destination_key(headers: Mapping[str, str], settings: GalileoSettings) -> tuple[str, str, str]:
    """``(project, logstream, experimentid)`` of a request: its headers, else ``settings``.

    Raises:
        Refused: 400, no project at all, or an ``experimentid`` that is not a UUID.
    """
    project = (headers.get("project") or "").strip()
    stream = (headers.get("logstream") or "").strip()
    experiment = (headers.get("experimentid") or "").strip()
    if experiment:
        try:
            uuid.UUID(experiment)
        except ValueError:
            raise Refused(
                400, f"'experimentid' header is not a UUID: {experiment[:64]!r}"
            ) from None
    if not project and not (settings.project or settings.project_id):
        raise Refused(
            400,
            "missing 'project' header: the gateway has no GALILEO_PROJECT to default to",
        )
    return project, stream, experiment


def destination_settings(settings: GalileoSettings, key: tuple[str, str, str]) -> GalileoSettings:
    """``settings`` with a request's routing headers applied (a header overrides its field)."""
    project, stream, experiment = key
    update: dict[str, Any] = {}
    if project:
        update.update(project=project, project_id=None)
    if experiment:
        update.update(experiment_id=experiment, log_stream=None, log_stream_id=None)
    elif stream:
        update.update(log_stream=stream, log_stream_id=None, experiment_id=None)
    elif project and not (settings.log_stream or settings.experiment_id):
        # Another project than the configured one: its log stream id cannot carry over.
        update.update(log_stream_id=None)
    return settings.model_copy(update=update) if update else settings


class Gateway:
    """Write-ahead log, pipelines per destination and the checkpointer; the HTTP app's engine.

    Args:
        settings: Where traces go (``GALILEO_*``).
        config: The gateway's own settings (``GALILEO_GATEWAY_*``).
        pipeline_factory: Builds a pipeline from settings (default ``make_pipeline``).
        clock_ns: Wall clock in ns (tests pass a controlled one).
        checkpoint_every_s: Checkpointer period; ``None``: no thread (tests call
            :meth:`checkpoint`).
    """

    def __init__(
        self,
        settings: GalileoSettings,
        config: GatewaySettings,
        *,
        pipeline_factory: Callable[..., Pipeline | None] = make_pipeline,
        clock_ns: Callable[[], int] = time.time_ns,
        checkpoint_every_s: float | None = -1.0,
    ) -> None:
        self.settings = settings
        self.config = config
        self._factory = pipeline_factory
        self._clock_ns = clock_ns
        self._every = (
            config.checkpoint_interval if checkpoint_every_s == -1.0 else checkpoint_every_s
        )
        self.wal = WriteAheadLog(config.state_dir(), max_bytes=config.wal_max_bytes)
        # _lock guards everything below it; it is held across the log's commit (so rows and
        # submissions happen in one order) but never across a pipeline flush.
        self._lock = threading.Lock()
        # Per destination and logging method (see "Who sent them" above).
        self._pipelines: dict[_PipelineKey, Pipeline] = {}
        # Per destination: the session store its pipelines' trackers share (closed after them).
        self._stores: dict[tuple[str, str, str], Any] = {}
        self._room: dict[_PipelineKey, int] = {}  # queue room per pipeline, a lower bound
        self._open = OpenTraces(int(settings.trace_timeout * 1e9))
        self._entries: dict[int, set[int]] = {}  # row id -> trace ids, rows submitted
        self._counts: dict[str, int] = {}  # guarded by _counts_lock (taken with or without _lock)
        self._counts_lock = threading.Lock()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._closing = False
        self._threads: list[threading.Thread] = []
        # Written by the checkpointer only; read (a plain bool) by requests.
        self._loss_mark = 0
        self._spool_tight = False

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Replay the log (background) and start the checkpointer; ready once replayed."""
        replay = threading.Thread(
            target=self._replay_main, name="galileo-otel-gw-replay", daemon=True
        )
        self._threads.append(replay)
        replay.start()
        if self._every is not None:
            checkpointer = threading.Thread(
                target=self._checkpoint_loop,
                args=(self._every,),
                name="galileo-otel-gw-checkpoint",
                daemon=True,
            )
            self._threads.append(checkpointer)
            checkpointer.start()

    @property
    def ready(self) -> bool:
        """Replay done, not stopping, and the log has room."""
        if not self._ready.is_set() or self._closing or self._spool_tight:
            return False
        count, size = self.wal.usage()
        return not (self.wal.max_bytes and count and size >= self.wal.max_bytes)

    def wait_ready(self, timeout_s: float) -> bool:
        """Wait until the replay is done."""
        return self._ready.wait(timeout_s)

    def close(self, timeout_s: float | None = None) -> bool:
        """Stop taking requests, flush and shut the pipelines down within ``timeout_s``.

        Log rows are deleted only when every pipeline reported all of its work delivered;
        otherwise they stay and are replayed by the next start. Returns that outcome.
        """
        timeout = self.config.shutdown_timeout if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._closing:
                return False
            self._closing = True
            pipelines = list(self._pipelines.values())
            stores = list(self._stores.values())
            submitted = list(self._entries)
        self._stop.set()
        for thread in self._threads:
            thread.join(max(0.0, min(1.0, deadline - time.monotonic())))
        ok = True
        for pipeline in pipelines:
            try:
                left = max(0.0, deadline - time.monotonic())
                ok = bool(pipeline.shutdown(left)) and ok
            except Exception as exc:  # one pipeline's failure must not stop the others
                _log.warning("galileo-otel gateway: pipeline shutdown failed: %r", exc)
                ok = False
        for store in stores:  # after the pipelines: a pipeline leaves a given tracker open
            with contextlib.suppress(Exception):
                store.close()
        if ok and not any(t.is_alive() for t in self._threads):
            # Everything handed over was delivered (shutdown ships incomplete traces too).
            with contextlib.suppress(Exception):
                self.wal.delete(submitted)
        self.wal.close()
        return ok

    # --- requests -------------------------------------------------------------------------------
    def accept(
        self,
        request: ExportTraceServiceRequest,
        spans: Sequence[Any],
        headers: Mapping[str, str],
        *,
        rejected: int = 0,
    ) -> Accepted:
        """Log ``spans`` durably and hand them to their pipeline; the caller then answers 200.

        Args:
            request: The decoded request (stored as sent, minus nothing).
            spans: Its valid spans (``spans_from_request``).
            headers: The request's routing headers.
            rejected: Spans of the request already left out (invalid ids), for the counters.

        Raises:
            Refused: 400 / 413 / 429 / 503; nothing was logged or handed over.
        """
        self._count("requests")
        self._count("spans_received", len(spans) + rejected)
        if rejected:
            self._count("spans_rejected", rejected)
        if not spans:
            return Accepted(0, 0)
        key = destination_key(headers, self.settings)
        if len(spans) > int(self.settings.max_queue_spans):
            raise Refused(
                413,
                f"{len(spans)} spans in one request; at most {self.settings.max_queue_spans} "
                "(GALILEO_MAX_QUEUE_SPANS): send smaller batches",
            )
        retry = self.config.retry_after
        body = request.SerializeToString()
        groups = _by_logging_method(spans)
        with self._lock:
            if self._closing:
                raise Refused(503, "the gateway is stopping", retry)
            if not self._ready.is_set():
                raise Refused(503, "the gateway is replaying its write-ahead log", 1.0)
            if self._spool_tight:
                self._count("refused.spool_full")
                raise Refused(
                    503, "the delivery spool is nearly full (GALILEO_SPOOL_MAX_BYTES)", retry
                )
            parts = [
                (self._pipeline_for(key, method), (*key, method), group)
                for method, group in groups.items()
            ]
            # Room in each pipeline's queue, known without asking for each request: stats() is
            # not free (it reads the session store's counts). Only we add to the queue, so the
            # last reading minus what we added since is a lower bound; read again when short.
            rooms = []
            for pipeline, pkey, group in parts:
                room = self._room.get(pkey, 0)
                if room < len(group):
                    room = int(self.settings.max_queue_spans) - int(
                        pipeline.stats().get("queue_size", 0)
                    )
                if room < len(group):
                    self._room[pkey] = room
                    self._count("refused.queue_full")
                    raise Refused(429, "the export queue is full", retry)
                rooms.append(room)
            for (_, pkey, group), room in zip(parts, rooms, strict=True):
                self._room[pkey] = room - len(group)
            now = self._clock_ns()
            try:
                wal_id = self.wal.append(_routing(headers), body, now)
            except WalFullError as exc:
                self._count("refused.wal_full")
                raise Refused(503, str(exc), retry) from None
            self._submit(wal_id, [(pipeline, group) for pipeline, _, group in parts], now)
        self._count("spans_accepted", len(spans))
        return Accepted(wal_id, len(spans))

    def _submit(
        self, wal_id: int, parts: Sequence[tuple[Pipeline, Sequence[Any]]], now_ns: int
    ) -> None:
        """Hand a row's spans to their pipelines (with ``_lock`` held) and remember the row."""
        refused = 0
        trace_ids: set[int] = set()
        for pipeline, spans in parts:
            refused += sum(1 for span in spans if not pipeline.submit(span))
            trace_ids |= self._open.note(spans, now_ns)
        if refused:
            # Only when the pipeline is stopping: the row stays in the log (never registered,
            # so never deleted by this process) and the next start replays it.
            self._count("spans_not_queued", refused)
            return
        self._entries[wal_id] = trace_ids

    def _pipeline_for(self, key: tuple[str, str, str], method: str) -> Pipeline:
        """The pipeline of a destination and a logging method (built on first use)."""
        pkey = (*key, method)
        pipeline = self._pipelines.get(pkey)
        if pipeline is not None:
            return pipeline
        destinations = {known[:3] for known in self._pipelines}
        if key not in destinations and len(destinations) >= self.config.max_destinations:
            raise Refused(
                400,
                f"too many destinations (GALILEO_GATEWAY_MAX_DESTINATIONS="
                f"{self.config.max_destinations})",
            )
        settings = destination_settings(self.settings, key)
        if settings.logging_disabled:
            raise Refused(503, "export is disabled (GALILEO_LOGGING_DISABLED)", None)
        if settings.export_process:
            # A worker process (GALILEO_EXPORT_PROCESS) builds its tracker itself (on its own
            # store: shared with the other languages' only through SQLite or Redis), told which
            # logging method to stamp; Python spans take exactly the in-process path.
            if method == _PYTHON:
                built = self._factory(settings, shutdown_at_exit=False)
            else:
                built = self._factory(settings, shutdown_at_exit=False, logging_method=method)
        else:
            # Every language's pipeline of a destination gets a tracker on the destination's one
            # store, in one namespace: a conversation's session.id is one session whoever sends
            # it, and the session carries the logging method of the tracker that opened it.
            built = self._factory(
                settings, shutdown_at_exit=False, tracker=self._tracker_for(key, settings, method)
            )
        if built is None:
            raise Refused(503, "export is disabled (GALILEO_LOGGING_DISABLED)", None)
        self._pipelines[pkey] = built
        return built

    def _tracker_for(
        self, key: tuple[str, str, str], settings: GalileoSettings, method: str
    ) -> Any:
        """A session tracker stamping ``method`` on the destination's shared store (with _lock)."""
        from galileo_otel.api.suppress import suppress_instrumentation
        from galileo_otel.sessions.store import store_from_settings
        from galileo_otel.sessions.tracker import SessionTracker

        store = self._stores.get(key)
        if store is None:
            # Opens the session store (SQLite, Redis): our own I/O is never traced.
            with suppress_instrumentation():
                store = self._stores[key] = store_from_settings(settings)
        # Python's tracker stamps nothing, as in-process: the client's own python_client.
        return SessionTracker.from_settings(
            settings, logging_method=None if method == _PYTHON else method, store=store
        )

    # --- replay ---------------------------------------------------------------------------------
    def _replay_main(self) -> None:
        try:
            self.replay()
        except Exception as exc:
            _log.error("galileo-otel gateway: replay of the write-ahead log failed: %r", exc)
            self._count("errors.replay")
        finally:
            self._ready.set()

    def replay(self) -> int:
        """Hand every row of the log to its pipeline (at start); returns the rows replayed."""
        replayed = self._replay_rows(None)
        self._count("replayed_requests", replayed)
        if replayed:
            _log.warning(
                "galileo-otel gateway: replayed %d request(s) from the write-ahead log", replayed
            )
        return replayed

    def _replay_rows(self, only: set[int] | None) -> int:
        """Hand the log's rows (``only`` these ids, or all) to their pipelines, in order."""
        replayed = 0
        for entry in self.wal.entries():
            if self._stop.is_set():
                break
            if only is not None and entry.id not in only:
                continue
            spans, _, _ = spans_from_request(ExportTraceServiceRequest.FromString(entry.body))
            groups = _by_logging_method(spans)
            try:
                key = destination_key(entry.headers, self.settings)
                with self._lock:
                    parts = [
                        (self._pipeline_for(key, method), (*key, method), group)
                        for method, group in groups.items()
                    ]
            except Refused as exc:
                # Kept in the log (never deleted by this process): a later start with other
                # settings may be able to send it.
                _log.error("galileo-otel gateway: row %d not replayed: %s", entry.id, exc.reason)
                self._count("replay_skipped")
                continue
            # Wait for room: nobody is waiting on a replay but readiness.
            for pipeline, _, group in parts:
                while int(self.settings.max_queue_spans) - int(
                    pipeline.stats().get("queue_size", 0)
                ) < len(group):
                    if self._stop.wait(_REPLAY_POLL_S):
                        return replayed
            with self._lock:
                for _, pkey, _ in parts:
                    self._room.pop(pkey, None)  # the queue grew behind the running bound's back
                self._submit(
                    entry.id, [(pipeline, group) for pipeline, _, group in parts], self._clock_ns()
                )
            replayed += 1
            self._count("replayed_spans", len(spans))
        return replayed

    # --- checkpoints ----------------------------------------------------------------------------
    def _checkpoint_loop(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            try:
                self.checkpoint()
            except Exception as exc:
                self._count("errors.checkpoint")
                _log.warning("galileo-otel gateway: checkpoint failed: %r", exc)

    def checkpoint(self, flush_timeout_s: float | None = None) -> int:
        """Delete the log rows the pipelines have made durable; returns how many went.

        See the module docstring for the rule. When a pipeline counted a loss since the last
        look (a batch dropped by a full spool; in reliable mode a trace given up on), no row is
        deleted: the rows whose traces are closed are handed to the pipeline again instead.
        """
        with self._lock:
            pipelines = list(self._pipelines.values())
        losses = self._observe(pipelines)
        with self._lock:
            if not self._entries:
                self._loss_mark = losses
                return 0
            now = self._clock_ns()
            self._open.prune(now)
            done = [row for row, traces in self._entries.items() if self._open.closed(traces, now)]
        if not done:
            return 0
        timeout = self.config.flush_timeout if flush_timeout_s is None else flush_timeout_s
        deadline = time.monotonic() + timeout
        for pipeline in pipelines:
            if not pipeline.force_flush(max(0.0, deadline - time.monotonic())):
                self._count("checkpoints_unconfirmed")
                return 0
        losses = self._observe(pipelines)
        if losses > self._loss_mark:
            _log.error(
                "galileo-otel gateway: the export pipeline lost %d trace(s) (spool full?); "
                "handing %d write-ahead request(s) to it again",
                losses - self._loss_mark,
                len(done),
            )
            self._loss_mark = losses
            self._count("resubmitted_requests", self._replay_rows(set(done)))
            return 0
        removed = self.wal.delete(done)
        with self._lock:
            for row in done:
                self._entries.pop(row, None)
        self._count("checkpoints")
        self._count("wal_rows_deleted", removed)
        return removed

    def _observe(self, pipelines: Sequence[Pipeline]) -> int:
        """Read the pipelines' loss counters and spool use (for back-pressure); the losses."""
        losses = 0
        spool_bytes = 0
        keys = _LOSS_KEYS if self.settings.reliable else _LOSS_KEYS[:1]
        for pipeline in pipelines:
            try:
                stats = pipeline.stats()
            except Exception:  # counters only; the next look will tell
                continue
            losses += sum(int(stats.get(k, 0) or 0) for k in keys)
            spool_bytes = max(spool_bytes, int(stats.get("spool_bytes", 0) or 0))
        cap = int(self.settings.spool_max_bytes)
        self._spool_tight = bool(cap) and spool_bytes >= _SPOOL_TIGHT * cap
        return losses

    # --- stats ----------------------------------------------------------------------------------
    def _count(self, key: str, n: int = 1) -> None:
        with self._counts_lock:
            self._counts[key] = self._counts.get(key, 0) + n

    def stats(self) -> dict[str, Any]:
        """The gateway's counters, the log's usage and each pipeline's ``stats()`` summed."""
        with self._counts_lock:
            out: dict[str, Any] = dict(self._counts)
        entries, size = self.wal.usage()
        out["wal_entries"] = entries
        out["wal_bytes"] = size
        with self._lock:
            pipelines = list(self._pipelines.values())
            out["open_traces_tracked"] = len(self._open)
            out["destinations"] = len({key[:3] for key in self._pipelines})
        totals: dict[str, Any] = {}
        for pipeline in pipelines:
            with contextlib.suppress(Exception):
                for k, v in pipeline.stats().items():
                    if isinstance(v, bool) or not isinstance(v, (int, float)):
                        continue
                    if k.startswith("spool_"):
                        # One spool shared by every pipeline: its size is not a sum.
                        totals[k] = max(totals.get(k, 0), v)
                    else:
                        totals[k] = totals.get(k, 0) + v
        out["pipeline"] = totals
        out["ready"] = self.ready
        return out


def _by_logging_method(spans: Sequence[Any]) -> dict[str, list[Any]]:
    """``spans`` by the logging method of their resource, each group in the order sent."""
    groups: dict[str, list[Any]] = {}
    resource: Any = groups  # no span's resource
    group: list[Any] = []
    for span in spans:
        # A request's spans come in runs of one resource object: one lookup per run.
        if span.resource is not resource:
            resource = span.resource
            group = groups.setdefault(logging_method_of(span), [])
        group.append(span)
    return groups


def _routing(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k in ROUTING_HEADERS if (v := (headers.get(k) or "").strip())}
