"""GalileoSessionProcessor: the app-thread face of galileo-otel, an OpenTelemetry SpanProcessor.

``on_start`` stamps the current ``session()`` (or inbound baggage) on the span; ``on_end`` hands
the span to the export pipeline with an O(1) append. Neither waits on I/O nor raises into the app.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from galileo_otel.export import Pipeline, make_pipeline
from galileo_otel.export.sdk_span import baggage_value, stamp_attributes, start_attributes
from galileo_otel.sessions.context import (
    _CURRENT,
    NAMED,
    capture_root_keys,
    set_baggage_default,
)
from galileo_otel.sessions.resolve import GALILEO_SESSION_FROM_BAGGAGE, KEY_ATTRIBUTES, SESSION_ID
from galileo_otel.settings import GalileoSettings, merge_settings

__all__ = ["GalileoSessionProcessor", "SpanPipeline"]

logger = logging.getLogger(__name__)


# What the processor needs of an export pipeline: the one interface of export/ (in-process or
# worker process alike).
SpanPipeline = Pipeline


class GalileoSessionProcessor(SpanProcessor):
    """Groups spans into Galileo sessions and sends them to Galileo.

    Add it to a ``TracerProvider`` like a ``BatchSpanProcessor``. Spans started inside
    :func:`galileo_otel.session` carry ``session.id`` (and ``user.id``,
    ``galileo.session.name``, ``galileo.session.metadata`` when given), overriding what the app
    set at ``start_span`` time; spans without a ``session()`` but with a ``session.id`` in the
    inbound OTel baggage get that one unless they already name a session themselves.

    Example:
        >>> from opentelemetry.sdk.trace import TracerProvider
        >>> provider = TracerProvider()
        >>> provider.add_span_processor(GalileoSessionProcessor(project="my-app"))  # doctest: +SKIP

    Args:
        pipeline: Where finished spans go. ``None`` builds one from ``settings`` with
            :func:`~galileo_otel.export.make_pipeline` (in-process, or a worker process with
            ``export_process``); nothing is exported when ``logging_disabled`` is set.
        settings: The configuration; built from ``GALILEO_*`` env vars and ``overrides`` when
            ``None``.
        **overrides: :class:`~galileo_otel.settings.GalileoSettings` fields that win over
            ``settings`` and env vars, e.g. ``project="my-app"``, ``reliable=False``.

    Raises:
        ConfigError: A setting is invalid (raised here, at configure time, never per span).
    """

    def __init__(
        self,
        pipeline: SpanPipeline | None = None,
        *,
        settings: GalileoSettings | None = None,
        **overrides: Any,
    ) -> None:
        settings = merge_settings(settings, overrides)
        self._settings = settings
        set_baggage_default(settings.session_baggage)
        if pipeline is None:
            pipeline = make_pipeline(settings)
        self._pipeline = pipeline
        # The bound method, looked up once: on_end is on every span's path.
        self._submit = pipeline.submit if pipeline is not None else None
        self._errors = 0
        self._errors_lock = threading.Lock()
        self._shut_down = False

    @property
    def settings(self) -> GalileoSettings:
        """The settings in effect."""
        return self._settings

    @property
    def pipeline(self) -> SpanPipeline | None:
        """The export pipeline (``None`` when export is disabled)."""
        return self._pipeline

    def _internal_error(self, where: str, exc: BaseException) -> None:
        # Logged once; counted always. Per-span logging would flood the app's logs.
        with self._errors_lock:
            self._errors += 1
            first = self._errors == 1
        if first:
            logger.warning(
                "galileo-otel: %s failed (%s: %s); the span is unaffected, further errors are "
                "only counted in stats()",
                where,
                type(exc).__name__,
                exc,
            )

    # --- app thread -----------------------------------------------------------------------------
    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Stamp the session of the current context (or inbound baggage) on ``span``."""
        # Every span pays this on the app thread: a child span outside session() costs one
        # context-var read, a parent check and a baggage lookup; writes skip the SDK's locks.
        try:
            current = _CURRENT.get()
            if current is not None:
                stamp_attributes(span, current.span_attributes)
                return
            # The public properties: CPython 3.11+ specializes these reads, cheaper than a call.
            parent = span.parent
            if parent is not None and not parent.is_remote:
                key = baggage_value(SESSION_ID, parent_context)
                if not key:
                    return  # most child spans: no inbound session.id in their baggage
            else:
                # Before other tools can scrub session.* keys; a root that names its own key
                # needs no baggage (a key attribute wins over it). The capture reads the
                # baggage for us otherwise: one lookup per root, not two.
                key = capture_root_keys(span, parent_context)
                if key is NAMED:
                    return
            if not key or not isinstance(key, str):
                return
            attributes = start_attributes(span) or {}
            for name in KEY_ATTRIBUTES:
                if attributes.get(name):
                    return  # the span names its own session: that wins over baggage
            span.set_attributes({SESSION_ID: key, GALILEO_SESSION_FROM_BAGGAGE: True})
        except Exception as exc:
            self._internal_error("on_start", exc)

    def on_end(self, span: ReadableSpan) -> None:
        """Hand ``span`` to the export pipeline (an O(1) append)."""
        submit = self._submit
        if submit is None:
            return
        try:
            submit(span)
        except Exception as exc:
            self._internal_error("on_end", exc)

    # --- lifecycle ------------------------------------------------------------------------------
    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Send everything queued and wait up to ``timeout_millis``; ``True`` when all delivered."""
        if self._pipeline is None:
            return True
        try:
            return bool(self._pipeline.force_flush(timeout_millis / 1000.0))
        except Exception as exc:
            self._internal_error("force_flush", exc)
            return False

    def shutdown(self, timeout_millis: int | None = None) -> None:
        """Flush and stop the pipeline, within ``timeout_millis`` (``export_timeout`` if None)."""
        if self._shut_down:
            return
        self._shut_down = True
        if self._pipeline is not None:
            timeout_s = None if timeout_millis is None else timeout_millis / 1000.0
            try:
                self._pipeline.shutdown(timeout_s)
            except Exception as exc:
                self._internal_error("shutdown", exc)

    def stats(self) -> dict[str, Any]:
        """The pipeline's counters plus ``processor_errors`` (failures kept from the app)."""
        counts: dict[str, Any] = {}
        if self._pipeline is not None:
            try:
                counts.update(self._pipeline.stats())
            except Exception as exc:
                self._internal_error("stats", exc)
        counts["processor_errors"] = self._errors
        return counts
