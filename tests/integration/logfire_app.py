"""An app under logfire (default scrubbing) that also sends to Galileo: run by test_sessions_logfire.

``python logfire_app.py <api_url> <api_key> <spool dir> <existing Galileo session id>``; prints the processor's stats as JSON.
Runs in its own process because logfire.configure() takes over the global tracer provider.
"""

from __future__ import annotations

import json
import sys

import logfire
from opentelemetry import trace

from galileo_otel import GalileoSessionProcessor, session


def main() -> None:
    api_url, api_key, spool, existing = sys.argv[1:5]
    processor = GalileoSessionProcessor(
        api_url=api_url,
        api_key=api_key,
        project="test",
        log_stream="default",
        spool_dir=spool,
        batch_delay=0.05,
    )
    logfire.configure(
        send_to_logfire=False,
        console=False,
        additional_span_processors=[processor],
    )
    tracer = trace.get_tracer("app")
    for _ in range(2):  # a plain OTel span naming its session (scrubbed at on_end)
        with tracer.start_as_current_span("chat", attributes={"session.id": "conv-1"}):
            pass
    with logfire.span("turn {n}", n=1, **{"session.id": "conv-2", "user.id": "alice"}):
        pass
    with session("conv-3", name="Support"), logfire.span("turn {n}", n=2):
        pass
    # as the official Galileo integration does: an existing session, which gets the trace
    with logfire.span("official", **{"galileo.session.id": existing}):
        pass
    ok = processor.force_flush(30_000)
    print(json.dumps({"flushed": ok, "stats": processor.stats()}))
    processor.shutdown(10_000)


if __name__ == "__main__":
    main()
