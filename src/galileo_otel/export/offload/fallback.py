"""The in-process export the worker-process parent falls back to when no child keeps running."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from galileo_otel.api.suppress import suppress_instrumentation, suppressed
from galileo_otel.export.offload.protocol import MSG_STATS
from galileo_otel.export.offload.requests import Waiter
from galileo_otel.export.record import Rebuilder, make_resource
from galileo_otel.settings import GalileoSettings, merge_settings

if TYPE_CHECKING:
    from galileo_otel.export import Pipeline

__all__ = ["Fallback", "in_process_pipeline"]


def in_process_pipeline(
    settings: GalileoSettings, destination: Any = None, logging_method: str | None = None
) -> tuple[Pipeline | None, Any]:
    """The in-process pipeline a worker process (or the fallback) runs, and the tracker it got.

    With a ``logging_method`` the pipeline gets a session tracker that stamps it (the caller
    closes that tracker after the pipeline's shutdown); without, the pipeline builds its own
    (``python_client``) and the tracker returned is ``None``.
    """
    from galileo_otel.export import make_pipeline

    in_process = merge_settings(settings, {"export_process": False})
    tracker = None
    if logging_method is not None:
        from galileo_otel.sessions.tracker import SessionTracker

        with suppress_instrumentation():  # opens the session store: our own I/O is not traced
            tracker = SessionTracker.from_settings(in_process, logging_method=logging_method)
    try:
        pipeline = make_pipeline(
            in_process, destination=destination, tracker=tracker, shutdown_at_exit=False
        )
    except BaseException:
        if tracker is not None:
            tracker.close()
        raise
    return pipeline, tracker


class Fallback:
    """An in-process pipeline (``make_pipeline`` with ``export_process`` off) fed with records.

    Records and requests come from the parent's pipe-writer thread only; a request is answered
    on a short-lived thread of its own, so the writer never waits for a flush.

    Args:
        settings: The parent's settings (``export_process`` is turned off here).
        destination: The project / log stream configure() resolved, if any.
        logging_method: As :func:`in_process_pipeline`'s.
    """

    def __init__(
        self,
        settings: GalileoSettings,
        destination: Any = None,
        logging_method: str | None = None,
    ) -> None:
        pipeline, self._tracker = in_process_pipeline(settings, destination, logging_method)
        assert pipeline is not None  # the parent never runs with export disabled
        self._pipeline = pipeline
        self._resources: dict[int, Any] = {}  # resource number -> rebuilt resource (writer's)
        self._span_of = Rebuilder(self._resources).span_of  # the writer thread's

    def submit(
        self, records: Iterable[tuple[Any, ...]], resources: list[tuple[int, dict[str, Any]]]
    ) -> None:
        """Hand records to the pipeline; ``resources`` names every numbered resource's attributes."""
        known = self._resources
        span_of = self._span_of
        for item in records:
            if item[12] not in known:
                for rid, attrs in resources:
                    known.setdefault(rid, make_resource(attrs))
                known.setdefault(item[12], make_resource({}))  # never announced: empty
            self._pipeline.submit(span_of(item))

    def answer(self, waiter: Waiter) -> None:
        """Answer a request (flush, stats; a shutdown is a flush: ours shuts this down after)."""
        tag, _, timeout = waiter.msg
        pipeline = self._pipeline

        def run() -> None:
            if tag == MSG_STATS:
                waiter.answer(pipeline.stats())
            else:
                waiter.answer(pipeline.force_flush(timeout))

        threading.Thread(
            target=suppressed(run), name="galileo-otel-offload-fallback", daemon=True
        ).start()

    def stats(self) -> dict[str, Any]:
        """The pipeline's counters."""
        return self._pipeline.stats()

    def shutdown(self, timeout_s: float) -> bool:
        """Flush and stop the pipeline within ``timeout_s`` (then close a tracker it was given)."""
        try:
            return bool(self._pipeline.shutdown(timeout_s))
        finally:
            if self._tracker is not None:
                self._tracker.close()
