"""The gateway's write-ahead log: OTLP requests on disk before they are answered 200.

One SQLite database (``wal.db``, mode 0600, in a 0700 directory) holds one row per accepted
request: the request's routing headers and its spans as a serialized
``ExportTraceServiceRequest``. A row is committed with ``synchronous=FULL`` before the gateway
answers 200, so a ``kill -9`` after the answer loses nothing; at the next start every row still
there is replayed into the export pipeline. A row is deleted only when the pipeline has made its
spans durable itself (see :mod:`galileo_otel.gateway.core` for the exact rule).

The log is bounded in bytes (the sum of the stored bodies): a row that would go past the bound
is refused with :class:`WalFullError`, which the gateway answers 503 with ``Retry-After``.
One gateway process owns a directory at a time (an exclusive lock on ``wal.lock``).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

__all__ = ["WalEntry", "WalFullError", "WalLockedError", "WriteAheadLog"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_ns INTEGER NOT NULL,
    headers TEXT NOT NULL,
    body BLOB NOT NULL
)
"""


class WalFullError(Exception):
    """The log holds ``max_bytes`` already: the request must be retried later."""


class WalLockedError(RuntimeError):
    """Another gateway process owns this directory."""


@dataclass(frozen=True)
class WalEntry:
    """One logged request.

    Attributes:
        id: Row id; increases with the order requests were accepted.
        headers: The routing headers (``project``, ``logstream``, ``experimentid``) that were set.
        body: A serialized ``ExportTraceServiceRequest`` (protobuf).
    """

    id: int
    headers: dict[str, str]
    body: bytes


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o700)


def _private_file(path: Path) -> None:
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o600)


class WriteAheadLog:
    """A bounded, durable log of accepted requests (thread-safe: one connection, one lock).

    Args:
        directory: Where ``wal.db`` and ``wal.lock`` live; created 0700.
        max_bytes: Largest total of stored bodies; 0 means no bound.
        synchronous: SQLite's ``synchronous`` mode. ``FULL`` (the gateway's): a commit is on
            disk when :meth:`append` returns. Anything else gives that up; only the
            benchmarks use it, to measure what the fsync costs.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_bytes: int,
        synchronous: Literal["FULL", "NORMAL", "OFF"] = "FULL",
    ) -> None:
        if synchronous not in ("FULL", "NORMAL", "OFF"):
            raise ValueError(f"synchronous must be FULL, NORMAL or OFF, not {synchronous!r}")
        self.directory = Path(directory).expanduser()
        _private_dir(self.directory)
        self.max_bytes = max_bytes
        self._lock_file = self._take_lock(self.directory / "wal.lock")
        path = self.directory / "wal.db"
        try:
            _private_file(path)
            # The WAL journal's side files get the database's mode from SQLite.
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk (fsync) when it returns; that is what the 200 promises.
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.execute(_SCHEMA)
            row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM entries")
            count, size = row.fetchone()
        except BaseException:
            self._lock_file.close()
            raise
        # Guards the connection and the two totals below.
        self._lock = threading.Lock()
        self._count = int(count)
        self._bytes = int(size)
        self._closed = False

    @staticmethod
    def _take_lock(path: Path) -> IO[bytes]:
        _private_file(path)
        handle = open(path, "rb+")
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no cross-process guard
            return handle
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.close()
            raise WalLockedError(
                f"another gateway is using {path.parent} (give each gateway its own "
                "GALILEO_GATEWAY_DIR)"
            ) from exc
        return handle

    def append(self, headers: Mapping[str, str], body: bytes, received_ns: int) -> int:
        """Store one request durably; returns its id.

        Raises:
            WalFullError: Storing it would go past ``max_bytes``.
        """
        encoded = json.dumps(dict(headers), sort_keys=True)
        with self._lock:
            if self.max_bytes and self._bytes + len(body) > self.max_bytes and self._count:
                raise WalFullError(
                    f"write-ahead log full ({self._bytes} of {self.max_bytes} bytes)"
                )
            cursor = self._db.execute(
                "INSERT INTO entries (received_ns, headers, body) VALUES (?, ?, ?)",
                (received_ns, encoded, body),
            )
            self._count += 1
            self._bytes += len(body)
            return int(cursor.lastrowid or 0)

    def delete(self, ids: Iterable[int]) -> int:
        """Delete the rows ``ids`` (their spans are durable elsewhere); returns how many went."""
        wanted = sorted(set(ids))
        if not wanted:
            return 0
        removed = 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for start in range(0, len(wanted), 500):
                    chunk = wanted[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    row = self._db.execute(
                        f"SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM entries "
                        f"WHERE id IN ({marks})",
                        chunk,
                    ).fetchone()
                    self._db.execute(f"DELETE FROM entries WHERE id IN ({marks})", chunk)
                    removed += int(row[0])
                    self._bytes -= int(row[1])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._count -= removed
        return removed

    def entries(self) -> Iterator[WalEntry]:
        """Every row, oldest first (read in pages: the log may be large)."""
        last = 0
        while True:
            with self._lock:
                rows = self._db.execute(
                    "SELECT id, headers, body FROM entries WHERE id > ? ORDER BY id LIMIT 64",
                    (last,),
                ).fetchall()
            if not rows:
                return
            for row_id, headers, body in rows:
                last = int(row_id)
                yield WalEntry(last, dict(json.loads(headers)), bytes(body))

    def usage(self) -> tuple[int, int]:
        """``(entries, bytes)`` held now."""
        with self._lock:
            return self._count, self._bytes

    def close(self) -> None:
        """Close the database and release the directory; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._db.close()
        self._lock_file.close()
