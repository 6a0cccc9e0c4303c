"""The Batcher: the worker thread, spans -> traces -> per-session batches.

The worker takes spans off the app's queue (``handoff.py``), assembles traces, resolves their
session, converts and encodes each trace once (orjson when installed), and closes per-session
batches by count, size or ``batch_delay``. It is pure CPU and never waits on I/O (only, with
the disk far behind, on the ledger's bound of unwritten bytes); closed batches go to the
ledger, for the spooler.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from galileo_otel.api.suppress import suppressed
from galileo_otel.export._stage import Batch, Flush, Outbound, Report
from galileo_otel.export.fit import encode_within
from galileo_otel.export.handoff import SpanHandoff
from galileo_otel.export.ledger import Ledger
from galileo_otel.export.sdk_span import span_attributes
from galileo_otel.export.spool_format import BatchHeader
from galileo_otel.settings import GalileoSettings

if TYPE_CHECKING:
    from galileo_otel.export.config import PipelineConfig

__all__ = ["Batcher", "encode_trace"]

_log = logging.getLogger("galileo_otel.export.pipeline")

# Spans taken from the queue between two looks at timers and flush requests.
_DRAIN_CHUNK = 1024
# While the queue is under half full the worker takes this many spans, then gives the GIL back
# (time.sleep(0)): on CPython a thread that wants the GIL waits a whole switch interval (5 ms)
# for it, so a worker that never lets go makes the app thread wait. Past half full it drains
# at full speed, as before: pacing applies only while the queue has room.
_PACED_CHUNK = 64
_EXPIRE_EVERY_S = 1.0
_ENVELOPE_RESERVE_BYTES = 1024

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode

# orjson (a dependency) encodes a converted trace 5-7x faster than the stdlib C encoder (~1 vs
# ~6 us per span, benchmarks/README.md), straight to UTF-8; anything it refuses (a lone
# surrogate, an int beyond 64 bits, a non-str key) goes through the stdlib path. The import may
# still fail on a platform without a wheel that was installed with --no-deps: stdlib then.
try:
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson_dumps: Callable[..., bytes] | None = None
    _ORJSON_ERRORS: tuple[type[Exception], ...] = ()
else:
    _orjson_dumps = orjson.dumps
    _ORJSON_ERRORS = (orjson.JSONEncodeError, TypeError, ValueError, OverflowError)


# Whether encode_trace uses orjson (benchmarks compare it with encode_trace_stdlib).
HAVE_ORJSON = _orjson_dumps is not None


def encode_trace(data: Any) -> bytes:
    """One converted trace as compact UTF-8 JSON (orjson when installed, else the stdlib)."""
    if _orjson_dumps is not None:
        try:
            return _orjson_dumps(data, default=str)
        except _ORJSON_ERRORS:
            pass
    return encode_trace_stdlib(data)


def encode_trace_stdlib(data: Any) -> bytes:
    """:func:`encode_trace` without orjson: its path when orjson is missing or refuses."""
    text = _dumps(data)
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate in some attribute
        return text.encode("utf-8", "replace")


class Batcher:
    """The worker thread and what it owns: assembler, open batches, timers (no I/O).

    Args:
        handoff: The app-side queue it drains.
        ledger: Where closed batches (and traces lost before batching) go.
        report: Counters and log.
        tracker: Returns the session tracker (built lazily, shared with the sink).
        assembler: The trace assembler; a ``TraceAssembler`` per ``settings`` when ``None``.
        convert: Turns an assembled trace into a Galileo trace dict (``convert_trace`` when
            ``None``, imported on the worker thread).
        convert_stats: What conversion cut (handed to ``fit.encode_within``).
        settings: The numbers that close a batch (``batch_max_traces``, ``batch_max_bytes``,
            ``batch_delay``), pace the drain (``max_queue_spans``) and bound the assembler.
        first_delay_s: How long a batch waits for more traces after a quiet period (capped by
            ``batch_delay``): a batch opened at ``t`` closes at the later of ``t + first_delay``
            and the last close-all + ``batch_delay``.
        header: What every batch header carries: ``reliable``, ``destination``, ``target``,
            ``origin``.
        clock: Monotonic seconds.
    """

    # Set by the worker thread when it starts (the default converter imports convert.py there).
    _convert: Callable[[Any], dict[str, Any]]
    _tracker: Any

    def __init__(
        self,
        *,
        handoff: SpanHandoff,
        ledger: Ledger,
        report: Report,
        tracker: Callable[[], Any],
        assembler: Any,
        convert: Callable[[Any], dict[str, Any]] | None,
        convert_stats: Any,
        settings: GalileoSettings,
        first_delay_s: float,
        header: dict[str, Any],
        clock: Callable[[], float],
    ) -> None:
        self._handoff = handoff
        self._ledger = ledger
        self._report = report
        self._get_tracker = tracker
        self._assembler = assembler
        self._limits = {
            "max_spans_per_trace": int(settings.max_spans_per_trace),
            "max_open_traces": int(settings.max_open_traces),
            "trace_timeout_ns": int(settings.trace_timeout * 1e9),
        }
        self._given_convert = convert
        self._convert_stats = convert_stats
        self._max_traces = int(settings.batch_max_traces)
        # Room is kept in batch_max_bytes for the request envelope around the traces array.
        self._max_payload = max(256, int(settings.batch_max_bytes) - _ENVELOPE_RESERVE_BYTES)
        self._batch_delay = float(settings.batch_delay)
        self._first_delay = min(first_delay_s, self._batch_delay)
        self._max_queue = int(settings.max_queue_spans)
        self._header = header
        self._clock = clock
        self._thread: threading.Thread | None = None
        # The worker thread's own: no lock, only it writes them. _open and _taken are also
        # read, without a lock, by stats() and shutdown's leftover count (a dict's values
        # copied, an int: atomic under the GIL, a count at worst stale).
        self._taken = 0  # spans taken off the queue
        self._open: dict[str, Batch] = {}  # open batch per session
        self._flush_at: float | None = None
        self._last_flush = -1e18
        self._next_expire = 0.0
        self._last_seq = 0

    @classmethod
    def for_config(
        cls,
        config: PipelineConfig,
        *,
        handoff: SpanHandoff,
        ledger: Ledger,
        report: Report,
        tracker: Callable[[], Any],
        assembler: Any,
        convert: Callable[[Any], dict[str, Any]] | None,
        convert_stats: Any,
        clock: Callable[[], float],
    ) -> Batcher:
        """A batcher with a pipeline's settings, first-batch delay and batch header."""
        return cls(
            handoff=handoff,
            ledger=ledger,
            report=report,
            tracker=tracker,
            assembler=assembler,
            convert=convert,
            convert_stats=convert_stats,
            settings=config.settings,
            first_delay_s=config.first_delay_s,
            header=config.header,
            clock=clock,
        )

    # --- what others ask ----------------------------------------------------------------------
    @property
    def thread(self) -> threading.Thread | None:
        """The worker thread, once started."""
        return self._thread

    @property
    def taken(self) -> int:
        """Spans taken off the queue so far."""
        return self._taken

    def assembler(self) -> Any:
        """The trace assembler (built on first use: at start, on the caller's thread)."""
        if self._assembler is None:
            from galileo_otel.export.assemble import TraceAssembler

            self._assembler = TraceAssembler(**self._limits)
        return self._assembler

    def assembler_stats(self) -> dict[str, int]:
        """The assembler's counters (none before it is built, or when it has none)."""
        if self._assembler is None:
            return {}
        with contextlib.suppress(Exception):
            return {k: int(v) for k, v in self._assembler.stats().items()}
        return {}

    def has_open(self) -> bool:
        """Traces in open batches (not yet closed)."""
        return bool(self._open)

    def leftover_spans(self) -> int:
        """Spans the worker still holds (open traces, open batches): read while it may run."""
        left = 0
        with contextlib.suppress(Exception):
            left += int(self.assembler().stats().get("open_spans", 0))
        with contextlib.suppress(RuntimeError):  # changed size while we looked
            left += sum(batch.spans for batch in list(self._open.values()))
        return left

    def start(self) -> None:
        """Start the worker thread: :meth:`run` on a thread of its own."""
        self._thread = threading.Thread(target=self.run, name="galileo-otel-worker", daemon=True)
        self._thread.start()

    # --- the thread -----------------------------------------------------------------------------
    @suppressed
    def run(self) -> None:
        """The worker loop, on the calling thread, until the ledger stops and the queue is empty.

        :meth:`start` runs it on the worker thread; a benchmark may run it on a thread of its
        own (under a profiler, say), or a test pass by pass. One thread at a time only.
        """
        try:
            self._work()
        except BaseException as exc:  # pragma: no cover - a bug; say it, never kill the app
            _log.critical("galileo-otel: export worker stopped: %r", exc, exc_info=exc)
            raise

    def _work(self) -> None:
        assembler = self.assembler()
        self._tracker = self._get_tracker()
        if self._given_convert is not None:
            self._convert = self._given_convert
        else:
            from galileo_otel.export.convert import convert_trace

            self._convert = functools.partial(convert_trace, stats=self._convert_stats)
        handoff = self._handoff
        queue = handoff.worker_queue()
        half = self._max_queue // 2
        span_of = handoff.worker_rebuild()  # this thread's: a record is rebuilt
        add = assembler.add
        stop = self._ledger.stop_event
        while True:
            handoff.worker_sleeps()
            pace = len(queue) < half
            try:
                for _ in range(_PACED_CHUNK if pace else _DRAIN_CHUNK):
                    item = queue.popleft()
                    if type(item) is Flush:
                        self._on_flush(item, assembler)
                        continue
                    self._taken += 1
                    try:
                        done = add(span_of(item))
                    except Exception as exc:
                        self._report.internal_error("assemble", exc)
                        continue
                    if done:
                        for trace in done:
                            self._trace_to_batch(trace)
                more = True
            except IndexError:
                more = False
            now = self._clock()
            if now >= self._next_expire:
                self._next_expire = now + _EXPIRE_EVERY_S
                try:
                    expired = assembler.expire(time.time_ns())
                except Exception as exc:
                    self._report.internal_error("expire", exc)
                    expired = []
                for trace in expired:
                    self._trace_to_batch(trace)
            if self._flush_at is not None and now >= self._flush_at:
                self._close_all()
            if stop.is_set() and not queue:
                return
            if more:
                if pace:
                    time.sleep(0)  # let the app thread run: see _PACED_CHUNK
                continue
            # Asleep until spans come (submit wakes it), unless a timer is due: an open
            # batch's delay, or the expiry of traces still open in the assembler.
            timeout: float | None = None
            if self._open_traces(assembler):
                timeout = _EXPIRE_EVERY_S
            if self._flush_at is not None:
                until = max(0.0, self._flush_at - self._clock())
                timeout = until if timeout is None else min(timeout, until)
            handoff.worker_wait(timeout)

    def _open_traces(self, assembler: Any) -> bool:
        try:
            return bool(assembler.stats().get("open_traces", 0))
        except Exception:  # a custom assembler without stats: keep the expiry timer
            return True

    def _on_flush(self, marker: Flush, assembler: Any) -> None:
        if marker.final:
            try:
                leftovers = assembler.drain()
            except Exception as exc:
                self._report.internal_error("drain", exc)
                leftovers = []
            for trace in leftovers:
                self._trace_to_batch(trace)
        self._close_all()
        marker.seq = self._last_seq
        # Done once the spooler has handled every batch before it (they are on disk then).
        self._ledger.flush_marker(marker)

    def _trace_to_batch(self, trace: Any) -> None:
        """The per-trace body: session, conversion, encoding, into its session's open batch.

        The one place a completed trace (from the assembler) meets the tracker, ``convert``
        and the encoder; everything per trace that costs CPU is here.
        """
        try:
            root = trace.root if trace.root is not None else trace.spans[0]
            attrs = span_attributes(root)
            start_ns = root.start_time or 0
            end_ns = root.end_time or start_ns
            record = self._tracker.session_for_trace(attrs, start_ns, end_ns, root_name=root.name)
            if not getattr(record, "sampled", True):
                # The session was sampled out: none of its traces are sent.
                self._report.count("dropped.sampled")
                return
            data = self._convert(trace)
            galileo_id = getattr(record, "galileo_id", None)
            # Until the session exists its local id stands in; the sender swaps it (same length).
            data["session_id"] = galileo_id or record.local_id
            # A trace always fits one request: its largest texts are cut (and counted) if not.
            part = encode_within(data, self._max_payload, encode_trace, self._convert_stats)
        except Exception as exc:
            self._report.internal_error("convert", exc)
            self._report.count("traces_dropped")
            self._report.count("dropped.convert_error")
            # A lost trace like any other: the next flush whose scope holds it says False.
            self._last_seq = self._ledger.lose_unbatched()
            return
        key = record.local_id
        size = len(part) + 1  # and its comma
        max_payload = self._max_payload
        batch = self._open.get(key)
        if batch is not None and batch.parts and batch.size + size > max_payload:
            self._close(key)
            batch = None
        if batch is None:
            batch = self._open[key] = Batch(record=record)
            if self._flush_at is None:
                now = self._clock()
                self._flush_at = max(now + self._first_delay, self._last_flush + self._batch_delay)
        batch.record = record
        parts = batch.parts
        parts.append(part)
        batch.size += size
        batch.spans += len(trace.spans)
        if not galileo_id:
            batch.placeholder = True
        if len(parts) >= self._max_traces or batch.size >= max_payload:
            self._close(key)

    def _close_all(self) -> None:
        for key in list(self._open):
            self._close(key)
        self._flush_at = None
        self._last_flush = self._clock()

    def _close(self, key: str) -> None:
        batch = self._open.pop(key)
        if not self._open:
            self._flush_at = None
        record = batch.record
        payload = b"[" + b",".join(batch.parts) + b"]"
        try:
            session = record.to_dict()
        except Exception as exc:
            self._report.internal_error("session record", exc)
            session = {}
        h = self._header
        header = BatchHeader(
            reliable=h["reliable"],
            session=session,
            local_id=record.local_id,
            external_id=getattr(record, "external_id", None),
            placeholder=batch.placeholder,
            destination=h["destination"],
            target=h["target"],
            origin=h["origin"],
            traces=len(batch.parts),
            spans=batch.spans,
        )
        seq = self._last_seq = self._ledger.next_seq()
        out = Outbound(seq=seq, header=header, payload=payload, record=record)
        self._report.count("traces_batched", len(batch.parts))
        self._report.count("batches", 1)
        # Memory stays bounded: the ledger makes us wait while the spooler is far behind.
        self._ledger.closed(out)
