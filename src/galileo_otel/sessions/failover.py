"""FailoverSessionStore: a shared store (Redis) that never stops traces when it is unreachable.

While the shared store answers, every call goes to it. When a call fails with
:class:`~galileo_otel.sessions.store.SessionStoreUnavailable`, the outage is logged once, counted,
and calls go to a per-process fallback store (memory) until the shared store is tried again,
``retry_after_s`` later (doubling up to ``max_retry_after_s`` while it stays down); the first
call that succeeds ends the outage, logged once too. Sessions opened during an outage are
per-process sessions: they ship, but another host may open its own for the same conversation.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

from galileo_otel.sessions.store import (
    _FORK_AWARE,
    IsLive,
    OpenNew,
    SessionRecord,
    SessionStore,
    SessionStoreUnavailable,
)

__all__ = ["FailoverSessionStore"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
# Local ids of sessions opened by the fallback, remembered so that their creation stays local.
_MAX_LOCAL_IDS = 100_000


class FailoverSessionStore:
    """Use ``primary`` while it answers, ``fallback`` (per process) while it does not.

    Args:
        primary: The shared store; its failures must raise ``SessionStoreUnavailable``.
        fallback: The per-process store used during an outage.
        retry_after_s: How long after a failure the primary is tried again.
        max_retry_after_s: Cap of the retry interval, which doubles while the primary stays down.
        clock: Monotonic clock (seconds), injectable for tests.
    """

    def __init__(
        self,
        primary: SessionStore,
        fallback: SessionStore,
        *,
        retry_after_s: float = 1.0,
        max_retry_after_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._primary = primary
        self._fallback = fallback
        self._retry_after_s = retry_after_s
        self._max_retry_after_s = max(retry_after_s, max_retry_after_s)
        self._clock = clock
        # Guards the outage state, _local_ids and the counters; never held during a call.
        self._lock = threading.Lock()
        self._down_until: float | None = None
        self._backoff_s = retry_after_s
        self._local_ids: OrderedDict[str, None] = OrderedDict()
        self._counts = {
            "outages": 0,
            "fallback_calls": 0,
            "fallback_sessions": 0,
            "fallback_creates": 0,
        }
        _FORK_AWARE.add(self)

    def _after_fork_in_child(self) -> None:
        # A lock held by another thread at fork time would stay held forever in the child.
        self._lock = threading.Lock()

    @property
    def primary(self) -> SessionStore:
        """The shared store."""
        return self._primary

    @property
    def fallback(self) -> SessionStore:
        """The per-process store used during an outage."""
        return self._fallback

    @property
    def available(self) -> bool:
        """Whether the shared store is in use (no outage, or its retry is due)."""
        with self._lock:
            return self._down_until is None or self._clock() >= self._down_until

    def _call(self, primary: Callable[[], T], fallback: Callable[[], T]) -> tuple[T, bool]:
        """``(result, from_primary)``: the primary's answer, or the fallback's during an outage."""
        with self._lock:
            skip = self._down_until is not None and self._clock() < self._down_until
            if skip:
                self._counts["fallback_calls"] += 1
        if not skip:
            try:
                result = primary()
            except SessionStoreUnavailable as exc:
                self._outage(exc)
            else:
                self._recovered()
                return result, True
        return fallback(), False

    def _outage(self, exc: SessionStoreUnavailable) -> None:
        with self._lock:
            first = self._down_until is None
            if first:
                self._counts["outages"] += 1
                self._backoff_s = self._retry_after_s
            else:
                self._backoff_s = min(self._backoff_s * 2, self._max_retry_after_s)
            self._down_until = self._clock() + self._backoff_s
            self._counts["fallback_calls"] += 1
        if first:
            logger.warning(
                "galileo-otel: the session store is unreachable (%s); traces keep shipping with "
                "per-process sessions until it answers again (counted in stats())",
                exc,
            )

    def _recovered(self) -> None:
        if self._down_until is None:  # the usual case, read without the lock
            return
        with self._lock:
            was_down = self._down_until is not None
            self._down_until = None
            self._backoff_s = self._retry_after_s
        if was_down:
            logger.warning("galileo-otel: the session store answers again; sessions are shared")

    def _is_local(self, local_id: str) -> bool:
        with self._lock:
            return local_id in self._local_ids

    # --- the SessionStore protocol ------------------------------------------------------------
    def open_or_join(
        self,
        scope: str,
        *,
        user_key: str | None,
        end_ns: int,
        is_live: IsLive,
        open_new: OpenNew,
    ) -> SessionRecord:
        """See :meth:`SessionStore.open_or_join`."""
        kwargs: dict[str, Any] = {
            "user_key": user_key,
            "end_ns": end_ns,
            "is_live": is_live,
            "open_new": open_new,
        }
        record, shared = self._call(
            lambda: self._primary.open_or_join(scope, **kwargs),
            lambda: self._fallback.open_or_join(scope, **kwargs),
        )
        if not shared:
            with self._lock:
                if record.local_id not in self._local_ids:
                    self._local_ids[record.local_id] = None
                    self._counts["fallback_sessions"] += 1
                    while len(self._local_ids) > _MAX_LOCAL_IDS:
                        self._local_ids.popitem(last=False)
        return record

    def latest(self, scope: str) -> SessionRecord | None:
        """See :meth:`SessionStore.latest`."""
        record, _ = self._call(
            lambda: self._primary.latest(scope), lambda: self._fallback.latest(scope)
        )
        return record

    def get(self, local_id: str) -> SessionRecord | None:
        """See :meth:`SessionStore.get`; sessions opened during an outage are found locally."""
        if self._is_local(local_id):
            return self._fallback.get(local_id)
        record, _ = self._call(
            lambda: self._primary.get(local_id), lambda: self._fallback.get(local_id)
        )
        return record if record is not None else self._fallback.get(local_id)

    def put(self, record: SessionRecord) -> None:
        """See :meth:`SessionStore.put`."""
        if self._is_local(record.local_id):
            self._fallback.put(record)
            return
        self._call(lambda: self._primary.put(record), lambda: self._fallback.put(record))

    def create_once(
        self, local_id: str, create: Callable[[], str], *, timeout_s: float | None = None
    ) -> str:
        """See :meth:`SessionStore.create_once`.

        A session opened during an outage is created by this process alone. A shared session
        whose creation falls in an outage is created here too (another host in the same outage
        may do the same: counted as ``fallback_creates``), and its id is written to the shared
        store once it answers.
        """
        if self._is_local(local_id):
            return self._fallback.create_once(local_id, create, timeout_s=timeout_s)
        galileo_id, shared = self._call(
            lambda: self._primary.create_once(local_id, create, timeout_s=timeout_s),
            lambda: self._fallback.create_once(local_id, create, timeout_s=timeout_s),
        )
        if not shared:
            with self._lock:
                self._counts["fallback_creates"] += 1
            note = getattr(self._primary, "note_created", None)
            if note is not None:
                note(local_id, galileo_id)
        return galileo_id

    def forget_created(self, local_id: str, galileo_id: str) -> bool:
        """See :meth:`SessionStore.forget_created`: in the store that holds the session."""
        if self._is_local(local_id):
            return bool(self._fallback.forget_created(local_id, galileo_id))
        local = bool(self._fallback.forget_created(local_id, galileo_id))
        shared, _ = self._call(
            lambda: bool(self._primary.forget_created(local_id, galileo_id)), lambda: local
        )
        return shared or local

    def stats(self) -> dict[str, int]:
        """The primary's counters, the outage counters and ``down`` (1 during an outage)."""
        counts = dict(self._primary.stats())
        with self._lock:
            counts.update(self._counts)
            counts["down"] = int(self._down_until is not None)
        return counts

    def close(self) -> None:
        """Close both stores."""
        try:
            self._primary.close()
        finally:
            self._fallback.close()
