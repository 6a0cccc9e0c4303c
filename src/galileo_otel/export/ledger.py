"""The Ledger: what happened to every closed batch, under the pipeline's one lock.

Every batch gets a sequence number when it closes (or when it is adopted from the spool) and
is *pending* in the ledger until it is settled: confirmed, or given up on (*lost*). Between
the stages a batch travels through the ledger's two queues (the spooler's ``to_spool``, the
senders' ``outbox``); a spool row in a sender's hands is *held*; one that went back to disk
after failing is *parked*. Flushes are answered from here (:meth:`Ledger.wait_settled`).

The flush-truth rule: a flush is ``True`` only when every batch in its scope (closed before
its marker, plus the backlog adopted at start) is confirmed (reliable) or answered 2xx
(fire-and-forget). A loss in scope makes it ``False`` whenever it happened, before the call
too; a flush that said ``False`` has reported those losses, so the next one is judged on its
own scope.

Every count of this bookkeeping changes here and only here, under ``_lock``; the stages call
these methods and never hold the lock across I/O. The lock has three conditions so a wake-up
reaches only who can act on it (on CPython each wake-up is a GIL hand-over): ``_cv`` (flush
waiters and the batcher's back-pressure), ``_cv_send`` (senders waiting for a batch) and
``_cv_write`` (the spooler).
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from galileo_otel.api.retry import RetryPolicy
from galileo_otel.export._stage import Flush, Outbound
from galileo_otel.export.spool import SpoolEntry
from galileo_otel.export.spool_format import BatchHeader
from galileo_otel.export.stats import Counters

if TYPE_CHECKING:
    from galileo_otel.export.config import PipelineConfig

__all__ = ["Ledger"]

# Lost batches remembered until a flush reports them (ints: ~6 MB at the bound).
MAX_LOST = 100_000


class Ledger:
    """Pending / held / parked / lost batches, the hand-over queues, flush scopes and waiters.

    Args:
        in_flight: Number of senders (``max_in_flight``): the outbox holds at most this many
            spooled batches (more wait on disk), twice as many without a spool.
        max_unwritten_bytes: Encoded bytes closed but not yet taken by the spooler, beyond
            which the batcher waits (memory stays bounded; the app's queue then drops).
        counters: Where outcomes the ledger decides are counted (adoptions, foreign rows).
        clock: Monotonic seconds (tests inject one).
        scan_policy: The spool rescan backoff: waits of ``backoff_s(failures)`` while the
            server fails (the one :class:`~galileo_otel.api.retry.RetryPolicy`, no jitter).
        spool_on: Whether batches go through a spool (set again by :meth:`spool_opened`).
        max_lost: How many lost batches are remembered one by one (then only the highest);
            :data:`MAX_LOST` when ``None``.
    """

    def __init__(
        self,
        *,
        in_flight: int,
        max_unwritten_bytes: int,
        counters: Counters,
        clock: Callable[[], float],
        scan_policy: RetryPolicy,
        spool_on: bool,
        max_lost: int | None = None,
    ) -> None:
        self._in_flight = in_flight
        self._max_unwritten = max_unwritten_bytes
        self._counters = counters
        self._clock = clock
        self._scan_policy = scan_policy
        self._max_lost = MAX_LOST if max_lost is None else max_lost
        self._on_work: Callable[[], None] = _nothing
        # Lifecycle, read without the lock (Events and a bool written once): _stop ends every
        # loop; _hurry (closing began) cuts retry waits short; _adoption: the first look at
        # the spool's backlog is done (flushes wait for it).
        self.stop_event = threading.Event()
        self.hurry = threading.Event()
        self.adoption = threading.Event()
        self._closing = False
        self._shut = False
        # THE lock. Guards every field below; never held across I/O.
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._cv_send = threading.Condition(self._lock)
        self._cv_write = threading.Condition(self._lock)
        self._spool_on = spool_on
        self._seq = itertools.count(1)  # batch numbers, in closing order
        self._to_spool: deque[Outbound | Flush] = deque()  # closed, for the spooler
        self._unwritten = 0  # encoded bytes in _to_spool
        self._outbox: deque[Outbound] = deque()  # for the senders
        self._busy = 0  # senders sending now
        self._pending: dict[int, int] = {}  # seq -> traces, until confirmed or given up
        self._name_seq: dict[str, int] = {}  # spool row name -> seq, rows we made or adopted
        self._lost: set[int] = set()  # given up on, not yet reported by a flush
        # Past max_lost tracked losses, the highest seq not tracked: every flush that does not
        # cover it says False (never a True that could be a lie).
        self._lost_overflow = 0
        self._held: dict[str, SpoolEntry] = {}  # rows in a sender's hands
        self._parked: dict[str, int] = {}  # rows back on disk after failing; shutdown won't wait
        self._adopted: set[int] = set()  # seqs adopted from ended processes; flushes wait
        self._sent: set[int] = set()  # seqs counted in traces_sent, until settled
        self._backlog = 0  # rows of ours on disk that idle senders should take
        self._next_scan = 0.0
        self._scan_failures = 0  # spool retries that failed in a row (the backoff's exponent)
        self._spool_files = 0  # ours on disk, as far as we know
        self._spool_usage: dict[str, int] = {}  # the spool's size, as of the last look

    @classmethod
    def for_config(
        cls,
        config: PipelineConfig,
        *,
        counters: Counters,
        clock: Callable[[], float],
        spool_on: bool,
    ) -> Ledger:
        """A ledger with a pipeline's numbers (``in_flight``, byte bound, rescan backoff)."""
        return cls(
            in_flight=config.in_flight,
            max_unwritten_bytes=config.max_unwritten_bytes,
            counters=counters,
            clock=clock,
            scan_policy=config.scan_policy,
            spool_on=spool_on,
        )

    # --- wiring and lifecycle --------------------------------------------------------------------
    def when_work(self, start_senders: Callable[[], None]) -> None:
        """Call ``start_senders`` (with the lock held) whenever a batch enters the outbox."""
        self._on_work = start_senders

    def spool_opened(self, on: bool) -> None:
        """The spooler opened the spool (``on``) or runs without one."""
        with self._lock:
            self._spool_on = on
        if not on:
            self.adoption.set()  # no backlog to adopt: flushes need not wait for one

    @property
    def closing(self) -> bool:
        """Shutdown has begun: failing batches go back to the spool at once."""
        return self._closing

    @property
    def shut(self) -> bool:
        """Shutdown returned: a sender that outlives it lets go of its batch."""
        return self._shut

    @property
    def stopped(self) -> bool:
        """Every loop should end."""
        return self.stop_event.is_set()

    def begin_closing(self) -> None:
        """Shutdown begins: cut retry waits short."""
        self._closing = True
        self.hurry.set()

    def stop(self) -> None:
        """End every loop: wake everyone who waits on the lock."""
        self.stop_event.set()
        with self._lock:
            self._cv.notify_all()
            self._cv_send.notify_all()
            self._cv_write.notify_all()

    def mark_shut(self) -> None:
        """Shutdown is over (see :attr:`shut`)."""
        self._shut = True

    # --- the batcher -----------------------------------------------------------------------------
    def next_seq(self) -> int:
        """A new batch number (``itertools.count``: atomic, no lock needed)."""
        return next(self._seq)

    def lose_unbatched(self) -> int:
        """A trace lost before batching (its conversion failed): a loss like any other."""
        seq = next(self._seq)
        with self._lock:
            self._note_lost(seq)
        return seq

    def closed(self, out: Outbound) -> None:
        """A closed batch, for the spooler; waits while too many bytes wait for the disk."""
        size = len(out.payload or b"")
        with self._lock:
            while self._unwritten >= self._max_unwritten and not self.stop_event.is_set():
                self._cv.wait()  # the spooler notifies when it has made room; stop too
            self._unwritten += size
            self._pending[out.seq] = out.traces
            self._to_spool.append(out)
            self._cv_write.notify()

    def flush_marker(self, marker: Flush) -> None:
        """A flush marker behind the batches it covers (done once the spooler reaches it)."""
        with self._lock:
            self._to_spool.append(marker)
            self._cv_write.notify()

    # --- the spooler -----------------------------------------------------------------------------
    def next_to_write(self, housekeep_at: float) -> tuple[bool, Outbound | Flush | None]:
        """The spooler's wait: ``(running, item)``; ``item`` is ``None`` when a timer is due.

        Notified when a batch closes, a sender frees up, or shutdown begins; the only timers
        are the lease/adoption look (``housekeep_at``) and, while a sender is idle, the next
        spool retry.
        """
        with self._lock:
            while not self._to_spool:
                if self.stop_event.is_set():
                    return False, None
                now = self._clock()
                if self._spool_on and (self._scan_due(now) or now >= housekeep_at):
                    break
                self._cv_write.wait(self._scan_wait(now, housekeep_at))
            item = self._to_spool.popleft() if self._to_spool else None
            if isinstance(item, Outbound):
                self._unwritten -= len(item.payload or b"")
                if self._unwritten < self._max_unwritten:
                    self._cv.notify_all()  # the batcher may be waiting for room
            return True, item

    def written(self, out: Outbound) -> str:
        """A batch the spooler wrote (``out.entry``) or could not: hand it to a sender.

        Returns:
            ``"sending"`` (in the outbox), ``"on_disk"`` (senders busy: the caller releases the
            row, it waits on disk) or ``"lost"`` (no spool and shutting down with the outbox
            full: given up on).
        """
        with self._lock:
            if out.entry is not None:
                name = out.entry.name
                self._name_seq[name] = out.seq
                if len(self._outbox) >= self._in_flight:
                    self._backlog += 1
                    self._spool_files += 1
                    return "on_disk"
                self._held[name] = out.entry
                self._outbox.append(out)
                self._on_work()
                self._cv_send.notify()
                return "sending"
            # No spool: memory is bounded by stalling here (then the batcher, then the queue).
            while len(self._outbox) >= 2 * self._in_flight and not self.stop_event.is_set():
                self._cv_write.wait()  # a sender notifies when it takes one; stop too
            if self.stop_event.is_set() and len(self._outbox) >= 2 * self._in_flight:
                self._pending.pop(out.seq, None)
                self._note_lost(out.seq)
                return "lost"
            self._outbox.append(out)
            self._on_work()
            self._cv_send.notify()
            return "sending"

    def idle_names(self) -> dict[str, int]:
        """Rows of ours on disk and not in a sender's hands: only these can be taken over."""
        with self._lock:
            return {n: q for n, q in self._name_seq.items() if n not in self._held}

    def housekept(
        self,
        adopted: Iterable[tuple[str, int]],
        owned: set[str],
        idle: dict[str, int],
        usage: dict[str, int],
    ) -> int:
        """Record a look at the spool: rows adopted, ours taken over; returns traces handed over."""
        adopted = list(adopted)
        handed_over = 0
        with self._lock:
            for name, traces in adopted:
                seq = next(self._seq)
                self._name_seq[name] = seq
                self._pending[seq] = traces
                self._adopted.add(seq)
                self._backlog += 1
            for name, seq in idle.items():
                if name in owned or name in self._held or self._name_seq.get(name) != seq:
                    continue
                self._name_seq.pop(name, None)
                self._parked.pop(name, None)
                handed_over += self._pending.pop(seq, 0)
            self._spool_usage = usage
            if adopted:
                self._retry_spooled_now()
            self._cv.notify_all()
        return handed_over

    def scan_room(self, now: float) -> int:
        """How many spooled batches idle senders should get now (0: not now)."""
        with self._lock:
            if not self._scan_due(now):
                return 0
            return self._in_flight - len(self._outbox) - self._busy

    def skip_names(self) -> set[str]:
        """Rows a spool scan must not claim: held ones, and parked ones while closing."""
        with self._lock:
            skip = set(self._held)
            if self._closing:
                skip |= set(self._parked)
            return skip

    def scan_failed(self, now: float) -> None:
        """The spool could not be read: not again at once."""
        with self._lock:
            self._next_scan = now + self._scan_backoff()
            self._backlog = 0

    def claimed(
        self,
        entries: list[tuple[SpoolEntry, BatchHeader]],
        foreign: list[SpoolEntry],
        now: float,
    ) -> None:
        """Rows a scan claimed: readable ones go to the senders, foreign ones are lost."""
        with self._lock:
            for entry in foreign:
                self._parked.pop(entry.name, None)
                seq = self._name_seq.pop(entry.name, None)
                traces = None if seq is None else self._pending.pop(seq, None)
                if seq is not None and traces is not None:
                    # Tracked (ours or adopted): a dead letter like any other, for the counts.
                    self._note_lost(seq)
                    self._counters.add("traces_dead_lettered", traces)
                    self._counters.add("dead_lettered.foreign_header", traces)
            if foreign:
                self._cv.notify_all()
            if not entries and not foreign:
                self._backlog = 0
                self._spool_files = 0  # none of ours left on disk
                self._next_scan = now + self._scan_backoff()
                return
            self._spool_files = max(0, self._spool_files - len(entries))
            for entry, header in entries:
                seq = self._name_seq.get(entry.name)
                if seq is None or seq not in self._pending:
                    # Ours but not tracked (given up on after an internal error): count it
                    # back in, so the counters still reconcile.
                    seq = next(self._seq)
                    self._name_seq[entry.name] = seq
                    self._pending[seq] = header.traces
                    self._counters.add("traces_adopted", header.traces)
                elif entry.name not in self._parked:
                    self._backlog = max(0, self._backlog - 1)
                self._held[entry.name] = entry
                self._parked.pop(entry.name, None)
                self._outbox.append(
                    Outbound(seq=seq, header=header, payload=None, record=None, entry=entry)
                )
            self._on_work()
            self._cv_send.notify(len(entries))

    def back_on_disk(self, out: Outbound, *, retried: bool, not_before_s: float | None) -> None:
        """A sender let go of a spooled batch (released): it waits on disk for a later try.

        ``retried``: it failed (parked: shutdown will not wait for it; the next spool retry
        backs off, honouring the server's Retry-After when longer).
        """
        assert out.entry is not None
        with self._lock:
            self._held.pop(out.entry.name, None)
            self._spool_files += 1
            if retried:
                self._parked[out.entry.name] = out.seq
                wait = max(self._scan_backoff(), not_before_s or 0.0)
                self._next_scan = max(self._next_scan, self._clock() + wait)
                self._scan_failures += 1
            self._cv.notify_all()
            self._cv_write.notify()

    def leftovers(self) -> tuple[list[Outbound | Flush], list[Outbound]]:
        """After the threads stopped: what the spooler and the senders did not get to."""
        with self._lock:
            to_spool = list(self._to_spool)
            self._to_spool.clear()
            self._unwritten = 0
            outbox = list(self._outbox)
            self._outbox.clear()
            return to_spool, outbox

    def set_usage(self, usage: dict[str, int]) -> None:
        """The spool's size as of a look now."""
        with self._lock:
            self._spool_usage = usage

    # --- the senders ------------------------------------------------------------------------------
    def take(self) -> Outbound | None:
        """A batch to send (blocks); ``None`` once stopped with nothing left to take."""
        with self._lock:
            while not self._outbox:
                if self.stop_event.is_set():
                    return None
                self._cv_send.wait()  # notified when a batch is handed over, and at stop
            out = self._outbox.popleft()
            self._busy += 1
            if not self._spool_on:
                self._cv_write.notify()  # room in the outbox for the spooler
            return out

    def sender_free(self) -> bool:
        """A sender finished a batch; ``True`` when it was the last busy one after shutdown."""
        with self._lock:
            self._busy -= 1
            self._cv_write.notify()  # a sender is free: the spooler may feed it
            return self._shut and self._busy == 0

    def first_send(self, seq: int) -> bool:
        """Whether this is the batch's first send (``traces_sent`` counts a batch once)."""
        with self._lock:
            first = seq not in self._sent
            self._sent.add(seq)
            return first

    def server_answers(self) -> None:
        """A batch was confirmed: if the server had been failing, retry the spool now."""
        with self._lock:
            if self._scan_failures or self._spool_files > 0:
                self._retry_spooled_now()

    def settle(self, out: Outbound, *, ok: bool) -> None:
        """The batch is done: confirmed (``ok``) or given up on (lost until a flush reports it)."""
        with self._lock:
            if out.entry is not None:
                self._held.pop(out.entry.name, None)
                self._parked.pop(out.entry.name, None)
                self._name_seq.pop(out.entry.name, None)
            self._pending.pop(out.seq, None)
            self._sent.discard(out.seq)
            if not ok:
                self._note_lost(out.seq)
            self._cv.notify_all()

    # --- flushes and figures -------------------------------------------------------------------------
    def wait_flush(self, marker: Flush, deadline: float, *, report: bool = True) -> bool:
        """Wait for a flush marker queued behind its spans; the flush's answer.

        First until the spooler reaches the marker (every batch before it is written or with
        a sender), then for the backlog adopted at start (part of what a flush delivers), then
        :meth:`wait_settled` over the marker's scope (``final`` is the marker's).
        """
        if not marker.done.wait(max(0.0, deadline - self._clock())):
            return False
        if not self.adoption.wait(max(0.0, deadline - self._clock())):
            return False
        return self.wait_settled(marker.seq, deadline, final=marker.final, report=report)

    def wait_settled(self, upto: int, deadline: float, *, final: bool, report: bool) -> bool:
        """Wait until every batch in scope is settled; the flush-truth rule (module docstring).

        Args:
            upto: The flush marker's seq: batches closed before it are in scope, and the
                backlog adopted at start.
            deadline: On :attr:`clock`.
            final: Shutdown's flush: parked batches (back on disk after failing) are not
                waited for (the next process sends them) and make it ``False``.
            report: Count losses in scope (and forget them once reported); a checkpoint
                passes ``False``: settled is enough, the app's next flush still reports them.
        """
        with self._lock:
            adopted = set(self._adopted)

            def covered(seq: int) -> bool:
                return seq <= upto or seq in adopted

            self._retry_spooled_now()
            while True:
                parked = set(self._parked.values()) if final else set()
                waiting = [seq for seq in self._pending if covered(seq) and seq not in parked]
                left = deadline - self._clock()
                if not waiting or left <= 0:
                    break
                self._cv.wait(left)  # every settled batch notifies
            if not report:
                return not waiting
            lost = [seq for seq in self._lost if covered(seq)]
            self._lost.difference_update(lost)
            failed = bool(lost) or any(covered(seq) for seq in parked)
            if self._lost_overflow:
                failed = True
                if upto >= self._lost_overflow:
                    self._lost_overflow = 0
            return not (waiting or failed)

    def busy(self) -> bool:
        """Batches closed and not yet settled (pending, or on their way to the spooler)."""
        with self._lock:
            return bool(self._pending or self._to_spool)

    def any_lost(self) -> bool:
        """Losses no flush has reported yet."""
        with self._lock:
            return bool(self._lost or self._lost_overflow)

    def held_entries(self) -> list[SpoolEntry]:
        """The spool rows in senders' hands now."""
        with self._lock:
            return list(self._held.values())

    def held_names(self) -> set[str]:
        """The names of the spool rows in senders' hands now."""
        with self._lock:
            return {entry.name for entry in self._held.values()}

    def held_at_fork(self) -> list[SpoolEntry]:
        """In a forked child: the rows the parent's senders held (their claims are not ours).

        Read without the lock: a parent thread may have held it at the fork, and nothing else
        runs in the child yet.
        """
        return list(self._held.values())

    def figures(self) -> dict[str, Any]:
        """``batches_pending``, ``traces_pending``, ``in_flight`` and the last spool usage."""
        with self._lock:
            return {
                "batches_pending": len(self._pending),
                "traces_pending": sum(self._pending.values()),
                "in_flight": self._busy,
                "usage": dict(self._spool_usage),
            }

    # --- under the lock -----------------------------------------------------------------------------
    def _note_lost(self, seq: int) -> None:
        if len(self._lost) < self._max_lost:
            self._lost.add(seq)
        else:
            self._lost_overflow = max(self._lost_overflow, seq)

    def _retry_spooled_now(self) -> None:
        self._next_scan = 0.0
        self._scan_failures = 0
        self._cv_write.notify()

    def _scan_backoff(self) -> float:
        return self._scan_policy.backoff_s(self._scan_failures + 1, 0.0)

    def _idle_senders(self) -> int:
        return self._in_flight - len(self._outbox) - self._busy

    def _scan_due(self, now: float) -> bool:
        """Whether idle senders should get spooled batches now."""
        if not self._spool_on or self.stop_event.is_set() or self._idle_senders() <= 0:
            return False
        failing = self._scan_failures > 0
        # While closing, every batch still on disk gets its one attempt without delay.
        return now >= self._next_scan or (self._backlog > 0 and (self._closing or not failing))

    def _scan_wait(self, now: float, housekeep_at: float) -> float | None:
        """How long the spooler may sleep; ``None``: until notified."""
        if not self._spool_on:
            return None
        due = housekeep_at
        if self._idle_senders() > 0:
            due = min(due, self._next_scan)
        return max(0.01, due - now)


def _nothing() -> None:
    return None
