"""PipelineConfig: what an ExportPipeline derives from its settings, built in one place.

:class:`~galileo_otel.export.pipeline.ExportPipeline` composes objects; the numbers and the
batch header those objects are built with come from here, so the pipeline's constructor only
wires. Everything is computed once, at construction, and read-only afterwards (a forked child
reuses it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from galileo_otel.api.retry import RetryPolicy
from galileo_otel.export.sink import dest_dict
from galileo_otel.export.spool import key_fingerprint
from galileo_otel.settings import GalileoSettings

__all__ = [
    "DEFAULT_BACKOFF_INITIAL_S",
    "DEFAULT_BACKOFF_MAX_S",
    "DEFAULT_EXIT_TIMEOUT_S",
    "DEFAULT_FIRST_DELAY_S",
    "DEFAULT_SPOOL_RETRY_S",
    "PipelineConfig",
]

# Reliable mode's waits between attempts: the package's one RetryPolicy's numbers.
DEFAULT_BACKOFF_INITIAL_S = RetryPolicy.backoff_initial_s
DEFAULT_BACKOFF_MAX_S = RetryPolicy.backoff_max_s
DEFAULT_SPOOL_RETRY_S = 5.0
DEFAULT_FIRST_DELAY_S = 0.05
DEFAULT_EXIT_TIMEOUT_S = 5.0

# Closed batches not yet on disk, by encoded size: room for a burst while the spooler, whose
# every syscall waits for the GIL behind a busy app, catches up.
_MAX_UNWRITTEN_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class PipelineConfig:
    """The settings as the pipeline's objects use them (see :meth:`from_settings`)."""

    settings: GalileoSettings
    reliable: bool
    disabled: bool
    max_queue: int
    in_flight: int
    export_timeout: float
    max_unwritten_bytes: int
    policy: RetryPolicy  # reliable mode's retries: bounded by export_timeout, not a count
    scan_policy: RetryPolicy  # the spool rescan's backoff
    spool_retry_s: float
    first_delay_s: float
    exit_timeout_s: float
    target: dict[str, Any]  # the destination as configured (names or ids)
    header: dict[str, Any]  # stamped on every batch (spool_format.BatchHeader)
    spool_open_args: dict[str, Any]

    @classmethod
    def from_settings(
        cls,
        settings: GalileoSettings,
        destination: Any = None,
        *,
        backoff_initial_s: float = DEFAULT_BACKOFF_INITIAL_S,
        backoff_max_s: float = DEFAULT_BACKOFF_MAX_S,
        spool_retry_s: float = DEFAULT_SPOOL_RETRY_S,
        first_delay_s: float = DEFAULT_FIRST_DELAY_S,
        exit_timeout_s: float = DEFAULT_EXIT_TIMEOUT_S,
    ) -> PipelineConfig:
        """Derive the config; ``ExportPipeline`` passes its arguments of the same names.

        Args:
            settings: The validated settings.
            destination: Where to log, when already resolved (see ``ExportPipeline``).
            backoff_initial_s: First retry delay of reliable mode (doubled per attempt,
                jittered).
            backoff_max_s: Longest retry delay.
            spool_retry_s: How often spooled batches are tried again while the server fails.
            first_delay_s: How long a batch waits for more traces after a quiet period (at
                most ``batch_delay``; see the delivery docs, "When a batch leaves").
            exit_timeout_s: Bound of the flush at interpreter exit.
        """
        s = settings
        reliable = bool(s.reliable)
        export_timeout = float(s.export_timeout)
        # Which API key a batch was made for: a spool shared with apps that use another key must
        # not send their batches with ours (a 403 would dead-letter them). Only a truncated
        # hash is stored. The URL is left out: a batch spooled while the API was unreachable
        # goes to wherever the next start points.
        key = s.api_key.get_secret_value() if s.api_key is not None else ""
        origin = key_fingerprint(key)
        target = {
            "project": s.project,
            "project_id": s.project_id,
            "log_stream": s.log_stream,
            "log_stream_id": s.log_stream_id,
            "experiment_id": s.experiment_id,
        }
        return cls(
            settings=s,
            reliable=reliable,
            disabled=bool(s.logging_disabled),
            max_queue=int(s.max_queue_spans),
            in_flight=int(s.max_in_flight),
            export_timeout=export_timeout,
            max_unwritten_bytes=max(_MAX_UNWRITTEN_BYTES, 2 * int(s.batch_max_bytes)),
            policy=RetryPolicy(
                max_attempts=1_000_000,
                deadline_s=export_timeout if export_timeout > 0 else None,
                backoff_initial_s=backoff_initial_s,
                backoff_max_s=backoff_max_s,
                jitter=0.5,
            ),
            # The same policy's doubling, from spool_retry_s up to the longest Retry-After it
            # honours, without jitter (one spooler per process).
            scan_policy=RetryPolicy(
                deadline_s=None, backoff_initial_s=spool_retry_s, backoff_max_s=60.0, jitter=0.0
            ),
            spool_retry_s=spool_retry_s,
            first_delay_s=first_delay_s,
            exit_timeout_s=exit_timeout_s,
            target=target,
            header={
                "reliable": reliable,
                "destination": dest_dict(destination) if destination is not None else None,
                "target": target,
                "origin": origin,
            },
            spool_open_args={
                "origin": origin,
                "max_bytes": int(s.spool_max_bytes),
                "dead_max_bytes": int(s.spool_dead_max_bytes),
            },
        )
