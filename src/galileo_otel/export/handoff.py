"""The app-thread face of a pipeline: a bounded queue and a cheap wake-up of its one worker."""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from galileo_otel.export.record import Rebuilder
from galileo_otel.export.sdk_span import plain_mapping, span_record, span_resource

# Distinct resources numbered for records (a process has one per TracerProvider); spans of
# resources beyond this are queued as they are.
_MAX_RESOURCES = 256


class SpanHandoff:
    """A bounded deque the app appends finished spans to, and the event that wakes the worker.

    Shared by the in-process pipeline and the worker-process pipeline, whose app-thread side is
    the same: one length check and one append per span, no lock that I/O can hold. The worker is
    woken only when it sleeps (``_awake`` false) and the queue holds more than ``_wake_after``
    spans: each wake-up is a GIL hand-over on CPython, so a worker that would rather take spans
    in batches raises ``_wake_after`` before it sleeps (and sleeps with a timeout); 0 wakes it
    at the first span. Subclasses set ``_max_queue``, ``_disabled`` and ``_closing``, call
    :meth:`_reset_handoff` at start and in a forked child, and drain ``_queue`` on their worker.

    With ``_queue_records`` the span is read into a record (a tuple of builtins, ~1 us, see
    ``record.py``) before it is queued, and the SDK span object dies at once. Queued span
    objects wait until the worker gets the GIL (on CPython up to a 5 ms switch interval, some
    hundreds of spans) and meanwhile survive the garbage collector's young passes into the old
    generations, whose full passes over the whole heap then cost the app thread ~4-5 us per span
    (measured, benchmarks/README.md); records of builtins are dropped from the collector's
    tracking. The worker turns a queued item into a span with :meth:`worker_rebuild`'s function.
    """

    _max_queue: int
    _disabled: bool
    _closing: bool
    _queue_records: bool = False

    def _reset_handoff(self) -> None:
        """A fresh, empty queue and wake-up event (at construction and after a fork)."""
        self._queue: deque[Any] = deque()
        self._awake = False
        self._wake_after = 0  # queue length beyond which submit wakes a sleeping worker
        self._wake = threading.Event()
        self._dropped_full = 0
        self._dropped_closed = 0
        # Resources numbered for records: id(resource) -> (resource, number, attributes), and
        # number -> resource. Entries keep their resource alive, so an id is never reused. Any
        # app thread may add one: each step is one atomic operation under the GIL, and two
        # threads adding the same resource at once keep the first entry (setdefault).
        self._resources: dict[int, tuple[Any, int, dict[str, Any]]] = {}
        self._resource_of: dict[int, Any] = {}
        self._res_ids = itertools.count(1)

    def submit(self, span: Any) -> bool:
        """Hand a finished span to the worker; O(1), never blocks, never raises.

        Returns:
            ``False`` when the span was dropped (queue full, pipeline shut down or disabled).
        """
        if self._closing or self._disabled:
            self._dropped_closed += 1
            return False
        queue = self._queue
        n = len(queue)
        if n >= self._max_queue:
            self._dropped_full += 1
            return False
        if self._queue_records:
            try:
                resource = span_resource(span)
                entry = self._resources.get(id(resource))
                if entry is None:
                    entry = self._number_resource(resource)
                queue.append(span if entry is None else span_record(span, entry[1]))
            except Exception:  # not a span we can read fast: the worker reads it its own way
                queue.append(span)
        else:
            queue.append(span)
        if not self._awake and n >= self._wake_after:
            self._awake = True
            self._wake.set()
        return True

    def _number_resource(self, resource: Any) -> tuple[Any, int, dict[str, Any]] | None:
        """Number a resource not seen before (``None``: too many, queue its spans as they are)."""
        if len(self._resources) >= _MAX_RESOURCES:
            return None
        attrs = plain_mapping(getattr(resource, "attributes", None))
        entry = self._resources.setdefault(id(resource), (resource, next(self._res_ids), attrs))
        self._resource_of.setdefault(entry[1], resource)
        return entry

    def worker_rebuild(self) -> Callable[[Any], Any]:
        """What turns a queued item into the span the worker's stages read, for one thread.

        A :class:`~galileo_otel.export.record.Rebuilder`'s ``span_of`` over the numbered
        resources: a record is rebuilt, any other item comes back as it is. Each call makes a
        new rebuilder (its reuse state is its thread's own); the resources it reads are replaced
        after a fork, like :meth:`worker_queue`'s queue.
        """
        return Rebuilder(self._resource_of).span_of

    # --- the worker's side, for a worker that is another object (the in-process Batcher) ----
    def worker_queue(self) -> deque[Any]:
        """The queue, for the one worker thread to ``popleft`` from (no other consumer)."""
        return self._queue

    def worker_sleeps(self) -> None:
        """The worker is about to look at the queue a last time and sleep: wake it next span."""
        self._wake.clear()
        self._awake = False

    def worker_wait(self, timeout: float | None) -> None:
        """The worker sleeps until a span comes (see :meth:`submit`) or ``timeout`` passes."""
        self._wake.wait(timeout)

    def wake_worker(self) -> None:
        """Wake the worker now (shutdown)."""
        self._wake.set()

    def queued_spans(self, control: type) -> int:
        """Spans in the queue now (items of type ``control`` are not spans)."""
        return sum(1 for item in list(self._queue) if type(item) is not control)

    def dropped(self) -> tuple[int, int]:
        """Spans refused so far: ``(queue full, closed or disabled)``."""
        return self._dropped_full, self._dropped_closed

    def _enqueue_control(self, item: Any) -> None:
        """Queue a control item (flush, shutdown...) behind the spans, and wake the worker."""
        self._queue.append(item)
        self._awake = True
        self._wake.set()
