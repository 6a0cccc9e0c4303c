"""What the pipeline's objects share: the items that travel between them, and how they report.

A :class:`Batch` is open on the batcher; a closed one travels as an :class:`Outbound` through
the ledger's queues to the spooler and the senders; a :class:`Flush` marker travels behind
the batches it covers. :class:`Report` is the one way every thread counts and logs;
:class:`LazyTracker` is the session tracker the batcher and the sink share.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from galileo_otel.export.spool import SpoolEntry
from galileo_otel.export.spool_format import BatchHeader
from galileo_otel.export.stats import Counters

_log = logging.getLogger("galileo_otel.export.pipeline")

_LOG_EVERY_S = 10.0


class RateLimitedLog:
    """Logs one line per key per interval, then says how many were suppressed."""

    def __init__(self, interval_s: float = _LOG_EVERY_S) -> None:
        self._interval = interval_s
        self._last: dict[str, tuple[float, int]] = {}
        # Guards _last (loggers on every pipeline thread).
        self._lock = threading.Lock()

    def __call__(self, level: int, key: str, msg: str, *args: Any, exc_info: Any = None) -> None:
        """Log ``msg`` unless a line with ``key`` was logged less than an interval ago."""
        now = time.monotonic()
        with self._lock:
            last, suppressed = self._last.get(key, (-1e18, 0))
            if now - last < self._interval:
                self._last[key] = (last, suppressed + 1)
                return
            self._last[key] = (now, 0)
        if suppressed:
            msg += " (%d similar messages suppressed)"
            args = (*args, suppressed)
        _log.log(level, msg, *args, exc_info=exc_info)


@dataclass
class Batch:
    """Traces of one session collected on the worker, not yet closed."""

    record: Any
    parts: list[bytes] = field(default_factory=list)
    size: int = 1
    spans: int = 0
    placeholder: bool = False


@dataclass
class Flush:
    """A flush request travelling through the queue behind the spans it covers."""

    final: bool
    done: threading.Event = field(default_factory=threading.Event)
    seq: int = -1


@dataclass
class Outbound:
    """A closed batch on its way to the server."""

    seq: int
    header: BatchHeader
    payload: bytes | None
    record: Any
    entry: SpoolEntry | None = None

    @property
    def traces(self) -> int:
        """Traces in the batch."""
        return self.header.traces

    def body(self) -> bytes:
        """The encoded traces (a JSON array), read from the spool for a spooled batch."""
        if self.payload is not None:
            return self.payload
        assert self.entry is not None
        return self.entry.payload()

    def session_record(self) -> Any:
        """The batch's session record (rebuilt from the header for a spooled batch)."""
        if self.record is None:
            from galileo_otel.sessions.tracker import SessionRecord

            self.record = SessionRecord.from_dict(dict(self.header.session))
        return self.record


class Report:
    """Counting and logging for every thread of one pipeline: counters and a rate-limited log."""

    def __init__(self, counters: Counters, say: RateLimitedLog) -> None:
        self.counters = counters
        self.say = say

    def count(self, key: str, n: int = 1) -> None:
        """Add ``n`` to the counter ``key``."""
        self.counters.add(key, n)

    def internal_error(self, where: str, exc: BaseException) -> None:
        """A bug of ours in ``where``: counted (``errors.<where>``) and logged, never raised."""
        self.counters.add(f"errors.{where}")
        self.say(
            logging.ERROR,
            f"internal-{where}",
            "galileo-otel: internal error in %s: %r",
            where,
            exc,
            exc_info=exc,
        )


class LazyTracker:
    """The session tracker: the one given, or one built from the settings on first use.

    The batcher and the sink call it (on their own threads); a tracker built here is closed by
    :meth:`close` (its store: files, Redis), one given is the giver's.

    Args:
        tracker: The tracker to use; ``None`` builds one from ``settings`` on first use.
        settings: What a built tracker is made from (``SessionTracker.from_settings``).
    """

    def __init__(self, tracker: Any, settings: Any) -> None:
        self._tracker = tracker
        self._owned = tracker is None
        self._settings = settings

    def __call__(self) -> Any:
        """The tracker, built now if it was not yet.

        No lock: :meth:`ExportPipeline.start` builds it on the caller's thread before the
        worker starts (a lock held across the store's I/O could be inherited by a fork).
        """
        if self._tracker is None:
            from galileo_otel.sessions.tracker import SessionTracker

            self._tracker = SessionTracker.from_settings(self._settings)
        return self._tracker

    @property
    def built(self) -> Any:
        """The tracker if there is one yet (``None`` before the first use): never builds."""
        return self._tracker

    def close(self, on_error: Callable[[str, BaseException], None]) -> None:
        """Close a tracker built here; ``on_error(where, exc)`` hears of a failure."""
        if self._owned and self._tracker is not None:
            try:
                self._tracker.close()
            except Exception as exc:
                on_error("tracker close", exc)
