"""The spool stage: closed batches onto disk, then to the senders; the backlog back from disk.

One thread (``galileo-otel-spooler``) writes each closed batch to the spool before its first
send (reliable mode), hands it to an idle sender or leaves it on disk while all are busy, and
every ``spool_retry_s`` renews this process's leases, adopts batches of ended processes and
feeds idle senders from the spool. File I/O stays off the worker: each syscall gives the GIL
away, and a CPU-bound app thread then keeps it for a whole switch interval.
"""

from __future__ import annotations

import contextlib
import logging
import time

from galileo_otel.export._stage import (
    DEFAULT_SPOOL_RETRY_MAX_S,
    Flush,
    Outbound,
    StageState,
)
from galileo_otel.export.spool import LEASE_S, SpoolEntry
from galileo_otel.export.spool_format import BatchHeader, ForeignHeader

__all__ = ["SpoolStage"]

_log = logging.getLogger("galileo_otel.export.pipeline")

_COMPACT_EVERY_S = 60.0


class SpoolStage(StageState):
    """The spool writer thread and what it owns: writing, adoption, leases, feeding senders."""

    def _write_loop(self) -> None:
        while True:
            with self._cv:
                while not self._to_spool:
                    if self._stop.is_set():
                        return
                    now = self._clock()
                    if self._scan_due(now) or self._housekeep_due(now):
                        break
                    self._cv_write.wait(self._scan_wait())
                item = self._to_spool.popleft() if self._to_spool else None
                if isinstance(item, Outbound):
                    self._unwritten -= len(item.payload or b"")
                    if self._unwritten < self._max_unwritten_bytes:
                        self._cv.notify_all()  # the worker may be waiting for room
            try:
                if isinstance(item, Flush):
                    item.done.set()
                elif item is not None:
                    self._hand_over(item)
                if self._spool is not None:
                    self._housekeep(self._clock())
                    self._maybe_scan(self._clock())
            except Exception as exc:  # pragma: no cover - a bug; never stop writing
                self._internal_error("spool writer", exc)

    def _hand_over(self, out: Outbound) -> None:
        """Write a closed batch to the spool (if on), then give it to a sender or leave it."""
        if self._spool is not None:
            try:
                out.entry = self._spool.write(out.header.encode(), out.payload or b"[]")
                if out.entry is None:
                    self._spool_full(out)
                    return
            except OSError as exc:
                self._say(
                    logging.WARNING, "spool-write", "galileo-otel: spool write failed: %s", exc
                )
                self._count("spool_write_errors")
        with self._cv:
            if out.entry is not None:
                name = out.entry.name
                self._name_seq[name] = out.seq
                if len(self._outbox) >= self._in_flight:
                    # Senders are busy: the batch waits on disk, not in memory.
                    out.entry.release()
                    self._backlog += 1
                    self._spool_files += 1
                    self._count("traces_spooled", out.traces)
                    return
                self._held[name] = out.entry
                self._outbox.append(out)
                self._need_senders()
                self._cv_send.notify()
                return
            # No spool: memory is bounded by stalling here (then the worker, then the queue).
            while len(self._outbox) >= 2 * self._in_flight and not self._stop.is_set():
                self._cv_write.wait()  # a sender notifies when it takes one; shutdown too
            if self._stop.is_set() and len(self._outbox) >= 2 * self._in_flight:
                self._pending.pop(out.seq, None)
                self._note_lost(out.seq)
                self._count("traces_failed", out.traces)
                self._count("failed.shutdown", out.traces)
                return
            self._outbox.append(out)
            self._need_senders()
            self._cv_send.notify()

    def _spool_full(self, out: Outbound) -> None:
        """The spool refused a batch (GALILEO_SPOOL_MAX_BYTES): drop it, count it, never wait."""
        self._say(
            logging.WARNING,
            "spool-full",
            "galileo-otel: spool full (GALILEO_SPOOL_MAX_BYTES=%d): batch of %d traces dropped",
            int(self._settings.spool_max_bytes),
            out.traces,
        )
        self._count("dropped.spool_full", out.traces)
        self._settle(out, ok=False, reason="spool_full")

    def _housekeep_due(self, now: float) -> bool:
        return self._spool is not None and now >= self._next_housekeep and not self._stop.is_set()

    def _housekeep(self, now: float) -> None:
        """Renew our leases, adopt dead processes' batches, notice ours settled elsewhere.

        Runs on the spool-writer thread only (so no batch is claimed while it looks), at start
        and then every ``spool_retry_s`` (at most ``LEASE_S / 4``).
        """
        spool = self._spool
        if spool is None or now < self._next_housekeep:
            return
        self._next_housekeep = now + min(self._spool_retry, LEASE_S / 4)
        with self._cv:
            # Ours on disk and not in a sender's hands: only these can have been taken over.
            idle = {n: q for n, q in self._name_seq.items() if n not in self._held}
        try:
            spool.renew()
            if now >= self._next_compact:
                # Giving pages back and truncating the WAL waits for other processes' readers:
                # once a minute is plenty.
                self._next_compact = now + _COMPACT_EVERY_S
                spool.compact()
            adopted = spool.adopt()
            owned = spool.owned_names() if idle else set()
            usage = spool.usage()
        except OSError as exc:
            self._say(logging.WARNING, "spool-scan", "galileo-otel: spool look failed: %s", exc)
            self._adoption.set()
            return
        handed_over = 0
        with self._cv:
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
        if adopted:
            n = sum(t for _, t in adopted)
            self._count("traces_adopted", n)
            _log.info(
                "galileo-otel: took over %d spooled batches (%d traces) left by ended processes",
                len(adopted),
                n,
            )
        if handed_over:
            self._count("traces_handed_over", handed_over)
        if usage.get("foreign_batches") and not self._said_foreign:
            self._said_foreign = True
            _log.warning(
                "galileo-otel: the spool %s holds %d batches made with another API key; they are "
                "left for a process using that key (see stats() spool_foreign_batches)",
                spool.path,
                usage["foreign_batches"],
            )
        self._adoption.set()

    def _scan_due(self, now: float) -> bool:
        """Whether idle senders should get spooled batches now (called with ``_cv`` held)."""
        if self._spool is None or self._stop.is_set():
            return False
        if self._in_flight - len(self._outbox) - self._busy <= 0:
            return False
        failing = self._scan_backoff > self._spool_retry
        # While closing, every batch still on disk gets its one attempt without delay.
        return now >= self._next_scan or (self._backlog > 0 and (self._closing or not failing))

    def _scan_wait(self) -> float | None:
        """How long the spooler may sleep (called with ``_cv`` held); ``None``: until notified.

        Notified when a batch closes, a sender frees up, or shutdown begins; the only timers
        are the lease/adoption look and, while a sender is idle, the next spool retry.
        """
        if self._spool is None:
            return None
        due = self._next_housekeep
        if self._in_flight - len(self._outbox) - self._busy > 0:
            due = min(due, self._next_scan)
        return max(0.01, due - self._clock())

    def _maybe_scan(self, now: float) -> None:
        """Feed idle senders with spooled batches: ours left on disk, or another run's."""
        assert self._spool is not None
        with self._cv:
            if not self._scan_due(now):
                return
            room = self._in_flight - len(self._outbox) - self._busy
        try:
            with self._cv:
                skip = set(self._held)
                if self._closing:
                    skip |= set(self._parked)
            claimed = self._spool.claim_oldest(room, skip=skip)
        except OSError as exc:
            self._say(logging.WARNING, "spool-scan", "galileo-otel: spool scan failed: %s", exc)
            with self._cv:
                self._next_scan = now + self._scan_backoff  # not again at once
                self._backlog = 0
            return
        entries, foreign = self._readable(claimed)
        with self._cv:
            for entry in foreign:
                self._parked.pop(entry.name, None)
                seq = self._name_seq.pop(entry.name, None)
                traces = None if seq is None else self._pending.pop(seq, None)
                if seq is not None and traces is not None:
                    # Tracked (ours or adopted): a dead letter like any other, for the counts.
                    self._note_lost(seq)
                    self._count("traces_dead_lettered", traces)
                    self._count("dead_lettered.foreign_header", traces)
            if foreign:
                self._cv.notify_all()
            if not entries and not foreign:
                self._backlog = 0
                self._spool_files = 0  # none of ours left on disk
                self._next_scan = now + self._scan_backoff
                return
            self._spool_files = max(0, self._spool_files - len(entries))
            for entry, header in entries:
                seq = self._name_seq.get(entry.name)
                if seq is None or seq not in self._pending:
                    # Ours but not tracked (given up on after an internal error): count it
                    # back in, so the counters still reconcile.
                    seq = next(self._seq)
                    self._name_seq[entry.name] = seq
                    self._pending[seq] = traces = header.traces
                    self._count("traces_adopted", traces)
                elif entry.name not in self._parked:
                    self._backlog = max(0, self._backlog - 1)
                self._held[entry.name] = entry
                self._parked.pop(entry.name, None)
                self._outbox.append(
                    Outbound(seq=seq, header=header, payload=None, record=None, entry=entry)
                )
            self._need_senders()
            self._cv_send.notify(len(entries))

    def _readable(
        self, entries: list[SpoolEntry]
    ) -> tuple[list[tuple[SpoolEntry, BatchHeader]], list[SpoolEntry]]:
        """Decode claimed rows' headers; a header of another version is set aside, not sent."""
        readable: list[tuple[SpoolEntry, BatchHeader]] = []
        foreign: list[SpoolEntry] = []
        for entry in entries:
            try:
                readable.append((entry, BatchHeader.decode(entry.header)))
            except ForeignHeader as exc:
                foreign.append(entry)
                self._set_aside(entry, exc)
        return readable, foreign

    def _set_aside(self, entry: SpoolEntry, exc: ForeignHeader) -> None:
        assert self._spool is not None
        traces = int(entry.header.get("traces", 0) or 0) if isinstance(entry.header, dict) else 0
        error = {"status_code": None, "message": f"unreadable batch: {exc}", "time": time.time()}
        try:
            where = self._spool.dead_letter(entry, error)
        except OSError as err:
            where = f"nowhere ({err})"
        self._say(
            logging.WARNING,
            "spool-foreign",
            "galileo-otel: spool: a batch of %d traces has a header this version cannot read "
            "(%s); set aside in %s",
            traces,
            exc,
            where,
        )

    def _leave_in_spool(
        self,
        out: Outbound,
        *,
        retried: bool,
        reason: str = "shutdown",
        not_before_s: float | None = None,
    ) -> None:
        if out.entry is None:
            # Reliable mode without a spool: the batch is gone, say so in the counts.
            self._count("traces_failed", out.traces)
            self._count(f"failed.{reason}", out.traces)
            self._settle(out, ok=False, reason=reason)
            return
        out.entry.release()
        self._count("traces_spooled", out.traces)
        if self._shutdown and self._spool is not None:
            # A sender that outlived shutdown lets go of its batch: the next process takes it.
            with contextlib.suppress(OSError):
                self._spool.disown()
        with self._cv:
            self._held.pop(out.entry.name, None)
            self._spool_files += 1
            if retried:
                self._parked[out.entry.name] = out.seq
                # The next try of the spool honours the server's Retry-After, if longer.
                wait = max(self._scan_backoff, not_before_s or 0.0)
                self._next_scan = max(self._next_scan, self._clock() + wait)
                self._scan_backoff = min(DEFAULT_SPOOL_RETRY_MAX_S, self._scan_backoff * 2)
            self._cv.notify_all()
            self._cv_write.notify()

    def _finish_leftovers(self) -> None:
        """After shutdown: spool what the writer missed, release idle claims, count the rest."""
        while True:
            with self._cv:
                item = self._to_spool.popleft() if self._to_spool else None
            if item is None:
                break
            if isinstance(item, Flush):
                item.done.set()
                continue
            out = item
            if self._spool is not None:
                try:
                    entry = self._spool.write(out.header.encode(), out.payload or b"[]")
                    if entry is None:
                        self._spool_full(out)
                        continue
                    entry.release()
                    self._count("traces_spooled", out.traces)
                    continue
                except OSError as exc:
                    self._say(
                        logging.WARNING, "spool-write", "galileo-otel: spool write failed: %s", exc
                    )
            self._count("traces_failed", out.traces)
            self._count("failed.shutdown", out.traces)
            self._settle(out, ok=False, reason="shutdown")
        with self._cv:
            waiting = list(self._outbox)
            self._outbox.clear()
        for out in waiting:
            if out.entry is not None:
                self._leave_in_spool(out, retried=False)
            else:
                self._count("traces_failed", out.traces)
                self._count("failed.shutdown", out.traces)
                self._settle(out, ok=False, reason="shutdown")
        left = sum(1 for item in list(self._queue) if not isinstance(item, Flush))
        marker = self._final_marker
        if marker is not None and not marker.done.is_set():
            # The worker did not get through the queue in time: what it still holds (open
            # traces, open batches) is lost too. Read from here while it may still run: counted
            # as well as can be, never silently.
            with contextlib.suppress(Exception):
                left += int(self._get_assembler().stats().get("open_spans", 0))
            with contextlib.suppress(RuntimeError):  # changed size while we looked
                left += sum(batch.spans for batch in list(self._open.values()))
        if left:
            self._count("dropped.shutdown", left)
