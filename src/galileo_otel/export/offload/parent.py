"""OffloadPipeline: the app's face of the export worker process (``GALILEO_EXPORT_PROCESS``).

Transport and replay only: the app thread hands spans off as records (``handoff.py``), a
pipe-writer thread writes them as frames (``protocol.py``) to a child running the same
``ExportPipeline`` as in-process (``child.py``), keeps what the child has not confirmed
(``replay.py``), matches answers to requests (``requests.py``) and restarts a child that died,
or hands over to an in-process pipeline (``fallback.py``). Batching, sessions, conversion,
delivery, the spool and their counters all live in the child.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import threading
import time
from collections import deque
from typing import Any

from galileo_otel.api.suppress import suppressed
from galileo_otel.export.handoff import SpanHandoff
from galileo_otel.export.hooks import ProcessHooks
from galileo_otel.export.offload.fallback import Fallback
from galileo_otel.export.offload.protocol import (
    MSG_FLUSH,
    MSG_RESOURCE,
    MSG_SHUTDOWN,
    MSG_STATS,
    READY_SEQ,
    decode,
    encode,
    encode_spans,
    read_frame,
    settings_env,
    worker_command,
    write_raw,
)
from galileo_otel.export.offload.replay import CHECKPOINT_MIN_INTERVAL_S, ReplayBuffer
from galileo_otel.export.offload.requests import Requests, Waiter
from galileo_otel.export.sdk_span import span_record, span_resource
from galileo_otel.export.stats import Counters, merge_spans
from galileo_otel.settings import GalileoSettings

__all__ = ["MAX_RESTARTS", "OffloadPipeline"]

_log = logging.getLogger("galileo_otel.export")

_FRAME_SPANS = 1024  # spans per frame: one write syscall and one GIL hand-over per frame
# How long the writer thread, woken by the first span after a quiet spell, waits for a frame's
# worth before it sends what it has: a lone span is piped within this, a burst costs the app
# one wake-up (a GIL hand-over) per frame instead of one per few hundred spans.
_LINGER_S = 0.02
MAX_RESTARTS = 3
# How long start(wait=True) waits for the child to be set up (imports, client). configure() and
# the processor never wait: until the child is ready, spans are kept as encoded frames here.
_READY_TIMEOUT_S = 10.0
# A checkpoint's own bound in the child (it settles; it reports no loss).
_CHECKPOINT_TIMEOUT_S = 30.0
# This process's own counters; every other figure of stats() is the child's.
_OWN_COUNTERS = ("offload.child_exits", "offload.restarts", "offload.fallback")

# Worker processes inherited through a fork: kept referenced so their pipes are never closed
# through objects whose locks a vanished thread may hold.
_FORK_ORPHANS: list[Any] = []


class _Control:
    """A request queued behind the spans (the queue's items are records, spans or these)."""

    __slots__ = ("waiter",)

    def __init__(self, waiter: Waiter) -> None:
        self.waiter = waiter


class OffloadPipeline(SpanHandoff):
    """Same face as :class:`~galileo_otel.export.pipeline.ExportPipeline`; the work runs in a child.

    ``submit`` is the same O(1) append. A pipe-writer thread turns queued spans into frames and
    writes them to a ``python -m galileo_otel.export.offload.child`` process, which runs an
    in-process ``ExportPipeline`` with the same settings (so delivery modes, spool and stats
    are the same). Frames not yet covered by a successful flush of the child are kept (bounded
    by ``max_queue_spans``, see :class:`~.replay.ReplayBuffer`) and replayed to a restarted
    child; after ``MAX_RESTARTS`` deaths the export falls back to an in-process pipeline. Until
    a child has said it is set up, frames are kept here instead of written (``max_queue_spans``
    of them; then the app's queue fills and drops, counted), so a slow start never holds up the
    app or ``start()``.

    Threads: the pipe writer (``galileo-otel-offload``), one reader per child
    (``galileo-otel-offload-reader``), and a short-lived one per request while on the fallback.

    Args:
        settings: The configuration; from ``GALILEO_*`` env vars when ``None``.
        start: Start the writer thread and the child now.
        shutdown_at_exit: Shut down (bounded by ``exit_timeout``) at interpreter exit.
        command: The child's command line (tests); :func:`~.protocol.worker_command` by default.
        destination: The project / log stream resolved by configure(), handed to the child as
            ids so it does not resolve them again.
        logging_method: Who logged the spans, stamped on every session the child opens (the
            gateway's pipelines of other languages' spans); ``None``: this client's own.
    """

    # The app thread queues records (see SpanHandoff): the writer thread then only encodes them.
    _queue_records = True

    def __init__(
        self,
        settings: GalileoSettings | None = None,
        *,
        start: bool = True,
        shutdown_at_exit: bool = True,
        command: list[str] | None = None,
        destination: Any = None,
        logging_method: str | None = None,
    ) -> None:
        self._settings = settings if settings is not None else GalileoSettings()
        self._destination = destination
        self._logging_method = logging_method
        s = self._settings
        self._disabled = bool(s.logging_disabled)
        self._max_queue = int(s.max_queue_spans)
        self._export_timeout = float(s.export_timeout)
        self._exit_timeout = float(s.exit_timeout)
        self._checkpoint_interval = max(CHECKPOINT_MIN_INTERVAL_S, float(s.batch_delay))
        self._command = command or worker_command()
        # A lingering writer is woken when the queue holds more than this: a frame's worth, or
        # half the queue when that is smaller (a full queue drops).
        self._frame_wake = max(0, min(_FRAME_SPANS, self._max_queue // 2) - 1)
        self._closing = False
        self._fresh_state()
        self._hooks = ProcessHooks(
            self._at_exit, self._after_fork_in_child, exit_hook=shutdown_at_exit
        )
        if start:
            self.start()

    def _fresh_state(self) -> None:
        """Every run-time field, empty (at construction, and in a forked child)."""
        self._reset_handoff()
        self._started = False
        self._taken = 0  # the writer's own: spans taken off the queue
        self._requests = Requests()  # flush / stats / shutdown waiting for the child's answer
        self._counters = Counters()
        self._replay = ReplayBuffer(self._max_queue, min_interval_s=self._checkpoint_interval)
        self._last_child_stats: dict[str, Any] = {}  # replaced whole, never changed in place
        # The child. _proc, _gen, _sent_res and _unsent are the writer's (and start()'s, before
        # the writer runs); _ready and _dead are set by the reader too.
        self._proc: subprocess.Popen[bytes] | None = None
        self._gen = 0  # child generation; a reader of an older child ignores its EOF
        self._dead = False
        self._stopping = False  # shutdown sent: the child's exit is expected
        self._ready = threading.Event()
        self._said_ready = 0  # the generation of the last child that said it is set up
        self._sent_res: set[int] = set()
        self._unsent: deque[tuple[int, bytes]] = deque()  # (mark or 0, frame) until ready
        self._control_pending = False  # a control item is queued: the writer must not linger
        self._fallback: Fallback | None = None  # set once, by the writer thread
        self._worker: threading.Thread | None = None
        self._said_death = False

    def start(self, *, wait: bool = False) -> None:
        """Start the child and the writer thread (idempotent); returns at once by default.

        Spans submitted while the child is still starting are kept and sent when it is ready.

        Args:
            wait: Wait (bounded by ``_READY_TIMEOUT_S``) until the child is set up, e.g. to keep
                its one-time start-up CPU out of a measurement.
        """
        if self._started or self._closing or self._disabled:
            return
        self._started = True
        try:
            self._spawn()
        except OSError as exc:  # no child (no fork/exec left, no interpreter): the writer
            # thread tries again and then falls back in-process; the caller never sees it.
            _log.warning("galileo-otel: cannot start the export worker process: %s", exc)
            self._dead = True
        if wait and not self._dead:
            self._ready.wait(_READY_TIMEOUT_S)
        self._worker = threading.Thread(
            target=suppressed(self._run), name="galileo-otel-offload", daemon=True
        )
        self._worker.start()

    def wait_ready(self, timeout_s: float | None = None) -> bool:
        """Wait up to ``timeout_s`` (``None``: no bound) until the worker process is set up.

        Never needed for delivery (spans submitted earlier are kept and sent once it is); for
        a caller that must know the child's one-time start-up (imports, client) is over.

        Returns:
            Whether the worker process last started has said it is set up; ``False`` when it
            has not within ``timeout_s``, exited first, or none runs (not started, export
            disabled, or the in-process fallback).
        """
        gen, ready = self._gen, self._ready
        if not self._started or self._fallback is not None or not ready.wait(timeout_s):
            return False
        return self._said_ready == gen and not self._dead

    # --- the app thread -------------------------------------------------------------------------
    @suppressed  # the caller's thread may touch the spool (SQLite): never traced
    def force_flush(self, timeout_s: float | None = None) -> bool:
        """Deliver what was queued before the call; the child's ``force_flush`` result."""
        if self._closing or self._disabled or not self._started:
            return not self._closing
        timeout = self._export_timeout if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout
        ok = bool(self._control(MSG_FLUSH, timeout, deadline))
        # Fresh counters for stats() after a flush (the flush already waited; stats() never does).
        self._refresh_stats(min(1.0, max(0.0, deadline - time.monotonic())))
        return ok

    @suppressed
    def shutdown(self, timeout_s: float | None = None) -> bool:
        """Flush and stop the child; returns within ``timeout_s`` (the child is killed if late)."""
        if self._closing:
            return False
        timeout = self._export_timeout if timeout_s is None else timeout_s
        deadline = time.monotonic() + max(0.0, timeout)
        ok = True
        if self._started and not self._disabled:
            # The child gets a little less, so its answer and exit fit in our bound.
            inner = max(0.0, timeout - min(0.5, timeout * 0.2))
            self._stopping = True
            answer = self._control(MSG_SHUTDOWN, inner, deadline)
            if isinstance(answer, dict):  # {"ok": bool, "stats": the child's final counters}
                self._last_child_stats = dict(answer.get("stats") or {})
                answer = answer.get("ok")
            ok = bool(answer)
        self._closing = True
        self._hooks.cancel_exit()
        self._wake.set()
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(max(0.0, deadline - time.monotonic()))
        self._stop_child(deadline)
        if self._fallback is not None:
            ok = self._fallback.shutdown(max(0.0, deadline - time.monotonic())) and ok
        return ok

    def stats(self) -> dict[str, Any]:
        """The child's counters, with this process's queue, drop and ``offload.*`` counters.

        Never waits for the child: the child's part is as of its last answer (every flush
        brings a fresh one); each call asks for a newer one in the background. After a
        fallback, the in-process pipeline's counters are on top of the last child's.
        """
        self._refresh_stats(None)
        out: dict[str, Any] = dict(self._last_child_stats)
        if self._fallback is not None:
            with contextlib.suppress(Exception):
                out.update(self._fallback.stats())
        for key in _OWN_COUNTERS:
            out[key] = self._counters.get(key)
        out["offload.replay_overflow"] = self._replay.overflowed()
        errors = self._counters.get("errors.offload_extract")
        if errors:
            out["errors.offload_extract"] = errors
        queued = sum(1 for item in list(self._queue) if type(item) is not _Control)
        merge_spans(
            out,
            taken=self._taken,
            queued=queued,
            dropped_full=self._dropped_full,
            dropped_closed=self._dropped_closed,
        )
        return out

    def replay_spans(self) -> int:
        """Spans the child has not confirmed yet (kept for a restarted child)."""
        return self._replay.spans()

    @property
    def child(self) -> Any:
        """The worker process last started (a ``subprocess.Popen``); ``None`` before any."""
        return self._proc

    # --- the writer driven by hand (tests): before start(), never beside the writer thread -----
    def use_child(self, proc: Any) -> None:
        """Write to ``proc`` (anything with a ``stdin``) as the worker process, spawning none."""
        self._proc = proc

    def child_ready(self) -> None:
        """What the reader does when the child says it is set up: kept frames may go."""
        self._ready.set()

    def pump(self) -> bool:
        """One pass of the writer without its waits; whether spans are then held back.

        Frames kept for a child that is now ready are written, then the queue is drained
        (while the child is not ready, only as far as the replay buffer has room). Held back:
        spans wait in the app's queue because the child is not ready and the buffer is full.
        """
        if self._unsent and self._ready.is_set():
            self._write_unsent()
        self._drain(self._queue)
        return self._held_back()

    def _refresh_stats(self, wait_s: float | None) -> None:
        """Ask the child for its counters; wait up to ``wait_s`` (``None``: do not wait)."""
        answer = self._requests.stats_answer()
        if isinstance(answer, dict):
            self._last_child_stats = answer
        if not self._started or self._closing or self._fallback is not None:
            return
        waiter, new = self._requests.stats_request(MSG_STATS, 1.0)
        if new:
            self._enqueue_control(_Control(waiter))
        if wait_s and waiter.done.wait(wait_s):
            self._refresh_stats(None)

    def _control(self, tag: int, timeout: float, deadline: float) -> Any:
        waiter = self._requests.open(tag, timeout)
        self._enqueue_control(_Control(waiter))
        waiter.done.wait(max(0.0, deadline - time.monotonic()))
        self._requests.close(waiter)
        return waiter.result if waiter.done.is_set() else None

    def _enqueue_control(self, item: Any) -> None:
        self._control_pending = True
        super()._enqueue_control(item)

    # --- exit and fork (installed through hooks.ProcessHooks) ------------------------------------
    def _at_exit(self) -> None:
        """At interpreter exit: shut down, bounded by ``exit_timeout``."""
        if not self._closing:
            self.shutdown(self._exit_timeout)

    def _after_fork_in_child(self) -> None:
        """A forked app process gets its own worker process; the parent's pipe stays the parent's."""
        proc = self._proc
        if proc is not None:
            # Our copies of the pipe ends point to /dev/null now (the parent keeps its worker
            # process, which still sees EOF when the parent goes). The file objects are kept, not
            # closed: the parent's reader thread may have held a buffer lock at the fork.
            _FORK_ORPHANS.append(proc)
            with contextlib.suppress(OSError):
                null = os.open(os.devnull, os.O_RDWR)
                for pipe in (proc.stdin, proc.stdout):
                    if pipe is not None:
                        with contextlib.suppress(OSError, ValueError):
                            os.dup2(null, pipe.fileno())
                os.close(null)
        was_started = self._started and not self._closing
        self._fresh_state()  # new locks: a parent thread may have held one at the fork
        if was_started:
            self.start(wait=False)

    # --- the child ------------------------------------------------------------------------------
    def _spawn(self) -> None:
        self._gen += 1
        self._dead = False
        self._ready = threading.Event()
        self._sent_res = set()
        self._replay.new_child()
        # What was kept for the previous child is in the replay buffer and the waiters, which
        # _resend() writes (or keeps again) for this one.
        self._unsent = deque()
        self._proc = subprocess.Popen(
            self._command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=settings_env(self._settings, self._destination, self._logging_method),
            close_fds=True,
        )
        reader = threading.Thread(
            target=suppressed(self._read_loop),
            args=(self._proc, self._gen),
            name="galileo-otel-offload-reader",
            daemon=True,
        )
        reader.start()

    def _read_loop(self, proc: subprocess.Popen[bytes], gen: int) -> None:
        out = proc.stdout
        assert out is not None
        try:
            while True:
                seq, result = read_frame(out)
                if seq == READY_SEQ:
                    self._said_ready = gen
                    self._ready.set()
                    self._awake = True
                    self._wake.set()  # the writer sends what it kept while the child started
                    continue
                waiter = self._requests.get(seq)
                if waiter is None:
                    self._replay.checkpoint_answered(seq, result is True)
                    continue
                if waiter.msg[0] == MSG_FLUSH and result is True:
                    self._replay.confirm(waiter.replay_mark)
                waiter.answer(result)
        except Exception:  # EOF or a broken frame: the child is gone or unusable
            if gen == self._gen:
                self._ready.set()
                if self._stopping:
                    self._requests.fail_all()  # an expected exit; nothing to restart
                    return
                self._dead = True
                self._wake.set()

    def _stop_child(self, deadline: float) -> None:
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(Exception):
            if proc.stdin is not None:
                proc.stdin.close()  # EOF: the child exits
        try:
            proc.wait(max(0.05, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(Exception):
                proc.kill()
            with contextlib.suppress(Exception):
                proc.wait(1.0)
        with contextlib.suppress(Exception):
            if proc.stdout is not None:
                proc.stdout.close()

    # --- the writer thread ----------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._work()
        except BaseException as exc:  # pragma: no cover - a bug; say it, never kill the app
            _log.critical("galileo-otel: offload worker stopped: %r", exc, exc_info=exc)

    def _work(self) -> None:
        queue = self._queue
        while True:
            self._wake.clear()
            self._awake = False
            self._wake_after = 0
            if self._dead and self._fallback is None:
                self._recover()
            self.pump()
            if self._fallback is None and self._ready.is_set() and self._replay.checkpoint_due():
                seq = self._requests.next_seq()
                self._replay.checkpoint_sent(seq)
                # A checkpoint reports no loss: that stays for the app's own next flush.
                self._write(encode((MSG_FLUSH, seq, _CHECKPOINT_TIMEOUT_S, False)))
            if self._closing and not queue:
                return
            if queue and not self._held_back():
                continue  # more came while we worked
            # Asleep until spans come; a replay buffer waiting for its checkpoint wakes us.
            self._wake.wait(None if self._fallback is not None else self._replay.sleep_for())
            self._linger(queue)

    def _held_back(self) -> bool:
        """Whether spans wait in the queue because the child is not ready and our store is full."""
        return not self._ready.is_set() and self._replay.room() == 0

    def _linger(self, queue: deque[Any]) -> None:
        """Woken by a first span: wait (briefly) for a frame's worth before taking any."""
        if (
            not queue
            or len(queue) > self._frame_wake
            or self._closing
            or self._control_pending
            or self._dead
        ):
            return
        self._wake.clear()
        self._wake_after = self._frame_wake
        self._awake = False
        if len(queue) <= self._frame_wake and not self._control_pending:
            self._wake.wait(_LINGER_S)

    def _drain(self, queue: deque[Any]) -> None:
        """Take every queued span (as frames) and control item, in order."""
        batch: list[tuple[Any, ...]] = []
        sent_res = self._sent_res
        # While the child is still starting we keep at most max_queue_spans; the rest waits in
        # the app's queue (which drops, counted, when full).
        room = -1 if self._ready.is_set() else self._replay.room()
        try:
            while room:
                room -= 1
                item = queue.popleft()
                if type(item) is _Control:
                    self._control_pending = False
                    self._send_spans(batch)
                    batch = []
                    self._send_control(item.waiter)
                    continue
                self._taken += 1
                if type(item) is not tuple:  # queued as it was (see SpanHandoff.submit)
                    try:
                        entry = self._resources.get(id(span_resource(item)))
                        if entry is None:
                            entry = self._number_resource(span_resource(item))
                        item = span_record(item, entry[1] if entry is not None else 0)
                    except Exception:
                        self._counters.add("errors.offload_extract")
                        continue
                rid = item[12]
                if rid not in sent_res:
                    self._send_resource(rid)
                batch.append(item)
                if len(batch) >= _FRAME_SPANS:
                    self._send_spans(batch)
                    batch = []
        except IndexError:
            pass
        self._send_spans(batch)

    def _send_resource(self, rid: int) -> None:
        """Tell the child a resource's attributes before the first span that names it."""
        self._sent_res.add(rid)
        if self._fallback is not None:
            return
        attrs = next((e[2] for e in list(self._resources.values()) if e[1] == rid), {})
        self._write(encode((MSG_RESOURCE, rid, attrs)))

    def _send_spans(self, batch: list[tuple[Any, ...]]) -> None:
        if not batch:
            return
        if self._fallback is not None:
            self._fallback.submit(batch, self._resource_attributes())
            return
        data = encode_spans(batch)
        self._write(data, self._replay.add(data, len(batch)))

    def _send_control(self, waiter: Waiter) -> None:
        waiter.sent = True
        if self._fallback is not None:
            self._fallback.answer(waiter)
            return
        waiter.replay_mark = self._replay.last_mark()
        self._write(encode(waiter.msg))

    def _write(self, data: bytes, mark: int = 0) -> None:
        """Write a frame to the child, or keep it (in order) until the child is ready."""
        if self._unsent or not self._ready.is_set():
            self._unsent.append((mark, data))
            return
        self._pipe_write(data, mark)

    def _write_unsent(self) -> None:
        unsent = self._unsent
        while unsent and not self._dead:
            mark, data = unsent.popleft()
            self._pipe_write(data, mark)

    def _pipe_write(self, data: bytes, mark: int) -> None:
        proc = self._proc
        if self._dead or proc is None or proc.stdin is None:
            self._dead = True
            return
        try:
            write_raw(proc.stdin, data)
        except (OSError, ValueError):
            self._dead = True
            return
        if mark:
            self._replay.written(mark)

    # --- recovery -------------------------------------------------------------------------------
    def _recover(self) -> None:
        proc = self._proc
        if proc is not None:
            with contextlib.suppress(Exception):
                proc.kill()
            with contextlib.suppress(Exception):
                proc.wait(2.0)
            for pipe in (proc.stdin, proc.stdout):
                with contextlib.suppress(Exception):
                    if pipe is not None:
                        pipe.close()
        if proc is not None:
            self._counters.add("offload.child_exits")
        if not self._said_death and proc is not None:
            self._said_death = True
            _log.warning(
                "galileo-otel: export worker process exited (code %s); restarting it",
                proc.returncode if proc is not None else None,
            )
        if self._closing:
            self._requests.fail_all()
            return
        if self._counters.get("offload.restarts") < MAX_RESTARTS:
            self._counters.add("offload.restarts")
            try:
                self._spawn()
            except OSError as exc:
                _log.warning("galileo-otel: cannot start the export worker process: %s", exc)
            else:
                self._resend()
                if not self._dead:
                    return
        self._start_fallback()

    def _resend(self) -> None:
        """Everything a restarted child needs: resources, unconfirmed frames, open requests."""
        for _, rid, attrs in list(self._resources.values()):
            self._sent_res.add(rid)
            self._write(encode((MSG_RESOURCE, rid, attrs)))
        for mark, data in self._replay.frames():
            self._write(data, mark)
        for waiter in self._requests.unanswered():
            # A control still in the app queue goes out in its turn, after the spans before it.
            waiter.replay_mark = self._replay.last_mark()
            self._write(encode(waiter.msg))

    def _start_fallback(self) -> None:
        _log.warning("galileo-otel: export worker process keeps failing; exporting in-process")
        self._counters.add("offload.fallback")
        fallback = self._fallback = Fallback(
            self._settings, self._destination, self._logging_method
        )
        frames = self._replay.take_all()
        self._unsent.clear()  # all of it is in the replay buffer or the requests
        resources = self._resource_attributes()
        for data in frames:
            fallback.submit(decode(data)[1], resources)
        for waiter in self._requests.unanswered():
            fallback.answer(waiter)

    def _resource_attributes(self) -> list[tuple[int, dict[str, Any]]]:
        """Every numbered resource as ``(number, attributes)`` (see SpanHandoff)."""
        return [(rid, attrs) for _, rid, attrs in list(self._resources.values())]
