"""``/metrics``: the gateway's counters in the Prometheus text format (prometheus-client).

Rendered at each scrape from :meth:`Gateway.stats() <galileo_otel.gateway.core.Gateway.stats>`
(which sums every destination pipeline's ``stats()``), so there is one source of numbers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["render_metrics"]

_PREFIX = "galileo_gateway"

# (metric name, help, key in Gateway.stats() or in its "pipeline" totals)
_COUNTERS = (
    ("requests", "OTLP export requests received.", "requests"),
    ("spans_received", "Spans received in OTLP requests.", "spans_received"),
    (
        "spans_accepted",
        "Spans written ahead and handed to the pipeline (answered 200).",
        "spans_accepted",
    ),
    ("spans_rejected", "Spans left out of a 200 (partial_success: invalid ids).", "spans_rejected"),
    (
        "wal_rows_deleted",
        "Write-ahead rows deleted once the pipeline made them durable.",
        "wal_rows_deleted",
    ),
    ("replayed_spans", "Spans replayed from the write-ahead log at start.", "replayed_spans"),
    (
        "resubmitted_requests",
        "Requests handed to the pipeline again after it counted a loss.",
        "resubmitted_requests",
    ),
)
_REFUSED = (
    ("queue_full", "refused.queue_full"),
    ("wal_full", "refused.wal_full"),
    ("spool_full", "refused.spool_full"),
)
_OUTCOMES = (
    "traces_batched",
    "traces_sent",
    "traces_confirmed",
    "traces_spooled",
    "traces_failed",
    "traces_dead_lettered",
    "traces_adopted",
)


class _Snapshot(Collector):
    def __init__(self, stats: Mapping[str, Any]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self._stats
        p: Mapping[str, Any] = s.get("pipeline") or {}
        for name, text, key in _COUNTERS:
            yield CounterMetricFamily(f"{_PREFIX}_{name}", text, value=int(s.get(key, 0)))
        refused = CounterMetricFamily(
            f"{_PREFIX}_requests_refused",
            "Requests answered 429 (queue full) or 503 (write-ahead log or spool full).",
            labels=["reason"],
        )
        for label, key in _REFUSED:
            refused.add_metric([label], int(s.get(key, 0)))
        yield refused
        outcomes = CounterMetricFamily(
            f"{_PREFIX}_traces",
            "Traces by delivery outcome, from the export pipelines.",
            labels=["outcome"],
        )
        for key in _OUTCOMES:
            outcomes.add_metric([key.removeprefix("traces_")], int(p.get(key, 0)))
        outcomes.add_metric(["dropped_spool_full"], int(p.get("dropped.spool_full", 0)))
        yield outcomes
        yield CounterMetricFamily(
            f"{_PREFIX}_sessions_created",
            "Galileo sessions created by the pipelines.",
            value=int(p.get("sessions.sessions_created", 0)),
        )
        yield CounterMetricFamily(
            f"{_PREFIX}_spans_dropped",
            "Spans the pipelines dropped (queue full or shut down).",
            value=int(p.get("spans_dropped", 0)),
        )
        gauges = (
            ("wal_bytes", "Bytes held in the write-ahead log.", s.get("wal_bytes", 0)),
            ("wal_entries", "Requests held in the write-ahead log.", s.get("wal_entries", 0)),
            ("queue_spans", "Spans waiting in the pipelines' queues.", p.get("queue_size", 0)),
            ("traces_pending", "Traces in batches not yet confirmed.", p.get("traces_pending", 0)),
            ("spool_bytes", "Bytes of pending batches in the spool.", p.get("spool_bytes", 0)),
            ("spool_dead_bytes", "Bytes of dead-lettered batches.", p.get("spool_dead_bytes", 0)),
            (
                "destinations",
                "Destinations (project, log stream or experiment) served.",
                s.get("destinations", 0),
            ),
            ("ready", "1 when ready for traffic.", 1 if s.get("ready") else 0),
        )
        for name, text, value in gauges:
            yield GaugeMetricFamily(f"{_PREFIX}_{name}", text, value=float(value or 0))


def render_metrics(stats: Mapping[str, Any]) -> tuple[bytes, str]:
    """``(body, content type)`` of a scrape of ``stats``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(stats))
    return generate_latest(registry), CONTENT_TYPE_LATEST
