"""Trace assembly: gathers the ended spans of each trace until its local root ends, bounded in memory.

Runs on the export pipeline's background worker only; it is not thread-safe and needs no lock.

Semantics:

- A trace ships **complete** (``AssembledTrace.complete``) when its local root ends: the span whose
  parent is ``None`` or remote. Everything of that trace that ended before the root ships with it.
- A trace whose root has not ended ships **incomplete** when no span of it has ended for
  ``trace_timeout_ns`` (an idle timeout, so a long agent run that keeps producing spans is not cut
  in the middle), and at shutdown (`TraceAssembler.drain`).
- **Late spans**: a span of a trace that has already shipped (a child that ends after its root, or
  a second request of a distributed trace entering this process under its own remote-parented
  root) starts a new *part* of that trace (``AssembledTrace.part`` 1, 2, ...). A part ships like
  any trace: complete when a local root of it ends, else incomplete after the idle timeout or at
  shutdown. The converter gives part N > 0 its own Galileo trace id, so nothing already sent is
  overwritten; the OTel trace id stays the ``external_id`` of every part. Nothing is dropped;
  ``late_spans`` counts these spans. The ids of shipped traces are remembered for a bounded
  number of traces (``4 * max_open_traces``); a late span of a trace forgotten since starts
  part 0 again.
- **Bounds**: at most ``max_spans_per_trace`` spans are kept per trace part; further non-root
  spans are dropped and counted (``spans_cut``; the root is always kept, it carries the trace's
  input and output). At most ``max_open_traces`` parts are open at once; a new one beyond that
  ships the least recently active open trace early, incomplete (``traces_evicted``), rather than
  losing its spans.

Times: `add` stamps each open trace with its last activity, by default the span's own end time
(``time.time_ns()`` clock); `expire` must be given ``now_ns`` on the same clock. A caller that
prefers a monotonic clock passes ``now_ns`` to both.
"""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.sdk.trace import ReadableSpan

__all__ = ["AssembledTrace", "TraceAssembler"]


@dataclass(slots=True)
class AssembledTrace:
    """The spans of one trace (or one part of it), ready for conversion.

    Attributes:
        trace_id: The OTel trace id (128-bit int).
        root: The local root span (parent ``None`` or remote), or ``None`` when it never ended.
        spans: Every kept span of the trace, the root included, in the order they ended.
        complete: True when the trace shipped because its root ended.
        part: 0 for a trace's first shipment; N > 0 for spans that ended after part N-1 shipped.
        spans_cut: Spans of this trace dropped by the ``max_spans_per_trace`` cap.
    """

    trace_id: int
    root: ReadableSpan | None
    spans: list[ReadableSpan]
    complete: bool
    part: int = 0
    spans_cut: int = 0


class _OpenTrace:
    """One open trace part (a plain slotted class: one is made per trace, on the worker)."""

    __slots__ = ("cut", "last_ns", "part", "spans")

    def __init__(self, part: int, last_ns: int) -> None:
        self.spans: list[ReadableSpan] = []
        self.part = part
        self.last_ns = last_ns
        self.cut = 0


class TraceAssembler:
    """Groups ended spans into traces; see the module docstring for the exact semantics.

    Args:
        max_spans_per_trace: Spans kept per trace part (the root is always kept on top).
        max_open_traces: Trace parts held at once before the least recently active ships early.
        trace_timeout_ns: Idle time after which a trace whose root has not ended ships incomplete.
    """

    def __init__(
        self, *, max_spans_per_trace: int, max_open_traces: int, trace_timeout_ns: int
    ) -> None:
        if max_spans_per_trace < 1 or max_open_traces < 1 or trace_timeout_ns < 0:
            raise ValueError(
                "max_spans_per_trace and max_open_traces must be >= 1, trace_timeout_ns >= 0"
            )
        self._max_spans = max_spans_per_trace
        self._max_open = max_open_traces
        self._timeout_ns = trace_timeout_ns
        # Insertion order = least recently active first: `add` moves a trace to the end, so
        # `expire` and eviction look at the front only.
        self._open: dict[int, _OpenTrace] = {}
        # trace id -> next part number, for traces already shipped (bounded, oldest forgotten).
        self._shipped: dict[int, int] = {}
        self._max_shipped = 4 * max_open_traces
        self._open_spans = 0
        self._spans_added = 0
        self._traces_complete = 0
        self._traces_incomplete = 0
        self._traces_evicted = 0
        self._spans_cut = 0
        self._late_spans = 0

    def add(self, span: ReadableSpan, *, now_ns: int | None = None) -> list[AssembledTrace]:
        """Take one ended span; return the traces that are ready to ship because of it.

        Usually empty, or the span's own trace when the span is its local root. It may also hold
        an incomplete trace shipped early to respect ``max_open_traces``.

        Args:
            span: An ended span.
            now_ns: The arrival time on the clock `expire` gets; defaults to the span's end time.
        """
        ctx = span.context
        if ctx is None:  # not a recording SDK span: nothing to key it by
            return []
        trace_id = ctx.trace_id
        self._spans_added += 1
        parent = span.parent
        entry = self._open.pop(trace_id, None)

        if parent is None or parent.is_remote:  # a local root: its trace (part) ships now
            if entry is None:
                # A root with nothing waiting (a single-span trace): ships at once, held nowhere.
                part = self._shipped.get(trace_id, 0)
                if part:
                    self._late_spans += 1
                self._traces_complete += 1
                self._remember_shipped(trace_id, part + 1)
                return [AssembledTrace(trace_id, span, [span], True, part)]
            part = entry.part
            if part:
                self._late_spans += 1
            spans = entry.spans
            spans.append(span)
            self._open_spans -= len(spans) - 1
            self._traces_complete += 1
            self._remember_shipped(trace_id, part + 1)
            return [AssembledTrace(trace_id, span, spans, True, part, entry.cut)]

        if now_ns is None:
            now_ns = span.end_time or 0
        ready: list[AssembledTrace] = []
        if entry is None:
            part = self._shipped.get(trace_id, 0)
            if part:
                self._late_spans += 1
            if len(self._open) >= self._max_open:
                ready.append(self._evict_oldest())
            entry = _OpenTrace(part, now_ns)
        elif entry.part:
            self._late_spans += 1

        spans = entry.spans
        if len(spans) >= self._max_spans:
            entry.cut += 1
            self._spans_cut += 1
        else:
            spans.append(span)
            self._open_spans += 1
        if now_ns > entry.last_ns:
            entry.last_ns = now_ns
        self._open[trace_id] = entry  # re-inserted at the end: most recently active
        return ready

    def expire(self, now_ns: int) -> list[AssembledTrace]:
        """Ship, incomplete, every open trace with no span ended for ``trace_timeout_ns``.

        Looks at the least recently active traces first and stops at the first that is still
        fresh, so a call costs O(expired), not O(open).
        """
        ready: list[AssembledTrace] = []
        deadline = now_ns - self._timeout_ns
        while self._open:
            trace_id, entry = next(iter(self._open.items()))
            if entry.last_ns > deadline:
                break
            del self._open[trace_id]
            ready.append(self._ship_incomplete(trace_id, entry))
        return ready

    def drain(self) -> list[AssembledTrace]:
        """Ship everything still open, incomplete (at shutdown)."""
        ready = [self._ship_incomplete(tid, entry) for tid, entry in self._open.items()]
        self._open.clear()
        return ready

    def stats(self) -> dict[str, int]:
        """Counters: what is held now and what was shipped, cut or late so far."""
        return {
            "open_traces": len(self._open),
            "open_spans": self._open_spans,
            "spans_added": self._spans_added,
            "traces_complete": self._traces_complete,
            "traces_incomplete": self._traces_incomplete,
            "traces_evicted": self._traces_evicted,
            "spans_cut": self._spans_cut,
            "late_spans": self._late_spans,
        }

    def _evict_oldest(self) -> AssembledTrace:
        trace_id = next(iter(self._open))
        entry = self._open.pop(trace_id)
        self._traces_evicted += 1
        return self._ship_incomplete(trace_id, entry)

    def _ship_incomplete(self, trace_id: int, entry: _OpenTrace) -> AssembledTrace:
        self._open_spans -= len(entry.spans)
        self._traces_incomplete += 1
        self._remember_shipped(trace_id, entry.part + 1)
        return AssembledTrace(trace_id, None, entry.spans, False, entry.part, entry.cut)

    def _remember_shipped(self, trace_id: int, next_part: int) -> None:
        shipped = self._shipped
        shipped.pop(trace_id, None)  # re-insert at the end: recently shipped is forgotten last
        shipped[trace_id] = next_part
        if len(shipped) > self._max_shipped:
            del shipped[next(iter(shipped))]
