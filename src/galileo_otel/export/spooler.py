"""The Spooler: closed batches onto disk, then to the senders; the backlog back from disk.

One thread (``galileo-otel-spooler``) opens the spool (never on the app's thread: opening may
wait for SQLite's busy timeout), writes each closed batch to it before its first send
(reliable mode), hands it to an idle sender or leaves it on disk while all are busy, and every
``spool_retry_s`` renews this process's leases, adopts batches of ended processes and feeds
idle senders from the spool. File I/O stays off the batcher: each syscall gives the GIL away,
and a CPU-bound app thread then keeps it for a whole switch interval.

The Spooler is the pipeline's one user of the spool store (``spool.py``, ``spool_format.py``):
the senders put batches back or dead-letter them through it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from galileo_otel.api.suppress import suppressed
from galileo_otel.errors import APIError
from galileo_otel.export._stage import Flush, Outbound, Report
from galileo_otel.export.ledger import Ledger
from galileo_otel.export.spool import LEASE_S, Spool, SpoolEntry, open_spool
from galileo_otel.export.spool_format import BatchHeader, ForeignHeader

if TYPE_CHECKING:
    from galileo_otel.export.config import PipelineConfig

__all__ = ["Spooler", "spool_plan"]

_log = logging.getLogger("galileo_otel.export.pipeline")

_COMPACT_EVERY_S = 60.0


def spool_plan(
    spool: Spool | bool | None, path: Path | None, *, reliable: bool, disabled: bool
) -> tuple[Spool | None, Path | None, str]:
    """``(spool, path to open, reason)`` for the pipeline's ``spool`` argument and settings.

    The spool is opened by the spooler thread, never on the caller's (opening may wait up to
    SQLite's busy timeout). The reason it is off is for ``stats()``: a reliable pipeline
    without one loses what it cannot deliver, and the user must be able to see that.
    """
    if isinstance(spool, Spool):
        return spool, None, ""
    if spool is False:
        return None, None, "off (no spool passed)"
    if not reliable:
        return None, None, "off (fire-and-forget mode: GALILEO_RELIABLE=false)"
    if disabled:
        return None, None, "off (export disabled)"
    if path is None:
        return None, None, "off (GALILEO_SPOOL_DIR=off)"
    return None, path, "not open yet (the spooler thread opens it at start)"


class Spooler:
    """The spooler thread and what it owns: the spool, writing, adoption, leases, feeding senders.

    Args:
        ledger: The batches' bookkeeping and the hand-over queues.
        report: Counters and log.
        spool: An open spool, or ``None``: then ``spool_path`` says where the thread opens one
            (``None`` too: no spool, ``reason`` says why, for ``stats()``).
        open_args: ``origin``, ``max_bytes``, ``dead_max_bytes`` for :func:`open_spool`.
        retry_s: How often the spooler looks at the spool (leases, adoption): at most
            ``LEASE_S / 4``.
        clock: Monotonic seconds.
    """

    def __init__(
        self,
        *,
        ledger: Ledger,
        report: Report,
        spool: Spool | None,
        spool_path: Path | None,
        reason: str,
        open_args: dict[str, Any],
        retry_s: float,
        clock: Callable[[], float],
    ) -> None:
        self._ledger = ledger
        self._report = report
        # Written once, by the spooler thread that opens it (None -> the spool) before any
        # batch is handed to a sender; read without a lock everywhere after.
        self._spool = spool
        self._path = spool_path
        self._reason = reason
        self._open_args = open_args
        self._retry_s = retry_s
        self._clock = clock
        self._thread: threading.Thread | None = None
        # The spooler thread's own (no lock).
        self._next_housekeep = 0.0
        self._next_compact = 0.0
        self._said_foreign = False

    @classmethod
    def for_config(
        cls,
        config: PipelineConfig,
        *,
        ledger: Ledger,
        report: Report,
        spool: Spool | None,
        spool_path: Path | None,
        reason: str,
        clock: Callable[[], float],
    ) -> Spooler:
        """A spooler with a pipeline's spool limits and rescan interval.

        ``spool``, ``spool_path`` and ``reason`` are :func:`spool_plan`'s answer.
        """
        return cls(
            ledger=ledger,
            report=report,
            spool=spool,
            spool_path=spool_path,
            reason=reason,
            open_args=config.spool_open_args,
            retry_s=config.spool_retry_s,
            clock=clock,
        )

    # --- what others ask ---------------------------------------------------------------------
    @property
    def spool(self) -> Spool | None:
        """The open spool (``None`` until opened, or without one)."""
        return self._spool

    @property
    def reason(self) -> str:
        """Why there is no spool (for ``stats()``)."""
        return self._reason

    @property
    def pending_path(self) -> Path | None:
        """Where the thread will open the spool (``None`` once opened, or without one)."""
        return self._path

    @property
    def thread(self) -> threading.Thread | None:
        """The spooler thread, once started."""
        return self._thread

    def start(self) -> None:
        """Start the spooler thread."""
        self._thread = threading.Thread(
            target=suppressed(self._main), name="galileo-otel-spooler", daemon=True
        )
        self._thread.start()

    # --- the thread -----------------------------------------------------------------------------
    def _main(self) -> None:
        """Open the spool (first, so every batch sees it), then write."""
        try:
            self._open()
        except Exception as exc:  # pragma: no cover - a bug; run without a spool, say it
            self._report.internal_error("spool open", exc)
            self._path = None
            self._reason = f"unusable: {exc!r}"
            self._ledger.spool_opened(False)
        self._write_loop()

    def _open(self) -> None:
        path = self._path
        if path is None:
            return
        spool, reason = open_spool(path, why_off="off (GALILEO_SPOOL_DIR=off)", **self._open_args)
        if spool is not None:
            with contextlib.suppress(OSError):
                spool.cleanup()
        self._spool, self._reason, self._path = spool, reason, None
        self._ledger.spool_opened(spool is not None)

    def _write_loop(self) -> None:
        ledger = self._ledger
        while True:
            running, item = ledger.next_to_write(self._housekeep_at())
            if not running:
                return
            try:
                if isinstance(item, Flush):
                    item.done.set()  # every batch before it is on disk (or with a sender)
                elif item is not None:
                    self._hand_over(item)
                if self._spool is not None:
                    self._housekeep(self._clock())
                    self._maybe_scan(self._clock())
            except Exception as exc:  # pragma: no cover - a bug; never stop writing
                self._report.internal_error("spool writer", exc)

    def _housekeep_at(self) -> float:
        return self._next_housekeep if self._spool is not None else float("inf")

    def _write(self, out: Outbound) -> SpoolEntry | bool | None:
        """Write a batch; the entry, ``None`` when the spool is full, ``False`` on an error."""
        assert self._spool is not None
        try:
            entry = self._spool.write(out.header.encode(), out.payload or b"[]")
        except OSError as exc:
            self._report.say(
                logging.WARNING, "spool-write", "galileo-otel: spool write failed: %s", exc
            )
            return False
        if entry is None:
            self._spool_full(out)
        return entry

    def _hand_over(self, out: Outbound) -> None:
        """Write a closed batch to the spool (if on), then give it to a sender or leave it."""
        if self._spool is not None:
            entry = self._write(out)
            if entry is None:
                return
            if entry is False:
                self._report.count("spool_write_errors")
            else:
                assert isinstance(entry, SpoolEntry)
                out.entry = entry
        where = self._ledger.written(out)
        if where == "on_disk":
            # Senders are busy: the batch waits on disk, not in memory.
            assert out.entry is not None
            out.entry.release()
            self._report.count("traces_spooled", out.traces)
        elif where == "lost":
            self._report.count("traces_failed", out.traces)
            self._report.count("failed.shutdown", out.traces)

    def _spool_full(self, out: Outbound) -> None:
        """The spool refused a batch (GALILEO_SPOOL_MAX_BYTES): drop it, count it, never wait."""
        self._report.say(
            logging.WARNING,
            "spool-full",
            "galileo-otel: spool full (GALILEO_SPOOL_MAX_BYTES=%d): batch of %d traces dropped",
            int(self._open_args.get("max_bytes", 0)),
            out.traces,
        )
        self._report.count("dropped.spool_full", out.traces)
        self._ledger.settle(out, ok=False)

    def _housekeep(self, now: float) -> None:
        """Renew our leases, adopt dead processes' batches, notice ours settled elsewhere.

        Runs on the spooler thread only (so no batch is claimed while it looks), at start and
        then every ``spool_retry_s`` (at most ``LEASE_S / 4``).
        """
        spool = self._spool
        if spool is None or now < self._next_housekeep or self._ledger.stopped:
            return
        self._next_housekeep = now + min(self._retry_s, LEASE_S / 4)
        idle = self._ledger.idle_names()
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
            self._report.say(
                logging.WARNING, "spool-scan", "galileo-otel: spool look failed: %s", exc
            )
            self._ledger.adoption.set()
            return
        handed_over = self._ledger.housekept(adopted, owned, idle, usage)
        if adopted:
            n = sum(t for _, t in adopted)
            self._report.count("traces_adopted", n)
            _log.info(
                "galileo-otel: took over %d spooled batches (%d traces) left by ended processes",
                len(adopted),
                n,
            )
        if handed_over:
            self._report.count("traces_handed_over", handed_over)
        if usage.get("foreign_batches") and not self._said_foreign:
            self._said_foreign = True
            _log.warning(
                "galileo-otel: the spool %s holds %d batches made with another API key; they are "
                "left for a process using that key (see stats() spool_foreign_batches)",
                spool.path,
                usage["foreign_batches"],
            )
        self._ledger.adoption.set()

    def _maybe_scan(self, now: float) -> None:
        """Feed idle senders with spooled batches: ours left on disk, or another run's."""
        assert self._spool is not None
        room = self._ledger.scan_room(now)
        if room <= 0:
            return
        try:
            claimed = self._spool.claim_oldest(room, skip=self._ledger.skip_names())
        except OSError as exc:
            self._report.say(
                logging.WARNING, "spool-scan", "galileo-otel: spool scan failed: %s", exc
            )
            self._ledger.scan_failed(now)
            return
        entries, foreign = self._readable(claimed)
        self._ledger.claimed(entries, foreign, now)

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
        self._report.say(
            logging.WARNING,
            "spool-foreign",
            "galileo-otel: spool: a batch of %d traces has a header this version cannot read "
            "(%s); set aside in %s",
            traces,
            exc,
            where,
        )

    # --- for the senders (their threads) --------------------------------------------------------
    def put_back(
        self,
        out: Outbound,
        *,
        retried: bool,
        reason: str = "shutdown",
        not_before_s: float | None = None,
    ) -> None:
        """A batch not delivered now: back on disk for a later try (lost without a spool)."""
        if out.entry is None:
            # Reliable mode without a spool: the batch is gone, say so in the counts.
            self._report.count("traces_failed", out.traces)
            self._report.count(f"failed.{reason}", out.traces)
            self._ledger.settle(out, ok=False)
            return
        out.entry.release()
        self._report.count("traces_spooled", out.traces)
        if self._ledger.shut and self._spool is not None:
            # A sender that outlived shutdown lets go of its batch: the next process takes it.
            with contextlib.suppress(OSError):
                self._spool.disown()
        self._ledger.back_on_disk(out, retried=retried, not_before_s=not_before_s)

    def dead_letter(self, out: Outbound, exc: APIError, *, reliable: bool) -> str:
        """Set a refused batch aside in the spool's dead letters; says where (or why not)."""
        if self._spool is None:
            return "dropped (no spool)"
        error = {
            "status_code": exc.status_code,
            "message": exc.message,
            "detail": exc.detail,
            "time": time.time(),
        }
        try:
            if out.entry is not None:
                return str(self._spool.dead_letter(out.entry, error))
            if reliable:
                payload = out.payload if out.payload is not None else b"[]"
                return str(self._spool.dead_letter_new(out.header.encode(), payload, error))
        except OSError as exc2:
            return f"lost (could not write dead letter: {exc2})"
        return "dropped (no spool)"

    def close_after_shutdown(self) -> None:
        """The last sender that outlived shutdown closes the spool."""
        if self._spool is not None:
            self._spool.close()

    # --- shutdown (the caller's thread, after the threads were joined) ---------------------------
    def finish_leftovers(self) -> None:
        """Spool what the thread missed, release what no sender took, count the rest."""
        to_spool, outbox = self._ledger.leftovers()
        for item in to_spool:
            if isinstance(item, Flush):
                item.done.set()
                continue
            if self._spool is not None:
                entry = self._write(item)
                if entry is None:
                    continue
                if isinstance(entry, SpoolEntry):
                    entry.release()
                    self._report.count("traces_spooled", item.traces)
                    continue
            self._report.count("traces_failed", item.traces)
            self._report.count("failed.shutdown", item.traces)
            self._ledger.settle(item, ok=False)
        for out in outbox:
            if out.entry is not None:
                self.put_back(out, retried=False)
            else:
                self._report.count("traces_failed", out.traces)
                self._report.count("failed.shutdown", out.traces)
                self._ledger.settle(out, ok=False)

    def refresh_usage(self) -> None:
        """Read the spool's size now: stats() after a flush shows the spool as it left it."""
        spool = self._spool
        if spool is None:
            return
        try:
            usage = spool.usage()
        except OSError as exc:
            self._report.say(
                logging.WARNING, "spool-scan", "galileo-otel: spool look failed: %s", exc
            )
            return
        self._ledger.set_usage(usage)

    def close(self, *, held: set[str], close_store: bool) -> None:
        """At shutdown: give up our leases (but those of ``held`` rows), close when idle."""
        if self._spool is None:
            return
        # What is left is anyone's to send now (a process starting later, or another pipeline
        # of this process), not after our lease runs out; a batch still in a stuck sender's
        # hands is disowned when that sender lets go of it.
        try:
            self._spool.disown(keep=held)
        except OSError as exc:
            self._report.say(logging.WARNING, "spool-close", "galileo-otel: spool: %s", exc)
        if close_store:
            self._spool.close()
