"""What the pipeline's stages share: the items that travel between them and the state they use.

The stages (``batch.py``, ``spooler.py``, ``deliver.py``) are mixins of one
:class:`~galileo_otel.export.pipeline.ExportPipeline`; ``pipeline.py`` creates this state in
``_init_runtime`` and says there which lock guards which field. :class:`StageState` only
declares it, so each stage module type-checks on its own.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from galileo_otel.api.retry import RetryPolicy
from galileo_otel.errors import APIError
from galileo_otel.export.spool import Spool, SpoolEntry
from galileo_otel.export.spool_format import BatchHeader
from galileo_otel.settings import GalileoSettings

if TYPE_CHECKING:
    from galileo_otel.export.convert import ConvertStats
    from galileo_otel.export.sink import Sink

_log = logging.getLogger("galileo_otel.export.pipeline")

DEFAULT_SPOOL_RETRY_MAX_S = 60.0
_LOG_EVERY_S = 10.0


class RateLimitedLog:
    """Logs one line per key per interval, then says how many were suppressed."""

    def __init__(self, interval_s: float = _LOG_EVERY_S) -> None:
        self._interval = interval_s
        self._last: dict[str, tuple[float, int]] = {}
        # Guards _last (loggers on every pipeline thread).
        self._lock = threading.Lock()

    def __call__(self, level: int, key: str, msg: str, *args: Any, exc_info: Any = None) -> None:
        """Log ``msg`` unless a line with ``key`` was logged less than an interval ago."""
        now = time.monotonic()
        with self._lock:
            last, suppressed = self._last.get(key, (-1e18, 0))
            if now - last < self._interval:
                self._last[key] = (last, suppressed + 1)
                return
            self._last[key] = (now, 0)
        if suppressed:
            msg += " (%d similar messages suppressed)"
            args = (*args, suppressed)
        _log.log(level, msg, *args, exc_info=exc_info)


@dataclass
class Batch:
    """Traces of one session collected on the worker, not yet closed."""

    record: Any
    parts: list[bytes] = field(default_factory=list)
    size: int = 1
    spans: int = 0
    placeholder: bool = False


@dataclass
class Flush:
    """A flush request travelling through the queue behind the spans it covers."""

    final: bool
    done: threading.Event = field(default_factory=threading.Event)
    seq: int = -1


@dataclass
class Outbound:
    """A closed batch on its way to the server."""

    seq: int
    header: BatchHeader
    payload: bytes | None
    record: Any
    entry: SpoolEntry | None = None

    @property
    def traces(self) -> int:
        """Traces in the batch."""
        return self.header.traces

    def body(self) -> bytes:
        """The encoded traces (a JSON array), read from the spool for a spooled batch."""
        if self.payload is not None:
            return self.payload
        assert self.entry is not None
        return self.entry.payload()

    def session_record(self) -> Any:
        """The batch's session record (rebuilt from the header for a spooled batch)."""
        if self.record is None:
            from galileo_otel.sessions.tracker import SessionRecord

            self.record = SessionRecord.from_dict(dict(self.header.session))
        return self.record


class StageState:
    """Declarations of the pipeline state the stages read and write (see ``pipeline.py``)."""

    # settings, fixed at construction
    _settings: GalileoSettings
    _reliable: bool
    _max_traces: int
    _max_payload: int
    _batch_delay: float
    _first_delay: float
    _in_flight: int
    _max_unwritten_bytes: int
    _export_timeout: float
    _spool_retry: float
    _clock: Callable[[], float]
    _wait_fn: Callable[[float], bool] | None
    _rng: random.Random
    _say: RateLimitedLog
    _policy: RetryPolicy
    _convert: Callable[[Any], dict[str, Any]] | None
    _destination: dict[str, Any] | None
    _target: dict[str, Any]
    _origin: str
    _spool: Spool | None
    convert_stats: ConvertStats
    # lifecycle
    _threads: list[threading.Thread]
    _closing: bool
    _shutdown: bool
    _stop: threading.Event
    _hurry: threading.Event
    _adoption: threading.Event
    # the app-thread hand-off (SpanHandoff)
    _queue: deque[Any]
    _max_queue: int
    _awake: bool
    _wake: threading.Event
    # the worker's own (no lock: only the worker thread touches them)
    _taken: int
    _open: dict[str, Batch]
    _flush_at: float | None
    _last_flush: float
    _next_expire: float
    _last_seq: int
    _final_marker: Flush | None
    # guarded by _lock (through _cv, _cv_send, _cv_write)
    _cv: threading.Condition
    _cv_send: threading.Condition
    _cv_write: threading.Condition
    _seq: itertools.count[int]
    _outbox: deque[Outbound]
    _busy: int
    _to_spool: deque[Outbound | Flush]
    _unwritten: int
    _pending: dict[int, int]
    _name_seq: dict[str, int]
    _lost: set[int]
    _lost_overflow: int
    _held: dict[str, SpoolEntry]
    _parked: dict[str, int]
    _adopted: set[int]
    _sent: set[int]
    _backlog: int
    _next_scan: float
    _scan_backoff: float
    _spool_files: int
    _spool_usage: dict[str, int]
    # the spool writer's own
    _next_housekeep: float
    _next_compact: float
    _said_foreign: bool
    _sink: Sink

    if TYPE_CHECKING:
        # Defined by one stage or by the wiring, called by others.
        def _count(self, key: str, n: int = 1) -> None: ...
        def _need_senders(self) -> None: ...
        def _note_lost(self, seq: int) -> None: ...
        def _internal_error(self, where: str, exc: BaseException) -> None: ...
        def _retry_spooled_now(self) -> None: ...
        def _get_tracker(self) -> Any: ...
        def _get_assembler(self) -> Any: ...
        def _span_of(self, item: Any) -> Any: ...
        def _settle(self, out: Outbound, *, ok: bool, reason: str = "") -> None: ...
        def _confirmed(self, out: Outbound) -> None: ...
        def _dead_letter(self, out: Outbound, exc: APIError) -> None: ...
        def _spool_full(self, out: Outbound) -> None: ...
        def _leave_in_spool(
            self,
            out: Outbound,
            *,
            retried: bool,
            reason: str = "shutdown",
            not_before_s: float | None = None,
        ) -> None: ...
