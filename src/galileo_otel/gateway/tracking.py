"""Which traces the export pipeline may still be holding open, as seen from the gateway.

The pipeline's assembler (:mod:`galileo_otel.export.assemble`) holds the spans of a trace in
memory until its local root ends, or until no span of it arrived for ``trace_timeout``. Until
then a ``force_flush`` does not cover them, so the write-ahead log must keep the requests that
carried them. This table follows the same two rules from the outside, conservatively:

- a span whose parent is ``None`` or remote (a local root) closes its trace;
- any other span (re)opens it, with its last activity at the later of the gateway's clock and
  the span's own end time (the assembler times a trace by its spans' end times);
- an open trace counts as closed once ``trace_timeout + margin`` passed since its last activity
  (the assembler checks for idle traces about once a second; the margin covers that).

An assembler that ships a trace earlier (too many open traces) only makes this table cautious.
Not thread-safe: the gateway calls it under its own lock.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["DEFAULT_MARGIN_NS", "OpenTraces"]

DEFAULT_MARGIN_NS = 3_000_000_000
"""How long after the assembler's idle timeout an open trace is taken as shipped."""


class OpenTraces:
    """Trace ids with spans the pipeline may still hold, and their last activity (ns).

    Args:
        trace_timeout_ns: The pipeline's ``trace_timeout``.
        margin_ns: Extra wait before an idle trace counts as shipped.
    """

    def __init__(self, trace_timeout_ns: int, margin_ns: int = DEFAULT_MARGIN_NS) -> None:
        self._wait_ns = trace_timeout_ns + margin_ns
        self._open: dict[int, int] = {}

    def note(self, spans: Iterable[Any], now_ns: int) -> set[int]:
        """Follow ``spans`` (in the order they were submitted); returns their trace ids."""
        seen: set[int] = set()
        for span in spans:
            ctx = span.context
            if ctx is None:
                continue
            trace_id = ctx.trace_id
            seen.add(trace_id)
            parent = span.parent
            if parent is None or parent.is_remote:
                self._open.pop(trace_id, None)
                continue
            last = max(now_ns, span.end_time or 0, self._open.get(trace_id, 0))
            self._open[trace_id] = last
        return seen

    def closed(self, trace_ids: Iterable[int], now_ns: int) -> bool:
        """Whether none of ``trace_ids`` may still be held open by the pipeline at ``now_ns``."""
        limit = now_ns - self._wait_ns
        for trace_id in trace_ids:
            last = self._open.get(trace_id)
            if last is not None and last > limit:
                return False
        return True

    def prune(self, now_ns: int) -> None:
        """Forget the traces that count as shipped (bounds the table's memory)."""
        limit = now_ns - self._wait_ns
        for trace_id in [t for t, last in self._open.items() if last <= limit]:
            del self._open[trace_id]

    def __len__(self) -> int:
        return len(self._open)
