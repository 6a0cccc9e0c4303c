"""Session stores: atomic get-or-create of sessions per key, in memory or SQLite (one host).

The Redis store (many hosts) lives in :mod:`galileo_otel.sessions.redis_store`, the failover
that keeps traces flowing while it is unreachable in :mod:`galileo_otel.sessions.failover`.

A store keeps, per scope (a conversation key or an automatic-session owner), the current session
and when its last trace ended; per user, their latest session (for chaining); and per session,
its Galileo id once created. The tracker decides *what* happens; the store makes it atomic.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from galileo_otel._fork import hold_across_fork

if TYPE_CHECKING:
    from galileo_otel.settings import GalileoSettings

__all__ = [
    "DEFAULT_CREATE_LEASE_S",
    "IsLive",
    "MemorySessionStore",
    "OpenNew",
    "SQLiteSessionStore",
    "SessionRecord",
    "SessionStore",
    "SessionStoreUnavailable",
    "store_from_settings",
]

logger = logging.getLogger(__name__)

#: How long one process may hold the right to create a session before another may take over.
#: Longer than any Create Session call with its retries should take.
DEFAULT_CREATE_LEASE_S = 120.0


class SessionStoreUnavailable(Exception):
    """A shared store (Redis) did not answer in time; the caller falls back to local sessions."""


@dataclass
class SessionRecord:
    """One session as this process knows it. JSON-able, so a spooled batch can carry it.

    Attributes:
        local_id: Client-made uuid4, stable for the life of the session across processes.
        key: The scope the session belongs to: ``key:<app key>``, ``user:<user id>`` (automatic
            session of a user) or ``auto:<service name>`` (automatic session of the process),
            after the tracker's namespace (``<project>/<log stream>|``) when it has one.
        external_id: The app's session key sent to Galileo, or ``None`` for automatic sessions.
        name: The session name sent to Galileo, or ``None``.
        user_id: The user of the session, or ``None``.
        previous_local_id: ``local_id`` of the session this one follows, or ``None``.
        previous_galileo_id: Galileo id of the previous session when known: the previous
            record's id once created, or a Galileo UUID the app set as ``session.previous_id``.
        user_metadata: ``user_metadata`` sent to Galileo (strings only).
        started_ns: Start of the session's first trace (ns since the epoch).
        galileo_id: The Galileo session id once Create Session answered, else ``None``.
        sampled: Whether the session's traces are sent (``GALILEO_SESSION_SAMPLE_RATE``);
            decided once, when the session opens, from a hash of its key.
        logging_method: Who logged the session's traces, stamped on its Create Session and Log
            Traces (the gateway's sessions of spans from other languages); ``None``: the
            client's own (``python_client``). Left out of :meth:`to_dict` when ``None``.
    """

    local_id: str
    key: str
    external_id: str | None = None
    name: str | None = None
    user_id: str | None = None
    previous_local_id: str | None = None
    previous_galileo_id: str | None = None
    user_metadata: dict[str, str] = field(default_factory=dict)
    started_ns: int = 0
    galileo_id: str | None = None
    sampled: bool = True
    logging_method: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A plain JSON-able dict of every field (``logging_method`` only when set)."""
        out: dict[str, Any] = {
            "local_id": self.local_id,
            "key": self.key,
            "external_id": self.external_id,
            "name": self.name,
            "user_id": self.user_id,
            "previous_local_id": self.previous_local_id,
            "previous_galileo_id": self.previous_galileo_id,
            "user_metadata": dict(self.user_metadata),
            "started_ns": self.started_ns,
            "galileo_id": self.galileo_id,
            "sampled": self.sampled,
        }
        if self.logging_method is not None:
            out["logging_method"] = self.logging_method
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SessionRecord:
        """The record that :meth:`to_dict` described; unknown keys are ignored.

        Raises:
            KeyError: ``local_id`` or ``key`` is missing.
        """
        return cls(
            local_id=str(data["local_id"]),
            key=str(data["key"]),
            external_id=data.get("external_id"),
            name=data.get("name"),
            user_id=data.get("user_id"),
            previous_local_id=data.get("previous_local_id"),
            previous_galileo_id=data.get("previous_galileo_id"),
            user_metadata={str(k): str(v) for k, v in (data.get("user_metadata") or {}).items()},
            started_ns=int(data.get("started_ns") or 0),
            galileo_id=data.get("galileo_id"),
            sampled=data.get("sampled") is not False,
            logging_method=data.get("logging_method") or None,
        )


#: ``is_live(current, last_end_ns)``: may the trace join ``current``? Pure, no I/O.
IsLive = Callable[[SessionRecord, int], bool]
#: ``open_new(scope_last, user_last)``: the new session, given the scope's and the user's latest
#: sessions. Pure, no I/O; an optimistic (networked) store may call it more than once.
OpenNew = Callable[[SessionRecord | None, SessionRecord | None], SessionRecord]


@runtime_checkable
class SessionStore(Protocol):
    """Atomic session bookkeeping shared by every exporter that uses the store.

    Every method is safe to call from several threads; a shared store (SQLite, or later a
    networked one) is also safe from several processes. The two atomic operations are
    :meth:`open_or_join` (one session per scope at a time) and :meth:`create_once` (one Create
    Session call per session). A networked implementation can do both with compare-and-set
    plus a lease, since ``is_live`` and ``open_new`` are pure.
    """

    def open_or_join(
        self,
        scope: str,
        *,
        user_key: str | None,
        end_ns: int,
        is_live: IsLive,
        open_new: OpenNew,
    ) -> SessionRecord:
        """Atomically join the scope's live session or open its next one.

        If the scope has a current session and ``is_live(current, last_end_ns)``, its last end
        becomes ``max(last_end_ns, end_ns)`` and it is returned. Otherwise
        ``open_new(current, latest session of user_key)`` is stored as the scope's current
        session (and the user's latest one, when ``user_key`` is given) with last end ``end_ns``.
        """
        ...

    def latest(self, scope: str) -> SessionRecord | None:
        """The current (latest) session of a scope, or ``None`` if the scope is not tracked."""
        ...

    def get(self, local_id: str) -> SessionRecord | None:
        """The session with this ``local_id``, or ``None`` if it is not (or no longer) known."""
        ...

    def put(self, record: SessionRecord) -> None:
        """Register a record made elsewhere (e.g. restored from the spool) if it is unknown.

        When the store already knows the session's Galileo id, it is copied into ``record``.
        """
        ...

    def create_once(
        self, local_id: str, create: Callable[[], str], *, timeout_s: float | None = None
    ) -> str:
        """The Galileo id of the session, calling ``create()`` only if no one has yet.

        Across all threads and processes sharing the store, ``create`` succeeds at most once per
        session: others wait and get its answer. If ``create`` raises, nothing is recorded, the
        error propagates, and a later call tries again.

        Raises:
            TimeoutError: ``timeout_s`` passed while another caller was still creating it.
        """
        ...

    def forget_created(self, local_id: str, galileo_id: str) -> bool:
        """Forget that the session was created as ``galileo_id`` (the server lost it).

        Compare-and-delete: only if the store still holds that id, so a session that another
        thread, process or host has already created again keeps its new id. The next
        :meth:`create_once` then creates it again. Returns whether this call forgot it.
        """
        ...

    def stats(self) -> dict[str, int]:
        """Counts of what the store tracks."""
        ...

    def close(self) -> None:
        """Release resources (files, connections)."""
        ...


def store_from_settings(settings: GalileoSettings) -> SessionStore:
    """The store that ``GALILEO_SESSION_STORE`` asks for: memory, SQLite at a path, or Redis.

    A Redis store comes wrapped in a :class:`~galileo_otel.sessions.failover.FailoverSessionStore`
    (per-process sessions while Redis is unreachable).

    Args:
        settings: Supplies ``session_store``, ``session_store_ttl`` and ``max_tracked_sessions``.

    Raises:
        ConfigError: A Redis URL is given but the ``redis`` package is missing.
    """
    url = settings.session_store_url()
    if url is not None:
        from galileo_otel.sessions.failover import FailoverSessionStore
        from galileo_otel.sessions.redis_store import RedisSessionStore

        return FailoverSessionStore(
            RedisSessionStore(url, ttl_s=settings.session_store_ttl),
            MemorySessionStore(max_tracked=settings.max_tracked_sessions),
        )
    path = settings.session_store_path()
    if path is None:
        return MemorySessionStore(max_tracked=settings.max_tracked_sessions)
    return SQLiteSessionStore(path, max_tracked=settings.max_tracked_sessions)


class _ForkAware(Protocol):
    def _after_fork_in_child(self) -> None: ...


_FORK_AWARE: weakref.WeakSet[_ForkAware] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for store in list(_FORK_AWARE):
        store._after_fork_in_child()


if hasattr(os, "register_at_fork"):  # POSIX only
    os.register_at_fork(after_in_child=_reset_after_fork)


def _tail(max_tracked: int) -> int:
    """How many closed, unreferenced sessions to remember (late batches may still need them)."""
    return max(16, min(max_tracked, 1024))


class MemorySessionStore:
    """A store for the threads of one process. Bounded: LRU over ``max_tracked`` scopes and users.

    Inherited through ``fork()`` (e.g. gunicorn ``--preload`` workers), each child has its own
    copy: a conversation served by several workers becomes one session per worker. The child
    forgets the sessions it inherited that were not created yet (it would create them a second
    time) and says once, when it first uses the store, to use the SQLite or Redis store instead.

    Args:
        max_tracked: Scopes (conversation keys, automatic-session owners) and users remembered
            for rotation and chaining; the least recently used are forgotten beyond it.
    """

    def __init__(self, *, max_tracked: int = 10_000) -> None:
        if max_tracked < 1:
            raise ValueError("max_tracked must be at least 1")
        self._max_tracked = max_tracked
        self._lock = threading.Lock()
        self._records: dict[str, SessionRecord] = {}  # insertion order = age
        self._last_end: dict[str, int] = {}
        self._scopes: OrderedDict[str, str] = OrderedDict()  # scope -> local_id, LRU order
        self._users: OrderedDict[str, str] = OrderedDict()  # user -> local_id, LRU order
        self._gates = CreationGates()  # one creator per session among this process's threads
        self._evicted = 0
        self._swept = 0
        self._forked_warning = False
        _FORK_AWARE.add(self)

    def _after_fork_in_child(self) -> None:
        # Locks held by other threads at fork time would stay held forever in the child.
        self._lock = threading.Lock()
        self._gates = CreationGates()
        # The parent creates the sessions it opened; a child that joined one of them while it
        # was not created yet would create it again, as a second Galileo session.
        uncreated = {lid for lid, rec in self._records.items() if rec.galileo_id is None}
        for lid in uncreated:
            del self._records[lid]
            self._last_end.pop(lid, None)
        for table in (self._scopes, self._users):
            for name in [name for name, lid in table.items() if lid in uncreated]:
                del table[name]
        self._forked_warning = True

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
        if self._forked_warning:
            self._forked_warning = False
            logger.warning(
                "galileo-otel: this process was forked (e.g. a gunicorn --preload worker) and "
                "keeps its own in-memory sessions, so a conversation served by several worker "
                "processes becomes several sessions; set GALILEO_SESSION_STORE=sqlite (processes "
                "of one host) or a redis:// URL (several hosts) to share them"
            )
        with self._lock:
            current_id = self._scopes.get(scope)
            current = self._records.get(current_id) if current_id else None
            if current is not None:
                self._scopes.move_to_end(scope)
                last_end = self._last_end.get(current.local_id, 0)
                if is_live(current, last_end):
                    if end_ns > last_end:
                        self._last_end[current.local_id] = end_ns
                    return current
            user_last = None
            if user_key is not None:
                user_last_id = self._users.get(user_key)
                user_last = self._records.get(user_last_id) if user_last_id else None
            record = open_new(current, user_last)
            self._records[record.local_id] = record
            self._last_end[record.local_id] = end_ns
            self._scopes[scope] = record.local_id
            self._scopes.move_to_end(scope)
            if user_key is not None:
                self._users[user_key] = record.local_id
                self._users.move_to_end(user_key)
            self._evict()
            return record

    def join_live(
        self, scope: str, start_ns: int, end_ns: int, idle_ns: int, max_age_ns: int | None
    ) -> SessionRecord | None:
        """The common case of :meth:`open_or_join`, without its callbacks: join a live session.

        The scope's current session when a trace starting at ``start_ns`` joins it (not idle
        for more than ``idle_ns``, not older than ``max_age_ns``); its last end moves on to
        ``end_ns``. ``None`` when a new session is due: the caller then calls
        :meth:`open_or_join`, which decides again under the lock.
        """
        if self._forked_warning:
            return None  # open_or_join says what a fork means, once
        # acquire/release, not ``with``: a with-statement looks up and binds __enter__ and
        # __exit__ on every call, and this runs once per trace.
        lock = self._lock
        lock.acquire()
        try:
            scopes = self._scopes
            local_id = scopes.get(scope)
            if local_id is None:
                return None
            current = self._records.get(local_id)
            if current is None:
                return None
            last_end = self._last_end.get(local_id, 0)
            if start_ns - last_end > idle_ns or (
                max_age_ns is not None and start_ns - current.started_ns > max_age_ns
            ):
                return None
            scopes.move_to_end(scope)
            if end_ns > last_end:
                self._last_end[local_id] = end_ns
            return current
        finally:
            lock.release()

    def _evict(self) -> None:
        while len(self._scopes) > self._max_tracked:
            self._scopes.popitem(last=False)
            self._evicted += 1
        while len(self._users) > self._max_tracked:
            self._users.popitem(last=False)
            self._evicted += 1
        # Amortised O(1): sweep only once the unreferenced tail has grown by a full ``_tail``.
        tail = _tail(self._max_tracked)
        if len(self._records) > len(self._scopes) + len(self._users) + 2 * tail:
            self._sweep(tail)

    def _sweep(self, tail: int) -> None:
        """Forget sessions no longer needed for chaining, keeping the newest ``tail`` of them."""
        keep: set[str] = set()
        for local_id in [*self._scopes.values(), *self._users.values()]:
            # A session, and its not-yet-created ancestors up to the first created one (whose
            # Galileo id the next create needs), are still needed.
            cur: str | None = local_id
            while cur is not None and cur not in keep:
                record = self._records.get(cur)
                if record is None:
                    break
                keep.add(cur)
                if record.galileo_id is not None:
                    break
                cur = record.previous_local_id
        unneeded = [lid for lid in self._records if lid not in keep]
        for lid in unneeded[: max(0, len(unneeded) - tail)]:
            del self._records[lid]
            self._last_end.pop(lid, None)
            self._swept += 1

    def latest(self, scope: str) -> SessionRecord | None:
        """See :meth:`SessionStore.latest`."""
        with self._lock:
            local_id = self._scopes.get(scope)
            return self._records.get(local_id) if local_id else None

    def get(self, local_id: str) -> SessionRecord | None:
        """See :meth:`SessionStore.get`."""
        with self._lock:
            return self._records.get(local_id)

    def put(self, record: SessionRecord) -> None:
        """See :meth:`SessionStore.put`."""
        with self._lock:
            known = self._records.get(record.local_id)
            if known is None:
                self._records[record.local_id] = record
            elif known is not record and record.galileo_id is None:
                record.galileo_id = known.galileo_id

    def create_once(
        self, local_id: str, create: Callable[[], str], *, timeout_s: float | None = None
    ) -> str:
        """See :meth:`SessionStore.create_once`."""
        with self._lock:
            record = self._records.get(local_id)
            if record is not None and record.galileo_id is not None:
                return record.galileo_id
        with self._gates.hold(local_id, timeout_s):
            with self._lock:
                record = self._records.get(local_id)
                if record is not None and record.galileo_id is not None:
                    return record.galileo_id  # another thread created it while we waited
            galileo_id = create()
            with self._lock:
                record = self._records.get(local_id)
                if record is not None:
                    record.galileo_id = galileo_id
            return galileo_id

    def forget_created(self, local_id: str, galileo_id: str) -> bool:
        """See :meth:`SessionStore.forget_created`."""
        with self._lock:
            record = self._records.get(local_id)
            if record is None or record.galileo_id != galileo_id:
                return False
            record.galileo_id = None
            return True

    def stats(self) -> dict[str, int]:
        """See :meth:`SessionStore.stats`."""
        with self._lock:
            return {
                "sessions": len(self._records),
                "scopes": len(self._scopes),
                "users": len(self._users),
                "evicted": self._evicted,
                "swept": self._swept,
            }

    def close(self) -> None:
        """Nothing to release."""


_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS sessions (
        local_id TEXT PRIMARY KEY,
        data TEXT NOT NULL,
        previous_local_id TEXT,
        last_end_ns INTEGER NOT NULL DEFAULT 0,
        galileo_id TEXT,
        claim_owner TEXT,
        claim_until REAL
    )""",
    "CREATE TABLE IF NOT EXISTS scopes (scope TEXT PRIMARY KEY, local_id TEXT NOT NULL, used REAL)",
    "CREATE TABLE IF NOT EXISTS users (user_key TEXT PRIMARY KEY, local_id TEXT NOT NULL, used REAL)",
    "CREATE INDEX IF NOT EXISTS scopes_used ON scopes(used)",
    "CREATE INDEX IF NOT EXISTS users_used ON users(used)",
)

# Connections inherited through fork() must never be used or closed by the child (SQLite's
# rule); they are parked here instead of being garbage-collected (which would close them).
_INHERITED: list[sqlite3.Connection] = []


class CreationGates:
    """One lock per local session id, so only one thread of this process polls a creation lease.

    Every store uses it: the memory store's threads queue on it while one of them calls Create
    Session; the SQLite and Redis stores' while one of them waits for the cross-process lease
    (the file's or Redis'). Its own lock guards the dict of gates; a gate is dropped once nobody
    holds it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gates: dict[str, threading.Lock] = {}

    @contextlib.contextmanager
    def hold(self, local_id: str, timeout_s: float | None) -> Iterator[None]:
        """Hold ``local_id``'s gate; ``TimeoutError`` when another thread keeps it past the timeout."""
        with self._lock:
            gate = self._gates.setdefault(local_id, threading.Lock())
        if not gate.acquire(timeout=-1 if timeout_s is None else max(0.0, timeout_s)):
            raise TimeoutError(f"session {local_id} is still being created by another thread")
        try:
            yield
        finally:
            gate.release()
            with self._lock:
                if self._gates.get(local_id) is gate and not gate.locked():
                    del self._gates[local_id]


class SQLiteSessionStore:
    """A store shared by the processes of one host (e.g. gunicorn workers) through one SQLite file.

    WAL journal, ``BEGIN IMMEDIATE`` write transactions and a busy timeout make
    :meth:`open_or_join` atomic across processes. :meth:`create_once` takes a lease on the
    session row, calls Create Session outside any transaction, and records the answer; others
    poll until it is there (or the lease of a crashed creator runs out).

    Args:
        path: The database file; its directory is created.
        max_tracked: Scopes and users remembered (LRU beyond it).
        busy_timeout_s: How long a transaction waits for another process's lock.
        lease_s: How long a creator may hold a session before others may take over.
        clock: Wall clock for leases (seconds); shared by processes, so not monotonic.
        sleep: Used while waiting for another process's create.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_tracked: int = 10_000,
        busy_timeout_s: float = 30.0,
        lease_s: float = DEFAULT_CREATE_LEASE_S,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_tracked < 1:
            raise ValueError("max_tracked must be at least 1")
        self._path = Path(path).expanduser()
        self._path.parent.mkdir(parents=True, exist_ok=True)
        # User ids and metadata live here: 0600 whatever the umask (SQLite would make it 0644
        # minus the umask; its -wal and -shm files take the database file's mode).
        with contextlib.suppress(FileExistsError):
            os.close(os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        self._max_tracked = max_tracked
        self._busy_timeout_s = busy_timeout_s
        self._lease_s = lease_s
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.RLock()
        self._gates = CreationGates()
        self._owner = uuid.uuid4().hex
        self._opened = 0
        self._pid = os.getpid()
        self._conn: sqlite3.Connection | None = None
        # No thread is mid-statement when the process forks (see galileo_otel._fork).
        hold_across_fork(self, "_lock", threading.RLock)
        self._connect()
        _FORK_AWARE.add(self)

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    # --- connection ---------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            str(self._path),
            timeout=self._busy_timeout_s,
            isolation_level=None,  # we issue BEGIN IMMEDIATE / COMMIT ourselves
            check_same_thread=False,  # guarded by self._lock
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
        # Switching to WAL needs a moment alone with the file; several processes opening it at
        # once can see "database is locked" here even with a busy timeout, so retry briefly.
        for attempt in range(50):
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError:
                if attempt == 49:
                    raise
                self._sleep(0.02)
        conn.execute("PRAGMA synchronous = NORMAL")
        self._conn = conn
        self._pid = os.getpid()
        with self._txn() as cur:
            for statement in _SCHEMA:
                cur.execute(statement)
        return conn

    def _after_fork_in_child(self) -> None:
        # SQLite's rule: a connection must not cross fork(). Locks held by other threads at fork
        # time stay held forever in the child, so they are replaced too.
        if self._conn is not None:
            _INHERITED.append(self._conn)
        self._conn = None
        self._lock = threading.RLock()
        self._gates = CreationGates()
        self._owner = uuid.uuid4().hex
        self._pid = os.getpid()

    def _open(self) -> sqlite3.Connection:
        return self._conn if self._conn is not None else self._connect()

    @contextmanager
    def _txn(self) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            cur = self._open().cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            else:
                cur.execute("COMMIT")
            finally:
                cur.close()

    # --- rows ---------------------------------------------------------------------------------
    @staticmethod
    def _record(data: str, galileo_id: str | None) -> SessionRecord:
        record = SessionRecord.from_dict(json.loads(data))
        record.galileo_id = galileo_id
        return record

    def _insert(self, cur: sqlite3.Cursor, record: SessionRecord, last_end_ns: int) -> None:
        cur.execute(
            "INSERT OR IGNORE INTO sessions (local_id, data, previous_local_id, last_end_ns,"
            " galileo_id) VALUES (?, ?, ?, ?, ?)",
            (
                record.local_id,
                json.dumps(record.to_dict()),
                record.previous_local_id,
                last_end_ns,
                record.galileo_id,
            ),
        )

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
        now = self._clock()
        with self._txn() as cur:
            row = cur.execute(
                "SELECT s.data, s.galileo_id, s.last_end_ns FROM scopes c"
                " JOIN sessions s ON s.local_id = c.local_id WHERE c.scope = ?",
                (scope,),
            ).fetchone()
            current = self._record(row[0], row[1]) if row else None
            if current is not None and is_live(current, int(row[2])):
                cur.execute(
                    "UPDATE sessions SET last_end_ns = MAX(last_end_ns, ?) WHERE local_id = ?",
                    (end_ns, current.local_id),
                )
                cur.execute("UPDATE scopes SET used = ? WHERE scope = ?", (now, scope))
                return current
            user_last = None
            if user_key is not None:
                row = cur.execute(
                    "SELECT s.data, s.galileo_id FROM users u"
                    " JOIN sessions s ON s.local_id = u.local_id WHERE u.user_key = ?",
                    (user_key,),
                ).fetchone()
                user_last = self._record(row[0], row[1]) if row else None
            record = open_new(current, user_last)
            self._insert(cur, record, end_ns)
            cur.execute(
                "INSERT OR REPLACE INTO scopes (scope, local_id, used) VALUES (?, ?, ?)",
                (scope, record.local_id, now),
            )
            if user_key is not None:
                cur.execute(
                    "INSERT OR REPLACE INTO users (user_key, local_id, used) VALUES (?, ?, ?)",
                    (user_key, record.local_id, now),
                )
            self._evict(cur)
            return record

    def _evict(self, cur: sqlite3.Cursor) -> None:
        for table, column in (("scopes", "scope"), ("users", "user_key")):
            (count,) = cur.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
            if count > self._max_tracked:
                cur.execute(
                    f"DELETE FROM {table} WHERE {column} IN"
                    f" (SELECT {column} FROM {table} ORDER BY used LIMIT ?)",
                    (count - self._max_tracked,),
                )
        self._opened += 1
        if self._opened % 64 == 0:
            self._sweep(cur)

    def _sweep(self, cur: sqlite3.Cursor) -> None:
        """Forget sessions no longer needed for chaining, keeping the newest few of them."""
        # Needed: every scope's and user's latest session, and walking back from them through
        # sessions not yet created, their ancestors up to the first created one.
        cur.execute(
            """
            WITH RECURSIVE keep(id) AS (
                SELECT local_id FROM scopes UNION SELECT local_id FROM users
                UNION
                SELECT s.previous_local_id FROM sessions s JOIN keep k ON s.local_id = k.id
                WHERE s.galileo_id IS NULL AND s.previous_local_id IS NOT NULL
            )
            DELETE FROM sessions WHERE local_id NOT IN (SELECT id FROM keep WHERE id IS NOT NULL)
              AND rowid NOT IN (SELECT rowid FROM sessions ORDER BY rowid DESC LIMIT ?)
              AND claim_owner IS NULL
            """,
            (_tail(self._max_tracked),),
        )

    def latest(self, scope: str) -> SessionRecord | None:
        """See :meth:`SessionStore.latest`."""
        with self._lock:
            row = (
                self._open()
                .execute(
                    "SELECT s.data, s.galileo_id FROM scopes c"
                    " JOIN sessions s ON s.local_id = c.local_id WHERE c.scope = ?",
                    (scope,),
                )
                .fetchone()
            )
        return self._record(row[0], row[1]) if row else None

    def get(self, local_id: str) -> SessionRecord | None:
        """See :meth:`SessionStore.get`."""
        with self._lock:
            row = (
                self._open()
                .execute("SELECT data, galileo_id FROM sessions WHERE local_id = ?", (local_id,))
                .fetchone()
            )
        return self._record(row[0], row[1]) if row else None

    def put(self, record: SessionRecord) -> None:
        """See :meth:`SessionStore.put`."""
        with self._txn() as cur:
            row = cur.execute(
                "SELECT galileo_id FROM sessions WHERE local_id = ?", (record.local_id,)
            ).fetchone()
            if row is None:
                self._insert(cur, record, record.started_ns)
            elif row[0] is None and record.galileo_id is not None:
                cur.execute(
                    "UPDATE sessions SET galileo_id = ? WHERE local_id = ? AND galileo_id IS NULL",
                    (record.galileo_id, record.local_id),
                )
            elif record.galileo_id is None:
                record.galileo_id = row[0]

    def create_once(
        self, local_id: str, create: Callable[[], str], *, timeout_s: float | None = None
    ) -> str:
        """See :meth:`SessionStore.create_once`."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        # Threads of this process queue on a local gate, so that only one of them polls the file.
        with self._gates.hold(local_id, timeout_s):
            pause = 0.005
            while True:
                claimed, galileo_id = self._claim(local_id)
                if galileo_id is not None:
                    return galileo_id
                if claimed:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"session {local_id} is still being created by another process"
                    )
                self._sleep(pause)
                pause = min(pause * 2, 0.25)
            try:
                galileo_id = create()
            except BaseException:
                with self._txn() as cur:
                    cur.execute(
                        "UPDATE sessions SET claim_owner = NULL, claim_until = NULL"
                        " WHERE local_id = ? AND claim_owner = ?",
                        (local_id, self._owner),
                    )
                raise
            with self._txn() as cur:
                cur.execute(
                    "UPDATE sessions SET galileo_id = ?, claim_owner = NULL, claim_until = NULL"
                    " WHERE local_id = ?",
                    (galileo_id, local_id),
                )
            return galileo_id

    def _claim(self, local_id: str) -> tuple[bool, str | None]:
        """Take the lease to create ``local_id`` if it is free: (claimed, known Galileo id)."""
        now = self._clock()
        with self._txn() as cur:
            row = cur.execute(
                "SELECT galileo_id, claim_owner, claim_until FROM sessions WHERE local_id = ?",
                (local_id,),
            ).fetchone()
            if row is None:
                # Unknown here (the caller did not put() it): nothing to coordinate on, so
                # record a placeholder row that carries the lease.
                cur.execute(
                    "INSERT INTO sessions (local_id, data, claim_owner, claim_until)"
                    " VALUES (?, ?, ?, ?)",
                    (
                        local_id,
                        json.dumps({"local_id": local_id, "key": ""}),
                        self._owner,
                        now + self._lease_s,
                    ),
                )
                return True, None
            galileo_id, owner, until = row
            if galileo_id is not None:
                return False, str(galileo_id)
            if owner is None or owner == self._owner or until is None or until < now:
                cur.execute(
                    "UPDATE sessions SET claim_owner = ?, claim_until = ? WHERE local_id = ?",
                    (self._owner, now + self._lease_s, local_id),
                )
                return True, None
            return False, None

    def forget_created(self, local_id: str, galileo_id: str) -> bool:
        """See :meth:`SessionStore.forget_created`: one ``UPDATE ... WHERE galileo_id = ?``."""
        with self._txn() as cur:
            cur.execute(
                "UPDATE sessions SET galileo_id = NULL WHERE local_id = ? AND galileo_id = ?",
                (local_id, galileo_id),
            )
            return cur.rowcount > 0

    def stats(self) -> dict[str, int]:
        """See :meth:`SessionStore.stats`."""
        with self._lock:
            conn = self._open()
            counts = {
                table: int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
                for table in ("sessions", "scopes", "users")
            }
        return counts

    def close(self) -> None:
        """Close this process's connection (a later call reopens it)."""
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None and self._pid == os.getpid():
                conn.close()
