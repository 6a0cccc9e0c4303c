"""Requests to the export worker process (flush, stats, shutdown) and their answers, by number."""

from __future__ import annotations

import itertools
import threading
from typing import Any

from galileo_otel.export.offload.protocol import MSG_STATS

__all__ = ["Requests", "Waiter"]


class Waiter:
    """One request and its answer; ``done`` is set once ``result`` is in."""

    __slots__ = ("done", "msg", "replay_mark", "result", "sent")

    def __init__(self, msg: tuple[Any, ...]) -> None:
        self.msg = msg  # (tag, seq, timeout_s): the frame the child gets
        self.sent = False  # written once: only then is it re-sent after a restart
        self.replay_mark = 0  # the last span frame before it: a True flush confirms up to it
        self.done = threading.Event()
        self.result: Any = None

    def answer(self, result: Any) -> None:
        """Put the answer in and wake whoever waits."""
        self.result = result
        self.done.set()


class Requests:
    """The requests waiting for the child's answer, and the one stats request on its way.

    The app's calls open and close requests, the reader thread answers them, the pipe-writer
    thread sends them again to a restarted child.
    """

    def __init__(self) -> None:
        # Guards _waiting and _stats.
        self._lock = threading.Lock()
        self._seq = itertools.count(1)  # answer numbers; 0 is the child's "ready"
        self._waiting: dict[int, Waiter] = {}
        self._stats: Waiter | None = None

    def next_seq(self) -> int:
        """A fresh answer number (requests and checkpoints share them)."""
        with self._lock:
            return next(self._seq)

    def open(self, tag: int, timeout_s: float) -> Waiter:
        """A new request ``(tag, seq, timeout_s)``, waiting for its answer."""
        with self._lock:
            seq = next(self._seq)
            waiter = self._waiting[seq] = Waiter((tag, seq, timeout_s))
            return waiter

    def close(self, waiter: Waiter) -> None:
        """The asker stopped waiting (answered or not): forget the request."""
        with self._lock:
            self._waiting.pop(waiter.msg[1], None)

    def get(self, seq: int) -> Waiter | None:
        """The request answered by ``seq`` (``None``: not one of these, e.g. a checkpoint)."""
        with self._lock:
            return self._waiting.get(seq)

    def unanswered(self) -> list[Waiter]:
        """Requests written to a child and not answered, oldest first."""
        with self._lock:
            waiters = [w for _, w in sorted(self._waiting.items())]
        return [w for w in waiters if w.sent and not w.done.is_set()]

    def fail_all(self) -> None:
        """The child is gone for good: every request gets a failed answer."""
        with self._lock:
            waiters = list(self._waiting.values())
        for waiter in waiters:
            if not waiter.done.is_set():
                waiter.answer(False if waiter.msg[0] != MSG_STATS else None)

    def stats_answer(self) -> Any:
        """The answer of a finished stats request, which is then forgotten (else ``None``)."""
        with self._lock:
            waiter = self._stats
            if waiter is None or not waiter.done.is_set():
                return None
            self._stats = None
            self._waiting.pop(waiter.msg[1], None)
            return waiter.result

    def stats_request(self, tag: int, timeout_s: float) -> tuple[Waiter, bool]:
        """The stats request on its way, or a new one (``True``: new, to be sent)."""
        with self._lock:
            if self._stats is not None:
                return self._stats, False
            seq = next(self._seq)
            waiter = self._stats = self._waiting[seq] = Waiter((tag, seq, timeout_s))
            return waiter, True
