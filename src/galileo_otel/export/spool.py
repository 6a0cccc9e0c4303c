"""The durable queue of reliable mode: one SQLite database (WAL) that processes share.

Why SQLite and not a file per batch: every guarantee below is one transaction, so it can be
argued about row by row. A file per batch needed locks, renames, stale-claim rules and scans,
and lost exactly the cases the issue reported (a batch confirmed by one process stayed
"pending" in another; a FIFO hung ``open()``; a bad header raised forever).

The guarantees (each one tested):

* **Owned rows.** A batch row names its owner (``host:pid:token``) and a lease expiry. The owner
  renews its leases while it lives, with one row of ``owner_lease`` (rewriting every batch row
  instead would write the whole backlog to the WAL each time). A row's lease is the later of its
  own and its owner's; ``0`` (disowned) frees it at once. Another process adopts a row only when the owner is dead
  (same host, pid gone) or its lease expired; ownership moves in one ``UPDATE ... WHERE owner=?``,
  so two adopters never both win. Live processes never take each other's work.
* **Settled for all.** A confirmed or dead-lettered batch is deleted from ``batch``; whichever
  process settles it, it is settled for everyone.
* **Private.** The directory is ``0700``, the database and its ``-wal`` / ``-shm`` ``0600``,
  whatever the umask: batches hold prompts and answers. A spool found open to other users is
  tightened, with one log line.
* **Bounded on disk.** ``max_bytes`` bounds the directory's SQLite files (database with its dead
  letters, WAL, WAL index) within :data:`DISK_TOLERANCE_BYTES`; the pending payloads alone stay
  within ``max_bytes``. The insert checks, in its own transaction, a running total kept by
  each insert and delete in ``meta`` (never a ``SUM`` over the rows) and the database's pages plus a reserve
  for the WAL, whose size is capped to a fraction of ``max_bytes`` (checkpointed, then truncated).
  A batch past either is refused (the caller counts it as ``dropped.spool_full``); nothing ever
  waits for room. Dead letters have their own bound inside it; the oldest are removed to make
  room, and one that still does not fit is dropped and counted (``dead_dropped``).
* **Never blocks on a bad file.** The database path is opened non-blocking and checked to be a
  regular file first; a FIFO, directory, symlink or corrupt database is renamed aside
  (``<name>.bad-<ns>``) with one log line and a fresh database is made. Other files in the
  directory (an older version's ``*.batch`` files, say) are ignored.
* **Per API key.** Each row carries a short salted hash of the API key it was made with
  (never the key). A process skips rows of other keys (and counts them): sending them with
  its own key would get them rejected.

Layout: ``<spool dir>/spool.sqlite3`` (plus SQLite's ``-wal`` / ``-shm``). Durable across a
process crash (kill -9); with ``fsync=True`` (``synchronous=FULL``) also across a power loss.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import socket
import sqlite3
import stat
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from galileo_otel._fork import hold_across_fork

__all__ = [
    "DB_NAME",
    "DISK_TOLERANCE_BYTES",
    "LEASE_S",
    "Spool",
    "SpoolEntry",
    "SpoolError",
    "dead_in",
    "key_fingerprint",
    "open_spool",
    "pending_in",
]

_log = logging.getLogger(__name__)

DB_NAME = "spool.sqlite3"
# A live owner renews its rows' leases every LEASE_S / 4; a row whose lease ran out belongs to
# a process that is gone or stuck (another host, a reused pid) and may be adopted.
LEASE_S = 60.0
# How long one statement waits for another process's write transaction (background threads
# only; the app thread never touches the spool).
_BUSY_TIMEOUT_MS = 2000
_WAL_LIMIT_BYTES = 16 * 1024 * 1024
# The smallest WAL cap (small spools): a few pages, so one batch's transaction still fits.
_WAL_MIN_BYTES = 64 * 1024
_PAGE_BYTES = 16 * 1024
# A new spool capped below this uses SQLite's default 4 KiB pages: an empty database is then
# 48 KiB rather than 192 KiB, which matters against a small cap and not against a large one.
_SMALL_SPOOL_BYTES = 16 * 1024 * 1024
_SMALL_PAGE_BYTES = 4 * 1024
# The WAL index (-shm): 32 KiB covers the ~4,000 WAL frames the WAL cap allows at most.
_SHM_BYTES = 32 * 1024
# An emptied queue compacts the spool at most this often (a checkpoint writes the database).
_IDLE_COMPACT_S = 5.0
#: How far the spool directory's SQLite files may exceed ``max_bytes``: an empty database's own
#: pages (tables, indexes, the meta rows: 12 pages), the WAL index and the rounding of
#: one batch to whole pages. Checked by the tests, which sample the directory during an outage.
DISK_TOLERANCE_BYTES = 256 * 1024
# Session id notes are tiny; keep them long enough for any spooled batch to need them.
_SESSION_NOTE_MAX_AGE_S = 30 * 24 * 3600.0
_HOST = socket.gethostname()

# Connections a forked child inherited: SQLite forbids using them after fork, and closing
# them in the child could disturb the parent's locks; kept referenced, never touched again.
_FORK_ORPHANS: list[sqlite3.Connection] = []

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batch (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    owner TEXT NOT NULL,
    lease REAL NOT NULL,
    origin TEXT,
    traces INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    header TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS batch_owner ON batch(owner);
CREATE TABLE IF NOT EXISTS dead (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    traces INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    header TEXT NOT NULL,
    payload BLOB NOT NULL,
    error TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS session_note (
    local_id TEXT PRIMARY KEY,
    galileo_id TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS owner_lease (owner TEXT PRIMARY KEY, until REAL NOT NULL);
"""

# Running totals of the payload bytes of pending batches and of dead letters, updated by each
# insert and delete in its own transaction, so a write never sums over the rows. (Triggers would
# do the same, but cost ~150 us more per 20 KB batch than these statements, on this machine.)
# Seeded from the rows once; renew() re-seeds them, so a writer that does not keep them (an
# earlier release sharing the spool) cannot make them drift for long.
_TOTALS = """
INSERT OR IGNORE INTO meta VALUES ('batch_bytes', (SELECT COALESCE(SUM(bytes), 0) FROM batch));
INSERT OR IGNORE INTO meta VALUES ('dead_bytes', (SELECT COALESCE(SUM(bytes), 0) FROM dead));
"""


class SpoolError(OSError):
    """The spool could not be read or written (the pipeline counts it and carries on)."""


def key_fingerprint(api_key: str) -> str:
    """A short salted hash naming which API key a batch was made with (never the key)."""
    return hashlib.sha256(b"galileo-otel spool\n" + api_key.encode()).hexdigest()[:16]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    except OSError:
        return True
    return True


def _owner_exited(owner: str) -> bool:
    """Whether a row's owner is a process of this host that has exited."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != _HOST or not pid_text.isdecimal():
        return False  # another host: only its lease tells
    return not _pid_alive(int(pid_text))


class SpoolEntry:
    """One batch row this process holds in memory for sending (it owns the row).

    Attributes:
        id: The row id (oldest first).
        header: The batch's JSON header (destination, session record, counts).
    """

    __slots__ = ("_payload", "_spool", "header", "id")

    def __init__(self, spool: Spool, row_id: int, header: dict[str, Any], payload: bytes) -> None:
        self._spool = spool
        self.id = row_id
        self.header = header
        self._payload: bytes | None = payload

    @property
    def name(self) -> str:
        """The row id as text, unique across processes sharing the spool."""
        return str(self.id)

    @property
    def claimed(self) -> bool:
        """Whether this process still holds the batch in memory."""
        return self._payload is not None

    def payload(self) -> bytes:
        """The encoded ``traces`` array of the batch."""
        if self._payload is None:
            raise SpoolError(errno.ENOENT, f"spool batch {self.id} was released")
        return self._payload

    def delete(self) -> None:
        """The server confirmed the batch: remove its row (settled for every process)."""
        self._spool.delete(self.id)
        self._payload = None

    def release(self) -> None:
        """Drop the in-memory copy; the row stays ours, to be claimed again by a later scan."""
        self._payload = None

    def forget(self) -> None:
        """In a forked child: drop the parent's batch without touching its row."""
        self._payload = None


class Spool:
    """One SQLite database of batches, shared by threads and processes.

    Args:
        path: The spool directory (created if missing).
        origin: The key fingerprint stamped on new rows (see :func:`key_fingerprint`).
        max_bytes: Cap of pending batch bytes; a batch past it is refused.
        dead_max_bytes: Cap of dead-lettered bytes; the oldest are removed to make room.
        fsync: ``synchronous=FULL``: each batch survives a power loss, not only a crash.
        clock: Wall clock in seconds (leases are compared across processes).

    Raises:
        SpoolError: The directory cannot be made or the database cannot be opened.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        origin: str | None = None,
        max_bytes: int = 256 * 1024 * 1024,
        dead_max_bytes: int = 64 * 1024 * 1024,
        fsync: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.db_path = self.path / DB_NAME
        self.origin = origin
        self.max_bytes = max_bytes
        self.dead_max_bytes = dead_max_bytes
        # The WAL is checkpointed once it holds this much, and truncated back to it: an eighth
        # of the cap (at most 16 MiB), so a small spool's WAL stays small too.
        self.wal_limit_bytes = min(_WAL_LIMIT_BYTES, max(_WAL_MIN_BYTES, max_bytes // 8))
        self._fsync = fsync
        self._clock = clock
        # Guards _conn (one connection per process, used by the pipeline's background threads
        # one statement or transaction at a time) and _pid / _owner (reset in a forked child).
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._owner = ""
        self.set_aside: list[Path] = []
        self._page = _PAGE_BYTES if max_bytes >= _SMALL_SPOOL_BYTES else _SMALL_PAGE_BYTES
        # Dead letters dropped (larger than their bound or than the room on disk) and removed
        # to make room, by this process; guarded by _lock.
        self._dead_dropped = 0
        self._dead_evicted = 0
        self._next_idle_compact = 0.0
        # No thread is mid-statement when the process forks; a child gets a new lock.
        hold_across_fork(self)
        try:
            existed = self.path.is_dir()
            # 0700 whatever the umask (a umask only takes bits away); parents as usual.
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolError(
                exc.errno, f"cannot create spool directory {self.path}: {exc}"
            ) from exc
        if existed:
            self._tighten_found()
        with self._lock:
            self._connection()

    # --- privacy --------------------------------------------------------------------------------
    def _files(self) -> tuple[Path, Path, Path]:
        return self.db_path, Path(f"{self.db_path}-wal"), Path(f"{self.db_path}-shm")

    def _tighten_found(self) -> None:
        """Make a spool found open to other users private again: one log line says what."""
        loose: list[str] = []
        for path, private in ((self.path, 0o700), *((f, 0o600) for f in self._files())):
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISLNK(st.st_mode) or not st.st_mode & 0o077:
                continue  # a symlink is set aside later, never followed
            try:
                os.chmod(path, private)
            except OSError as exc:
                loose.append(f"{path.name} {stat.filemode(st.st_mode)} (cannot tighten: {exc})")
                continue
            loose.append(f"{path.name} {stat.filemode(st.st_mode)}")
        if loose:
            _log.warning(
                "galileo-otel: spool %s was readable by other users (%s); made private "
                "(directory 0700, files 0600)",
                self.path,
                ", ".join(loose),
            )

    def _create_private(self) -> None:
        """Create the database file 0600 before SQLite does (it would use 0644 minus the umask).

        SQLite gives the ``-wal`` and ``-shm`` files the database file's mode.
        """
        try:
            fd = os.open(
                self.db_path,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                0o600,
            )
        except FileExistsError:
            return
        except OSError as exc:
            raise SpoolError(
                exc.errno, f"cannot create spool database {self.db_path}: {exc}"
            ) from exc
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)

    # --- connection -----------------------------------------------------------------------------
    @property
    def owner(self) -> str:
        """This process's owner name on rows: ``host:pid:token``."""
        with self._lock:
            self._connection()
            return self._owner

    def _connection(self) -> sqlite3.Connection:
        """The process's connection (called with ``_lock`` held); a new one after a fork."""
        pid = os.getpid()
        if self._conn is not None and self._pid == pid:
            return self._conn
        if self._conn is not None:
            _FORK_ORPHANS.append(self._conn)  # the parent's: never used or closed here
            self._conn = None
        if self._pid != pid:  # first open, or a forked child: a new owner (reopening keeps it)
            self._pid = pid
            self._owner = f"{_HOST}:{pid}:{uuid.uuid4().hex[:8]}"
        for attempt in range(2):
            self._check_regular_files()
            self._create_private()
            conn = sqlite3.connect(
                self.db_path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                check_same_thread=False,
            )  # fmt: skip
            try:
                conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
                # Batches are tens to hundreds of KiB: 16 KiB pages write and free a batch in a
                # quarter of the pages (and WAL frames) of the 4 KiB default, less than half
                # the CPU per batch. Takes effect on a new database only, and only first. A
                # small spool keeps 4 KiB pages (see _SMALL_SPOOL_BYTES).
                conn.execute(f"PRAGMA page_size={self._page}")
                # Pages freed by sent batches go back to the disk (compact()); takes effect on
                # a new database only, before its first table.
                conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
                conn.execute("PRAGMA journal_mode=WAL")
                # A checkpoint once the WAL holds wal_limit_bytes, the size it is truncated
                # back to anyway (16 MiB for the default cap: 1000 pages, 4 MiB of 4 KiB pages,
                # checkpoints four times as often and costs ~30% more CPU per batch), whatever
                # the page size; an eighth of a smaller cap.
                (page,) = conn.execute("PRAGMA page_size").fetchone()
                self._page = int(page)
                limit = self.wal_limit_bytes
                conn.execute(f"PRAGMA wal_autocheckpoint={max(1, limit // page)}")
                # The WAL file is truncated back to this after a checkpoint.
                conn.execute(f"PRAGMA journal_size_limit={limit}")
                conn.execute(f"PRAGMA synchronous={'FULL' if self._fsync else 'NORMAL'}")
                # Debian's SQLite zero-fills every freed page (SECURE_DELETE), which writes a
                # sent batch to the WAL a second time: 4x the CPU of the delete itself. FAST
                # still clears the b-tree pages; the freed overflow pages keep their bytes until
                # reused or compact() drops them from the file (the WAL held those bytes
                # anyway), as on every SQLite built without that option.
                conn.execute("PRAGMA secure_delete=FAST")
                conn.executescript(_SCHEMA)
                if conn.execute("SELECT COUNT(*) FROM meta").fetchone()[0] < 2:
                    conn.executescript(f"BEGIN IMMEDIATE;{_TOTALS}COMMIT;")
            except sqlite3.DatabaseError as exc:
                conn.close()
                if attempt or not _is_corrupt(exc):
                    raise SpoolError(errno.EIO, f"spool database {self.db_path}: {exc}") from exc
                self._set_aside(self.db_path, f"not a usable SQLite database ({exc})")
                continue
            for path in self._files()[1:]:
                # Made by SQLite with the database's mode; kept 0600 if made by anything else.
                with contextlib.suppress(OSError):
                    if os.lstat(path).st_mode & 0o077:
                        os.chmod(path, 0o600)
            self._conn = conn
            return conn
        raise AssertionError("unreachable")  # pragma: no cover

    def _check_regular_files(self) -> None:
        """Set aside a database path (or its WAL files) that is not a regular file."""
        for path in (self.db_path, Path(f"{self.db_path}-wal"), Path(f"{self.db_path}-shm")):
            try:
                # O_NONBLOCK: a FIFO must not hang us; O_NOFOLLOW: a symlink fails with ELOOP.
                fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
            except FileNotFoundError:
                continue
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO) or path.is_symlink():
                    self._set_aside(path, "not a regular file")
                    continue
                raise SpoolError(exc.errno, f"cannot open spool database {path}: {exc}") from exc
            try:
                mode = os.fstat(fd).st_mode
            finally:
                os.close(fd)
            if not stat.S_ISREG(mode):
                self._set_aside(path, "not a regular file")

    def _set_aside(self, path: Path, why: str) -> None:
        target = path.with_name(f"{path.name}.bad-{time.time_ns()}")
        try:
            os.rename(path, target)
        except OSError as exc:
            raise SpoolError(exc.errno, f"cannot set aside {path} ({why}): {exc}") from exc
        self.set_aside.append(target)
        with contextlib.suppress(OSError):
            os.chmod(target, 0o600)  # it may hold batches: private like the rest
        _log.warning("galileo-otel: spool file %s set aside as %s: %s", path, target.name, why)

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close this process's connection (a later call opens a new one)."""
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None and self._pid == os.getpid():
                conn.close()

    def _run(self, fn: Callable[[sqlite3.Connection, str], Any], *, write: bool = False) -> Any:
        """Run ``fn(conn, owner)``, in one transaction when ``write``; errors as SpoolError."""
        with self._lock:
            try:
                conn = self._connection()
                if not write:
                    return fn(conn, self._owner)
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(conn, self._owner)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
                return result
            except sqlite3.Error as exc:
                raise SpoolError(errno.EIO, f"spool database {self.db_path}: {exc}") from exc

    # --- writing --------------------------------------------------------------------------------
    def write(self, header: dict[str, Any], payload: bytes) -> SpoolEntry | None:
        """Persist a batch owned by this process; ``None`` when the spool is full.

        Raises:
            SpoolError: The database could not be written.
        """
        text = json.dumps(header, separators=(",", ":"), default=str)
        size = len(payload) + len(text)
        traces = int(header.get("traces", 0))
        now = self._clock()

        def insert(conn: sqlite3.Connection, owner: str) -> int | None:
            # One statement reads the running total and the database's pages (three did).
            total, pages, free = conn.execute(_ROOM_SQL).fetchone()
            if int(total or 0) + size > self.max_bytes or not self._room_for(pages, free, size):
                return None
            cur = conn.execute(
                "INSERT INTO batch (created, owner, lease, origin, traces, bytes, header, payload)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (now, owner, now + LEASE_S, self.origin, traces, size, text, payload),
            )
            _add(conn, "batch_bytes", size)
            return int(cur.lastrowid or 0)

        row_id = self._run(insert, write=True)
        return None if row_id is None else SpoolEntry(self, row_id, header, payload)

    def _disk_room(self, conn: sqlite3.Connection, size: int) -> bool:
        """Whether a row of ``size`` bytes keeps the spool's files within their bound.

        Called inside the write transaction. The database's pages (``page_count``, which
        counts what the WAL holds too) plus what the row may add beyond the free pages, plus
        the WAL at its cap with this transaction's frames on top, plus the WAL index.
        """
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        (free,) = conn.execute("PRAGMA freelist_count").fetchone()
        return self._room_for(pages, free, size)

    def _room_for(self, pages: int, free: int, size: int) -> bool:
        """:meth:`_disk_room` for a database of ``pages`` pages of which ``free`` are free."""
        page = self._page
        grow = max(0, size + page - int(free) * page)
        # The WAL at its cap (frames carry a 24-byte header), plus this transaction's frames: a
        # dead letter moves a row, so twice its pages, and a few b-tree and meta pages.
        wal = self.wal_limit_bytes * (page + 24) // page + 2 * size + 8 * page
        return int(pages) * page + grow + wal + _SHM_BYTES <= self.max_bytes + DISK_TOLERANCE_BYTES

    def delete(self, row_id: int) -> None:
        """Remove a settled batch (confirmed, or moved to the dead letters).

        The delete that empties the queue also gives the pages back and truncates the WAL
        (at most every few seconds): after an outage, the disk shrinks once the backlog is sent.
        """

        def delete(conn: sqlite3.Connection, _owner: str) -> bool:
            left = _delete_batch(conn, row_id)
            return (_total(conn, "batch_bytes") if left is None else left) <= 0

        if self._run(delete, write=True) and self._clock() >= self._next_idle_compact:
            self._next_idle_compact = self._clock() + _IDLE_COMPACT_S
            self.compact()

    # --- owning ---------------------------------------------------------------------------------
    def renew(self) -> int:
        """Extend the leases of every row this process owns; returns how many it owns."""
        now = self._clock()

        def renew(conn: sqlite3.Connection, owner: str) -> int:
            conn.execute(
                "INSERT OR REPLACE INTO owner_lease (owner, until) VALUES (?, ?)",
                (owner, now + LEASE_S),
            )
            # Owners that have not renewed for a day are long gone: their rows are adopted.
            conn.execute("DELETE FROM owner_lease WHERE until < ?", (now - 86_400.0,))
            # Re-seeded here (every few seconds, not on every write): see _TOTALS.
            for name, table in (("batch_bytes", "batch"), ("dead_bytes", "dead")):
                conn.execute(
                    f"UPDATE meta SET value = (SELECT COALESCE(SUM(bytes), 0) FROM {table})"
                    " WHERE name = ?",
                    (name,),
                )
            (owned,) = conn.execute(
                "SELECT COUNT(*) FROM batch WHERE owner = ?", (owner,)
            ).fetchone()
            return int(owned)

        return int(self._run(renew, write=True))

    def disown(self, keep: set[str] | frozenset[str] = frozenset()) -> int:
        """End the leases of our rows but ``keep`` (at shutdown): anyone may adopt them now."""

        def disown(conn: sqlite3.Connection, owner: str) -> int:
            rows = conn.execute("SELECT id FROM batch WHERE owner = ?", (owner,)).fetchall()
            ids = [(r[0],) for r in rows if str(r[0]) not in keep]
            conn.executemany("UPDATE batch SET lease = 0 WHERE id = ?", ids)
            return len(ids)

        return int(self._run(disown, write=True))

    def adopt(self) -> list[tuple[str, int]]:
        """Take over the rows of our API key whose owners are gone; ``(name, traces)`` each.

        Rows of other API keys are left alone (see :meth:`foreign`).
        """
        now = self._clock()

        def adopt(conn: sqlite3.Connection, owner: str) -> list[tuple[str, int]]:
            rows = conn.execute(
                "SELECT b.id, b.owner,"
                " CASE WHEN b.lease = 0 THEN 0 ELSE MAX(b.lease, COALESCE(l.until, 0)) END,"
                " b.traces FROM batch b LEFT JOIN owner_lease l ON l.owner = b.owner"
                " WHERE b.owner != ? AND (b.origin IS ? OR b.origin IS NULL) ORDER BY b.id",
                (owner, self.origin),
            ).fetchall()
            exited: dict[str, bool] = {}  # owner -> its process has exited (asked once)
            taken: list[tuple[str, int]] = []
            for row_id, old, lease, traces in rows:
                if lease >= now:  # leased: only an exited owner gives it up
                    if old not in exited:
                        exited[old] = _owner_exited(old)
                    if not exited[old]:
                        continue
                cur = conn.execute(
                    "UPDATE batch SET owner = ?, lease = ? WHERE id = ? AND owner = ?",
                    (owner, now + LEASE_S, row_id, old),
                )
                if cur.rowcount:
                    taken.append((str(row_id), int(traces)))
            return taken

        return list(self._run(adopt, write=True))

    def claim_oldest(
        self, limit: int, skip: set[str] | frozenset[str] = frozenset()
    ) -> list[SpoolEntry]:
        """Load up to ``limit`` of this process's rows, oldest first, leaving out ``skip``.

        A row whose header cannot be read is moved to the dead letters (logged), never retried.
        """
        if limit <= 0:
            return []

        def load(conn: sqlite3.Connection, owner: str) -> list[tuple[int, str, bytes]]:
            out: list[tuple[int, str, bytes]] = []
            cur = conn.execute(
                "SELECT id, header, payload FROM batch WHERE owner = ? ORDER BY id", (owner,)
            )
            try:
                for row_id, header, payload in cur:
                    if str(row_id) in skip:
                        continue
                    out.append((row_id, header, payload))
                    if len(out) >= limit:
                        break
            finally:
                # A cursor left open keeps its read transaction: no checkpoint could then
                # start the WAL over, and it would grow past its cap.
                cur.close()
            return out

        entries: list[SpoolEntry] = []
        for row_id, text, payload in self._run(load):
            try:
                header = json.loads(text)
                if not isinstance(header, dict):
                    raise ValueError("header is not an object")
                payload = bytes(payload)
            except (ValueError, TypeError) as exc:
                _log.warning("galileo-otel: unreadable spool batch %s set aside: %s", row_id, exc)
                self._bury(row_id, {"reason": "unreadable", "error": str(exc)})
                continue
            entries.append(SpoolEntry(self, row_id, header, payload))
        return entries

    def owned_names(self) -> set[str]:
        """Names of the rows this process owns now."""
        rows = self._run(
            lambda c, o: c.execute("SELECT id FROM batch WHERE owner = ?", (o,)).fetchall()
        )
        return {str(r[0]) for r in rows}

    # --- dead letters ---------------------------------------------------------------------------
    def dead_letter(self, entry: SpoolEntry, error: dict[str, Any]) -> str:
        """Move a batch to the dead letters with a note of why; it is never sent again."""
        entry._payload = None
        return self._bury(entry.id, error)

    def dead_letter_new(self, header: dict[str, Any], payload: bytes, error: dict[str, Any]) -> str:
        """Write a batch that never reached the spool straight to the dead letters."""
        text = json.dumps(header, separators=(",", ":"), default=str)
        return str(
            self._run(lambda c, _o: self._insert_dead(c, text, payload, header, error), write=True)
        )

    def _bury(self, row_id: int, error: dict[str, Any]) -> str:
        def bury(conn: sqlite3.Connection, _owner: str) -> str:
            row = conn.execute(
                "SELECT header, payload FROM batch WHERE id = ?", (row_id,)
            ).fetchone()
            _delete_batch(conn, row_id)
            if row is None:
                return "gone"
            try:
                header = json.loads(row[0])
            except ValueError:
                header = {}
            return self._insert_dead(conn, str(row[0]), bytes(row[1]), header, error)

        return str(self._run(bury, write=True))

    def _insert_dead(
        self,
        conn: sqlite3.Connection,
        text: str,
        payload: bytes,
        header: Any,
        error: dict[str, Any],
    ) -> str:
        size = len(text) + len(payload)
        if size > self.dead_max_bytes:
            self._dead_dropped += 1
            return "dropped (larger than GALILEO_SPOOL_DEAD_MAX_BYTES)"
        used = _total(conn, "dead_bytes")
        # Oldest dead letters go first: the newest failures are the ones worth reading. They
        # make room both under their own bound and on the disk.
        if used + size > self.dead_max_bytes or not self._disk_room(conn, size):
            oldest = conn.execute("SELECT id, bytes FROM dead ORDER BY id").fetchall()
            for old_id, old_bytes in oldest:
                conn.execute("DELETE FROM dead WHERE id = ?", (old_id,))
                _add(conn, "dead_bytes", -int(old_bytes))
                self._dead_evicted += 1
                used -= old_bytes
                if used + size <= self.dead_max_bytes and self._disk_room(conn, size):
                    break
            else:
                if not self._disk_room(conn, size):
                    self._dead_dropped += 1
                    return "dropped (the spool is full: GALILEO_SPOOL_MAX_BYTES)"
        traces = int(header.get("traces", 0)) if isinstance(header, dict) else 0
        cur = conn.execute(
            "INSERT INTO dead (created, traces, bytes, header, payload, error)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (self._clock(), traces, size, text, payload, json.dumps(error, default=str)),
        )
        _add(conn, "dead_bytes", size)
        return f"{self.db_path} (dead letter {cur.lastrowid})"

    # --- reading (tests, the CLI, stats) --------------------------------------------------------
    def pending_names(self) -> list[str]:
        """Names of every pending batch, whoever owns it, oldest first."""
        rows = self._run(lambda c, _o: c.execute("SELECT id FROM batch ORDER BY id").fetchall())
        return [str(r[0]) for r in rows]

    def dead_names(self) -> list[str]:
        """Names of the dead-lettered batches."""
        rows = self._run(lambda c, _o: c.execute("SELECT id FROM dead ORDER BY id").fetchall())
        return [str(r[0]) for r in rows]

    def dead_errors(self) -> list[dict[str, Any]]:
        """The notes of why each dead-lettered batch was set aside, oldest first."""
        rows = self._run(lambda c, _o: c.execute("SELECT error FROM dead ORDER BY id").fetchall())
        return [json.loads(r[0]) for r in rows]

    def clear_dead(self) -> int:
        """Remove every dead-lettered batch (after their cause is fixed); returns how many."""

        def clear(conn: sqlite3.Connection, _owner: str) -> int:
            removed = int(conn.execute("DELETE FROM dead").rowcount)
            conn.execute("UPDATE meta SET value = 0 WHERE name = 'dead_bytes'")
            return removed

        return int(self._run(clear, write=True))

    def usage(self) -> dict[str, int]:
        """Rows and bytes: pending (all owners), ours, other API keys', dead letters.

        Also ``disk_bytes`` (the database, WAL and WAL index files now), and this process's
        ``dead_dropped`` / ``dead_evicted`` (dead letters that did not fit / made room).
        """

        def usage(conn: sqlite3.Connection, owner: str) -> dict[str, int]:
            rows, size, traces = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(bytes), 0), COALESCE(SUM(traces), 0) FROM batch"
            ).fetchone()
            (foreign,) = conn.execute(
                "SELECT COUNT(*) FROM batch WHERE origin IS NOT NULL AND origin IS NOT ?",
                (self.origin,),
            ).fetchone()
            (foreign_traces,) = conn.execute(
                "SELECT COALESCE(SUM(traces), 0) FROM batch"
                " WHERE origin IS NOT NULL AND origin IS NOT ?",
                (self.origin,),
            ).fetchone()
            dead, dead_size = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM dead"
            ).fetchone()
            disk = 0
            for path in self._files():
                with contextlib.suppress(OSError):
                    disk += os.stat(path).st_size
            return {
                "disk_bytes": disk,
                "dead_dropped": self._dead_dropped,
                "dead_evicted": self._dead_evicted,
                "batches": int(rows),
                "bytes": int(size),
                "traces": int(traces),
                "foreign_batches": int(foreign),
                "foreign_traces": int(foreign_traces),
                "dead_batches": int(dead),
                "dead_bytes": int(dead_size),
            }

        return dict(self._run(usage))

    # --- session ids ----------------------------------------------------------------------------
    def note_session(self, local_id: str, galileo_id: str) -> None:
        """Remember the Galileo id of a session created for spooled batches (crash-safe)."""
        now = self._clock()
        with contextlib.suppress(SpoolError):
            self._run(
                lambda c, _o: c.execute(
                    "INSERT OR REPLACE INTO session_note VALUES (?, ?, ?)",
                    (local_id, galileo_id, now),
                ),
                write=True,
            )

    def known_session(self, local_id: str) -> str | None:
        """The Galileo id noted for a session's local id, if any."""
        try:
            row = self._run(
                lambda c, _o: c.execute(
                    "SELECT galileo_id FROM session_note WHERE local_id = ?", (local_id,)
                ).fetchone()
            )
        except SpoolError:
            return None
        return str(row[0]) if row else None

    def forget_session(self, local_id: str, galileo_id: str) -> None:
        """Drop the note of ``galileo_id`` for ``local_id``: the server no longer has it.

        Compare-and-delete: a note another process already replaced with a new id stays.
        """
        with contextlib.suppress(SpoolError):
            self._run(
                lambda c, _o: c.execute(
                    "DELETE FROM session_note WHERE local_id = ? AND galileo_id = ?",
                    (local_id, galileo_id),
                ),
                write=True,
            )

    # --- housekeeping ---------------------------------------------------------------------------
    def compact(self) -> None:
        """Give the pages of sent batches back to the disk, and trim the WAL file."""

        def compact(conn: sqlite3.Connection, _owner: str) -> None:
            conn.executescript("PRAGMA incremental_vacuum;")  # steps to the end: all pages
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

        # Housekeeping only: a busy database now is compacted next time.
        with contextlib.suppress(SpoolError):
            self._run(compact)

    def cleanup(self, now: float | None = None) -> None:
        """Remove old session notes."""
        cutoff = (self._clock() if now is None else now) - _SESSION_NOTE_MAX_AGE_S
        self._run(
            lambda c, _o: c.execute("DELETE FROM session_note WHERE created < ?", (cutoff,)),
            write=True,
        )


# The write's one look before it inserts: the pending bytes' running total, the database's
# pages (counting what the WAL holds) and its free pages.
_ROOM_SQL = (
    "SELECT (SELECT value FROM meta WHERE name = 'batch_bytes'),"
    " (SELECT page_count FROM pragma_page_count()),"
    " (SELECT freelist_count FROM pragma_freelist_count())"
)


def _add(conn: sqlite3.Connection, name: str, delta: int) -> None:
    """Move a running total of ``meta`` by ``delta`` (inside the caller's transaction)."""
    conn.execute("UPDATE meta SET value = value + ? WHERE name = ?", (delta, name))


def _delete_batch(conn: sqlite3.Connection, row_id: int) -> int | None:
    """Delete a batch row and take its bytes off the running total; the total left.

    ``None`` when there was no such row. Not ``DELETE ... RETURNING``: SQLite then reads the
    whole deleted row, its payload's overflow pages included (one more copy of the batch).
    """
    row = conn.execute("SELECT bytes FROM batch WHERE id = ?", (row_id,)).fetchone()
    if row is None:
        return None
    conn.execute("DELETE FROM batch WHERE id = ?", (row_id,))
    _add(conn, "batch_bytes", -int(row[0]))
    return _total(conn, "batch_bytes")


def _total(conn: sqlite3.Connection, name: str) -> int:
    """A running total of ``meta`` (payload bytes of pending batches or of dead letters)."""
    row = conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
    return int(row[0]) if row else 0


def _is_corrupt(exc: sqlite3.DatabaseError) -> bool:
    text = str(exc).lower()
    return isinstance(exc, sqlite3.DatabaseError) and (
        "not a database" in text or "malformed" in text or "corrupt" in text
    )


def pending_in(path: Path | str) -> list[str]:
    """Names of the pending batches in the spool at ``path`` (opened and closed again)."""
    with Spool(path) as spool:
        return spool.pending_names()


def dead_in(path: Path | str) -> list[dict[str, Any]]:
    """The notes of the dead-lettered batches in the spool at ``path``, oldest first."""
    with Spool(path) as spool:
        return spool.dead_errors()


def open_spool(
    path: Path | None,
    *,
    origin: str,
    max_bytes: int,
    dead_max_bytes: int,
    why_off: str,
) -> tuple[Spool | None, str]:
    """Open the spool at ``path``; ``(None, reason)`` when it is off or unusable (logged once)."""
    if path is None:
        return None, why_off
    try:
        return Spool(path, origin=origin, max_bytes=max_bytes, dead_max_bytes=dead_max_bytes), ""
    except (OSError, sqlite3.Error) as exc:
        _log.warning(
            "galileo-otel: spool %s unusable, reliable delivery runs without one: %s", path, exc
        )
        return None, f"unusable: {exc}"
