"""``galileo-otel gateway`` (extra ``[gateway]``): OTLP/HTTP in from any language, Galileo out.

Requests to ``POST /v1/traces`` are written ahead to disk (:mod:`.wal`) before they are
answered 200, then go through the same export pipeline as the in-process path
(``make_pipeline``: assembly, sessions, conversion, spool, reliable delivery). :mod:`.core`
holds the engine and the rule for when a written-ahead request may be deleted, :mod:`.app` the
HTTP routes (``/v1/traces``, ``/healthz``, ``/readyz``, ``/metrics``), :mod:`.runner` the
process (``run_gateway``).
"""

from __future__ import annotations

__all__: list[str] = []
