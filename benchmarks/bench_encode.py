"""JSON encoding of converted traces: orjson against the stdlib encoder, side by side.

The export worker encodes every converted trace once (``encode_trace``). This converts the
``bench_compare`` workloads (3- and 5-span traces) once, then encodes them all with orjson and
with its stdlib path (``encode_trace_stdlib``, what it falls back to), interleaved, and reports CPU time
(``time.process_time``) per span, the median of ``--repeat`` runs, beside the machine's bare
span cost. Why orjson is a dependency.

Run: ``python benchmarks/bench_encode.py [--traces 2000] [--repeat 5]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from _common import bare_span_us, emit_trace, print_table, save
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from galileo_otel.export import batcher as batch
from galileo_otel.export.assemble import TraceAssembler
from galileo_otel.export.convert import convert_trace


def converted(n_traces: int, spans_per_trace: int) -> tuple[list[dict[str, Any]], int]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("bench")
    for i in range(n_traces):
        emit_trace(tracer, i, spans_per_trace)
    assembler = TraceAssembler(
        max_spans_per_trace=1000, max_open_traces=10 * n_traces, trace_timeout_ns=10**12
    )
    traces = [t for span in memory.get_finished_spans() for t in assembler.add(span)]
    return [convert_trace(t) for t in traces], sum(len(t.spans) for t in traces)


def per_span_us(data: list[dict[str, Any]], n_spans: int, fn: Callable[[Any], bytes]) -> float:
    t0 = time.process_time()
    for item in data:
        fn(item)
    return (time.process_time() - t0) / n_spans * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--traces", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="500 traces, 3 repeats")
    args = parser.parse_args()
    if args.quick:
        args.traces, args.repeat = 500, 3
    if not batch.HAVE_ORJSON:
        raise SystemExit("orjson is not installed: nothing to compare")
    rows = []
    for spans_per_trace in (3, 5):
        data, n_spans = converted(args.traces, spans_per_trace)
        fast, slow = [], []
        for _ in range(args.repeat):  # interleaved: both see the same machine load
            fast.append(per_span_us(data, n_spans, batch.encode_trace))
            slow.append(per_span_us(data, n_spans, batch.encode_trace_stdlib))
        f, s = statistics.median(fast), statistics.median(slow)
        rows.append(
            {
                "spans/trace": spans_per_trace,
                "orjson_us": f,
                "stdlib_us": s,
                "stdlib/orjson": s / f,
                "saved_us": s - f,
            }
        )
    print_table(
        "encode_trace, CPU µs per span",
        rows,
        ["spans/trace", "orjson_us", "stdlib_us", "stdlib/orjson", "saved_us"],
    )
    path = save("encode", {"quick": args.quick, "bare_span_us": bare_span_us(), "rows": rows})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
