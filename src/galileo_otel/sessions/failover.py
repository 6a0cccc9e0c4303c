"""FailoverSessionStore: a shared store (Redis) that never stops traces when it is unreachable.

While the shared store answers, every call goes to it. When a call fails with
:class:`~galileo_otel.sessions.store.SessionStoreUnavailable`, the outage is logged once, counted,
and calls go to a per-process fallback store (memory) until the shared store is tried again,
``retry_after_s`` later (doubling up to ``max_retry_after_s`` while it stays down); the first
call that succeeds ends the outage, logged once too. Sessions opened during an outage are
per-process sessions: they ship, but another host may open its own for the same conversation.

One conversation stays one chain across an outage. The process remembers the last session the
shared store gave it for each scope (conversation key, automatic-session owner) and user; a
session the fallback opens chains to it (``previous_session_id``). After recovery, the next
trace of a scope that moved to a fallback session opens a new shared session chained to that
fallback session, whether the shared store came back empty (restarted) or still holding the
session before the outage (which would otherwise be joined again): shared -> fallback -> shared.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

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
# Scopes and users whose latest session this process remembers, to chain across an outage.
_MAX_KNOWN = 10_000


def _remember(table: OrderedDict[str, SessionRecord], key: str, record: SessionRecord) -> None:
    """Keep ``record`` as ``key``'s latest (called with the failover's lock held)."""
    table[key] = record
    table.move_to_end(key)
    while len(table) > _MAX_KNOWN:
        table.popitem(last=False)


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
        # Latest session per scope / user key as the shared store gave it (chained to by the
        # fallback during an outage), and the fallback's sessions not yet handed back to the
        # shared store (chained to by the first shared session after recovery).
        self._shared_scope: OrderedDict[str, SessionRecord] = OrderedDict()
        self._shared_user: OrderedDict[str, SessionRecord] = OrderedDict()
        self._fallback_scope: OrderedDict[str, SessionRecord] = OrderedDict()
        self._fallback_user: OrderedDict[str, SessionRecord] = OrderedDict()
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
        """See :meth:`SessionStore.open_or_join`; chains across an outage (module docstring)."""
        with self._lock:
            fb_scope = self._fallback_scope.get(scope)
            fb_user = self._fallback_user.get(user_key) if user_key is not None else None
        record, shared = self._call(
            lambda: self._open_shared(
                scope, user_key, end_ns, is_live, open_new, fb_scope, fb_user
            ),
            lambda: self._open_fallback(scope, user_key, end_ns, is_live, open_new),
        )
        with self._lock:
            if shared:
                _remember(self._shared_scope, scope, record)
                if user_key is not None:
                    _remember(self._shared_user, user_key, record)
                # Handed back: the shared store's chain now runs through the fallback session.
                if fb_scope is not None and self._fallback_scope.get(scope) is fb_scope:
                    del self._fallback_scope[scope]
                if fb_user is not None and self._fallback_user.get(str(user_key)) is fb_user:
                    del self._fallback_user[str(user_key)]
                return record
            if record.local_id not in self._local_ids:
                self._local_ids[record.local_id] = None
                self._counts["fallback_sessions"] += 1
                while len(self._local_ids) > _MAX_LOCAL_IDS:
                    self._local_ids.popitem(last=False)
            _remember(self._fallback_scope, scope, record)
            if user_key is not None:
                _remember(self._fallback_user, user_key, record)
        return record

    def _open_shared(
        self,
        scope: str,
        user_key: str | None,
        end_ns: int,
        is_live: IsLive,
        open_new: OpenNew,
        fb_scope: SessionRecord | None,
        fb_user: SessionRecord | None,
    ) -> SessionRecord:
        """The shared store's open-or-join; after an outage, continuing from the fallback."""
        if fb_scope is None and fb_user is None:
            return self._primary.open_or_join(
                scope, user_key=user_key, end_ns=end_ns, is_live=is_live, open_new=open_new
            )

        def followed(record: SessionRecord | None, fb: SessionRecord | None) -> bool:
            """``fb`` continued ``record`` during the outage (or the store lost ``record``)."""
            return fb is not None and (record is None or fb.previous_local_id == record.local_id)

        def still_live(current: SessionRecord, last_end_ns: int) -> bool:
            # The session before the outage is not joined again: the fallback came after it.
            return not followed(current, fb_scope) and is_live(current, last_end_ns)

        def open_after(
            scope_last: SessionRecord | None, user_last: SessionRecord | None
        ) -> SessionRecord:
            return open_new(
                fb_scope if followed(scope_last, fb_scope) else scope_last,
                fb_user if followed(user_last, fb_user) else user_last,
            )

        return self._primary.open_or_join(
            scope, user_key=user_key, end_ns=end_ns, is_live=still_live, open_new=open_after
        )

    def _open_fallback(
        self, scope: str, user_key: str | None, end_ns: int, is_live: IsLive, open_new: OpenNew
    ) -> SessionRecord:
        """The fallback's open-or-join: a new session chains to the last shared one known."""
        with self._lock:
            known_scope = self._shared_scope.get(scope)
            known_user = self._shared_user.get(user_key) if user_key is not None else None
        for known in (known_scope, known_user):
            if known is not None:
                # The chain walk of Create Session finds it (and its Galileo id) here.
                self._fallback.put(known)

        def open_chained(
            scope_last: SessionRecord | None, user_last: SessionRecord | None
        ) -> SessionRecord:
            return open_new(scope_last or known_scope, user_last or known_user)

        return self._fallback.open_or_join(
            scope, user_key=user_key, end_ns=end_ns, is_live=is_live, open_new=open_chained
        )

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
