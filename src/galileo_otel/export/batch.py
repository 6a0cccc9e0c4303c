"""Batching and encoding, the worker thread's stage: spans -> traces -> per-session batches.

The worker takes spans off the app's queue, assembles traces, resolves their session, converts
and encodes each trace once (orjson when installed), and closes per-session batches by count,
size or ``batch_delay``. It is pure CPU and never waits on I/O; closed batches go to the spool
writer (``spooler.py``) through ``_to_spool``.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from galileo_otel.export._stage import Batch, Flush, Outbound, StageState
from galileo_otel.export.fit import encode_within
from galileo_otel.export.sdk_span import span_attributes
from galileo_otel.export.spool_format import BatchHeader

__all__ = ["BatchStage", "encode_trace"]

_log = logging.getLogger("galileo_otel.export.pipeline")

# Spans taken from the queue between two looks at timers and flush requests.
_DRAIN_CHUNK = 1024
# While the queue is under half full the worker takes this many spans, then gives the GIL back
# (time.sleep(0)): on CPython a thread that wants the GIL waits a whole switch interval (5 ms)
# for it, so a worker that never lets go makes the app thread wait. Past half full it drains
# at full speed, as before: pacing applies only while the queue has room.
_PACED_CHUNK = 64
_EXPIRE_EVERY_S = 1.0

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode

# orjson (a dependency) encodes a converted trace 5-7x faster than the stdlib C encoder (~1 vs
# ~6 us per span, benchmarks/README.md), straight to UTF-8; anything it refuses (a lone
# surrogate, an int beyond 64 bits, a non-str key) goes through the stdlib path. The import may
# still fail on a platform without a wheel that was installed with --no-deps: stdlib then.
try:
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson_dumps: Callable[..., bytes] | None = None
    _ORJSON_ERRORS: tuple[type[Exception], ...] = ()
else:
    _orjson_dumps = orjson.dumps
    _ORJSON_ERRORS = (orjson.JSONEncodeError, TypeError, ValueError, OverflowError)


def encode_trace(data: Any) -> bytes:
    """One converted trace as compact UTF-8 JSON (orjson when installed, else the stdlib)."""
    if _orjson_dumps is not None:
        try:
            return _orjson_dumps(data, default=str)
        except _ORJSON_ERRORS:
            pass
    text = _dumps(data)
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate in some attribute
        return text.encode("utf-8", "replace")


class BatchStage(StageState):
    """The worker thread: assembly, session, conversion, encoding, batching (no I/O)."""

    def _run(self) -> None:
        try:
            self._work()
        except BaseException as exc:  # pragma: no cover - a bug; say it, never kill the app
            _log.critical("galileo-otel: export worker stopped: %r", exc, exc_info=exc)
            raise

    def _work(self) -> None:
        assembler = self._get_assembler()
        tracker = self._get_tracker()
        from galileo_otel.export.convert import convert_trace as default_convert

        convert_trace = self._convert or functools.partial(
            default_convert, stats=self.convert_stats
        )
        queue = self._queue
        half = self._max_queue // 2
        span_of = self._span_of
        while True:
            self._wake.clear()
            self._awake = False
            pace = len(queue) < half
            try:
                for _ in range(_PACED_CHUNK if pace else _DRAIN_CHUNK):
                    item = queue.popleft()
                    if type(item) is Flush:
                        self._on_flush(item, assembler, tracker, convert_trace)
                        continue
                    self._taken += 1
                    try:
                        done = assembler.add(span_of(item))
                    except Exception as exc:
                        self._internal_error("assemble", exc)
                        continue
                    for trace in done:
                        self._add_trace(trace, tracker, convert_trace)
                more = True
            except IndexError:
                more = False
            now = self._clock()
            if now >= self._next_expire:
                self._next_expire = now + _EXPIRE_EVERY_S
                try:
                    expired = assembler.expire(time.time_ns())
                except Exception as exc:
                    self._internal_error("expire", exc)
                    expired = []
                for trace in expired:
                    self._add_trace(trace, tracker, convert_trace)
            if self._flush_at is not None and now >= self._flush_at:
                self._close_all()
            if self._stop.is_set() and not queue:
                return
            if more:
                if pace:
                    time.sleep(0)  # let the app thread run: see _PACED_CHUNK
                continue
            # Asleep until spans come (submit sets _wake), unless a timer is due: an open
            # batch's delay, or the expiry of traces still open in the assembler.
            timeout: float | None = None
            if self._open_traces(assembler):
                timeout = _EXPIRE_EVERY_S
            if self._flush_at is not None:
                until = max(0.0, self._flush_at - self._clock())
                timeout = until if timeout is None else min(timeout, until)
            self._wake.wait(timeout)

    def _open_traces(self, assembler: Any) -> bool:
        try:
            return bool(assembler.stats().get("open_traces", 0))
        except Exception:  # a custom assembler without stats: keep the expiry timer
            return True

    def _on_flush(self, marker: Flush, assembler: Any, tracker: Any, convert: Any) -> None:
        if marker.final:
            try:
                leftovers = assembler.drain()
            except Exception as exc:
                self._internal_error("drain", exc)
                leftovers = []
            for trace in leftovers:
                self._add_trace(trace, tracker, convert)
        self._close_all()
        marker.seq = self._last_seq
        # Done once the spool writer has handled every batch before it (they are on disk then).
        with self._cv:
            self._to_spool.append(marker)
            self._cv_write.notify()

    def _add_trace(
        self, trace: Any, tracker: Any, convert: Callable[[Any], dict[str, Any]]
    ) -> None:
        try:
            root = trace.root if trace.root is not None else trace.spans[0]
            attrs = span_attributes(root)
            start_ns = root.start_time or 0
            end_ns = root.end_time or start_ns
            record = tracker.session_for_trace(attrs, start_ns, end_ns, root_name=root.name)
            if not getattr(record, "sampled", True):
                # The session was sampled out: none of its traces are sent.
                self._count("dropped.sampled")
                return
            data = convert(trace)
            galileo_id = getattr(record, "galileo_id", None)
            # Until the session exists its local id stands in; the sender swaps it (same length).
            data["session_id"] = galileo_id or record.local_id
            # A trace always fits one request: its largest texts are cut (and counted) if not.
            part = encode_within(data, self._max_payload, encode_trace, self.convert_stats)
        except Exception as exc:
            self._internal_error("convert", exc)
            self._count("traces_dropped")
            self._count("dropped.convert_error")
            # A lost trace like any other: the next flush whose scope holds it says False.
            seq = self._last_seq = next(self._seq)
            with self._cv:
                self._note_lost(seq)
            return
        key = record.local_id
        batch = self._open.get(key)
        if batch is not None and batch.parts and batch.size + len(part) + 1 > self._max_payload:
            self._close(key)
            batch = None
        if batch is None:
            batch = self._open[key] = Batch(record=record)
            if self._flush_at is None:
                now = self._clock()
                self._flush_at = max(now + self._first_delay, self._last_flush + self._batch_delay)
        batch.record = record
        batch.parts.append(part)
        batch.size += len(part) + 1
        batch.spans += len(trace.spans)
        batch.placeholder = batch.placeholder or not galileo_id
        if len(batch.parts) >= self._max_traces or batch.size >= self._max_payload:
            self._close(key)

    def _close_all(self) -> None:
        for key in list(self._open):
            self._close(key)
        self._flush_at = None
        self._last_flush = self._clock()

    def _close(self, key: str) -> None:
        batch = self._open.pop(key)
        if not self._open:
            self._flush_at = None
        record = batch.record
        payload = b"[" + b",".join(batch.parts) + b"]"
        try:
            session = record.to_dict()
        except Exception as exc:
            self._internal_error("session record", exc)
            session = {}
        header = BatchHeader(
            reliable=self._reliable,
            session=session,
            local_id=record.local_id,
            external_id=getattr(record, "external_id", None),
            placeholder=batch.placeholder,
            destination=self._destination,
            target=self._target,
            origin=self._origin,
            traces=len(batch.parts),
            spans=batch.spans,
        )
        seq = next(self._seq)
        self._last_seq = seq
        out = Outbound(seq=seq, header=header, payload=payload, record=record)
        self._count("traces_batched", len(batch.parts))
        self._count("batches", 1)
        with self._cv:
            # Memory stays bounded: the worker waits for the writer (the app queue then drops).
            while self._unwritten >= self._max_unwritten_bytes and not self._stop.is_set():
                self._cv.wait()  # the spooler notifies when it has made room; shutdown too
            self._unwritten += len(payload)
            self._pending[seq] = out.traces
            self._to_spool.append(out)
            self._cv_write.notify()
