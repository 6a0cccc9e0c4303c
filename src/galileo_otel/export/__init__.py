"""How traces leave the process: assembly, conversion, batching, delivery, spool.

The path of a span through this package, one module per stage::

    handoff.py   the app thread's O(1) append into a bounded queue
    sdk_span.py  the one place that touches SDK span internals (pinned by a test)
    record.py    a span as a tuple of builtins, and the light span rebuilt from one
    assemble.py  spans -> complete traces (worker thread)
    convert.py   a trace -> a Galileo trace dict; fit.py cuts one that would not fit a request
    batcher.py   Batcher: the worker thread; per-session batches, encoded once (CPU only)
    ledger.py    Ledger: every closed batch's state, the hand-over queues, flush scopes (the lock)
    spooler.py   Spooler: the spooler thread; writes batches to the spool, adopts orphans,
                 renews leases, feeds the senders from disk
    spool.py     the durable queue (one SQLite database shared by processes)
    senders.py   SenderPool: N sender threads; ledger.take -> sink.send -> ledger.settle, with
                 retries (api/retry.py's loop) in reliable mode; dead letters
    sink.py      where a batch goes: the Sink protocol; GalileoSink sends through api/
    pipeline.py  ExportPipeline: composes the above; start, flush, shutdown, fork, stats
    config.py    PipelineConfig: what the pipeline's objects are built with, from the settings
    offload/     the same pipeline in a child process, behind the same interface: the parent
                 is transport + replay (protocol.py, replay.py, parent.py; child.py the child)

Who runs where, and which lock guards what (each module documents its own)::

    thread / lock       object       its work; what its lock guards
    app thread          submit       a deque append and an Event: takes no lock
    worker              Batcher      assemble, session, convert, encode, batch per session (CPU
                                     only); its open batches and timers, no lock
    spooler             Spooler      closed batches to the spool, orphans adopted, leases
                                     renewed, the senders fed from disk
    senders x N         SenderPool   send and settle each batch, retry (reliable mode)
    the Ledger's lock   Ledger       every batch's state, the hand-over queues, the flush
                                     scopes; never held across I/O
    their own locks     Counters, RateLimitedLog, GalileoSink, Spool: the counters, the logger,
                        resolved destinations, the one SQLite connection

:func:`make_pipeline` is the one place a pipeline is built from settings: ``configure()``,
``GalileoSessionProcessor``, ``GalileoSpanExporter`` and the zero-code entry points all call it,
so every setting (``export_process`` included) means the same from every way in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from galileo_otel.api.suppress import suppress_instrumentation
from galileo_otel.errors import ConfigError

if TYPE_CHECKING:
    from galileo_otel.export.sink import Sink
    from galileo_otel.settings import GalileoSettings

__all__ = ["Pipeline", "make_pipeline"]


class Pipeline(Protocol):
    """What every pipeline offers (in-process or worker process): the processor's view of it."""

    def submit(self, span: Any) -> bool:
        """Take a finished span; O(1), never blocks; ``False`` when it was dropped."""
        ...

    def force_flush(self, timeout_s: float | None = None) -> bool:
        """Deliver what was queued before the call; ``True`` when all of it is done."""
        ...

    def shutdown(self, timeout_s: float | None = None) -> bool:
        """Flush and stop within ``timeout_s``."""
        ...

    def stats(self) -> dict[str, Any]:
        """Counters; never blocks the caller."""
        ...


def make_pipeline(
    settings: GalileoSettings,
    *,
    destination: Any = None,
    tracker: Any = None,
    shutdown_at_exit: bool = True,
    start: bool = True,
    sink: Sink | None = None,
    logging_method: str | None = None,
) -> Pipeline | None:
    """Build the export pipeline that ``settings`` ask for; ``None`` when export is disabled.

    Args:
        settings: Validated settings (see :func:`galileo_otel.settings.merge_settings`).
        destination: As :class:`~galileo_otel.export.pipeline.ExportPipeline`'s (configure()
            passes the one it resolved).
        tracker: As :class:`~galileo_otel.export.pipeline.ExportPipeline`'s.
        shutdown_at_exit: As :class:`~galileo_otel.export.pipeline.ExportPipeline`'s.
        start: As :class:`~galileo_otel.export.pipeline.ExportPipeline`'s; a worker process that
            is still starting buffers, it never holds up the caller.
        sink: As :class:`~galileo_otel.export.pipeline.ExportPipeline`'s; in-process only (a
            sink cannot cross into a worker process).
        logging_method: With ``export_process`` only: who logged the spans (Galileo's
            ``logging_method``), stamped by the worker process's session tracker on every
            session it opens (the gateway's pipelines of other languages' spans). In-process,
            pass a ``tracker`` that stamps it instead. ``None``: this client, ``python_client``.

    Raises:
        ConfigError: ``sink`` with ``export_process`` on; ``logging_method`` without it.

    Returns:
        An :class:`~galileo_otel.export.pipeline.ExportPipeline`, or with ``export_process``
        an :class:`~galileo_otel.export.offload.OffloadPipeline` running the same pipeline in
        a child process.
    """
    if settings.logging_disabled:
        return None
    if sink is not None and settings.export_process:
        raise ConfigError(
            "make_pipeline(sink=...) runs in-process; it cannot be combined with "
            "GALILEO_EXPORT_PROCESS (the worker process sends to Galileo itself)"
        )
    if logging_method is not None and not settings.export_process:
        raise ConfigError(
            "make_pipeline(logging_method=...) is for a worker process (GALILEO_EXPORT_PROCESS); "
            "in-process, pass a tracker that stamps it"
        )
    # Building one opens the spool and may open a session store (SQLite): none of our own I/O
    # may be traced, on this thread or the pipeline's (whose targets are wrapped alike).
    with suppress_instrumentation():
        return _build(
            settings,
            destination,
            tracker,
            shutdown_at_exit=shutdown_at_exit,
            start=start,
            sink=sink,
            logging_method=logging_method,
        )


def _build(
    settings: GalileoSettings,
    destination: Any,
    tracker: Any,
    *,
    shutdown_at_exit: bool,
    start: bool,
    sink: Sink | None,
    logging_method: str | None,
) -> Pipeline:
    if settings.export_process:
        from galileo_otel.export.offload import OffloadPipeline

        offload = OffloadPipeline(
            settings,
            start=False,
            shutdown_at_exit=shutdown_at_exit,
            destination=destination,
            logging_method=logging_method,
        )
        if start:
            offload.start(wait=False)
        return offload
    from galileo_otel.export.pipeline import ExportPipeline

    return ExportPipeline(
        settings,
        destination=destination,
        tracker=tracker,
        shutdown_at_exit=shutdown_at_exit,
        start=start,
        sink=sink,
    )
