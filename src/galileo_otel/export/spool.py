"""Durable on-disk queue of Log Traces batches for reliable delivery: one file per batch.

A batch file is written under a temporary name, locked, then renamed into place, so a reader
never sees half a batch. Whoever holds a file's ``fcntl.flock`` lock owns it: the writer keeps
the lock while it sends, another process (or a later scan) claims a file only by taking the lock
without waiting. The kernel drops a lock when its process dies, so a crashed claimer's batches
become claimable again at once, with no stale-claim timeout. Layout::

    <spool>/<20-digit ns>-<pid>-<n>.batch     pending batches, oldest first by name
    <spool>/.tmp-*                             being written (removed if their writer died)
    <spool>/sessions/<local session id>        Galileo id of a session created for a batch
    <spool>/dead/<name>.batch + .error.json    permanently rejected batches, never resent

A batch file is one JSON header line (destination, session record, counts) followed by the
request's ``traces`` array, encoded once. Durable across a process crash (kill -9); with
``fsync=True`` also across a power loss.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

try:  # POSIX; elsewhere claims are only exclusive within one process
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["BATCH_SUFFIX", "Spool", "SpoolEntry"]

_log = logging.getLogger(__name__)

BATCH_SUFFIX = ".batch"
_TMP_PREFIX = ".tmp-"
# A temp file older than this whose lock is free belongs to a writer that died mid-write.
_STALE_TMP_S = 60.0
# Session id notes are tiny; keep them long enough for any spooled batch to need them.
_SESSION_NOTE_MAX_AGE_S = 30 * 24 * 3600.0


def _try_lock(fd: int) -> bool:
    if fcntl is None:  # pragma: no cover - Windows
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


class SpoolEntry:
    """One batch file, claimed (locked) by this process until :meth:`release` or removal.

    Attributes:
        path: Where the file is now.
        header: The batch's JSON header (destination, session record, counts).
    """

    __slots__ = ("_fd", "_payload", "header", "path")

    def __init__(self, path: Path, fd: int, header: dict[str, Any], payload: bytes | None) -> None:
        self.path = path
        self.header = header
        self._fd: int | None = fd
        self._payload = payload

    @property
    def name(self) -> str:
        """The file name, unique across processes sharing the spool."""
        return self.path.name

    @property
    def claimed(self) -> bool:
        """Whether this process still holds the file's lock."""
        return self._fd is not None

    def payload(self) -> bytes:
        """The encoded ``traces`` array of the batch (read from disk once, if needed)."""
        if self._payload is None:
            data = self.path.read_bytes()
            self._payload = data[data.index(b"\n") + 1 :]
        return self._payload

    def delete(self) -> None:
        """Remove the file (the server confirmed it), then drop the claim."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self.release()

    def release(self) -> None:
        """Drop the claim and the in-memory payload; the file stays for a later claim."""
        fd, self._fd = self._fd, None
        self._payload = None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def forget(self) -> None:
        """Drop the claim in a forked child without unlocking the parent's shared lock."""
        # flock locks belong to the open file description the child shares with its parent;
        # closing the child's descriptor leaves the parent's lock in place.
        self.release()


class Spool:
    """A directory of batch files shared safely by threads and processes.

    Args:
        path: The spool directory (created if missing).
        fsync: Also flush each batch to the disk before sending it (survives a power loss).
    """

    def __init__(self, path: Path | str, *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.dead_path = self.path / "dead"
        self.sessions_path = self.path / "sessions"
        for folder in (self.path, self.dead_path, self.sessions_path):
            folder.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync
        self._counter = itertools.count()

    # --- writing --------------------------------------------------------------------------------
    def write(self, header: dict[str, Any], payload: bytes) -> SpoolEntry:
        """Persist a batch and return it claimed by this process.

        The lock is taken on the temporary file before the rename, so no other process can
        claim the batch between its appearance and the first send.
        """
        name = f"{time.time_ns():020d}-{os.getpid()}-{next(self._counter)}{BATCH_SUFFIX}"
        tmp = self.path / f"{_TMP_PREFIX}{name}"
        final = self.path / name
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            _try_lock(fd)
            data = json.dumps(header, separators=(",", ":")).encode() + b"\n" + payload
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if self._fsync:
                os.fsync(fd)
            os.rename(tmp, final)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return SpoolEntry(final, fd, header, payload)

    # --- claiming -------------------------------------------------------------------------------
    def pending_names(self) -> list[str]:
        """Names of the batch files present, oldest first (claimed by someone or not)."""
        try:
            names = [
                n
                for n in os.listdir(self.path)
                if n.endswith(BATCH_SUFFIX) and not n.startswith(_TMP_PREFIX)
            ]
        except FileNotFoundError:
            return []
        names.sort()
        return names

    def claim(self, name: str) -> SpoolEntry | None:
        """Take a batch file if nobody holds it and it is still there; else ``None``."""
        path = self.path / name
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            if not _try_lock(fd):
                os.close(fd)
                return None
            # The holder may have deleted or dead-lettered it between our open and our lock.
            st = os.fstat(fd)
            try:
                now = os.stat(path)
            except FileNotFoundError:
                now = None
            if st.st_nlink == 0 or now is None or now.st_ino != st.st_ino:
                os.close(fd)
                return None
            with os.fdopen(os.dup(fd), "rb") as fh:
                data = fh.read()
            cut = data.index(b"\n")
            header = json.loads(data[:cut])
        except (OSError, ValueError) as exc:
            os.close(fd)
            _log.warning("galileo-otel: unreadable spool file %s set aside: %s", name, exc)
            self._move_to_dead(path, {"reason": "unreadable", "error": str(exc)})
            return None
        return SpoolEntry(path, fd, header, data[cut + 1 :])

    def claim_oldest(
        self,
        limit: int,
        skip: set[str] | frozenset[str] = frozenset(),
        *,
        accept: Callable[[dict[str, Any]], bool] | None = None,
        rejected: set[str] | None = None,
    ) -> list[SpoolEntry]:
        """Claim up to ``limit`` free batch files, oldest first, skipping names in ``skip``.

        Args:
            limit: Most files to claim.
            skip: Names not to try.
            accept: Whether a claimed file's header is for us; a file it refuses is released
                untouched (left for its owner) and its name added to ``rejected``.
            rejected: Collects the names ``accept`` refused.
        """
        out: list[SpoolEntry] = []
        if limit <= 0:
            return out
        for name in self.pending_names():
            if name in skip:
                continue
            entry = self.claim(name)
            if entry is None:
                continue
            if accept is not None and not accept(entry.header):
                entry.release()
                if rejected is not None:
                    rejected.add(name)
                continue
            out.append(entry)
            if len(out) >= limit:
                break
        return out

    # --- setting aside --------------------------------------------------------------------------
    def dead_letter(self, entry: SpoolEntry, error: dict[str, Any]) -> Path:
        """Move a claimed batch to ``dead/`` with a note of why; it is never sent again."""
        target = self._move_to_dead(entry.path, error)
        entry.release()
        return target

    def dead_letter_new(
        self, header: dict[str, Any], payload: bytes, error: dict[str, Any]
    ) -> Path:
        """Write a batch that never reached the spool straight to ``dead/``."""
        return self._move_to_dead(self.write(header, payload), error)

    def _move_to_dead(self, source: Path | SpoolEntry, error: dict[str, Any]) -> Path:
        entry = source if isinstance(source, SpoolEntry) else None
        path = entry.path if entry else source
        assert isinstance(path, Path)
        target = self.dead_path / path.name
        try:
            os.rename(path, target)
            note = self.dead_path / (path.name + ".error.json")
            note.write_text(json.dumps(error, default=str, indent=1))
        except OSError as exc:
            _log.warning("galileo-otel: could not set aside spool file %s: %s", path.name, exc)
        if entry is not None:
            entry.release()
        return target

    def dead_names(self) -> list[str]:
        """Names of the dead-lettered batch files."""
        return sorted(n for n in os.listdir(self.dead_path) if n.endswith(BATCH_SUFFIX))

    # --- session ids ----------------------------------------------------------------------------
    def note_session(self, local_id: str, galileo_id: str) -> None:
        """Remember the Galileo id of a session created for spooled batches (crash-safe)."""
        tmp = self.sessions_path / f"{_TMP_PREFIX}{local_id}-{os.getpid()}"
        with contextlib.suppress(OSError):
            tmp.write_text(galileo_id)
            os.replace(tmp, self.sessions_path / local_id)

    def known_session(self, local_id: str) -> str | None:
        """The Galileo id noted for a session's local id, if any."""
        try:
            return (self.sessions_path / local_id).read_text().strip() or None
        except (OSError, ValueError):
            return None

    # --- housekeeping ---------------------------------------------------------------------------
    def cleanup(self, now: float | None = None) -> None:
        """Remove temp files of dead writers and old session notes."""
        now = time.time() if now is None else now
        for entry in self._scan(self.path):
            if entry.name.startswith(_TMP_PREFIX) and self._older(entry, now, _STALE_TMP_S):
                if self._unlocked(entry.path):
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)
        for entry in self._scan(self.sessions_path):
            limit = _STALE_TMP_S if entry.name.startswith(_TMP_PREFIX) else _SESSION_NOTE_MAX_AGE_S
            if self._older(entry, now, limit):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)

    @staticmethod
    def _older(entry: os.DirEntry[str], now: float, age_s: float) -> bool:
        try:
            return now - entry.stat().st_mtime >= age_s
        except OSError:
            return False

    @staticmethod
    def _scan(folder: Path) -> Iterator[os.DirEntry[str]]:
        try:
            with os.scandir(folder) as it:
                yield from list(it)
        except FileNotFoundError:
            return

    @staticmethod
    def _unlocked(path: str) -> bool:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return False
        try:
            return _try_lock(fd)
        finally:
            os.close(fd)
