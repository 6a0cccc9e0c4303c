"""ExportPipeline: composes the export objects and runs their lifecycle.

Which object owns which thread and lock is in the package docstring (:mod:`galileo_otel.export`);
each module documents its own. The worker and the spooler start with
:meth:`ExportPipeline.start`, the senders with the first batch to send; all end at
:meth:`ExportPipeline.shutdown`. The numbers the objects are built with come from
:class:`~galileo_otel.export.config.PipelineConfig`, read by each object's own ``for_config``
(``Ledger``, ``Spooler``, ``SenderPool``, ``Batcher``): this module only wires them together.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

from galileo_otel.api.suppress import suppressed
from galileo_otel.export._stage import Flush, LazyTracker, RateLimitedLog, Report
from galileo_otel.export.batcher import Batcher
from galileo_otel.export.config import (
    DEFAULT_BACKOFF_INITIAL_S,
    DEFAULT_BACKOFF_MAX_S,
    DEFAULT_EXIT_TIMEOUT_S,
    DEFAULT_FIRST_DELAY_S,
    DEFAULT_SPOOL_RETRY_S,
    PipelineConfig,
)
from galileo_otel.export.convert import ConvertStats
from galileo_otel.export.handoff import SpanHandoff
from galileo_otel.export.hooks import ProcessHooks
from galileo_otel.export.ledger import Ledger
from galileo_otel.export.senders import SenderPool
from galileo_otel.export.sink import GalileoSink, Sink
from galileo_otel.export.spool import Spool
from galileo_otel.export.spooler import Spooler, spool_plan
from galileo_otel.export.stats import Counters, pipeline_snapshot
from galileo_otel.settings import GalileoSettings

__all__ = [
    "DEFAULT_BACKOFF_INITIAL_S",
    "DEFAULT_BACKOFF_MAX_S",
    "DEFAULT_EXIT_TIMEOUT_S",
    "DEFAULT_FIRST_DELAY_S",
    "DEFAULT_SPOOL_RETRY_S",
    "ExportPipeline",
]


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
        convert: Turns an assembled trace into a Galileo trace dict; ``convert_trace`` when
            ``None``.
        backoff_initial_s, backoff_max_s, spool_retry_s, first_delay_s, exit_timeout_s: Retry,
            batching and exit timings, as :meth:`PipelineConfig.from_settings
            <galileo_otel.export.config.PipelineConfig.from_settings>` documents them.
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
        s = settings if settings is not None else GalileoSettings()
        self._config = c = PipelineConfig.from_settings(
            s,
            destination,
            backoff_initial_s=backoff_initial_s,
            backoff_max_s=backoff_max_s,
            spool_retry_s=spool_retry_s,
            first_delay_s=first_delay_s,
            exit_timeout_s=exit_timeout_s,
        )
        self._settings = s
        self._disabled, self._max_queue = c.disabled, c.max_queue
        self._clock, self._wait_fn = clock, wait
        self._tracker = LazyTracker(tracker, s)
        self._assembler, self._convert = assembler, convert
        self._owns_sink = sink is None
        self._sink: Sink = sink or GalileoSink(
            s,
            reliable=c.reliable,
            tracker=self._tracker,
            spool=lambda: self._spooler.spool,
            client=client,
            clock=clock,
            target=c.target,
        )
        self._spool_state = spool_plan(
            spool, s.spool_path(), reliable=c.reliable, disabled=c.disabled
        )
        # What conversion cut or folded (size caps, duplicate llm spans): written by the worker
        # thread only, read whole by stats().
        self.convert_stats = ConvertStats()
        self._started = self._closing = self._shutdown = False
        self._final_marker: Flush | None = None  # the shutdown caller's own
        self._compose()
        self._hooks = ProcessHooks(
            self._at_exit, self._after_fork_in_child, exit_hook=shutdown_at_exit
        )
        if start:
            self.start()

    def _compose(self) -> None:
        """The objects and their runtime state (at construction, again in a forked child)."""
        self._reset_handoff()  # the app's queue: a deque and an Event, no lock
        spool, path, reason = self._spool_state
        self._say = RateLimitedLog()  # in a child: a parent thread may have held its lock
        self._counters = Counters()
        self._report = report = Report(self._counters, self._say)
        c, clock = self._config, self._clock
        self._ledger = ledger = Ledger.for_config(
            c, counters=self._counters, clock=clock, spool_on=spool is not None
        )
        if spool is None and path is None:
            ledger.adoption.set()
        self._spooler = Spooler.for_config(
            c,
            ledger=ledger,
            report=report,
            spool=spool,
            spool_path=path,
            reason=reason,
            clock=clock,
        )
        self._senders = SenderPool.for_config(
            c,
            ledger=ledger,
            sink=self._sink,
            spooler=self._spooler,
            report=report,
            clock=clock,
            wait=self._wait_fn,
        )
        ledger.when_work(self._senders.start_if_idle)
        self._batcher = Batcher.for_config(
            c,
            handoff=self,
            ledger=ledger,
            report=report,
            tracker=self._tracker,
            assembler=self._assembler,
            convert=self._convert,
            convert_stats=self.convert_stats,
            clock=clock,
        )

    def start(self) -> None:
        """Start the worker and the spooler (idempotent); the senders start with work."""
        if self._started or self._closing or self._disabled:
            return
        self._started = True
        # Build everything now, on the caller's thread: imports and client set-up (pydantic
        # schemas, TLS context) are a one-time cost that must not land in the first burst.
        self._batcher.assembler()
        self._tracker()
        if isinstance(self._sink, GalileoSink):
            self._sink.prepare()
        self._batcher.start()
        # File I/O stays off the worker: each syscall gives the GIL away, and a CPU-bound app
        # thread then keeps it for a whole switch interval (5 ms) before the worker gets it back.
        self._spooler.start()

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
            return not self._closing and not self._pending_any() and not self._ledger.any_lost()
        timeout = self._config.export_timeout if timeout_s is None else timeout_s
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
        ledger = self._ledger
        ledger.begin_closing()
        timeout = self._config.export_timeout if timeout_s is None else timeout_s
        deadline = self._clock() + max(0.0, timeout)
        ok = self._flush(deadline, final=True) if self._started else True
        self._shutdown = True
        ledger.mark_shut()
        self._hooks.cancel_exit()
        ledger.stop()
        self.wake_worker()
        senders = self._senders.threads
        for thread in [self._batcher.thread, self._spooler.thread, *senders]:
            if thread is not None and thread is not threading.current_thread():
                thread.join(max(0.0, deadline - self._clock()))
        alive = any(t.is_alive() for t in senders)
        self._spooler.finish_leftovers()
        left = self.queued_spans(Flush)
        marker = self._final_marker
        if marker is not None and not marker.done.is_set():
            # The worker did not get through the queue in time: what it still holds is lost
            # too, counted as well as can be (it may still run), never silently.
            left += self._batcher.leftover_spans()
        if left:
            self._counters.add("dropped.shutdown", left)
        self._spooler.close(held=ledger.held_names(), close_store=not alive)
        if not alive:  # a sender still running keeps what it sends with
            if self._owns_sink:
                with contextlib.suppress(Exception):
                    self._sink.close()
            self._tracker.close(self._report.internal_error)
        return ok and not self._pending_any()

    def _flush(self, deadline: float, *, final: bool, report: bool = True) -> bool:
        marker = Flush(final=final)
        if final:
            self._final_marker = marker
        self._enqueue_control(marker)
        ok = self._ledger.wait_flush(marker, deadline, report=report)
        if report and marker.done.is_set() and self._ledger.adoption.is_set():
            self._spooler.refresh_usage()  # the flush got to its answer: stats() are current
        return ok

    def _pending_any(self) -> bool:
        return bool(self._queue or self._batcher.has_open() or self._ledger.busy())

    def stats(self) -> dict[str, Any]:
        """Counters since start (cheap, never waits on I/O; safe to call from any thread).

        Each key and the identity the trace counters keep are in ``docs/reference/stats.md``;
        ``tests/unit/test_pipeline.py`` checks the reconciliation.
        """
        return pipeline_snapshot(
            self._counters,
            ledger=self._ledger,
            spooler=self._spooler,
            batcher=self._batcher,
            queued=self.queued_spans(Flush),
            dropped=self.dropped(),
            tracker=self._tracker.built,
            convert=self.convert_stats.as_dict(),
        )

    @property
    def settings(self) -> GalileoSettings:
        """The settings the pipeline was built with (read-only)."""
        return self._settings

    # --- the composed objects, read-only (rebuilt in a forked child): for benchmarks and tests --
    @property
    def ledger(self) -> Ledger:
        """The batches' state between the threads."""
        return self._ledger

    @property
    def batcher(self) -> Batcher:
        """The worker: spans from the queue into closed batches."""
        return self._batcher

    @property
    def spooler(self) -> Spooler:
        """The spooler thread and the spool it writes."""
        return self._spooler

    @property
    def senders(self) -> SenderPool:
        """The sender threads."""
        return self._senders

    @property
    def sink(self) -> Sink:
        """Where the senders deliver batches."""
        return self._sink

    def session_tracker(self) -> Any:
        """The session tracker, built from the settings on first use when none was given."""
        return self._tracker()

    # --- exit and fork ---------------------------------------------------------------------------
    def _at_exit(self) -> None:
        """At interpreter exit: shut down, bounded by ``exit_timeout_s``."""
        if not self._closing:
            self.shutdown(self._config.exit_timeout_s)

    def _after_fork_in_child(self) -> None:
        """A forked child gets an empty queue and its own threads; the parent's work stays."""
        held = self._ledger.held_at_fork()
        spooler = self._spooler
        self._spool_state = (spooler.spool, spooler.pending_path, spooler.reason)
        self._assembler = None  # the child assembles its own spans only
        self._compose()
        for entry in held:
            entry.forget()
        if isinstance(self._sink, GalileoSink):
            self._sink.after_fork()
        was_started, self._started = self._started, False
        if was_started and not self._shutdown:
            self.start()
