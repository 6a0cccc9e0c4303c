"""Opt-in export worker process (``GALILEO_EXPORT_PROCESS``).

Assembly, conversion and HTTP leave the app's interpreter; the app only pipes span tuples.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import logging
import marshal
import os
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import IO, Any

from galileo_otel.api.suppress import suppressed
from galileo_otel.export.handoff import SpanHandoff
from galileo_otel.export.hooks import weak_call
from galileo_otel.export.record import OffloadedSpan, make_resource, rebuild_span
from galileo_otel.export.sdk_span import span_record, span_resource
from galileo_otel.export.stats import merge_spans
from galileo_otel.settings import GalileoSettings

__all__ = [
    "NICE_ENV",
    "OffloadPipeline",
    "OffloadedSpan",
    "extract_span",
    "make_resource",
    "rebuild_span",
    "settings_env",
    "worker_command",
]

_log = logging.getLogger("galileo_otel.export")

# Message tags (parent -> child). Child -> parent messages are (seq, result).
MSG_RESOURCE = 0
MSG_SPANS = 1
MSG_FLUSH = 2
MSG_SHUTDOWN = 3
MSG_STATS = 4

SETTINGS_ENV = "GALILEO_OTEL_WORKER_SETTINGS"
NICE_ENV = "GALILEO_OTEL_WORKER_NICE"
# The worker's niceness (Unix): it yields the CPU to the app's process on a busy machine.
_CHILD_NICE = "10"
_HEADER = struct.Struct("<I")
_FRAME_SPANS = 1024  # spans per frame: one write syscall and one GIL hand-over per frame
# How long the worker thread, woken by the first span after a quiet spell, waits for a frame's
# worth before it sends what it has: a lone span is piped within this, a burst costs the app
# one wake-up (a GIL hand-over) per frame instead of one per few hundred spans.
_LINGER_S = 0.02
_MAX_RESTARTS = 3
# A checkpoint asks the child to flush and confirm, so the replay buffer can shrink. A flush
# closes the child's open batches early (measured: +57% requests at 1,000 traces/s with the
# default 1 s batch_delay when it came every second), so one is sent only when the buffer is
# half full or its oldest frame is _CHECKPOINT_MAX_AGE_S old (which bounds what a crashed child
# would get twice), and never more often than every max(_CHECKPOINT_S, batch_delay).
_CHECKPOINT_S = 1.0
_CHECKPOINT_MAX_AGE_S = 30.0
_EXIT_TIMEOUT_S = 5.0
# How long start(wait=True) waits for the child to be set up (imports, client). configure() and
# the processor never wait: until the child is ready, spans are kept as encoded frames here.
_READY_TIMEOUT_S = 10.0

# Worker processes inherited through a fork: kept referenced so their pipes are never closed
# through objects whose locks a vanished thread may hold.
_FORK_ORPHANS: list[Any] = []


# --- wire format ------------------------------------------------------------------------------
def write_frame(out: IO[bytes], obj: Any) -> None:
    """Write one length-prefixed ``marshal`` frame and flush it."""
    write_raw(out, marshal.dumps(obj))


def write_raw(out: IO[bytes], data: bytes) -> None:
    """Write one frame already encoded with ``marshal``."""
    out.write(_HEADER.pack(len(data)) + data)
    out.flush()


def read_frame(inp: IO[bytes]) -> Any:
    """Read one frame; raises ``EOFError`` when the other side is gone."""
    head = _read_exact(inp, _HEADER.size)
    (size,) = _HEADER.unpack(head)
    return marshal.loads(_read_exact(inp, size))


def _read_exact(inp: IO[bytes], n: int) -> bytes:
    buf = inp.read(n)
    if buf is None or len(buf) < n:
        parts = [buf or b""]
        got = len(parts[0])
        while got < n:
            chunk = inp.read(n - got)
            if not chunk:
                raise EOFError("pipe closed")
            parts.append(chunk)
            got += len(chunk)
        buf = b"".join(parts)
    return buf


# --- spans as plain tuples --------------------------------------------------------------------
def extract_span(span: Any, resource_id: int) -> tuple[Any, ...]:
    """An ended span as a tuple of builtins (what ``marshal`` can write)."""
    return span_record(span, resource_id)


def _sanitize(item: tuple[Any, ...]) -> tuple[Any, ...]:
    """Make a tuple marshal-able: values of unexpected types become strings."""

    def fix(v: Any) -> Any:
        if v is None or type(v) in (str, int, float, bool, bytes):
            return v
        if isinstance(v, (list, tuple)):
            return tuple(fix(x) for x in v)
        return str(v)

    attrs = {str(k): fix(v) for k, v in item[10].items()}
    events = item[11]
    if events:
        events = tuple((str(n), ts, {str(k): fix(v) for k, v in a.items()}) for n, ts, a in events)
    return (*item[:9], fix(item[9]), attrs, events, item[12])


def settings_env(settings: GalileoSettings, destination: Any = None) -> dict[str, str]:
    """Environment of the worker process: the settings as JSON, the API key in its own var."""
    data = settings.model_dump(mode="json", exclude={"api_key"})
    data["export_process"] = False
    if destination is not None and getattr(destination, "project_id", None):
        for name in ("project_id", "log_stream_id", "experiment_id"):
            value = getattr(destination, name, None)
            if value:
                data[name] = str(value)
    env = dict(os.environ)
    # Under `opentelemetry-instrument` PYTHONPATH starts with the auto-instrumentation
    # sitecustomize: the worker would run the zero-code set-up again, configure its own export
    # (another worker, without end) and trace itself. The worker is plain: drop that entry.
    if env.get("PYTHONPATH"):
        kept = [
            p
            for p in env["PYTHONPATH"].split(os.pathsep)
            if p and os.path.basename(os.path.normpath(p)) != "auto_instrumentation"
        ]
        if kept:
            env["PYTHONPATH"] = os.pathsep.join(kept)
        else:
            del env["PYTHONPATH"]
    env[SETTINGS_ENV] = json.dumps(data)
    env.setdefault(NICE_ENV, _CHILD_NICE)
    env.pop("GALILEO_API_KEY", None)
    if settings.api_key is not None:
        env["GALILEO_API_KEY"] = settings.api_key.get_secret_value()
    return env


def worker_command() -> list[str]:
    """The export worker process's command line: this interpreter running ``_worker``."""
    return [sys.executable, "-m", "galileo_otel.export._worker"]


# --- the app's side ---------------------------------------------------------------------------
class _Waiter:
    __slots__ = ("done", "msg", "replay_mark", "result", "sent")

    def __init__(self, msg: tuple[Any, ...], replay_mark: int) -> None:
        self.msg = msg
        self.sent = False  # written once: only then is it re-sent after a restart
        self.replay_mark = replay_mark
        self.done = threading.Event()
        self.result: Any = None


class _Control:
    __slots__ = ("waiter",)

    def __init__(self, waiter: _Waiter) -> None:
        self.waiter = waiter


class OffloadPipeline(SpanHandoff):
    """Same face as :class:`~galileo_otel.export.pipeline.ExportPipeline`; the work runs in a child.

    ``submit`` is the same O(1) append. A worker thread turns queued spans into tuples and
    writes them to a ``python -m galileo_otel.export._worker`` child, which runs an in-process
    ``ExportPipeline`` with the same settings (so delivery modes, spool and stats are the same).
    Frames not yet covered by a successful flush of the child are kept (bounded by
    ``max_queue_spans``) and replayed to a restarted child; after ``_MAX_RESTARTS`` deaths the
    export falls back to an in-process pipeline. Until a child has said it is set up, frames
    are kept here instead of written (``max_queue_spans`` of them; then the app's queue fills
    and drops, counted), so a slow start never holds up the app or ``start()``.

    Args:
        settings: The configuration; from ``GALILEO_*`` env vars when ``None``.
        start: Start the worker thread and the child now.
        shutdown_at_exit: Shut down (bounded) at interpreter exit.
        command: The child's command line (tests); ``python -m galileo_otel.export._worker``.
        destination: The project / log stream resolved by configure(), handed to the child as
            ids so it does not resolve them again.
    """

    # The app thread queues records (see SpanHandoff): this process's worker thread then only
    # marshals and writes them.
    _queue_records = True

    def __init__(
        self,
        settings: GalileoSettings | None = None,
        *,
        start: bool = True,
        shutdown_at_exit: bool = True,
        command: list[str] | None = None,
        destination: Any = None,
    ) -> None:
        self._settings = settings if settings is not None else GalileoSettings()
        self._destination = destination
        s = self._settings
        self._disabled = bool(s.logging_disabled)
        self._max_queue = int(s.max_queue_spans)
        self._export_timeout = float(s.export_timeout)
        self._batch_delay = float(s.batch_delay)
        self._command = command or worker_command()
        self._reset_handoff()
        self._closing = False
        self._started = False
        self._taken = 0
        # Guards _waiters, _stats_waiter, _counts and the replay buffer (_replay,
        # _replay_spans, _mark), shared by the app's calls, the worker and the reader threads.
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        self._waiters: dict[int, _Waiter] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._gen = 0  # child generation; a reader of an older child ignores its EOF
        self._dead = False
        self._stopping = False  # shutdown sent: the child's exit is expected
        self._ready = threading.Event()
        self._sent_res: set[int] = set()
        self._replay: deque[tuple[int, int, bytes]] = deque()  # (mark, spans, encoded frame)
        self._replay_spans = 0
        self._mark = 0
        # The worker thread's own: frames held until the child is ready ((mark or 0, frame)),
        # and the highest span frame written to the current child (only those may be trimmed).
        self._unsent: deque[tuple[int, bytes]] = deque()
        self._written_mark = 0
        self._control_pending = False  # a control item is queued: the worker must not linger
        # A lingering worker is woken when the queue holds more than this: a frame's worth, or
        # half the queue when that is smaller (a full queue drops).
        self._frame_wake = max(0, min(_FRAME_SPANS, self._max_queue // 2) - 1)
        self._counts: dict[str, int] = {}
        self._last_child_stats: dict[str, Any] = {}
        self._stats_waiter: _Waiter | None = None  # a stats request on its way (guarded: _lock)
        self._fallback: Any = None
        self._worker: threading.Thread | None = None
        self._next_checkpoint = 0.0
        self._replay_since = 0.0  # when the oldest unconfirmed frame was sent (about)
        self._said_death = False
        self._checkpoints: dict[int, int] = {}  # seq of an unanswered checkpoint -> replay mark
        self._fb_resources: dict[int, Any] = {}
        self._exit_hook = weak_call(self._at_exit)
        if shutdown_at_exit:
            atexit.register(self._exit_hook)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=weak_call(self._after_fork_in_child))
        if start:
            self.start()

    def start(self, *, wait: bool = False) -> None:
        """Start the child and the worker thread (idempotent); returns at once by default.

        Spans submitted while the child is still starting are kept and sent when it is ready.

        Args:
            wait: Wait (bounded by ``_READY_TIMEOUT_S``) until the child is set up, e.g. to keep
                its one-time start-up CPU out of a measurement.
        """
        if self._started or self._closing or self._disabled:
            return
        self._started = True
        self._spawn()
        if wait:
            self._ready.wait(_READY_TIMEOUT_S)
        self._worker = threading.Thread(
            target=suppressed(self._run), name="galileo-otel-offload", daemon=True
        )
        self._worker.start()

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
        with contextlib.suppress(ValueError):
            atexit.unregister(self._exit_hook)
        self._wake.set()
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(max(0.0, deadline - time.monotonic()))
        self._stop_child(deadline)
        if self._fallback is not None:
            ok = self._fallback.shutdown(max(0.0, deadline - time.monotonic())) and ok
        return ok

    def stats(self) -> dict[str, Any]:
        """The child's counters, with this process's queue and drop counters merged in.

        Never waits for the child: the child's part is as of its last answer (every flush
        brings a fresh one); each call asks for a newer one in the background.
        """
        self._refresh_stats(None)
        out: dict[str, Any] = dict(self._last_child_stats)
        if self._fallback is not None:
            with contextlib.suppress(Exception):
                out.update(self._fallback.stats())
        with self._lock:
            out.update(self._counts)
        queued = sum(1 for item in list(self._queue) if type(item) is not _Control)
        merge_spans(
            out,
            taken=self._taken,
            queued=queued,
            dropped_full=self._dropped_full,
            dropped_closed=self._dropped_closed,
        )
        for key in ("offload.child_exits", "offload.restarts", "offload.fallback"):
            out.setdefault(key, 0)
        return out

    def _refresh_stats(self, wait_s: float | None) -> None:
        """Ask the child for its counters; wait up to ``wait_s`` (``None``: do not wait)."""
        with self._lock:
            waiter = self._stats_waiter
            if waiter is not None and waiter.done.is_set():
                if isinstance(waiter.result, dict):
                    self._last_child_stats = waiter.result
                self._waiters.pop(waiter.msg[1], None)
                waiter = self._stats_waiter = None
            if waiter is None:
                if not self._started or self._closing or self._fallback is not None:
                    return
                seq = next(self._seq)
                waiter = self._stats_waiter = _Waiter((MSG_STATS, seq, 1.0), 0)
                self._waiters[seq] = waiter
                self._enqueue_control(_Control(waiter))
        if wait_s and waiter.done.wait(wait_s):
            self._refresh_stats(None)

    # --- control messages -----------------------------------------------------------------------
    def _control(self, tag: int, timeout: float, deadline: float) -> Any:
        seq = next(self._seq)
        waiter = _Waiter((tag, seq, timeout), 0)
        with self._lock:
            self._waiters[seq] = waiter
        self._enqueue_control(_Control(waiter))
        waiter.done.wait(max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._waiters.pop(seq, None)
        return waiter.result if waiter.done.is_set() else None

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + n

    # --- exit and fork ---------------------------------------------------------------------------
    def _at_exit(self) -> None:
        """At interpreter exit: shut down, bounded."""
        if not self._closing:
            self.shutdown(_EXIT_TIMEOUT_S)

    def _after_fork_in_child(self) -> None:
        """A forked app process gets its own worker process; the parent's pipe stays the parent's."""
        proc = self._proc
        self._proc = None
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
        self._reset_handoff()
        self._lock = threading.Lock()
        self._waiters = {}
        self._replay = deque()
        self._replay_spans = 0
        self._checkpoints = {}
        self._taken = 0
        self._counts = {}
        self._last_child_stats = {}
        self._dead = False
        self._stopping = False
        self._control_pending = False
        self._fallback = None
        self._fb_resources = {}
        self._worker = None
        self._started = False
        if was_started:
            self.start(wait=False)

    # --- the child ------------------------------------------------------------------------------
    def _spawn(self) -> None:
        self._gen += 1
        self._dead = False
        self._ready = threading.Event()
        self._sent_res = set()
        self._checkpoints.clear()
        # What was kept for the previous child is in the replay buffer and the waiters, which
        # _resend() writes (or keeps again) for this one.
        self._unsent = deque()
        self._written_mark = 0
        self._proc = subprocess.Popen(
            self._command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=settings_env(self._settings, self._destination),
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
                if seq == 0:
                    self._ready.set()
                    self._awake = True
                    self._wake.set()  # the worker sends what it kept while the child started
                    continue
                with self._lock:
                    waiter = self._waiters.get(seq)
                if waiter is None:
                    self._on_checkpoint(seq, result)
                    continue
                waiter.result = result
                if waiter.msg[0] == MSG_FLUSH and result is True:
                    self._trim(waiter.replay_mark)
                waiter.done.set()
        except Exception:  # EOF or a broken frame: the child is gone or unusable
            if gen == self._gen:
                self._ready.set()
                if self._stopping:
                    self._fail_waiters()  # an expected exit; nothing to restart
                    return
                self._dead = True
                self._wake.set()

    def _on_checkpoint(self, seq: int, result: Any) -> None:
        mark = self._checkpoints.pop(seq, None)
        if mark is not None and result is True:
            self._trim(mark)

    def _trim(self, mark: int) -> None:
        with self._lock:
            replay = self._replay
            while replay and replay[0][0] <= mark:
                self._replay_spans -= replay.popleft()[1]
            # What is left was sent after the confirmed flush began: about now.
            self._replay_since = time.monotonic()

    def _enqueue_control(self, item: Any) -> None:
        self._control_pending = True
        super()._enqueue_control(item)

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

    # --- the worker thread ----------------------------------------------------------------------
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
            if self._unsent and self._ready.is_set():
                self._write_unsent()
            self._drain(queue)
            now = time.monotonic()
            if self._checkpoint_due(now):
                self._next_checkpoint = now + max(_CHECKPOINT_S, self._batch_delay)
                seq = next(self._seq)
                self._checkpoints[seq] = self._mark
                self._write((MSG_FLUSH, seq, 30.0, False))  # a checkpoint reports no loss
            if self._closing and not queue:
                return
            if queue and not self._held_back():
                continue  # more came while we worked
            # Asleep until spans come; a replay buffer waiting for its age checkpoint wakes us.
            self._wake.wait(self._sleep_for(time.monotonic()))
            self._linger(queue)

    def _checkpoint_due(self, now: float) -> bool:
        """Whether to ask the child for a checkpoint now (see ``_CHECKPOINT_S``)."""
        if (
            now < self._next_checkpoint
            or not self._replay
            or self._fallback is not None
            or self._checkpoints
            or not self._ready.is_set()
        ):
            return False
        return (
            self._replay_spans * 2 >= self._max_queue
            or now - self._replay_since >= _CHECKPOINT_MAX_AGE_S
        )

    def _held_back(self) -> bool:
        """Whether spans wait in the queue because the child is not ready and our store is full."""
        return not self._ready.is_set() and self._replay_spans >= self._max_queue

    def _sleep_for(self, now: float) -> float | None:
        if not self._replay or self._checkpoints or self._fallback is not None:
            return None
        due = max(self._next_checkpoint, self._replay_since + _CHECKPOINT_MAX_AGE_S)
        return max(0.05, due - now)

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
        room = -1 if self._ready.is_set() else max(0, self._max_queue - self._replay_spans)
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
                        self._count("errors.offload_extract")
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
        with self._lock:
            attrs = next((e[2] for e in self._resources.values() if e[1] == rid), {})
        self._write((MSG_RESOURCE, rid, attrs))

    def _send_spans(self, batch: list[tuple[Any, ...]]) -> None:
        if not batch:
            return
        msg: tuple[Any, ...] = (MSG_SPANS, batch)
        try:
            data = marshal.dumps(msg)
        except ValueError:
            msg = (MSG_SPANS, [_sanitize(x) for x in batch])
            data = marshal.dumps(msg)
        if self._fallback is not None:
            self._to_fallback(msg)
            return
        with self._lock:
            self._mark += 1
            mark = self._mark
            if not self._replay:
                self._replay_since = time.monotonic()
            self._replay.append((mark, len(batch), data))
            self._replay_spans += len(batch)
            replay = self._replay
            # Bounded: the oldest frames the child has (but has not confirmed) go first; a frame
            # the child has not been sent yet is never given up here.
            while (
                self._replay_spans > self._max_queue
                and len(replay) > 1
                and replay[0][0] <= self._written_mark
            ):
                self._replay_spans -= replay.popleft()[1]
                self._counts["offload.replay_overflow"] = (
                    self._counts.get("offload.replay_overflow", 0) + 1
                )
        self._write_raw(data, mark)

    def _send_control(self, waiter: _Waiter) -> None:
        waiter.sent = True
        if self._fallback is not None:
            self._fallback_control(waiter)
            return
        waiter.replay_mark = self._mark
        self._write(waiter.msg)

    def _write(self, msg: tuple[Any, ...]) -> None:
        self._write_raw(marshal.dumps(msg))

    def _write_raw(self, data: bytes, mark: int = 0) -> None:
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
            self._written_mark = mark

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
        self._count("offload.child_exits")
        if not self._said_death:
            self._said_death = True
            _log.warning(
                "galileo-otel: export worker process exited (code %s); restarting it",
                proc.returncode if proc is not None else None,
            )
        if self._closing:
            self._fail_waiters()
            return
        restarts = self._counts.get("offload.restarts", 0)
        if restarts < _MAX_RESTARTS:
            self._count("offload.restarts")
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
        for _, rid, attrs in list(self._resources.values()):
            self._sent_res.add(rid)
            self._write((MSG_RESOURCE, rid, attrs))
        with self._lock:
            frames = [(mark, msg) for mark, _, msg in self._replay]
            waiters = sorted(self._waiters.items())
        for mark, data in frames:
            self._write_raw(data, mark)
        for _, waiter in waiters:
            # A control still in the app queue goes out in its turn, after the spans before it.
            if waiter.sent and not waiter.done.is_set():
                waiter.replay_mark = self._mark
                self._write(waiter.msg)

    def _start_fallback(self) -> None:
        from galileo_otel.export import make_pipeline
        from galileo_otel.settings import merge_settings

        _log.warning("galileo-otel: export worker process keeps failing; exporting in-process")
        self._count("offload.fallback")
        in_process = merge_settings(self._settings, {"export_process": False})
        self._fallback = make_pipeline(
            in_process, destination=self._destination, shutdown_at_exit=False
        )
        with self._lock:
            frames = [msg for _, _, msg in self._replay]
            self._replay.clear()
            self._replay_spans = 0
            waiters = [w for _, w in sorted(self._waiters.items())]
        self._unsent.clear()  # all of it is in the replay buffer or the waiters
        for data in frames:
            self._to_fallback(marshal.loads(data))
        for waiter in waiters:
            if waiter.sent and not waiter.done.is_set():
                self._fallback_control(waiter)

    def _to_fallback(self, msg: tuple[Any, ...]) -> None:
        resources = self._fb_resources
        if not resources:
            for _, rid, attrs in list(self._resources.values()):
                resources[rid] = make_resource(attrs)
        for item in msg[1]:
            if item[12] not in resources:
                for _, rid, attrs in list(self._resources.values()):
                    resources.setdefault(rid, make_resource(attrs))
            self._fallback.submit(rebuild_span(item, resources))

    def _fallback_control(self, waiter: _Waiter) -> None:
        tag, _, timeout = waiter.msg
        fb = self._fallback

        def run() -> None:
            if tag == MSG_STATS:
                waiter.result = fb.stats()
            elif tag == MSG_FLUSH:
                waiter.result = fb.force_flush(timeout)
            else:
                waiter.result = fb.force_flush(timeout)
            waiter.done.set()

        threading.Thread(
            target=suppressed(run), name="galileo-otel-offload-fallback", daemon=True
        ).start()

    def _fail_waiters(self) -> None:
        with self._lock:
            waiters = list(self._waiters.values())
        for waiter in waiters:
            if not waiter.done.is_set():
                waiter.result = False if waiter.msg[0] != MSG_STATS else None
                waiter.done.set()


def iter_frames(inp: IO[bytes]) -> Iterable[Any]:
    """Frames from ``inp`` until EOF."""
    while True:
        try:
            yield read_frame(inp)
        except EOFError:
            return
