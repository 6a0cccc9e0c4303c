"""The app-thread face of a pipeline: a bounded queue and a cheap wake-up of its one worker."""

from __future__ import annotations

import threading
from collections import deque
from typing import Any


class SpanHandoff:
    """A bounded deque the app appends finished spans to, and the event that wakes the worker.

    Shared by the in-process pipeline and the worker-process pipeline, whose app-thread side is
    the same: one length check and one append per span, no lock that I/O can hold. The worker is
    woken only when it sleeps (``_awake`` false) and the queue holds more than ``_wake_after``
    spans: each wake-up is a GIL hand-over on CPython, so a worker that would rather take spans
    in batches raises ``_wake_after`` before it sleeps (and sleeps with a timeout); 0 wakes it
    at the first span. Subclasses set ``_max_queue``, ``_disabled`` and ``_closing``, call
    :meth:`_reset_handoff` at start and in a forked child, and drain ``_queue`` on their worker.
    """

    _max_queue: int
    _disabled: bool
    _closing: bool

    def _reset_handoff(self) -> None:
        """A fresh, empty queue and wake-up event (at construction and after a fork)."""
        self._queue: deque[Any] = deque()
        self._awake = False
        self._wake_after = 0  # queue length beyond which submit wakes a sleeping worker
        self._wake = threading.Event()
        self._dropped_full = 0
        self._dropped_closed = 0

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
        queue.append(span)
        if not self._awake and n >= self._wake_after:
            self._awake = True
            self._wake.set()
        return True

    def _enqueue_control(self, item: Any) -> None:
        """Queue a control item (flush, shutdown...) behind the spans, and wake the worker."""
        self._queue.append(item)
        self._awake = True
        self._wake.set()
