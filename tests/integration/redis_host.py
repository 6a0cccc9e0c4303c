"""One "host" of the multi-host session tests: a real process with its own spool and pipeline.

Run as ``python redis_host.py '<json config>'``. It answers JSON lines on stdout to JSON commands
on stdin, so that the test decides when each host acts:

- ``{"cmd": "turns", "turns": [{"at_s": 0, "attrs": {...}}, ...]}``: one thread per turn, all
  released at once by a barrier; each sends one trace (a root and a child span) with explicit
  timestamps; then force_flush. Answers ``{"ok": true, "flushed": bool}``.
- ``{"cmd": "stats"}``: the tracker's and the pipeline's counters.
- ``{"cmd": "available"}``: whether the shared store is in use again (no outage or retry due).
- ``{"cmd": "exit"}``: shut down and exit.

With ``"mode": "lease"`` it instead opens the session of ``key``, takes the creation lease and
prints ``{"leased": local_id}`` from inside Create Session, then blocks until killed.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

S = 1_000_000_000
T0 = 1_764_000_000 * S


def reply(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


def lease_mode(config: dict[str, Any]) -> None:
    from galileo_otel.sessions.redis_store import RedisSessionStore
    from galileo_otel.sessions.tracker import SessionTracker

    tracker = SessionTracker(
        RedisSessionStore(config["redis"], lease_s=config["lease_s"]),
        idle_timeout_s=config.get("idle", 600),
        namespace=config["namespace"],
    )
    record = tracker.session_for_trace({"session.id": config["key"]}, T0, T0 + S)

    def create(payload: dict[str, Any]) -> str:
        reply({"leased": record.local_id})
        sys.stdin.readline()  # blocks: the test kills this process here
        raise SystemExit(1)

    tracker.ensure_created(record, create)


def pipeline_mode(config: dict[str, Any]) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import set_span_in_context

    from galileo_otel.export.pipeline import ExportPipeline
    from galileo_otel.processor import GalileoSessionProcessor
    from galileo_otel.sessions.tracker import SessionTracker
    from galileo_otel.settings import GalileoSettings

    settings = GalileoSettings(**config["settings"])
    tracker = SessionTracker.from_settings(settings)
    processor = GalileoSessionProcessor(ExportPipeline(settings, tracker=tracker))
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("redis-host")

    def send(turn: dict[str, Any], barrier: threading.Barrier) -> None:
        barrier.wait()
        start = T0 + int(turn["at_s"] * S)
        root = tracer.start_span(
            turn.get("name", "chat"), start_time=start, attributes=turn["attrs"]
        )
        child = tracer.start_span("llm", context=set_span_in_context(root), start_time=start + 1)
        child.end(end_time=start + S)
        root.end(end_time=start + 2 * S)

    reply({"ready": True})
    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "turns":
            turns = command["turns"]
            barrier = threading.Barrier(len(turns), timeout=60)
            threads = [threading.Thread(target=send, args=(t, barrier)) for t in turns]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            reply({"ok": True, "flushed": processor.force_flush(60_000)})
        elif command["cmd"] == "stats":
            reply({"tracker": tracker.stats(), "pipeline": processor.stats()})
        elif command["cmd"] == "available":
            reply({"available": bool(getattr(tracker.store, "available", True))})
        elif command["cmd"] == "exit":
            processor.shutdown(30_000)
            tracker.close()
            reply({"bye": True})
            return


def main() -> None:
    config = json.loads(sys.argv[1])
    if config.get("mode") == "lease":
        lease_mode(config)
    else:
        pipeline_mode(config)


if __name__ == "__main__":
    main()
