"""ExportPipeline: the wiring of the export stages, their threads, locks and lifecycle.

The path of a span, one module per stage::

    app thread   submit()            handoff.py   one deque append and a length check
    worker       assemble, session,  batch.py     CPU only, never waits on I/O
                 convert, encode,
                 batch per session
    spooler      write, adopt,       spooler.py   the spool (spool.py) is the durable queue
                 lease, feed senders
    senders x N  send, retry,        deliver.py   through the sink (sink.py: GalileoSink ->
                 confirm, dead-letter                 api/); N = max_in_flight

Threads: one worker, one spooler, ``max_in_flight`` senders, started by :meth:`start` (the
first configure() or processor), stopped by :meth:`shutdown`. Locks (all state below is made
in ``_init_runtime``, again in a forked child):

* ``_lock`` with its three conditions ``_cv`` (flush waiters, the worker's back-pressure),
  ``_cv_send`` (senders waiting for batches) and ``_cv_write`` (the spooler): guards the
  batches between stages and their bookkeeping (``_to_spool``, ``_outbox``, ``_pending``,
  ``_held``, ``_parked``, ``_name_seq``, ``_adopted``, ``_sent``, the losses no flush has
  reported yet, scan timers). Never held across I/O.
* The counters' own lock (``stats.py``).
* The sink's own (``sink.py``: the destinations it resolved).
* The spool's own lock (its one SQLite connection) and the rate-limited logger's.

The app thread takes none of them: ``submit`` touches only the deque and an Event.

Reliable mode (``reliable=True``): each closed batch is first written to the spool (when on),
then sent and awaited; retried per the one RetryPolicy (api/retry.py) until ``export_timeout``; a batch
still undelivered stays in the spool, for a later try or the next process. Fire-and-forget mode
(``reliable=False``): one request (plus one reconnect), failures counted. Both: permanent
errors (400, 401, 403, 404, 422) are never retried; in reliable mode the batch becomes a dead
letter in the spool.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import logging
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from galileo_otel.api.retry import RetryPolicy
from galileo_otel.api.suppress import suppressed
from galileo_otel.export._stage import Batch, Flush, Outbound, RateLimitedLog
from galileo_otel.export.batch import BatchStage
from galileo_otel.export.convert import ConvertStats
from galileo_otel.export.deliver import DeliveryStage
from galileo_otel.export.handoff import SpanHandoff
from galileo_otel.export.hooks import weak_call
from galileo_otel.export.sink import GalileoSink, Sink, dest_dict
from galileo_otel.export.spool import Spool, SpoolEntry, key_fingerprint, open_spool
from galileo_otel.export.spooler import SpoolStage
from galileo_otel.export.stats import Counters, merge_spans, spool_figures
from galileo_otel.settings import GalileoSettings

__all__ = [
    "DEFAULT_BACKOFF_INITIAL_S",
    "DEFAULT_BACKOFF_MAX_S",
    "DEFAULT_EXIT_TIMEOUT_S",
    "DEFAULT_FIRST_DELAY_S",
    "DEFAULT_SPOOL_RETRY_S",
    "ExportPipeline",
]

_log = logging.getLogger(__name__)

# Reliable mode's waits between attempts: the package's one RetryPolicy's numbers.
DEFAULT_BACKOFF_INITIAL_S = RetryPolicy.backoff_initial_s
DEFAULT_BACKOFF_MAX_S = RetryPolicy.backoff_max_s
DEFAULT_SPOOL_RETRY_S = 5.0
DEFAULT_FIRST_DELAY_S = 0.05
DEFAULT_EXIT_TIMEOUT_S = 5.0

# Room kept in batch_max_bytes for the request envelope around the traces array.
_ENVELOPE_RESERVE_BYTES = 1024
_MAX_UNWRITTEN_BYTES = 32 * 1024 * 1024
# Lost batches remembered until a flush reports them (ints: ~6 MB at the bound).
_MAX_LOST = 100_000


class ExportPipeline(SpanHandoff, BatchStage, SpoolStage, DeliveryStage):
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
        sink: Where batches go (see :mod:`galileo_otel.export.sink`); a
            :class:`~galileo_otel.export.sink.GalileoSink` over ``client`` when ``None``. A
            sink passed in is the caller's to close.
    """

    # The app thread reads each span into a record of builtins (handoff.py): a queued SDK span
    # would survive into the collector's old generations and cost the app in full GC passes.
    _queue_records = True

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
        sink: Sink | None = None,
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
        # Reliable mode's retries: bounded by export_timeout, not by a count.
        self._policy = RetryPolicy(
            max_attempts=1_000_000,
            deadline_s=self._export_timeout if self._export_timeout > 0 else None,
            backoff_initial_s=backoff_initial_s,
            backoff_max_s=backoff_max_s,
            jitter=0.5,
        )
        self._spool_retry = spool_retry_s
        self._exit_timeout = exit_timeout_s
        self._clock = clock
        self._wait_fn = wait
        self._rng = random.Random()
        self._say = RateLimitedLog()

        # A tracker the pipeline built for itself is closed at shutdown (its store: files, Redis).
        self._owns_tracker = tracker is None
        self._tracker = tracker
        self._assembler = assembler
        self._convert = convert
        self._destination = dest_dict(destination) if destination is not None else None
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
        # Written once, under _lock, by the spooler thread that opens it (None -> the spool)
        # before any batch is handed to a sender; read without a lock everywhere after.
        self._spool: Spool | None = None
        self._owns_sink = sink is None
        self._sink: Sink = sink or GalileoSink(
            s,
            reliable=self._reliable,
            tracker=self._get_tracker,
            spool=self._current_spool,
            client=client,
            clock=clock,
            target=self._target,
        )
        # The spool is opened by the spooler thread, never on the caller's: opening may wait
        # up to SQLite's busy timeout while another process holds the write lock. Until then
        # _spool is None and _spool_path says where it will be (set once, then cleared).
        self._spool_path: Path | None = None
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
        elif (path := s.spool_path()) is None:
            self._spool_reason = "off (GALILEO_SPOOL_DIR=off)"
        else:
            self._spool_path = path
            self._spool_reason = "not open yet (the spooler thread opens it at start)"
        # What conversion cut or folded (size caps, duplicate llm spans): written by the worker
        # thread only, read whole by stats().
        self.convert_stats = ConvertStats()

        self._started = False
        self._closing = False
        self._shutdown = False
        self._init_runtime()
        self._atexit_hook = weak_call(self._at_exit)
        if shutdown_at_exit:
            atexit.register(self._atexit_hook)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=weak_call(self._after_fork_in_child))
        if start:
            self.start()

    # --- runtime state (made again in a forked child) ------------------------------------------
    def _init_runtime(self) -> None:
        """All runtime state, grouped by what guards it (see the module docstring)."""
        self._reset_handoff()  # the app's queue: a deque and an Event, no lock
        # Lifecycle events: _stop ends the threads; _hurry (shutdown began) cuts retry waits
        # short so failing batches park in the spool; _adoption: first backlog pass done.
        self._stop = threading.Event()
        self._hurry = threading.Event()
        self._adoption = threading.Event()
        if self._spool is None and self._spool_path is None:
            self._adoption.set()
        self._threads: list[threading.Thread] = []
        self._worker: threading.Thread | None = None
        self._writer: threading.Thread | None = None

        # --- the worker's own: no lock, only the worker thread writes them. _open and _taken
        # are also read, without a lock, by stats() and shutdown's leftover count (a dict's
        # truth value and a copy of its values: atomic under the GIL, a count at worst stale).
        self._taken = 0  # spans taken off the queue
        self._open: dict[str, Batch] = {}  # open batch per session
        self._flush_at: float | None = None
        self._last_flush = -1e18
        self._next_expire = 0.0
        self._last_seq = 0

        # --- the shutdown caller's own: set by its final flush, read by it afterwards ---
        self._final_marker: Flush | None = None

        # --- guarded by _lock: one lock, three conditions, so a wake-up reaches only who can
        # act on it (each wake-up costs a GIL hand-over) ---
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._cv_send = threading.Condition(self._lock)
        self._cv_write = threading.Condition(self._lock)
        self._seq = itertools.count(1)  # batch numbers, in closing order
        self._to_spool: deque[Outbound | Flush] = deque()  # closed, for the spooler
        self._unwritten = 0  # encoded bytes in _to_spool
        self._outbox: deque[Outbound] = deque()  # for the senders
        self._busy = 0  # senders sending now
        self._pending: dict[int, int] = {}  # batch seq -> traces, until confirmed or given up
        self._name_seq: dict[str, int] = {}  # spool row name -> seq, rows we made or adopted
        # Batches given up on (lost) that no flush has reported yet: a flush whose scope holds
        # one returns False and so reports it; losses from before the flush call count too.
        self._lost: set[int] = set()
        # Past _MAX_LOST tracked losses, the highest seq not tracked: every flush that does not
        # cover it returns False (never a True that could be a lie).
        self._lost_overflow = 0
        self._held: dict[str, SpoolEntry] = {}  # rows in a sender's hands
        self._parked: dict[str, int] = {}  # rows back on disk after failing; shutdown won't wait
        self._adopted: set[int] = set()  # seqs adopted from ended processes; flushes wait
        self._sent: set[int] = set()  # seqs counted in traces_sent, until settled
        self._backlog = 0  # rows of ours on disk that idle senders should take
        self._next_scan = 0.0
        self._scan_backoff = self._spool_retry
        self._spool_files = 0
        self._spool_usage: dict[str, int] = {}  # the spool's size, as of the last look

        # --- the spooler's own ---
        self._next_housekeep = 0.0
        self._next_compact = 0.0
        self._said_foreign = False

        # --- counters (their own lock) ---
        self._counters = Counters()

    def start(self) -> None:
        """Start the worker and sender threads (idempotent)."""
        if self._started or self._closing or self._disabled:
            return
        self._started = True
        # Build everything now, on the caller's thread: imports and client set-up (pydantic
        # schemas, TLS context) are a one-time cost that must not land in the first burst.
        self._get_assembler()
        self._get_tracker()
        if isinstance(self._sink, GalileoSink):
            self._sink.prepare()
        from galileo_otel.export import convert  # noqa: F401

        self._worker = threading.Thread(
            target=suppressed(self._run), name="galileo-otel-worker", daemon=True
        )
        self._worker.start()
        # File I/O stays off the worker: each syscall gives the GIL away, and a CPU-bound app
        # thread then keeps it for a whole switch interval (5 ms) before the worker gets it back.
        self._writer = threading.Thread(
            target=suppressed(self._spooler_main), name="galileo-otel-spooler", daemon=True
        )
        self._writer.start()
        # The senders start with the first batch to send (_need_senders).

    def _spooler_main(self) -> None:
        """The spooler thread: open the spool (first, so every batch sees it), then write."""
        try:
            self._open_spool()
        except Exception as exc:  # pragma: no cover - a bug; run without a spool, say it
            self._internal_error("spool open", exc)
            with self._cv:
                self._spool_path = None
                self._spool_reason = f"unusable: {exc!r}"
                self._adoption.set()
        self._write_loop()

    def _open_spool(self) -> None:
        path = self._spool_path
        if path is None:
            return
        spool, reason = open_spool(
            path,
            origin=self._origin,
            max_bytes=int(self._settings.spool_max_bytes),
            dead_max_bytes=int(self._settings.spool_dead_max_bytes),
            why_off="off (GALILEO_SPOOL_DIR=off)",
        )
        if spool is not None:
            with contextlib.suppress(OSError):
                spool.cleanup()
        with self._cv:
            self._spool, self._spool_reason, self._spool_path = spool, reason, None
            if spool is None:
                self._adoption.set()  # no backlog to adopt: flushes need not wait for one

    # --- flushing -------------------------------------------------------------------------------
    @suppressed  # the caller's thread may touch the spool (SQLite): never traced
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
            return not self._closing and not self._pending_any() and not self._any_lost()
        timeout = self._export_timeout if timeout_s is None else timeout_s
        return self._flush(self._clock() + timeout, final=False)

    @suppressed
    def checkpoint(self, timeout_s: float) -> bool:
        """Wait like :meth:`force_flush`; ``True`` once everything queued before is settled.

        Settled means confirmed or given up: losses are neither counted nor reported here, so
        the app's next :meth:`force_flush` still says False for them. The worker process uses
        this to know which spans its parent need not replay.
        """
        if self._closing or self._disabled or not self._started:
            return not self._closing and not self._pending_any()
        return self._flush(self._clock() + timeout_s, final=False, report=False)

    @suppressed
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
        if self._owns_sink and not alive:
            with contextlib.suppress(Exception):
                self._sink.close()
        if self._owns_tracker and self._tracker is not None and not alive:
            try:
                self._tracker.close()
            except Exception as exc:
                self._internal_error("tracker close", exc)
        return ok and not self._pending_any()

    def _flush(self, deadline: float, *, final: bool, report: bool = True) -> bool:
        marker = Flush(final=final)
        if final:
            self._final_marker = marker
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
                left = deadline - self._clock()
                if not waiting or left <= 0:
                    break
                self._cv.wait(left)  # every settled batch notifies
            # Losses in scope, whenever they happened (before the call too), make it False;
            # saying False reports them, so a later flush is judged on its own scope.
            if not report:
                return not waiting
            lost = [seq for seq in self._lost if covered(seq)]
            self._lost.difference_update(lost)
            failed = bool(lost) or any(covered(seq) for seq in parked)
            if self._lost_overflow:
                failed = True
                if marker.seq >= self._lost_overflow:
                    self._lost_overflow = 0
        self._refresh_spool_usage()
        return not (waiting or failed)

    def _refresh_spool_usage(self) -> None:
        """Read the spool's size now: stats() after a flush shows the spool as the flush left it."""
        spool = self._spool
        if spool is None:
            return
        try:
            usage = spool.usage()
        except OSError as exc:
            self._say(logging.WARNING, "spool-scan", "galileo-otel: spool look failed: %s", exc)
            return
        with self._cv:
            self._spool_usage = usage

    def _pending_any(self) -> bool:
        with self._cv:
            return bool(self._pending or self._queue or self._open or self._to_spool)

    def _any_lost(self) -> bool:
        with self._cv:
            return bool(self._lost or self._lost_overflow)

    def _note_lost(self, seq: int) -> None:
        """Remember a batch given up on until a flush reports it (called with ``_cv`` held)."""
        if len(self._lost) < _MAX_LOST:
            self._lost.add(seq)
        else:
            self._lost_overflow = max(self._lost_overflow, seq)

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
        ``spool_foreign_traces`` (batches made under another API key, which we skip),
        ``spool_disk_bytes`` (the directory on disk: what ``spool_max_bytes`` bounds),
        ``spool_dead_dropped`` / ``spool_dead_evicted`` (dead letters that did not fit the cap /
        were removed to make room, in this process).

        Every batched trace is exactly one of confirmed, pending, failed, dead-lettered,
        dropped or handed over: ``traces_batched + traces_adopted == traces_confirmed +
        traces_pending + traces_failed + traces_dead_lettered + dropped.spool_full +
        traces_handed_over``. Traces dropped before batching: ``dropped.convert_error``,
        ``dropped.sampled`` (their session record says ``sampled=False``).

        ``sessions`` (the tracker's ``stats()``, when it has one) and ``convert`` (conversion
        counters) are nested dicts.
        """
        out = self._counters.snapshot()
        with self._cv:
            out["batches_pending"] = len(self._pending)
            out["traces_pending"] = sum(self._pending.values())
            out["in_flight"] = self._busy
            usage = dict(self._spool_usage)
        out["spool_enabled"] = self._spool is not None
        if self._spool is None:
            out["spool_reason"] = self._spool_reason
        out.update(spool_figures(usage))
        queued = sum(1 for item in list(self._queue) if type(item) is not Flush)
        merge_spans(
            out,
            taken=self._taken,
            queued=queued,
            dropped_full=self._dropped_full,
            dropped_closed=self._dropped_closed,
        )
        if self._assembler is not None:
            with contextlib.suppress(Exception):
                for k, v in self._assembler.stats().items():
                    out[f"assembler.{k}"] = int(v)
        tracker_stats = getattr(self._tracker, "stats", None)
        if callable(tracker_stats):
            with contextlib.suppress(Exception):
                for k, v in dict(tracker_stats()).items():
                    out[f"sessions.{k}"] = v
        for k, v in self.convert_stats.as_dict().items():
            out[f"convert.{k}"] = v
        return out

    def _count(self, key: str, n: int = 1) -> None:
        self._counters.add(key, n)

    # --- lazy parts -----------------------------------------------------------------------------
    def _current_spool(self) -> Spool | None:
        return self._spool

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

    # --- shared by the stages ------------------------------------------------------------------

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

    # --- exit and fork ---------------------------------------------------------------------------
    def _at_exit(self) -> None:
        """At interpreter exit: shut down, bounded by ``exit_timeout_s``."""
        if not self._closing:
            self.shutdown(self._exit_timeout)

    def _after_fork_in_child(self) -> None:
        """A forked child gets an empty queue and its own threads; the parent's work stays."""
        held = list(self._held.values())
        was_started = self._started
        self._say = RateLimitedLog()  # its lock may have been held by a parent thread
        self._init_runtime()
        for entry in held:
            entry.forget()
        self._assembler = None
        if isinstance(self._sink, GalileoSink):
            self._sink.after_fork()
        self._started = False
        if was_started and not self._shutdown:
            self.start()
