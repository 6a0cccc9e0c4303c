"""Counters and the ``stats()`` snapshot: one place for their names and one merge of spans.

Both pipelines (in-process and worker process) count through :class:`Counters` and put the
app-side hand-off's span counters into their snapshot with :func:`merge_spans`, so a key means
the same from either. :func:`pipeline_snapshot` is the in-process pipeline's whole ``stats()``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from galileo_otel.export.batcher import Batcher
    from galileo_otel.export.ledger import Ledger
    from galileo_otel.export.spooler import Spooler

__all__ = [
    "ALWAYS",
    "Counters",
    "merge_parts",
    "merge_spans",
    "pipeline_snapshot",
    "spool_figures",
    "stats_of",
]

# Keys every snapshot has, 0 until counted.
ALWAYS = (
    "traces_batched",
    "traces_sent",
    "traces_confirmed",
    "traces_spooled",
    "traces_dead_lettered",
    "traces_failed",
    "traces_adopted",
    "traces_handed_over",
    "dropped.spool_full",
    "dropped.sampled",
    "requests_sent",
    "requests_retried",
    "requests_confirmed",
)


class Counters:
    """Named integer counters, safe to add to from any thread."""

    def __init__(self) -> None:
        # Guards _counts (every pipeline thread counts; stats() copies).
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def add(self, key: str, n: int = 1) -> None:
        """Add ``n`` to ``key``."""
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + n

    def get(self, key: str) -> int:
        """The count of ``key`` now (0 if never counted)."""
        with self._lock:
            return self._counts.get(key, 0)

    def snapshot(self) -> dict[str, Any]:
        """A copy of every counter, with :data:`ALWAYS` present."""
        with self._lock:
            out: dict[str, Any] = dict(self._counts)
        for key in ALWAYS:
            out.setdefault(key, 0)
        return out


def merge_spans(
    out: dict[str, Any], *, taken: int, queued: int, dropped_full: int, dropped_closed: int
) -> None:
    """Put the hand-off's span counters into ``out``, added to what ``out`` already counts.

    ``out`` may hold an inner pipeline's drops (the worker process's, or spans lost at
    shutdown); ``spans_dropped`` is always ``dropped.queue_full + dropped.shutdown``.
    """
    out["spans_queued"] = taken + queued
    out["queue_size"] = queued
    out["dropped.queue_full"] = dropped_full + int(out.get("dropped.queue_full", 0))
    out["dropped.shutdown"] = dropped_closed + int(out.get("dropped.shutdown", 0))
    out["spans_dropped"] = out["dropped.queue_full"] + out["dropped.shutdown"]


def spool_figures(usage: Mapping[str, int]) -> dict[str, int]:
    """The spool's size as ``stats()`` names it, from ``Spool.usage()``."""
    return {
        "spool_files": usage.get("batches", 0),
        "spool_bytes": usage.get("bytes", 0),
        "spool_dead_files": usage.get("dead_batches", 0),
        "spool_dead_bytes": usage.get("dead_bytes", 0),
        "spool_foreign_batches": usage.get("foreign_batches", 0),
        "spool_foreign_traces": usage.get("foreign_traces", 0),
        # The directory's bytes on disk (database, WAL, index), what GALILEO_SPOOL_MAX_BYTES
        # bounds; dead letters that did not fit the cap, or were evicted to make room.
        "spool_disk_bytes": usage.get("disk_bytes", 0),
        "spool_dead_dropped": usage.get("dead_dropped", 0),
        "spool_dead_evicted": usage.get("dead_evicted", 0),
    }


def stats_of(part: Any) -> Mapping[str, Any]:
    """A part's own ``stats()`` (the tracker's, say); empty when it has none or it fails."""
    fn = getattr(part, "stats", None)
    if callable(fn):
        with contextlib.suppress(Exception):
            return dict(fn())
    return {}


def merge_parts(out: dict[str, Any], **parts: Mapping[str, Any]) -> None:
    """Put each part's counters into ``out`` as ``<part>.<key>`` (``sessions.``, ``convert.``)."""
    for name, values in parts.items():
        for k, v in values.items():
            out[f"{name}.{k}"] = v


def pipeline_snapshot(
    counters: Counters,
    *,
    ledger: Ledger,
    spooler: Spooler,
    batcher: Batcher,
    queued: int,
    dropped: tuple[int, int],
    tracker: Any,
    convert: Mapping[str, Any],
) -> dict[str, Any]:
    """The in-process pipeline's ``stats()``, read from each of its objects (never waits on I/O).

    Args:
        counters: The pipeline's counters.
        ledger: Pending batches and traces, senders busy, the spool's last known size.
        spooler: Whether a spool is in use, and why not.
        batcher: Spans taken off the queue; the assembler's counters.
        queued: Spans in the app's queue now.
        dropped: Spans the queue refused: ``(queue full, closed or disabled)``.
        tracker: The session tracker if built (``sessions.*``), else ``None``.
        convert: What conversion cut or folded (``convert.*``).
    """
    out = counters.snapshot()
    figures = ledger.figures()
    usage = figures.pop("usage")
    out.update(figures)
    spool = spooler.spool
    out["spool_enabled"] = spool is not None
    if spool is None:
        out["spool_reason"] = spooler.reason
    out.update(spool_figures(usage))
    full, closed = dropped
    merge_spans(out, taken=batcher.taken, queued=queued, dropped_full=full, dropped_closed=closed)
    merge_parts(
        out,
        assembler=batcher.assembler_stats(),
        sessions=stats_of(tracker),
        convert=convert,
    )
    return out
