"""The gateway's accept path: what a span and a request cost before the 200, with and without
the durable commit of the write-ahead log, beside a Collector-like decode-and-queue.

``galileo-otel gateway`` answers 200 only once a request is committed to its write-ahead log
(SQLite, ``synchronous=FULL``: an fsync per request). This measures that path in-process, on
ready-made OTLP/protobuf bodies, wall time and CPU time (``time.process_time``) per request and
per span, the median of ``--repeat`` interleaved runs, for small requests (one 5-span trace, as
an app's exporter sends at a low rate) and batched ones (20 traces, 100 spans):

- ``collector-like``: decode the body (``ExportTraceServiceRequest``), rebuild its spans
  (``spans_from_request``) and append them to an in-memory queue: what a stock OpenTelemetry
  Collector's OTLP receiver does before it answers with its default in-memory queue, in Python
  (the queue is emptied at once: its consumer is not measured, as the null pipeline's).
- ``gw no-commit``: the same decode, then ``Gateway.accept`` with a log that stores nothing
  (routing, the queue-room check, the open-trace table, the hand-over to the pipeline).
- ``gw no-fsync``: ``Gateway.accept`` with the real log, ``synchronous=OFF`` (the SQLite insert
  and commit, no fsync).
- ``gw durable``: ``Gateway.accept`` as shipped (``synchronous=FULL``).

The pipeline behind the gateway is a null one (it takes every span): its cost is
``bench_stages.py``'s. HTTP (uvicorn, FastAPI, gzip) is left out: it is the same for every row.
A real Collector binary is not run: it is Go, not installed here, and its per-span cost would
compare two languages rather than the commit; the ``collector-like`` row is the part that
matters (decode and queue, nothing durable) in the same interpreter.

Run: ``python benchmarks/bench_gateway.py [--requests 400] [--repeat 5] [--quick]``; the
``--dir`` option puts the log on another disk (default: a temp dir).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import bare_span_us, emit_trace, print_table, save
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from galileo_otel.gateway.config import GatewaySettings
from galileo_otel.gateway.core import Gateway
from galileo_otel.gateway.wal import WriteAheadLog
from galileo_otel.otlp import spans_from_request
from galileo_otel.settings import GalileoSettings

SYSTEMS = ("collector-like", "gw no-commit", "gw no-fsync", "gw durable")


class NullPipeline:
    """Takes every span and forgets it: the gateway's own cost, not the export's."""

    def submit(self, span: Any) -> bool:
        return True

    def force_flush(self, timeout_s: float | None = None) -> bool:
        return True

    def shutdown(self, timeout_s: float | None = None) -> bool:
        return True

    def stats(self) -> dict[str, Any]:
        return {"queue_size": 0}


class NoLog:
    """A write-ahead log that stores nothing (the ``gw no-commit`` row)."""

    max_bytes = 0

    def __init__(self) -> None:
        self._next = 0

    def append(self, headers: Any, body: bytes, received_ns: int) -> int:
        self._next += 1
        return self._next

    def delete(self, ids: Any) -> int:
        return 0

    def entries(self) -> Any:
        return iter(())

    def usage(self) -> tuple[int, int]:
        return 0, 0

    def close(self) -> None:
        pass


def bodies(n_requests: int, traces_per_request: int) -> list[bytes]:
    """``n_requests`` OTLP/protobuf bodies of ``traces_per_request`` 5-span traces each."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("bench")
    for i in range(n_requests * traces_per_request):
        emit_trace(tracer, i, 5)
    spans = list(memory.get_finished_spans())
    per = 5 * traces_per_request
    return [encode_spans(spans[i : i + per]).SerializeToString() for i in range(0, len(spans), per)]


def gateway(system: str, where: Path) -> Gateway:
    settings = GalileoSettings(
        api_key="bench-key-0123456789", project="bench", log_stream="s", max_queue_spans=10**9
    )
    config = GatewaySettings(dir=str(where), wal_max_bytes=0)
    gw = Gateway(
        settings, config, pipeline_factory=lambda *a, **k: NullPipeline(), checkpoint_every_s=None
    )
    if system != "gw durable":
        gw.wal.close()
        gw.wal = (
            NoLog()
            if system == "gw no-commit"
            else WriteAheadLog(where, max_bytes=0, synchronous="OFF")
        )  # type: ignore[assignment]
    gw.start()
    assert gw.wait_ready(10)
    return gw


def run(system: str, payloads: list[bytes], where: Path) -> tuple[float, float]:
    """(wall s, CPU s) to take every body in ``payloads``."""
    if system == "collector-like":
        queue: deque[Any] = deque()

        def take(body: bytes) -> None:
            spans, _, _ = spans_from_request(ExportTraceServiceRequest.FromString(body))
            queue.extend(spans)
            queue.clear()  # the exporter's side, not measured (as the null pipeline's)

        close: Callable[[], Any] = queue.clear
    else:
        gw = gateway(system, where)

        def take(body: bytes) -> None:
            request = ExportTraceServiceRequest.FromString(body)
            spans, rejected, _ = spans_from_request(request)
            gw.accept(request, spans, {}, rejected=rejected)

        def close() -> None:
            gw.close(1.0)

    t0, c0 = time.perf_counter(), time.process_time()
    for body in payloads:
        take(body)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    close()
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir", default=None, help="where the write-ahead logs go")
    parser.add_argument("--quick", action="store_true", help="100 requests, 3 repeats")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.repeat = 100, 3
    rows = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for traces_per_request in (1, 20):
            payloads = bodies(args.requests, traces_per_request)
            spans = 5 * traces_per_request
            samples: dict[str, list[tuple[float, float]]] = {s: [] for s in SYSTEMS}
            for r in range(args.repeat):  # interleaved: every row sees the same machine load
                for system in SYSTEMS:
                    where = Path(tmp) / f"{traces_per_request}-{r}-{system.replace(' ', '-')}"
                    samples[system].append(run(system, payloads, where))
            for system in SYSTEMS:
                wall = statistics.median(w for w, _ in samples[system]) / len(payloads)
                cpu = statistics.median(c for _, c in samples[system]) / len(payloads)
                rows.append(
                    {
                        "system": system,
                        "spans/req": spans,
                        "req_wall_us": wall * 1e6,
                        "req_cpu_us": cpu * 1e6,
                        "span_wall_us": wall * 1e6 / spans,
                        "span_cpu_us": cpu * 1e6 / spans,
                        "req/s": 1 / wall if wall else 0.0,
                    }
                )
    columns = [
        "system",
        "spans/req",
        "req_wall_us",
        "req_cpu_us",
        "span_wall_us",
        "span_cpu_us",
        "req/s",
    ]
    print_table(
        f"Gateway accept path, {args.requests} requests, median of {args.repeat}", rows, columns
    )
    path = save(
        "gateway",
        {
            "quick": args.quick,
            "requests": args.requests,
            "repeat": args.repeat,
            "bare_span_us": bare_span_us(),
            "rows": rows,
        },
    )
    print(f"\nsaved {path}")


if __name__ == "__main__":
    main()
