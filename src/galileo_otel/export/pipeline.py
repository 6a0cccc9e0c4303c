"""ExportPipeline: the background half of the path of a span, from queue to confirmed delivery.

``submit(span)`` is the only thing the app thread calls: one deque append and a length check.
A worker thread assembles traces, resolves their session, converts and encodes them once, and
batches them per session (pure CPU: it never waits on I/O); a spool-writer thread puts closed
batches on disk and feeds spooled ones back; ``max_in_flight`` sender threads deliver them.

Reliable mode (``reliable=True``): each closed batch is first written to the spool (when on),
then sent and awaited; connection errors, timeouts, 408, 429 and 5xx are retried with
exponential backoff and jitter (Retry-After honoured) until ``export_timeout``; a batch that is
still undelivered stays in the spool and is retried later, and by the next process that opens the
spool. Fire-and-forget mode (``reliable=False``): one request (plus one reconnect), failures
counted. Both: permanent errors (400, 401, 403, 404, 422) are never retried; in reliable mode
the batch goes to ``<spool>/dead/``.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import logging
import os
import random
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from galileo_otel.errors import APIError, APITimeoutError, ConfigError
from galileo_otel.export.handoff import SpanHandoff
from galileo_otel.export.sdk_span import span_attributes
from galileo_otel.export.spool import LEASE_S, Spool, SpoolEntry, key_fingerprint, open_spool
from galileo_otel.settings import GalileoSettings

__all__ = [
    "DEFAULT_BACKOFF_INITIAL_S",
    "DEFAULT_BACKOFF_MAX_S",
    "DEFAULT_EXIT_TIMEOUT_S",
    "DEFAULT_FIRST_DELAY_S",
    "DEFAULT_SPOOL_RETRY_S",
    "PERMANENT_STATUS_CODES",
    "ExportPipeline",
]

_log = logging.getLogger(__name__)

DEFAULT_BACKOFF_INITIAL_S = 0.5
DEFAULT_BACKOFF_MAX_S = 10.0
DEFAULT_SPOOL_RETRY_S = 5.0
DEFAULT_SPOOL_RETRY_MAX_S = 60.0
DEFAULT_FIRST_DELAY_S = 0.05
DEFAULT_EXIT_TIMEOUT_S = 5.0
PERMANENT_STATUS_CODES = frozenset({400, 401, 403, 404, 422})

# Room kept in batch_max_bytes for the request envelope around the traces array.
_ENVELOPE_RESERVE_BYTES = 1024
# Spans taken from the queue between two looks at timers and flush requests.
_DRAIN_CHUNK = 1024
_EXPIRE_EVERY_S = 1.0
_LOG_EVERY_S = 10.0
_MAX_UNWRITTEN_BYTES = 32 * 1024 * 1024
_LOGGING_METHOD = "python_client"

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode

# orjson (the optional [fast] extra) encodes a converted trace ~3.5x faster than the stdlib C
# encoder (1.1 vs 4.0 us per span here), straight to UTF-8; anything it refuses (a lone
# surrogate, an int beyond 64 bits, a non-str key) goes through the stdlib path as before.
try:
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson_dumps: Callable[..., bytes] | None = None
    _ORJSON_ERRORS: tuple[type[Exception], ...] = ()
else:
    _orjson_dumps = orjson.dumps
    _ORJSON_ERRORS = (orjson.JSONEncodeError, TypeError, ValueError, OverflowError)


def _encode_trace(data: Any) -> bytes:
    """One converted trace as compact UTF-8 JSON (orjson when installed, else the stdlib)."""
    if _orjson_dumps is not None:
        try:
            return _orjson_dumps(data, default=str)
        except _ORJSON_ERRORS:
            pass
    text = _dumps(data)
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate in some attribute
        return text.encode("utf-8", "replace")


class _RateLimitedLog:
    """Logs one line per key per interval, then says how many were suppressed."""

    def __init__(self, interval_s: float = _LOG_EVERY_S) -> None:
        self._interval = interval_s
        self._last: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def __call__(self, level: int, key: str, msg: str, *args: Any, exc_info: Any = None) -> None:
        now = time.monotonic()
        with self._lock:
            last, suppressed = self._last.get(key, (-1e18, 0))
            if now - last < self._interval:
                self._last[key] = (last, suppressed + 1)
                return
            self._last[key] = (now, 0)
        if suppressed:
            msg += " (%d similar messages suppressed)"
            args = (*args, suppressed)
        _log.log(level, msg, *args, exc_info=exc_info)


@dataclass
class _Batch:
    """Traces of one session collected on the worker, not yet closed."""

    record: Any
    parts: list[bytes] = field(default_factory=list)
    size: int = 1
    spans: int = 0
    placeholder: bool = False


@dataclass
class _Flush:
    """A flush request travelling through the queue behind the spans it covers."""

    final: bool
    done: threading.Event = field(default_factory=threading.Event)
    seq: int = -1


@dataclass
class _Outbound:
    """A closed batch on its way to the server."""

    seq: int
    header: dict[str, Any]
    payload: bytes | None
    record: Any
    entry: SpoolEntry | None = None

    @property
    def traces(self) -> int:
        return int(self.header.get("traces", 0))


class ExportPipeline(SpanHandoff):
    """Queue, worker and senders that take finished spans to Galileo as per-session batches.

    Args:
        settings: The configuration; built from ``GALILEO_*`` env vars when ``None``.
        client: The :class:`~galileo_otel.api.client.GalileoClient` to send with; one is made
            from ``settings`` when ``None`` (and closed at shutdown).
        tracker: The session tracker; one is made from ``settings`` when ``None``.
        destination: Where to log (an object or mapping with ``project_id``, ``log_stream_id``,
            ``experiment_id``); resolved lazily from ``settings`` on a sender thread when ``None``.
        start: Start the background threads now (else on the first :meth:`start`).
        assembler: The trace assembler; one is made from ``settings`` when ``None``.
        spool: The spool to use in reliable mode; opened at ``settings.spool_path()`` when
            ``None``. Pass ``False`` to run without one.
        backoff_initial_s: First retry delay of reliable mode (doubled per attempt, jittered).
        backoff_max_s: Longest retry delay.
        spool_retry_s: How often spooled batches are tried again while the server is failing.
        first_delay_s: How long a batch waits for more traces after a quiet period.
        exit_timeout_s: Bound of the flush at interpreter exit.
        convert: Turns an assembled trace into a Galileo trace dict; ``convert_trace`` when
            ``None``.
        clock: Monotonic clock in seconds (tests).
        wait: Waits between retries: ``wait(seconds) -> stop requested`` (tests); by default
            an interruptible wait that shutdown ends early.
        shutdown_at_exit: Shut down (bounded by ``exit_timeout_s``) at interpreter exit. A
            pipeline under a ``BatchSpanProcessor`` leaves that to the processor, whose exit
            hook runs later and still has spans to hand over.
    """

    def __init__(
        self,
        settings: GalileoSettings | None = None,
        *,
        client: Any = None,
        tracker: Any = None,
        destination: Any = None,
        start: bool = True,
        assembler: Any = None,
        spool: Spool | bool | None = None,
        convert: Callable[[Any], dict[str, Any]] | None = None,
        backoff_initial_s: float = DEFAULT_BACKOFF_INITIAL_S,
        backoff_max_s: float = DEFAULT_BACKOFF_MAX_S,
        spool_retry_s: float = DEFAULT_SPOOL_RETRY_S,
        first_delay_s: float = DEFAULT_FIRST_DELAY_S,
        exit_timeout_s: float = DEFAULT_EXIT_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float], bool] | None = None,
        shutdown_at_exit: bool = True,
    ) -> None:
        self._settings = settings if settings is not None else GalileoSettings()
        s = self._settings
        self._reliable = bool(s.reliable)
        self._disabled = bool(s.logging_disabled)
        self._max_queue = int(s.max_queue_spans)
        self._max_traces = int(s.batch_max_traces)
        self._max_payload = max(256, int(s.batch_max_bytes) - _ENVELOPE_RESERVE_BYTES)
        self._batch_delay = float(s.batch_delay)
        self._first_delay = min(first_delay_s, self._batch_delay)
        self._in_flight = int(s.max_in_flight)
        # Closed batches not yet on disk, by encoded size: room for a burst while the writer,
        # whose every syscall waits for the GIL behind a busy app thread, catches up.
        self._max_unwritten_bytes = max(_MAX_UNWRITTEN_BYTES, 2 * int(s.batch_max_bytes))
        self._export_timeout = float(s.export_timeout)
        self._backoff_initial = backoff_initial_s
        self._backoff_max = backoff_max_s
        self._policy: Any = None  # the client's RetryPolicy, built at start()
        self._spool_retry = spool_retry_s
        self._exit_timeout = exit_timeout_s
        self._clock = clock
        self._wait_fn = wait
        self._rng = random.Random()
        self._say = _RateLimitedLog()

        self._owns_client = client is None
        self._client = client
        # A tracker the pipeline built for itself is closed at shutdown (its store: files, Redis).
        self._owns_tracker = tracker is None
        self._tracker = tracker
        self._assembler = assembler
        self._convert = convert
        self._destination = _dest_dict(destination) if destination is not None else None
        self._target = {
            "project": s.project,
            "project_id": s.project_id,
            "log_stream": s.log_stream,
            "log_stream_id": s.log_stream_id,
            "experiment_id": s.experiment_id,
        }
        # Which API key a batch was made for: a spool shared with apps that use another key must
        # not send their batches with ours (a 403 would dead-letter them). Only a truncated
        # hash is stored. The URL is left out: a batch spooled while the API was unreachable
        # goes to wherever the next start points.
        key = s.api_key.get_secret_value() if s.api_key is not None else ""
        self._origin = key_fingerprint(key)
        self._spool: Spool | None = None
        # Why the spool is off, for stats(): a reliable pipeline without one loses what it
        # cannot deliver, and the user must be able to see that.
        self._spool_reason = ""
        if isinstance(spool, Spool):
            self._spool = spool
        elif spool is False:
            self._spool_reason = "off (no spool passed)"
        elif not self._reliable:
            self._spool_reason = "off (fire-and-forget mode: GALILEO_RELIABLE=false)"
        elif self._disabled:
            self._spool_reason = "off (export disabled)"
        else:
            self._spool, self._spool_reason = open_spool(
                s.spool_path(),
                origin=self._origin,
                max_bytes=int(s.spool_max_bytes),
                dead_max_bytes=int(s.spool_dead_max_bytes),
                why_off="off (GALILEO_SPOOL_DIR=off)",
            )
        # Conversion counters (truncations...): the converter is handed this dict to count in.
        self.convert_counters: dict[str, int] = {}

        self._started = False
        self._closing = False
        self._shutdown = False
        self._init_runtime()
        self._atexit_hook = _make_exit_hook(weakref.ref(self))
        if shutdown_at_exit:
            atexit.register(self._atexit_hook)
        if hasattr(os, "register_at_fork"):
            ref = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: _after_fork(ref))
        if start:
            self.start()

    # --- runtime state (made again in a forked child) ------------------------------------------
    def _init_runtime(self) -> None:
        self._reset_handoff()
        self._stop = threading.Event()
        # Set when shutdown begins: retry waits end early, so failing batches park in the spool.
        self._hurry = threading.Event()
        # One lock, three conditions, so a wake-up reaches only who can act on it (each wake-up
        # costs a GIL hand-over). _cv: flush waiters and the worker's back-pressure; _cv_send:
        # senders waiting for batches; _cv_write: the spool writer.
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._cv_send = threading.Condition(self._lock)
        self._cv_write = threading.Condition(self._lock)
        self._stats_lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._taken = 0
        self._seq = itertools.count(1)
        self._last_seq = 0
        self._open: dict[str, _Batch] = {}
        self._flush_at: float | None = None
        self._last_flush = -1e18
        self._outbox: deque[_Outbound] = deque()
        self._busy = 0
        # Closed batches the spool writer has not handled yet (flush markers travel along).
        self._to_spool: deque[_Outbound | _Flush] = deque()
        self._unwritten = 0  # encoded bytes in _to_spool
        self._pending: dict[int, int] = {}  # batch seq -> traces, until confirmed or given up
        self._name_seq: dict[str, int] = {}  # spool file name -> seq, for files we made or took
        # (n, seq) of batches given up on, n counting up, so a flush sees only failures after it began.
        self._failed_seqs: deque[tuple[int, int]] = deque(maxlen=4096)
        self._fail_count = 0
        self._held: dict[str, SpoolEntry] = {}
        # Batches put back in the spool after failing (name -> seq); shutdown does not wait.
        self._parked: dict[str, int] = {}
        # Seqs of batches adopted from dead processes: a flush waits for them too.
        self._adopted: set[int] = set()
        # Set once the first adoption pass ran, so a flush right after start covers the backlog.
        self._adoption = threading.Event()
        if self._spool is None:
            self._adoption.set()
        self._next_housekeep = 0.0
        self._spool_usage: dict[str, int] = {}
        self._said_foreign = False
        self._backlog = 0
        self._next_scan = 0.0
        self._scan_backoff = self._spool_retry
        self._spool_files = 0
        self._noted_sessions: set[str] = set()
        self._dest_lock = threading.Lock()
        self._resolved: dict[str, dict[str, Any]] = {}
        self._threads: list[threading.Thread] = []
        self._worker: threading.Thread | None = None
        self._writer: threading.Thread | None = None
        self._final_marker: _Flush | None = None
        self._next_expire = 0.0

    def start(self) -> None:
        """Start the worker and sender threads (idempotent)."""
        if self._started or self._closing or self._disabled:
            return
        self._started = True
        # Build everything now, on the caller's thread: imports and client set-up (pydantic
        # schemas, TLS context) are a one-time cost that must not land in the first burst.
        self._get_assembler()
        self._get_tracker()
        self._get_client()
        from galileo_otel.api.client import RetryPolicy
        from galileo_otel.export import convert  # noqa: F401

        # Reliable mode's waits between attempts: the client's one policy, our backoff bounds.
        self._policy = RetryPolicy(
            max_attempts=1_000_000,  # bounded by export_timeout, not a count
            deadline_s=None,
            backoff_initial_s=self._backoff_initial,
            backoff_max_s=self._backoff_max,
            jitter=0.5,
        )

        if self._spool is not None:
            with contextlib.suppress(OSError):
                self._spool.cleanup()
        self._worker = threading.Thread(target=self._run, name="galileo-otel-worker", daemon=True)
        self._worker.start()
        # File I/O stays off the worker: each syscall gives the GIL away, and a CPU-bound app
        # thread then keeps it for a whole switch interval (5 ms) before the worker gets it back.
        self._writer = threading.Thread(
            target=self._write_loop, name="galileo-otel-spooler", daemon=True
        )
        self._writer.start()
        for i in range(self._in_flight):
            t = threading.Thread(
                target=self._send_loop, name=f"galileo-otel-sender-{i}", daemon=True
            )
            t.start()
            self._threads.append(t)

    # --- the app thread -------------------------------------------------------------------------
    # --- flushing -------------------------------------------------------------------------------
    def force_flush(self, timeout_s: float | None = None) -> bool:
        """Send every trace completed by the spans queued so far and wait for the answers.

        Args:
            timeout_s: Longest wait; ``settings.export_timeout`` when ``None``.

        Returns:
            ``True`` only when every batch made from spans queued before the call was
            confirmed by the server (reliable) or accepted (fire-and-forget). Spans of traces
            whose root has not ended yet are not covered: they ship when their trace completes.
        """
        if self._closing or self._disabled or not self._started:
            return not self._closing and not self._pending_any()
        timeout = self._export_timeout if timeout_s is None else timeout_s
        return self._flush(self._clock() + timeout, final=False)

    def shutdown(self, timeout_s: float | None = None) -> bool:
        """Flush everything (incomplete traces too), then stop; returns within ``timeout_s``.

        In reliable mode with a spool, every queued span is in the spool by the time this
        returns, so what was not confirmed is sent by the next process.

        Returns:
            ``True`` when everything was confirmed (reliable) or accepted (fire-and-forget).
        """
        if self._closing:
            return False
        self._closing = True
        self._hurry.set()
        timeout = self._export_timeout if timeout_s is None else timeout_s
        deadline = self._clock() + max(0.0, timeout)
        ok = True
        if self._started:
            ok = self._flush(deadline, final=True)
        self._shutdown = True
        with contextlib.suppress(ValueError):
            atexit.unregister(self._atexit_hook)
        self._stop.set()
        self._wake.set()
        with self._cv:
            self._cv.notify_all()
            self._cv_send.notify_all()
            self._cv_write.notify_all()
        for thread in [self._worker, self._writer, *self._threads]:
            if thread is not None and thread is not threading.current_thread():
                thread.join(max(0.0, deadline - self._clock()))
        alive = any(t.is_alive() for t in self._threads)
        self._finish_leftovers()
        if self._spool is not None:
            # What is left is anyone's to send now (a process starting later, or another
            # pipeline of this process), not after our lease runs out; a batch still in a
            # stuck sender's hands is disowned when that sender lets go of it.
            with self._cv:
                held = set(self._held)
            try:
                self._spool.disown(keep=held)
            except OSError as exc:
                self._say(logging.WARNING, "spool-close", "galileo-otel: spool: %s", exc)
            if not alive:
                self._spool.close()
        if self._owns_client and self._client is not None and not alive:
            with contextlib.suppress(Exception):
                self._client.close()
        if self._owns_tracker and self._tracker is not None and not alive:
            try:
                self._tracker.close()
            except Exception as exc:
                self._internal_error("tracker close", exc)
        return ok and not self._pending_any()

    def _flush(self, deadline: float, *, final: bool) -> bool:
        marker = _Flush(final=final)
        if final:
            self._final_marker = marker
        with self._cv:
            base = self._fail_count
        self._enqueue_control(marker)
        if not marker.done.wait(max(0.0, deadline - self._clock())):
            return False
        # The backlog adopted at start is part of what a flush delivers.
        if not self._adoption.wait(max(0.0, deadline - self._clock())):
            return False
        with self._cv:
            adopted = set(self._adopted)

            def covered(seq: int) -> bool:
                return seq <= marker.seq or seq in adopted

            self._retry_spooled_now()
            while True:
                parked = set(self._parked.values()) if final else set()
                waiting = [seq for seq in self._pending if covered(seq) and seq not in parked]
                failed = any(n >= base and covered(seq) for n, seq in self._failed_seqs)
                failed = failed or any(covered(seq) for seq in parked)
                if not waiting:
                    return not failed
                left = deadline - self._clock()
                if left <= 0:
                    return False
                self._cv.wait(min(left, 0.5))

    def _pending_any(self) -> bool:
        with self._cv:
            return bool(self._pending or self._queue or self._open or self._to_spool)

    def _retry_spooled_now(self) -> None:
        """Make the worker try spooled batches at once (called with ``_cv`` held)."""
        self._next_scan = 0.0
        self._scan_backoff = self._spool_retry
        self._cv_write.notify()

    # --- stats ----------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Counters since start (cheap, never waits on I/O; safe to call from any thread).

        Spans: ``spans_queued`` (accepted by :meth:`submit`), ``spans_dropped`` (refused), split
        into ``dropped.queue_full`` and ``dropped.shutdown``; ``queue_size`` now.
        Traces (one Galileo trace per OTel trace): ``traces_batched`` (converted into a batch),
        ``traces_sent`` (first send of their batch in this process), ``traces_confirmed`` (2xx
        answer), ``traces_spooled`` (their batch was left in the spool to be sent later: senders
        busy, retries exhausted or shutdown; counted each time), ``traces_dead_lettered``
        (permanent error; also ``dead_lettered.<status>``), ``traces_failed`` (given up without
        a spool, e.g. fire-and-forget; also ``failed.<reason>`` such as ``failed.http_503``,
        ``failed.connection``, ``failed.timeout``), ``traces_pending`` (in batches not yet
        confirmed or given up, now). Requests: ``requests_sent``, ``requests_confirmed``,
        ``requests_retried``. Also ``batches``, ``batches_pending``, ``in_flight``,
        ``errors.<where>`` and the assembler's ``assembler.*``.

        The spool: ``spool_enabled`` and, when off, ``spool_reason``; ``traces_adopted``
        (batches of dead processes taken over), ``traces_handed_over`` (ours, taken over by
        another process after our lease ran out), ``dropped.spool_full`` (traces of batches
        refused by a full spool), ``spool_files`` / ``spool_bytes`` / ``spool_dead_files`` /
        ``spool_dead_bytes`` (whole spool, as of the last look), ``spool_foreign_batches`` and
        ``spool_foreign_traces`` (batches made under another API key, which we skip).

        Every batched trace is exactly one of confirmed, pending, failed, dead-lettered,
        dropped or handed over: ``traces_batched + traces_adopted == traces_confirmed +
        traces_pending + traces_failed + traces_dead_lettered + dropped.spool_full +
        traces_handed_over``. Traces dropped before batching: ``dropped.convert_error``,
        ``dropped.sampled`` (their session record says ``sampled=False``).

        ``sessions`` (the tracker's ``stats()``, when it has one) and ``convert`` (conversion
        counters) are nested dicts.
        """
        with self._stats_lock:
            out: dict[str, Any] = dict(self._counts)
        with self._cv:
            out["batches_pending"] = len(self._pending)
            out["traces_pending"] = sum(self._pending.values())
            out["in_flight"] = self._busy
            usage = dict(self._spool_usage)
        out["spool_enabled"] = self._spool is not None
        if self._spool is None:
            out["spool_reason"] = self._spool_reason
        out["spool_files"] = usage.get("batches", 0)
        out["spool_bytes"] = usage.get("bytes", 0)
        out["spool_dead_files"] = usage.get("dead_batches", 0)
        out["spool_dead_bytes"] = usage.get("dead_bytes", 0)
        out["spool_foreign_batches"] = usage.get("foreign_batches", 0)
        out["spool_foreign_traces"] = usage.get("foreign_traces", 0)
        out["spans_queued"] = self._taken + len(self._queue)
        out["queue_size"] = len(self._queue)
        out["dropped.queue_full"] = self._dropped_full
        out["dropped.shutdown"] = self._dropped_closed + out.get("dropped.shutdown", 0)
        out["spans_dropped"] = self._dropped_full + out["dropped.shutdown"]
        for key in (
            "traces_batched",
            "traces_sent",
            "traces_confirmed",
            "traces_spooled",
            "traces_dead_lettered",
            "traces_failed",
            "traces_adopted",
            "traces_handed_over",
            "dropped.spool_full",
            "dropped.sampled",
            "requests_sent",
            "requests_retried",
            "requests_confirmed",
        ):
            out.setdefault(key, 0)
        if self._assembler is not None:
            with contextlib.suppress(Exception):
                for k, v in self._assembler.stats().items():
                    out[f"assembler.{k}"] = int(v)
        tracker_stats = getattr(self._tracker, "stats", None)
        if callable(tracker_stats):
            with contextlib.suppress(Exception):
                out["sessions"] = dict(tracker_stats())
        out["convert"] = dict(self.convert_counters)
        return out

    def _count(self, key: str, n: int = 1) -> None:
        with self._stats_lock:
            self._counts[key] = self._counts.get(key, 0) + n

    # --- lazy parts -----------------------------------------------------------------------------
    def _get_client(self) -> Any:
        if self._client is None:
            from galileo_otel.api.client import GalileoClient, RetryPolicy

            # The pipeline does its own, interruptible retries; the client tries once.
            policy = RetryPolicy.none() if self._reliable else RetryPolicy.reconnect_once()
            self._client = GalileoClient(
                settings=self._settings, reliable=self._reliable, retry=policy
            )
        return self._client

    def _get_tracker(self) -> Any:
        if self._tracker is None:
            from galileo_otel.sessions.tracker import SessionTracker

            self._tracker = SessionTracker.from_settings(self._settings)
        return self._tracker

    def _get_assembler(self) -> Any:
        if self._assembler is None:
            from galileo_otel.export.assemble import TraceAssembler

            s = self._settings
            self._assembler = TraceAssembler(
                max_spans_per_trace=s.max_spans_per_trace,
                max_open_traces=s.max_open_traces,
                trace_timeout_ns=int(s.trace_timeout * 1e9),
            )
        return self._assembler

    # --- the worker -----------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._work()
        except BaseException as exc:  # pragma: no cover - a bug; say it, never kill the app
            _log.critical("galileo-otel: export worker stopped: %r", exc, exc_info=exc)
            raise

    def _work(self) -> None:
        assembler = self._get_assembler()
        tracker = self._get_tracker()
        from galileo_otel.export.convert import convert_trace as default_convert

        convert_trace = self._convert or default_convert
        queue = self._queue
        while True:
            self._wake.clear()
            self._awake = False
            try:
                for _ in range(_DRAIN_CHUNK):
                    item = queue.popleft()
                    if type(item) is _Flush:
                        self._on_flush(item, assembler, tracker, convert_trace)
                        continue
                    self._taken += 1
                    try:
                        done = assembler.add(item)
                    except Exception as exc:
                        self._internal_error("assemble", exc)
                        continue
                    for trace in done:
                        self._add_trace(trace, tracker, convert_trace)
                more = True
            except IndexError:
                more = False
            now = self._clock()
            if now >= self._next_expire:
                self._next_expire = now + _EXPIRE_EVERY_S
                try:
                    expired = assembler.expire(time.time_ns())
                except Exception as exc:
                    self._internal_error("expire", exc)
                    expired = []
                for trace in expired:
                    self._add_trace(trace, tracker, convert_trace)
            if self._flush_at is not None and now >= self._flush_at:
                self._close_all()
            if self._stop.is_set() and not queue:
                return
            if more:
                continue
            timeout = _EXPIRE_EVERY_S
            if self._flush_at is not None:
                timeout = min(timeout, max(0.0, self._flush_at - self._clock()))
            self._wake.wait(timeout)

    def _on_flush(self, marker: _Flush, assembler: Any, tracker: Any, convert: Any) -> None:
        if marker.final:
            try:
                leftovers = assembler.drain()
            except Exception as exc:
                self._internal_error("drain", exc)
                leftovers = []
            for trace in leftovers:
                self._add_trace(trace, tracker, convert)
        self._close_all()
        marker.seq = self._last_seq
        # Done once the spool writer has handled every batch before it (they are on disk then).
        with self._cv:
            self._to_spool.append(marker)
            self._cv_write.notify()

    def _add_trace(
        self, trace: Any, tracker: Any, convert: Callable[[Any], dict[str, Any]]
    ) -> None:
        try:
            root = trace.root if trace.root is not None else trace.spans[0]
            attrs = span_attributes(root)
            start_ns = root.start_time or 0
            end_ns = root.end_time or start_ns
            record = tracker.session_for_trace(attrs, start_ns, end_ns, root_name=root.name)
            if not getattr(record, "sampled", True):
                # The session was sampled out: none of its traces are sent.
                self._count("dropped.sampled")
                return
            data = convert(trace)
            galileo_id = getattr(record, "galileo_id", None)
            # Until the session exists its local id stands in; the sender swaps it (same length).
            data["session_id"] = galileo_id or record.local_id
            part = _encode_trace(data)
        except Exception as exc:
            self._internal_error("convert", exc)
            self._count("traces_dropped")
            self._count("dropped.convert_error")
            return
        key = record.local_id
        batch = self._open.get(key)
        if batch is not None and batch.parts and batch.size + len(part) + 1 > self._max_payload:
            self._close(key)
            batch = None
        if batch is None:
            batch = self._open[key] = _Batch(record=record)
            if self._flush_at is None:
                now = self._clock()
                self._flush_at = max(now + self._first_delay, self._last_flush + self._batch_delay)
        batch.record = record
        batch.parts.append(part)
        batch.size += len(part) + 1
        batch.spans += len(trace.spans)
        batch.placeholder = batch.placeholder or not galileo_id
        if len(batch.parts) >= self._max_traces or batch.size >= self._max_payload:
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
            self._internal_error("session record", exc)
            session = {}
        header = {
            "v": 1,
            "reliable": self._reliable,
            "session": session,
            "local_id": record.local_id,
            "external_id": getattr(record, "external_id", None),
            "placeholder": batch.placeholder,
            "destination": self._destination,
            "target": self._target,
            "origin": self._origin,
            "traces": len(batch.parts),
            "spans": batch.spans,
        }
        seq = next(self._seq)
        self._last_seq = seq
        out = _Outbound(seq=seq, header=header, payload=payload, record=record)
        self._count("traces_batched", len(batch.parts))
        self._count("batches", 1)
        with self._cv:
            # Memory stays bounded: the worker waits for the writer (the app queue then drops).
            while self._unwritten >= self._max_unwritten_bytes and not self._stop.is_set():
                self._cv.wait(0.5)
            self._unwritten += len(payload)
            self._pending[seq] = out.traces
            self._to_spool.append(out)
            self._cv_write.notify()

    # --- the spool writer -----------------------------------------------------------------------
    def _write_loop(self) -> None:
        while True:
            with self._cv:
                while not self._to_spool:
                    if self._stop.is_set():
                        return
                    now = self._clock()
                    if self._scan_due(now) or self._housekeep_due(now):
                        break
                    self._cv_write.wait(self._scan_wait())
                item = self._to_spool.popleft() if self._to_spool else None
                if isinstance(item, _Outbound):
                    self._unwritten -= len(item.payload or b"")
                    if self._unwritten < self._max_unwritten_bytes:
                        self._cv.notify_all()  # the worker may be waiting for room
            try:
                if isinstance(item, _Flush):
                    item.done.set()
                elif item is not None:
                    self._hand_over(item)
                if self._spool is not None:
                    self._housekeep(self._clock())
                    self._maybe_scan(self._clock())
            except Exception as exc:  # pragma: no cover - a bug; never stop writing
                self._internal_error("spool writer", exc)

    def _hand_over(self, out: _Outbound) -> None:
        """Write a closed batch to the spool (if on), then give it to a sender or leave it."""
        if self._spool is not None:
            try:
                out.entry = self._spool.write(out.header, out.payload or b"[]")
                if out.entry is None:
                    self._spool_full(out)
                    return
            except OSError as exc:
                self._say(
                    logging.WARNING, "spool-write", "galileo-otel: spool write failed: %s", exc
                )
                self._count("spool_write_errors")
        with self._cv:
            if out.entry is not None:
                name = out.entry.name
                self._name_seq[name] = out.seq
                if len(self._outbox) >= self._in_flight:
                    # Senders are busy: the batch waits on disk, not in memory.
                    out.entry.release()
                    self._backlog += 1
                    self._spool_files += 1
                    self._count("traces_spooled", out.traces)
                    return
                self._held[name] = out.entry
                self._outbox.append(out)
                self._cv_send.notify()
                return
            # No spool: memory is bounded by stalling here (then the worker, then the queue).
            while len(self._outbox) >= 2 * self._in_flight and not self._stop.is_set():
                self._cv_write.wait(0.5)
            if self._stop.is_set() and len(self._outbox) >= 2 * self._in_flight:
                self._pending.pop(out.seq, None)
                self._failed_seqs.append((self._fail_count, out.seq))
                self._fail_count += 1
                self._count("traces_failed", out.traces)
                self._count("failed.shutdown", out.traces)
                return
            self._outbox.append(out)
            self._cv_send.notify()

    def _spool_full(self, out: _Outbound) -> None:
        """The spool refused a batch (GALILEO_SPOOL_MAX_BYTES): drop it, count it, never wait."""
        self._say(
            logging.WARNING,
            "spool-full",
            "galileo-otel: spool full (GALILEO_SPOOL_MAX_BYTES=%d): batch of %d traces dropped",
            int(self._settings.spool_max_bytes),
            out.traces,
        )
        self._count("dropped.spool_full", out.traces)
        self._settle(out, ok=False, reason="spool_full")

    def _housekeep_due(self, now: float) -> bool:
        return self._spool is not None and now >= self._next_housekeep and not self._stop.is_set()

    def _housekeep(self, now: float) -> None:
        """Renew our leases, adopt dead processes' batches, notice ours settled elsewhere.

        Runs on the spool-writer thread only (so no batch is claimed while it looks), at start
        and then every ``spool_retry_s`` (at most ``LEASE_S / 4``).
        """
        spool = self._spool
        if spool is None or now < self._next_housekeep:
            return
        self._next_housekeep = now + min(self._spool_retry, LEASE_S / 4)
        with self._cv:
            # Ours on disk and not in a sender's hands: only these can have been taken over.
            idle = {n: q for n, q in self._name_seq.items() if n not in self._held}
        try:
            spool.renew()
            adopted = spool.adopt()
            owned = spool.owned_names() if idle else set()
            usage = spool.usage()
        except OSError as exc:
            self._say(logging.WARNING, "spool-scan", "galileo-otel: spool look failed: %s", exc)
            self._adoption.set()
            return
        handed_over = 0
        with self._cv:
            for name, traces in adopted:
                seq = next(self._seq)
                self._name_seq[name] = seq
                self._pending[seq] = traces
                self._adopted.add(seq)
                self._backlog += 1
            for name, seq in idle.items():
                if name in owned or name in self._held or self._name_seq.get(name) != seq:
                    continue
                self._name_seq.pop(name, None)
                self._parked.pop(name, None)
                handed_over += self._pending.pop(seq, 0)
            self._spool_usage = usage
            if adopted:
                self._retry_spooled_now()
            self._cv.notify_all()
        if adopted:
            n = sum(t for _, t in adopted)
            self._count("traces_adopted", n)
            _log.info(
                "galileo-otel: took over %d spooled batches (%d traces) left by ended processes",
                len(adopted),
                n,
            )
        if handed_over:
            self._count("traces_handed_over", handed_over)
        if usage.get("foreign_batches") and not self._said_foreign:
            self._said_foreign = True
            _log.warning(
                "galileo-otel: the spool %s holds %d batches made with another API key; they are "
                "left for a process using that key (see stats() spool_foreign_batches)",
                spool.path,
                usage["foreign_batches"],
            )
        self._adoption.set()

    def _scan_due(self, now: float) -> bool:
        """Whether idle senders should get spooled batches now (called with ``_cv`` held)."""
        if self._spool is None or self._stop.is_set():
            return False
        if self._in_flight - len(self._outbox) - self._busy <= 0:
            return False
        failing = self._scan_backoff > self._spool_retry
        # While closing, every batch still on disk gets its one attempt without delay.
        return now >= self._next_scan or (self._backlog > 0 and (self._closing or not failing))

    def _scan_wait(self) -> float:
        if self._spool is None:
            return 0.5
        due = min(self._next_scan, self._next_housekeep)
        return min(0.5, max(0.01, due - self._clock()))

    def _maybe_scan(self, now: float) -> None:
        """Feed idle senders with spooled batches: ours left on disk, or another run's."""
        assert self._spool is not None
        with self._cv:
            if not self._scan_due(now):
                return
            room = self._in_flight - len(self._outbox) - self._busy
        try:
            with self._cv:
                skip = set(self._held)
                if self._closing:
                    skip |= set(self._parked)
            entries = self._spool.claim_oldest(room, skip=skip)
        except OSError as exc:
            self._say(logging.WARNING, "spool-scan", "galileo-otel: spool scan failed: %s", exc)
            with self._cv:
                self._next_scan = now + self._scan_backoff  # not again at once
                self._backlog = 0
            return
        with self._cv:
            if not entries:
                self._backlog = 0
                self._spool_files = 0  # none of ours left on disk
                self._next_scan = now + self._scan_backoff
                return
            self._spool_files = max(0, self._spool_files - len(entries))
            for entry in entries:
                seq = self._name_seq.get(entry.name)
                if seq is None or seq not in self._pending:
                    # Ours but not tracked (given up on after an internal error): count it
                    # back in, so the counters still reconcile.
                    seq = next(self._seq)
                    self._name_seq[entry.name] = seq
                    self._pending[seq] = traces = int(entry.header.get("traces", 0))
                    self._count("traces_adopted", traces)
                elif entry.name not in self._parked:
                    self._backlog = max(0, self._backlog - 1)
                self._held[entry.name] = entry
                self._parked.pop(entry.name, None)
                self._outbox.append(
                    _Outbound(seq=seq, header=entry.header, payload=None, record=None, entry=entry)
                )
            self._cv_send.notify(len(entries))

    # --- the senders ----------------------------------------------------------------------------
    def _send_loop(self) -> None:
        while True:
            with self._cv:
                while not self._outbox:
                    if self._stop.is_set():
                        return
                    self._cv_send.wait(0.5)
                out = self._outbox.popleft()
                self._busy += 1
                if self._spool is None:
                    self._cv_write.notify()  # room in the outbox for the writer
            try:
                if self._stop.is_set() and out.entry is not None:
                    self._leave_in_spool(out, retried=False)
                elif self._reliable:
                    self._deliver_reliable(out)
                else:
                    self._deliver_once(out)
            except Exception as exc:
                self._internal_error("deliver", exc)
                if out.entry is not None and out.entry.claimed:
                    self._leave_in_spool(out, retried=True, reason="internal")
                else:
                    self._settle(out, ok=False, reason="internal")
            finally:
                with self._cv:
                    self._busy -= 1
                    last_out = self._shutdown and self._busy == 0
                    if self._backlog or self._closing or self._spool_files:
                        self._cv_write.notify()  # a sender is free: the writer may feed it
                if last_out and self._spool is not None:
                    self._spool.close()  # the last sender that outlived shutdown

    def _deliver_reliable(self, out: _Outbound) -> None:
        from galileo_otel.api.client import RetryPolicy

        deadline = self._clock() + self._export_timeout
        attempt = 0
        first = True
        while True:
            try:
                dest = self._destination_for(out.header)
                session_id = self._session_id_for(out, dest, max(0.05, deadline - self._clock()))
                traces_json = self._traces_json(out, session_id)
                if first:
                    self._count("traces_sent", out.traces)
                    first = False
                self._count("requests_sent")
                left = deadline - self._clock()
                self._post(dest, out, session_id, traces_json, RetryPolicy.none(), max(0.05, left))
            except ConfigError as exc:
                # No API key, say: nothing to retry now; the batch waits for a fixed start.
                self._say(
                    logging.ERROR,
                    "config",
                    "galileo-otel: not sending traces: %s; %s",
                    exc,
                    "they wait in the spool" if out.entry else "they are dropped",
                )
                self._leave_in_spool(out, retried=True, reason="config")
                return
            except (APIError, TimeoutError) as exc:
                if isinstance(exc, TimeoutError):
                    # Another thread or process is still creating this batch's session.
                    exc = APIError(f"session creation pending: {exc}", retryable=True)
                if RetryPolicy.is_permanent(exc):
                    self._dead_letter(out, exc)
                    return
                attempt += 1
                # The client's policy decides (one policy for the package); the wait is ours,
                # interruptible by shutdown. No wait (a Retry-After too long): park it now.
                wait = self._policy.delay_for(exc, attempt, self._rng.random())
                # While shutting down, a failing batch goes back to the spool at once: the next
                # process sends it, and shutdown need not wait out the retries.
                closing = self._closing and out.entry is not None
                if (
                    wait is None
                    or closing
                    or self._stop.is_set()
                    or self._clock() + wait >= deadline
                ):
                    self._say(
                        logging.WARNING,
                        "undelivered",
                        "galileo-otel: batch of %d traces not delivered (%s); %s",
                        out.traces,
                        _describe(exc),
                        "kept in the spool for a later retry" if out.entry else "dropped",
                    )
                    self._leave_in_spool(
                        out, retried=True, reason=_reason(exc), not_before_s=exc.retry_after
                    )
                    return
                self._count("requests_retried")
                if (self._wait_fn or self._hurry.wait)(wait) or self._stop.is_set():
                    self._leave_in_spool(out, retried=True, reason="shutdown")
                    return
                continue
            self._confirmed(out)
            return

    def _deliver_once(self, out: _Outbound) -> None:
        from galileo_otel.api.client import RetryPolicy

        once = RetryPolicy.reconnect_once()
        try:
            dest = self._destination_for(out.header)
            session_id = self._session_id_for(out, dest, self._export_timeout)
            traces_json = self._traces_json(out, session_id)
            self._count("traces_sent", out.traces)
            self._count("requests_sent")
            self._post(dest, out, session_id, traces_json, once, None)
        except ConfigError as exc:
            self._say(logging.ERROR, "config", "galileo-otel: not sending traces: %s", exc)
            self._count("traces_failed", out.traces)
            self._count("failed.config", out.traces)
            self._settle(out, ok=False, reason="config")
            return
        except (APIError, TimeoutError) as exc:
            if isinstance(exc, TimeoutError):
                exc = APIError(f"session creation pending: {exc}", retryable=True)
            if RetryPolicy.is_permanent(exc):
                self._dead_letter(out, exc)
                return
            reason = _reason(exc)
            self._say(
                logging.WARNING,
                "ff-failed",
                "galileo-otel: batch of %d traces lost (fire-and-forget): %s",
                out.traces,
                _describe(exc),
            )
            self._count("traces_failed", out.traces)
            self._count(f"failed.{reason}", out.traces)
            self._settle(out, ok=False, reason=reason)
            return
        self._confirmed(out)

    def _post(
        self,
        dest: Mapping[str, Any],
        out: _Outbound,
        session_id: str,
        traces_json: bytes,
        retry: Any,
        timeout: float | None,
    ) -> None:
        """Hand the encoded traces to the client: api/ owns the path and the envelope."""
        timeout = None if timeout is None else min(timeout, float(self._settings.read_timeout))
        experiment_id = dest.get("experiment_id") or None
        self._get_client().log_traces_encoded(
            traces_json,
            project_id=str(dest["project_id"]),
            session_id=session_id,
            session_external_id=out.header.get("external_id") or None,
            reliable=self._reliable,
            log_stream_id=None if experiment_id else dest.get("log_stream_id"),
            experiment_id=experiment_id,
            retry=retry,
            timeout=timeout,
        )

    def _destination_for(self, header: Mapping[str, Any]) -> dict[str, Any]:
        dest = header.get("destination")
        if dest and dest.get("project_id"):
            return dict(dest)
        target = dict(header.get("target") or self._target)
        if target.get("project_id") and (
            target.get("log_stream_id") or target.get("experiment_id")
        ):
            return {
                "project_id": target["project_id"],
                "log_stream_id": target.get("log_stream_id"),
                "experiment_id": target.get("experiment_id"),
            }
        key = json.dumps(target, sort_keys=True)
        with self._dest_lock:
            known = self._resolved.get(key)
            if known is None:
                resolved = self._get_client().resolve_destination(
                    project=target.get("project"),
                    project_id=target.get("project_id"),
                    log_stream=target.get("log_stream"),
                    log_stream_id=target.get("log_stream_id"),
                    experiment_id=target.get("experiment_id"),
                    create=bool(self._settings.create_missing),
                )
                known = self._resolved[key] = _dest_dict(resolved)
            return dict(known)

    def _session_id_for(
        self, out: _Outbound, dest: Mapping[str, Any], timeout_s: float | None
    ) -> str:
        record = out.record
        if record is None:
            from galileo_otel.sessions.tracker import SessionRecord

            record = out.record = SessionRecord.from_dict(out.header["session"])
        galileo_id: str | None = getattr(record, "galileo_id", None)
        local_id = out.header.get("local_id") or record.local_id
        if not galileo_id and self._spool is not None:
            galileo_id = self._spool.known_session(local_id)
            if galileo_id:
                with contextlib.suppress(Exception):
                    record.galileo_id = galileo_id
        if galileo_id:
            return galileo_id
        client = self._get_client()
        reliable = self._reliable

        def create(payload: Mapping[str, Any]) -> str:
            response = client.create_session(
                **payload,
                project_id=dest["project_id"],
                log_stream_id=dest.get("log_stream_id"),
                experiment_id=dest.get("experiment_id"),
                reliable=reliable,
            )
            return str(response.id)

        galileo_id = str(self._get_tracker().ensure_created(record, create, timeout_s=timeout_s))
        if self._spool is not None and local_id not in self._noted_sessions:
            self._spool.note_session(local_id, galileo_id)
            self._noted_sessions.add(local_id)
        return galileo_id

    def _traces_json(self, out: _Outbound, session_id: str) -> bytes:
        """The batch's encoded traces, the local stand-in id swapped for the Galileo one."""
        payload = out.payload
        if payload is None:
            assert out.entry is not None
            payload = out.entry.payload()
        local_id = out.header.get("local_id")
        if out.header.get("placeholder") and local_id and local_id != session_id:
            payload = payload.replace(local_id.encode(), session_id.encode())
        return payload

    # --- outcomes -------------------------------------------------------------------------------
    def _confirmed(self, out: _Outbound) -> None:
        self._count("traces_confirmed", out.traces)
        self._count("requests_confirmed")
        if out.entry is not None:
            out.entry.delete()
        with self._cv:
            was_failing = self._scan_backoff > self._spool_retry or self._spool_files > 0
            if was_failing:
                # The server answers again: send what waits in the spool now.
                self._retry_spooled_now()
        self._settle(out, ok=True)

    def _dead_letter(self, out: _Outbound, exc: APIError) -> None:
        status = exc.status_code
        where = "dropped (no spool)"
        error = {
            "status_code": status,
            "message": exc.message,
            "detail": exc.detail,
            "time": time.time(),
        }
        if self._spool is not None:
            try:
                if out.entry is not None:
                    where = str(self._spool.dead_letter(out.entry, error))
                elif self._reliable:
                    payload = out.payload if out.payload is not None else b"[]"
                    where = str(self._spool.dead_letter_new(out.header, payload, error))
            except OSError as exc2:
                where = f"lost (could not write dead letter: {exc2})"
        self._say(
            logging.ERROR,
            f"dead-{status}",
            "galileo-otel: Galileo rejected a batch of %d traces (HTTP %s): %s; not retried, %s",
            out.traces,
            status,
            _describe(exc),
            f"set aside in {where}" if where.startswith("/") else where,
        )
        self._count("traces_dead_lettered", out.traces)
        self._count(f"dead_lettered.{status}", out.traces)
        self._settle(out, ok=False, reason=f"http_{status}")

    def _leave_in_spool(
        self,
        out: _Outbound,
        *,
        retried: bool,
        reason: str = "shutdown",
        not_before_s: float | None = None,
    ) -> None:
        if out.entry is None:
            # Reliable mode without a spool: the batch is gone, say so in the counts.
            self._count("traces_failed", out.traces)
            self._count(f"failed.{reason}", out.traces)
            self._settle(out, ok=False, reason=reason)
            return
        out.entry.release()
        self._count("traces_spooled", out.traces)
        if self._shutdown and self._spool is not None:
            # A sender that outlived shutdown lets go of its batch: the next process takes it.
            with contextlib.suppress(OSError):
                self._spool.disown()
        with self._cv:
            self._held.pop(out.entry.name, None)
            self._spool_files += 1
            if retried:
                self._parked[out.entry.name] = out.seq
                # The next try of the spool honours the server's Retry-After, if longer.
                wait = max(self._scan_backoff, not_before_s or 0.0)
                self._next_scan = max(self._next_scan, self._clock() + wait)
                self._scan_backoff = min(DEFAULT_SPOOL_RETRY_MAX_S, self._scan_backoff * 2)
            self._cv.notify_all()
            self._cv_write.notify()

    def _settle(self, out: _Outbound, *, ok: bool, reason: str = "") -> None:
        with self._cv:
            if out.entry is not None:
                self._held.pop(out.entry.name, None)
                self._parked.pop(out.entry.name, None)
                self._name_seq.pop(out.entry.name, None)
            self._pending.pop(out.seq, None)
            if not ok:
                self._failed_seqs.append((self._fail_count, out.seq))
                self._fail_count += 1
            self._cv.notify_all()

    def _internal_error(self, where: str, exc: BaseException) -> None:
        self._count(f"errors.{where}")
        self._say(
            logging.ERROR,
            f"internal-{where}",
            "galileo-otel: internal error in %s: %r",
            where,
            exc,
            exc_info=exc,
        )

    def _finish_leftovers(self) -> None:
        """After shutdown: spool what the writer missed, release idle claims, count the rest."""
        while True:
            with self._cv:
                item = self._to_spool.popleft() if self._to_spool else None
            if item is None:
                break
            if isinstance(item, _Flush):
                item.done.set()
                continue
            out = item
            if self._spool is not None:
                try:
                    entry = self._spool.write(out.header, out.payload or b"[]")
                    if entry is None:
                        self._spool_full(out)
                        continue
                    entry.release()
                    self._count("traces_spooled", out.traces)
                    continue
                except OSError as exc:
                    self._say(
                        logging.WARNING, "spool-write", "galileo-otel: spool write failed: %s", exc
                    )
            self._count("traces_failed", out.traces)
            self._count("failed.shutdown", out.traces)
            self._settle(out, ok=False, reason="shutdown")
        with self._cv:
            waiting = list(self._outbox)
            self._outbox.clear()
        for out in waiting:
            if out.entry is not None:
                self._leave_in_spool(out, retried=False)
            else:
                self._count("traces_failed", out.traces)
                self._count("failed.shutdown", out.traces)
                self._settle(out, ok=False, reason="shutdown")
        left = sum(1 for item in list(self._queue) if not isinstance(item, _Flush))
        marker = self._final_marker
        if marker is not None and not marker.done.is_set():
            # The worker did not get through the queue in time: what it still holds (open
            # traces, open batches) is lost too. Read from here while it may still run: counted
            # as well as can be, never silently.
            with contextlib.suppress(Exception):
                left += int(self._get_assembler().stats().get("open_spans", 0))
            with contextlib.suppress(RuntimeError):  # changed size while we looked
                left += sum(batch.spans for batch in list(self._open.values()))
        if left:
            self._count("dropped.shutdown", left)

    # --- fork -----------------------------------------------------------------------------------
    def _after_fork_in_child(self) -> None:
        """A forked child gets an empty queue and its own threads; the parent's work stays."""
        held = list(self._held.values())
        was_started = self._started
        self._init_runtime()
        for entry in held:
            entry.forget()
        self._assembler = None
        if self._owns_client:
            self._client = None
        self._started = False
        if was_started and not self._shutdown:
            self.start()


def _make_exit_hook(ref: weakref.ReferenceType[ExportPipeline]) -> Callable[[], None]:
    def hook() -> None:
        pipeline = ref()
        if pipeline is not None and not pipeline._closing:
            with contextlib.suppress(Exception):
                pipeline.shutdown(pipeline._exit_timeout)

    return hook


def _after_fork(ref: weakref.ReferenceType[ExportPipeline]) -> None:
    pipeline = ref()
    if pipeline is not None:
        with contextlib.suppress(Exception):
            pipeline._after_fork_in_child()


def _dest_dict(dest: Any) -> dict[str, Any]:
    if isinstance(dest, Mapping):
        get = dest.get
    else:

        def get(name: str, default: Any = None) -> Any:
            return getattr(dest, name, default)

    out = {
        "project_id": get("project_id"),
        "log_stream_id": get("log_stream_id"),
        "experiment_id": get("experiment_id"),
    }
    return {k: (str(v) if v is not None else None) for k, v in out.items()}


def _reason(exc: APIError) -> str:
    if exc.status_code is not None:
        return f"http_{exc.status_code}"
    return "timeout" if isinstance(exc, APITimeoutError) else "connection"


def _describe(exc: APIError) -> str:
    detail = exc.detail
    if detail is None or detail == exc.message:
        return exc.message
    text = detail if isinstance(detail, str) else json.dumps(detail, default=str)
    return f"{exc.message}: {text[:500]}"
