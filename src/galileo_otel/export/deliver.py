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

import contextlib
import json
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from galileo_otel.api.suppress import suppressed
from galileo_otel.errors import APIError, APITimeoutError, ConfigError
from galileo_otel.export._stage import Outbound, StageState

__all__ = ["DeliveryStage", "dest_dict"]

_log = logging.getLogger("galileo_otel.export.pipeline")


class DeliveryStage(StageState):
    """The sender threads and the outcome of each batch."""

    def _count_sent(self, out: Outbound) -> None:
        """``traces_sent`` counts a batch once, however often it is retried or re-claimed."""
        if out.seq not in self._sent:
            self._sent.add(out.seq)  # only the sender holding the batch touches its seq
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
        from galileo_otel.api.client import RetryPolicy

        deadline = self._clock() + self._export_timeout
        attempt = 0
        healed = False
        while True:
            session_id = None
            try:
                dest = self._destination_for(out.header)
                session_id = self._session_id_for(out, dest, max(0.05, deadline - self._clock()))
                traces_json = self._traces_json(out, session_id)
                self._count_sent(out)
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
            except (APIError, TimeoutError) as caught:
                failure = _as_api_error(caught)
                if RetryPolicy.is_permanent(failure):
                    if not healed and self._healed(out, session_id, failure):
                        healed = True  # the session is made again; resent once
                        continue
                    self._dead_letter(out, failure)
                    return
                attempt += 1
                # The client's policy decides (one policy for the package); the wait is ours,
                # interruptible by shutdown. No wait (a Retry-After too long): park it now.
                wait = self._policy.delay_for(failure, attempt, self._rng.random())
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
                continue
            self._confirmed(out)
            return

    def _deliver_once(self, out: Outbound, *, healed: bool = False) -> None:
        from galileo_otel.api.client import RetryPolicy

        once = RetryPolicy.reconnect_once()
        session_id = None
        try:
            dest = self._destination_for(out.header)
            session_id = self._session_id_for(out, dest, self._export_timeout)
            traces_json = self._traces_json(out, session_id)
            self._count_sent(out)
            self._count("requests_sent")
            self._post(dest, out, session_id, traces_json, once, None)
        except ConfigError as exc:
            self._say(logging.ERROR, "config", "galileo-otel: not sending traces: %s", exc)
            self._count("traces_failed", out.traces)
            self._count("failed.config", out.traces)
            self._settle(out, ok=False, reason="config")
            return
        except (APIError, TimeoutError) as caught:
            failure = _as_api_error(caught)
            if RetryPolicy.is_permanent(failure):
                if not healed and self._healed(out, session_id, failure):
                    self._deliver_once(out, healed=True)  # the session is made again; resent once
                    return
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
            return
        self._confirmed(out)

    def _post(
        self,
        dest: Mapping[str, Any],
        out: Outbound,
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
                known = self._resolved[key] = dest_dict(resolved)
            return dict(known)

    def _session_id_for(
        self, out: Outbound, dest: Mapping[str, Any], timeout_s: float | None
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

    def _healed(self, out: Outbound, session_id: str | None, failure: APIError) -> bool:
        """The server lost the batch's session: forget it so it is made again; resend the batch.

        Healing is the tracker's (``SessionTracker.heal``); here the spool's note of the lost id
        goes too, and the batch's traces name the session by its local id again, for
        :meth:`_traces_json` to swap in the new Galileo id.
        """
        from galileo_otel.sessions.heal import session_missing

        record = out.record
        if session_id is None or record is None or not session_missing(failure):
            return False
        if not self._get_tracker().heal(record, session_id, _describe(failure)):
            return False
        local_id = out.header.get("local_id") or record.local_id
        if self._spool is not None:
            self._spool.forget_session(local_id, session_id)
        self._noted_sessions.discard(local_id)
        payload = (
            out.payload if out.payload is not None else out.entry.payload() if out.entry else b"[]"
        )
        out.payload = payload.replace(session_id.encode(), str(local_id).encode())
        out.header = {**out.header, "placeholder": True}
        return True

    def _traces_json(self, out: Outbound, session_id: str) -> bytes:
        """The batch's encoded traces, the local stand-in id swapped for the Galileo one."""
        payload = out.payload
        if payload is None:
            assert out.entry is not None
            payload = out.entry.payload()
        local_id = out.header.get("local_id")
        if out.header.get("placeholder") and local_id and local_id != session_id:
            payload = payload.replace(local_id.encode(), session_id.encode())
        return payload

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

    def _settle(self, out: Outbound, *, ok: bool, reason: str = "") -> None:
        with self._cv:
            if out.entry is not None:
                self._held.pop(out.entry.name, None)
                self._parked.pop(out.entry.name, None)
                self._name_seq.pop(out.entry.name, None)
            self._pending.pop(out.seq, None)
            self._sent.discard(out.seq)
            if not ok:
                self._failed_seqs.append((self._fail_count, out.seq))
                self._fail_count += 1
            self._cv.notify_all()


def dest_dict(dest: Any) -> dict[str, Any]:
    """Project, log stream and experiment ids of a destination (object or mapping), as text."""
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


def _as_api_error(exc: APIError | TimeoutError) -> APIError:
    """A delivery failure as an APIError (a TimeoutError: the session is still being created).

    A TimeoutError means another thread or process is still creating the batch's session, so
    the failure is retryable.
    """
    if isinstance(exc, TimeoutError):
        return APIError(f"session creation pending: {exc}", retryable=True)
    return exc


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
