"""GalileoSpanExporter: an OpenTelemetry SpanExporter that feeds Galileo's export pipeline.

For ``OTEL_TRACES_EXPORTER=galileo`` under the SDK's stock ``BatchSpanProcessor``: it works with
no arguments (configured from ``GALILEO_*`` env vars), and sessions come from span attributes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from galileo_otel.export import Pipeline, make_pipeline
from galileo_otel.settings import GalileoSettings, merge_settings

__all__ = ["GalileoSpanExporter"]

_log = logging.getLogger(__name__)


class GalileoSpanExporter(SpanExporter):
    """Hands spans to an export pipeline; ``export()`` never raises and never waits.

    Args:
        pipeline: The pipeline to feed; :func:`~galileo_otel.export.make_pipeline` builds one
            from ``settings`` when ``None`` (a worker process with ``export_process``).
        settings: The configuration; built from env vars (and ``overrides``) when ``None``.
        **overrides: Settings fields, e.g. ``project="my-app"``, ``reliable=False``.

    Example:
        >>> from opentelemetry.sdk.trace import TracerProvider
        >>> from opentelemetry.sdk.trace.export import BatchSpanProcessor
        >>> provider = TracerProvider()  # doctest: +SKIP
        >>> provider.add_span_processor(BatchSpanProcessor(GalileoSpanExporter()))  # doctest: +SKIP
    """

    def __init__(
        self,
        pipeline: Pipeline | None = None,
        *,
        settings: GalileoSettings | None = None,
        **overrides: Any,
    ) -> None:
        if pipeline is None:
            settings = merge_settings(settings, overrides)
            # The SDK shuts the exporter down through its processor (at exit too): the
            # pipeline's own exit hook would run first and refuse the spans still buffered there.
            pipeline = make_pipeline(settings, shutdown_at_exit=False)
            if pipeline is None:
                from galileo_otel.export.pipeline import ExportPipeline

                # Export disabled: a pipeline that refuses every span, so export() says so.
                pipeline = ExportPipeline(settings, shutdown_at_exit=False)
        self._pipeline = pipeline

    @property
    def pipeline(self) -> Pipeline:
        """The pipeline this exporter feeds."""
        return self._pipeline

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Queue the spans for delivery; FAILURE only when none could be queued.

        Returns:
            ``SUCCESS`` when the spans were queued (delivery is confirmed later, in the
            background); ``FAILURE`` when the pipeline is shut down or its queue is full.
        """
        try:
            submit = self._pipeline.submit
            accepted = 0
            for span in spans:
                accepted += submit(span)
        except Exception:  # never raise into the SDK's worker
            _log.exception("galileo-otel: export failed")
            return SpanExportResult.FAILURE
        if spans and accepted < len(spans):
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Deliver what was exported so far; ``True`` when the server confirmed all of it."""
        return self._pipeline.force_flush(timeout_millis / 1000.0)

    def shutdown(self) -> None:
        """Flush and stop the pipeline, bounded by ``export_timeout``; spool what is left."""
        self._pipeline.shutdown()

    def stats(self) -> dict[str, Any]:
        """The pipeline's counters (see :meth:`galileo_otel.export.pipeline.ExportPipeline.stats`)."""
        return self._pipeline.stats()
