"""Where closed batches go: the :class:`Sink` protocol and :class:`GalileoSink` (api/).

A sink sends one batch, once, and says what happened in an :class:`Outcome`; it never retries,
waits between attempts or counts: the senders (``senders.py``) do that, with the one retry
loop of the package (:func:`~galileo_otel.api.retry.retry_loop`). Tests and
other destinations plug in through ``make_pipeline(sink=...)``.

:class:`GalileoSink` owns what only delivery to Galileo needs: the client, the destinations it
has resolved, the Create Session of a batch's session (through the tracker, once per session)
and the note of that session in the spool, so a batch spooled before its session was created is
sent under the right id by the next process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from galileo_otel.api.retry import RetryPolicy
from galileo_otel.errors import APIError, ConfigError
from galileo_otel.sessions.heal import session_missing

if TYPE_CHECKING:
    from galileo_otel.export._stage import Outbound
    from galileo_otel.export.spool import Spool
    from galileo_otel.export.spool_format import BatchHeader
    from galileo_otel.settings import GalileoSettings

__all__ = ["GalileoSink", "Outcome", "Sink", "dest_dict"]


@dataclass(frozen=True)
class Outcome:
    """What became of one send.

    Attributes:
        sent: A request went out (counted as sent, whatever its answer).
        error: ``None`` when the destination accepted the batch (2xx); else the failure, as an
            :class:`~galileo_otel.errors.APIError` (``retryable``, ``retry_after``, status).
        config: The sink cannot send at all until the configuration is fixed (no API key...).
    """

    sent: bool
    error: APIError | None = None
    config: ConfigError | None = None

    @property
    def ok(self) -> bool:
        """Accepted by the destination."""
        return self.error is None and self.config is None


DELIVERED = Outcome(sent=True)


class Sink(Protocol):
    """A destination of batches: one attempt per call, never raises."""

    def send(self, batch: Outbound, deadline: float | None) -> Outcome:
        """Send ``batch`` once; ``deadline`` (the pipeline's clock) bounds the call, if given."""
        ...

    def close(self) -> None:
        """Release connections (at shutdown)."""
        ...


class GalileoSink:
    """Log Traces to Galileo through :class:`~galileo_otel.api.client.GalileoClient`.

    Args:
        settings: The pipeline's settings (API key, timeouts, ``create_missing``).
        reliable: Requests say ``reliable``; a fire-and-forget sink's client reconnects once.
        tracker: Returns the session tracker (built lazily by the pipeline).
        spool: Returns the spool, once the spooler opened it (``None`` without one).
        client: A client to use; one is made from ``settings`` when ``None`` (and closed here).
        clock: The pipeline's monotonic clock, which ``deadline`` is read against.
    """

    def __init__(
        self,
        settings: GalileoSettings,
        *,
        reliable: bool,
        tracker: Callable[[], Any],
        spool: Callable[[], Spool | None],
        client: Any = None,
        clock: Callable[[], float],
        target: Mapping[str, Any],
    ) -> None:
        self._settings = settings
        self._reliable = reliable
        self._tracker = tracker
        self._spool = spool
        self._clock = clock
        self._target = dict(target)
        self._owns_client = client is None
        self._client = client
        # The senders do their own, interruptible retries; each request is tried once (a
        # fire-and-forget one reconnects once). Built once: frozen, shared by every send.
        self._policy = RetryPolicy.none() if reliable else RetryPolicy.reconnect_once()
        self._after_fork()

    def _after_fork(self) -> None:
        # Guards _resolved, and is held while one destination is resolved over HTTP (sender
        # threads only), so it is resolved once.
        self._dest_lock = threading.Lock()
        self._resolved: dict[str, dict[str, Any]] = {}
        # Sessions whose Galileo id is noted in the spool: set.add is atomic under the GIL and a
        # note written twice is harmless, so no lock.
        self._noted_sessions: set[str] = set()

    def after_fork(self) -> None:
        """In a forked child: a client of its own (the parent's pool and locks stay behind)."""
        if self._owns_client:
            self._client = None
        self._after_fork()

    def prepare(self) -> None:
        """Build the client now (on the caller's thread: a one-time cost kept out of bursts)."""
        self.client()

    def client(self) -> Any:
        """The client (made from the settings on first use)."""
        if self._client is None:
            from galileo_otel.api.client import GalileoClient

            self._client = GalileoClient(
                settings=self._settings, reliable=self._reliable, retry=self._policy
            )
        return self._client

    def close(self) -> None:
        """Close the client if this sink made it."""
        if self._owns_client and self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()

    # --- one attempt ----------------------------------------------------------------------------
    def send(self, batch: Outbound, deadline: float | None) -> Outcome:
        """Create the batch's session if needed, then Log Traces once (healing a lost session)."""
        return self._send_once(batch, deadline, heal=True)

    def _send_once(self, batch: Outbound, deadline: float | None, *, heal: bool) -> Outcome:
        left = self._export_timeout() if deadline is None else deadline - self._clock()
        try:
            dest = self._destination_for(batch.header)
            session_id = self._session_id_for(batch, dest, max(0.05, left))
            traces_json = self._traces_json(batch, session_id)
        except ConfigError as exc:
            return Outcome(sent=False, config=exc)
        except (APIError, TimeoutError) as exc:
            return Outcome(sent=False, error=_as_api_error(exc))
        timeout = None if deadline is None else max(0.05, deadline - self._clock())
        try:
            self._post(dest, batch, session_id, traces_json, self._policy, timeout)
        except ConfigError as exc:
            return Outcome(sent=True, config=exc)
        except (APIError, TimeoutError) as exc:
            failure = _as_api_error(exc)
            if heal and session_missing(failure):
                return self._on_missing_session(batch, session_id, failure, deadline)
            return Outcome(sent=True, error=failure)
        return DELIVERED

    def _on_missing_session(
        self, batch: Outbound, stale_galileo_id: str, error: APIError, deadline: float | None
    ) -> Outcome:
        """Log Traces said the batch's session does not exist (404/422): heal, resend once.

        The server lost the session (restored, wiped, a new local server) while the session
        store still remembers it. The tracker forgets the stale id (compare-and-delete in the
        store, ``SessionTracker.heal``), the spool's note of it goes too, and the batch's traces
        name the session by its local id again, so the next :meth:`_session_id_for` creates the
        session anew (chained to what is known) and :meth:`_traces_json` swaps its new id in.
        One resend: a second "does not exist" is final (the senders set the batch aside).
        """
        record = batch.session_record()
        # A tracker handed in by the caller (make_pipeline(tracker=...)) may not heal.
        heal = getattr(self._tracker(), "heal", None)
        if heal is None or not heal(record, stale_galileo_id, error.message):
            return Outcome(sent=True, error=error)
        local_id = batch.header.local_id or record.local_id
        spool = self._spool()
        if spool is not None:
            spool.forget_session(local_id, stale_galileo_id)
        self._noted_sessions.discard(local_id)
        if not batch.header.placeholder:
            batch.payload = batch.body().replace(stale_galileo_id.encode(), local_id.encode())
            batch.header = dataclasses.replace(batch.header, placeholder=True)
        return self._send_once(batch, deadline, heal=False)

    def _export_timeout(self) -> float:
        return float(self._settings.export_timeout)

    def _post(
        self,
        dest: Mapping[str, Any],
        batch: Outbound,
        session_id: str,
        traces_json: bytes,
        retry: Any,
        timeout: float | None,
    ) -> None:
        """Hand the encoded traces to the client: api/ owns the path and the envelope."""
        timeout = None if timeout is None else min(timeout, float(self._settings.read_timeout))
        experiment_id = dest.get("experiment_id") or None
        # Only a batch that says who logged it (the gateway's) passes a method: the client's
        # own (python_client) otherwise, and a client without the parameter still works.
        method = batch.header.logging_method
        extra: dict[str, Any] = {} if method is None else {"logging_method": method}
        self.client().log_traces_encoded(
            traces_json,
            project_id=str(dest["project_id"]),
            session_id=session_id,
            session_external_id=batch.header.external_id or None,
            reliable=self._reliable,
            log_stream_id=None if experiment_id else dest.get("log_stream_id"),
            experiment_id=experiment_id,
            retry=retry,
            timeout=timeout,
            **extra,
        )

    def _destination_for(self, header: BatchHeader) -> dict[str, Any]:
        dest = header.destination
        if dest and dest.get("project_id"):
            return dict(dest)
        target = dict(header.target or self._target)
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
                resolved = self.client().resolve_destination(
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
        self, batch: Outbound, dest: Mapping[str, Any], timeout_s: float | None
    ) -> str:
        record = batch.session_record()
        galileo_id: str | None = getattr(record, "galileo_id", None)
        local_id = batch.header.local_id or record.local_id
        spool = self._spool()
        if not galileo_id and spool is not None:
            galileo_id = spool.known_session(local_id)
            if galileo_id:
                with contextlib.suppress(Exception):
                    record.galileo_id = galileo_id
        if galileo_id:
            return galileo_id
        client = self.client()
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

        galileo_id = str(self._tracker().ensure_created(record, create, timeout_s=timeout_s))
        if spool is not None and local_id not in self._noted_sessions:
            spool.note_session(local_id, galileo_id)
            self._noted_sessions.add(local_id)
        return galileo_id

    def _traces_json(self, batch: Outbound, session_id: str) -> bytes:
        """The batch's encoded traces, the local stand-in id swapped for the Galileo one."""
        payload = batch.body()
        local_id = batch.header.local_id
        if batch.header.placeholder and local_id and local_id != session_id:
            payload = payload.replace(local_id.encode(), session_id.encode())
        return payload


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
