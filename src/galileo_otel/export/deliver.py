"""The delivery stage: send, retry, confirm or dead-letter, through api/ only.

``max_in_flight`` sender threads take batches from the outbox. Reliable mode waits for each
answer and retries what the client's :class:`~galileo_otel.api.client.RetryPolicy` calls
retryable (transport errors, 408, 429, 5xx; Retry-After honoured) until ``export_timeout``,
with waits that shutdown interrupts; a batch still undelivered stays in the spool. Fire-and-
forget sends once (plus one reconnect) and counts failures. A permanent error (400, 401, 403,
404, 422) is never retried: the batch goes to the spool's dead letters. The wire itself (path,
envelope) is the client's: this stage hands it encoded traces.
"""

from __future__ import annotations

import json
import logging
import threading
import time

from galileo_otel.api.retry import RetryPolicy
from galileo_otel.api.suppress import suppressed
from galileo_otel.errors import APIError, APITimeoutError
from galileo_otel.export._stage import Outbound, StageState

__all__ = ["DeliveryStage"]

_log = logging.getLogger("galileo_otel.export.pipeline")


class DeliveryStage(StageState):
    """The sender threads and the outcome of each batch."""

    def _count_sent(self, out: Outbound) -> None:
        """``traces_sent`` counts a batch once, however often it is retried or re-claimed."""
        with self._cv:  # _sent is guarded by _lock (settle discards from another thread)
            first = out.seq not in self._sent
            self._sent.add(out.seq)
        if first:
            self._count("traces_sent", out.traces)

    def _need_senders(self) -> None:
        """Start the ``max_in_flight`` senders with the first batch (called with ``_cv`` held)."""
        if self._threads or self._stop.is_set():
            return
        for i in range(self._in_flight):
            t = threading.Thread(
                target=suppressed(self._send_loop), name=f"galileo-otel-sender-{i}", daemon=True
            )
            t.start()
            self._threads.append(t)

    def _send_loop(self) -> None:
        while True:
            with self._cv:
                while not self._outbox:
                    if self._stop.is_set():
                        return
                    self._cv_send.wait()  # notified when a batch is handed over, and at shutdown
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
                    self._cv_write.notify()  # a sender is free: the spooler may feed it
                if last_out and self._spool is not None:
                    self._spool.close()  # the last sender that outlived shutdown

    def _deliver_reliable(self, out: Outbound) -> None:
        started = self._clock()
        deadline = started + self._export_timeout
        attempt = 0
        while True:
            outcome = self._sink.send(out, deadline)
            if outcome.sent:
                self._count_sent(out)
                self._count("requests_sent")
            if outcome.ok:
                self._confirmed(out)
                return
            if outcome.config is not None:
                # No API key, say: nothing to retry now; the batch waits for a fixed start.
                self._say(
                    logging.ERROR,
                    "config",
                    "galileo-otel: not sending traces: %s; %s",
                    outcome.config,
                    "they wait in the spool" if out.entry else "they are dropped",
                )
                self._leave_in_spool(out, retried=True, reason="config")
                return
            failure = outcome.error
            assert failure is not None
            if RetryPolicy.is_permanent(failure):
                self._dead_letter(out, failure)
                return
            attempt += 1
            # The one retry decision of the package (api/retry.py: attempts, backoff,
            # Retry-After, the export_timeout deadline); the wait is ours, interruptible by
            # shutdown. No wait (past the deadline, a Retry-After too long): park it now.
            wait = self._policy.next_delay(
                failure, attempt, self._clock() - started, self._rng.random()
            )
            # While shutting down, a failing batch goes back to the spool at once: the next
            # process sends it, and shutdown need not wait out the retries.
            closing = self._closing and out.entry is not None
            if wait is None or closing or self._stop.is_set():
                self._say(
                    logging.WARNING,
                    "undelivered",
                    "galileo-otel: batch of %d traces not delivered (%s); %s",
                    out.traces,
                    _describe(failure),
                    "kept in the spool for a later retry" if out.entry else "dropped",
                )
                self._leave_in_spool(
                    out, retried=True, reason=_reason(failure), not_before_s=failure.retry_after
                )
                return
            self._count("requests_retried")
            if (self._wait_fn or self._hurry.wait)(wait) or self._stop.is_set():
                self._leave_in_spool(out, retried=True, reason="shutdown")
                return

    def _deliver_once(self, out: Outbound) -> None:
        outcome = self._sink.send(out, None)
        if outcome.sent:
            self._count_sent(out)
            self._count("requests_sent")
        if outcome.ok:
            self._confirmed(out)
            return
        if outcome.config is not None:
            self._say(
                logging.ERROR, "config", "galileo-otel: not sending traces: %s", outcome.config
            )
            self._count("traces_failed", out.traces)
            self._count("failed.config", out.traces)
            self._settle(out, ok=False, reason="config")
            return
        failure = outcome.error
        assert failure is not None
        if RetryPolicy.is_permanent(failure):
            self._dead_letter(out, failure)
            return
        reason = _reason(failure)
        self._say(
            logging.WARNING,
            "ff-failed",
            "galileo-otel: batch of %d traces lost (fire-and-forget): %s",
            out.traces,
            _describe(failure),
        )
        self._count("traces_failed", out.traces)
        self._count(f"failed.{reason}", out.traces)
        self._settle(out, ok=False, reason=reason)

    def _confirmed(self, out: Outbound) -> None:
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

    def _dead_letter(self, out: Outbound, exc: APIError) -> None:
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
                    where = str(self._spool.dead_letter_new(out.header.encode(), payload, error))
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

    def _settle(self, out: Outbound, *, ok: bool, reason: str = "") -> None:
        with self._cv:
            if out.entry is not None:
                self._held.pop(out.entry.name, None)
                self._parked.pop(out.entry.name, None)
                self._name_seq.pop(out.entry.name, None)
            self._pending.pop(out.seq, None)
            self._sent.discard(out.seq)
            if not ok:
                self._note_lost(out.seq)
            self._cv.notify_all()


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
