"""The SenderPool: ``max_in_flight`` sender threads, ``ledger.take -> sink.send -> ledger.settle``.

Reliable mode waits for each answer and retries through the package's one retry loop
(:func:`~galileo_otel.api.retry.retry_loop`: transport errors, 408, 429, 5xx; Retry-After
honoured) until ``export_timeout``, with waits that shutdown interrupts; a batch still
undelivered goes back to the spool (:meth:`Spooler.put_back`). Fire-and-forget sends once
(the sink reconnects once) and counts failures. A permanent error (400, 401, 403, 404, 422)
is never retried: the batch goes to the spool's dead letters. The wire itself (path,
envelope) is the sink's: the senders hand it encoded traces.

The threads start with the first batch handed to them (:meth:`SenderPool.start_if_idle`, which
the ledger calls) and end when the ledger stops.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from galileo_otel.api.retry import Failure, RetryPolicy, retry_loop
from galileo_otel.api.suppress import suppressed
from galileo_otel.errors import APIError, APITimeoutError
from galileo_otel.export._stage import Outbound, Report
from galileo_otel.export.ledger import Ledger

if TYPE_CHECKING:
    from galileo_otel.export.config import PipelineConfig
    from galileo_otel.export.sink import Outcome, Sink
    from galileo_otel.export.spooler import Spooler

__all__ = ["SenderPool"]


class SenderPool:
    """N sender threads and the outcome of each batch they take.

    Args:
        ledger: Where batches are taken from and settled.
        sink: Where they are sent.
        spooler: Where a batch goes back to (or is dead-lettered) when it is not delivered.
        report: Counters and log.
        size: Number of threads (``max_in_flight``).
        reliable: Reliable mode (wait, retry, spool) or fire-and-forget.
        policy: Reliable mode's retries (bounded by ``export_timeout``).
        export_timeout: Seconds one batch may take, retries included.
        clock: Monotonic seconds.
        wait: Waits between retries, ``wait(seconds) -> stop requested`` (tests); by default
            the ledger's ``hurry`` event, which shutdown sets.
    """

    def __init__(
        self,
        *,
        ledger: Ledger,
        sink: Sink,
        spooler: Spooler,
        report: Report,
        size: int,
        reliable: bool,
        policy: RetryPolicy,
        export_timeout: float,
        clock: Callable[[], float],
        wait: Callable[[float], bool] | None,
    ) -> None:
        self._ledger = ledger
        self._sink = sink
        self._spooler = spooler
        self._report = report
        self._size = size
        self._reliable = reliable
        self._policy = policy
        self._export_timeout = export_timeout
        self._clock = clock
        self._wait = wait or ledger.hurry.wait
        self._rng = random.Random()
        # Written once, under the ledger's lock (start_if_idle is called with it held); read by
        # shutdown after the ledger stopped.
        self._threads: list[threading.Thread] = []

    @classmethod
    def for_config(
        cls,
        config: PipelineConfig,
        *,
        ledger: Ledger,
        sink: Sink,
        spooler: Spooler,
        report: Report,
        clock: Callable[[], float],
        wait: Callable[[float], bool] | None,
    ) -> SenderPool:
        """A pool with a pipeline's size (``in_flight``), mode, retry policy and timeout."""
        return cls(
            ledger=ledger,
            sink=sink,
            spooler=spooler,
            report=report,
            size=config.in_flight,
            reliable=config.reliable,
            policy=config.policy,
            export_timeout=config.export_timeout,
            clock=clock,
            wait=wait,
        )

    @property
    def threads(self) -> list[threading.Thread]:
        """The sender threads started so far."""
        return list(self._threads)

    def start_if_idle(self) -> None:
        """Start the threads with the first batch (the ledger calls this with its lock held)."""
        if self._threads or self._ledger.stopped:
            return
        for i in range(self._size):
            t = threading.Thread(
                target=suppressed(self._loop), name=f"galileo-otel-sender-{i}", daemon=True
            )
            t.start()
            self._threads.append(t)

    def deliver_now(self, out: Outbound) -> None:
        """Deliver one outbound batch on the caller's thread, as a sender thread would.

        What a sender does with each batch it takes: send (with reliable mode's retries),
        then settle the batch in the ledger, put it back in the spool or dead-letter it. It
        never raises: an internal error is counted and the batch put back (or settled as
        lost). Benchmarks and tests use it to drive the delivery stage without its threads;
        the batch need not come from :meth:`Ledger.take`.
        """
        ledger = self._ledger
        try:
            if ledger.stopped and out.entry is not None:
                self._spooler.put_back(out, retried=False)
            elif self._reliable:
                self._deliver_reliable(out)
            else:
                self._deliver_once(out)
        except Exception as exc:
            self._report.internal_error("deliver", exc)
            if out.entry is not None and out.entry.claimed:
                self._spooler.put_back(out, retried=True, reason="internal")
            else:
                ledger.settle(out, ok=False)

    def _loop(self) -> None:
        ledger = self._ledger
        while (out := ledger.take()) is not None:
            try:
                self.deliver_now(out)
            finally:
                if ledger.sender_free():
                    self._spooler.close_after_shutdown()  # the last sender that outlived it

    def _send(self, out: Outbound, deadline: float | None) -> Outcome:
        outcome = self._sink.send(out, deadline)
        if outcome.sent:
            if self._ledger.first_send(out.seq):
                self._report.count("traces_sent", out.traces)
            self._report.count("requests_sent")
        return outcome

    def _deliver_reliable(self, out: Outbound) -> None:
        deadline = self._clock() + self._export_timeout
        ledger = self._ledger

        def attempt() -> Outcome | Failure:
            outcome = self._send(out, deadline)
            if outcome.ok or outcome.config is not None:
                return outcome
            assert outcome.error is not None
            return Failure(outcome.error)

        def stop(failure: Failure) -> bool:
            # While shutting down, a failing batch goes back to the spool at once: the next
            # process sends it, and shutdown need not wait out the retries.
            return (ledger.closing and out.entry is not None) or ledger.stopped

        def wait(seconds: float) -> bool:
            return bool(self._wait(seconds)) or ledger.stopped

        result = retry_loop(
            attempt,
            self._policy,
            wait=wait,
            clock=self._clock,
            rand=self._rng.random,
            stop=stop,
            on_retry=lambda *_: self._report.count("requests_retried"),
        )
        if not isinstance(result, Failure):
            if result.ok:
                self._confirmed(out)
                return
            # No API key, say: nothing to retry now; the batch waits for a fixed start.
            self._report.say(
                logging.ERROR,
                "config",
                "galileo-otel: not sending traces: %s; %s",
                result.config,
                "they wait in the spool" if out.entry else "they are dropped",
            )
            self._spooler.put_back(out, retried=True, reason="config")
            return
        failure = result.error
        if RetryPolicy.is_permanent(failure):
            self._dead_letter(out, failure)
            return
        if result.interrupted:
            self._spooler.put_back(out, retried=True, reason="shutdown")
            return
        self._report.say(
            logging.WARNING,
            "undelivered",
            "galileo-otel: batch of %d traces not delivered (%s); %s",
            out.traces,
            _describe(failure),
            "kept in the spool for a later retry" if out.entry else "dropped",
        )
        self._spooler.put_back(
            out, retried=True, reason=_reason(failure), not_before_s=failure.retry_after
        )

    def _deliver_once(self, out: Outbound) -> None:
        outcome = self._send(out, None)
        if outcome.ok:
            self._confirmed(out)
            return
        report = self._report
        if outcome.config is not None:
            report.say(
                logging.ERROR, "config", "galileo-otel: not sending traces: %s", outcome.config
            )
            report.count("traces_failed", out.traces)
            report.count("failed.config", out.traces)
            self._ledger.settle(out, ok=False)
            return
        failure = outcome.error
        assert failure is not None
        if RetryPolicy.is_permanent(failure):
            self._dead_letter(out, failure)
            return
        reason = _reason(failure)
        report.say(
            logging.WARNING,
            "ff-failed",
            "galileo-otel: batch of %d traces lost (fire-and-forget): %s",
            out.traces,
            _describe(failure),
        )
        report.count("traces_failed", out.traces)
        report.count(f"failed.{reason}", out.traces)
        self._ledger.settle(out, ok=False)

    def _confirmed(self, out: Outbound) -> None:
        self._report.count("traces_confirmed", out.traces)
        self._report.count("requests_confirmed")
        if out.entry is not None:
            out.entry.delete()
        # The server answers again: what waits in the spool is sent now.
        self._ledger.server_answers()
        self._ledger.settle(out, ok=True)

    def _dead_letter(self, out: Outbound, exc: APIError) -> None:
        status = exc.status_code
        where = self._spooler.dead_letter(out, exc, reliable=self._reliable)
        self._report.say(
            logging.ERROR,
            f"dead-{status}",
            "galileo-otel: Galileo rejected a batch of %d traces (HTTP %s): %s; not retried, %s",
            out.traces,
            status,
            _describe(exc),
            f"set aside in {where}" if where.startswith("/") else where,
        )
        self._report.count("traces_dead_lettered", out.traces)
        self._report.count(f"dead_lettered.{status}", out.traces)
        self._ledger.settle(out, ok=False)


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
