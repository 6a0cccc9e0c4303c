"""A real export worker process's cold start, for tests whose deadlines include one.

The worker process imports the exporter before it says it is set up. Without compiled bytecode
(``PYTHONDONTWRITEBYTECODE=1``, a fresh tree) on a loaded machine, and at its nice level of 10,
those imports can take from a fraction of a second to a minute. So a test waits for the
worker process's own readiness signal (:meth:`OffloadPipeline.wait_ready`, bounded) before its
timed part, measures how long that took, and gives each later deadline that holds another start
(a restarted worker process, a forked app's own one) or the worker's first work room in
proportion to that measurement: a slow machine passes, a worker process that never answers
still fails within a bound. Importable from unit and integration tests (``tests/`` is on
sys.path through tests/conftest.py).
"""

from __future__ import annotations

import time

from galileo_otel.export.offload import OffloadPipeline

# A worker process not set up within this is broken, not slow: the test fails.
READY_BOUND_S = 300.0
# Cold starts a deadline makes room for on top of its own base: a restart's start, the lazy
# imports of the first batch (a fraction of a start), and the load changing meanwhile.
COLD_STARTS_PER_DEADLINE = 3


class ColdStart:
    """How long a worker process took to be set up here and now; deadlines derived from it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def bound(self, base_s: float) -> float:
        """A deadline of ``base_s`` (its own work) plus room for a worker process's start."""
        return base_s + COLD_STARTS_PER_DEADLINE * self.seconds

    def __repr__(self) -> str:
        return f"ColdStart({self.seconds:.2f} s)"


def wait_until_ready(pipeline: OffloadPipeline) -> ColdStart:
    """Wait (bounded) until ``pipeline``'s worker process is set up; how long that took.

    Called right after the pipeline started its worker process, so the wait is its cold start.
    """
    started = time.monotonic()
    ready = pipeline.wait_ready(READY_BOUND_S)
    took = time.monotonic() - started
    assert ready, f"the worker process was not set up within {READY_BOUND_S} s (waited {took:.1f})"
    return ColdStart(took)
