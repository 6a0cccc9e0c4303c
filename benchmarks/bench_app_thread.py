"""App-thread cost per span: GalileoSessionProcessor vs the stock BatchSpanProcessor + OTLP/HTTP.

Two tables, each system in a fresh process, the sink (benchmarks/_sink.py) in another:

1. **Hooks** (``micro``): CPU time of ``on_start`` (root span, child span) and ``on_end``
   alone, on fresh spans, the background worker not woken (ours: a pipeline that is not
   started; stock: a batch threshold above the run), the least of many rounds. What the
   processor itself costs the app thread, without noise from the machine or the worker.
2. **Spans in bursts**: start + end of spans on the app thread with the background export
   running, the median of several bursts. ``span_us`` wall time per span (on CPython the
   worker's work holds the GIL, so it is app cost too); ``overhead_us`` = minus the
   no-processor cost; ``app_cpu_us`` CPU time of the app thread per span during the burst, of
   which ``gc_us`` in the garbage collector (all generations; ``gc_full_us`` the full passes);
   ``bg_cpu_us`` CPU time per span of the process's other threads, burst and flush (the
   export worker process's own CPU is not counted: see bench_compare.py's ``cpu_us``). Both
   queues 20,480 spans. ``lost`` = emitted - received by the sink.

Run: ``python benchmarks/bench_app_thread.py [--quick]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    LOG_STREAM_ID,
    OURS,
    OURS_FF,
    OURS_PROC,
    PROJECT_ID,
    SPANS_PER_TRACE,
    STOCK,
    Sink,
    emit_spans,
    make_provider,
    print_table,
    run_child,
    save,
    stats_of,
)

SYSTEMS = ["none", STOCK, OURS, OURS_FF, OURS_PROC]
QUEUE = 20_480  # the same queue bound for both: our default; the stock default is 2,048


class GcClock:
    """CPU time the main thread spends in the garbage collector, per generation."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self._t0 = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        if phase == "start":
            self._t0 = time.thread_time()
        else:
            self.seconds[info["generation"]] += time.thread_time() - self._t0


def other_threads_cpu() -> float:
    """CPU seconds of every thread of this process but the main one (Linux: per-thread clocks)."""
    total = 0.0
    for thread in threading.enumerate():
        if thread is threading.main_thread() or thread.ident is None:
            continue
        try:
            total += time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
        except (OSError, AttributeError):
            continue
    return total


def child(system: str, url: str, spans: int, rounds: int) -> dict[str, object]:
    spool = tempfile.mkdtemp(prefix="bench-spool-")
    provider, processor = make_provider(
        system, url, max_queue_size=QUEUE, galileo={"spool_dir": spool}
    )
    tracer = provider.get_tracer("bench")
    emit_spans(tracer, 2_000)  # warm up imports, caches, connections
    if processor is not None:
        processor.force_flush(30_000)
    clock = GcClock()
    per_span, app_cpu, gc_all, gc_full, bg_cpu = [], [], [], [], []
    for r in range(rounds):
        before_gc = list(clock.seconds)
        bg0 = other_threads_cpu()
        cpu0 = time.thread_time()
        took = emit_spans(tracer, spans, start=r * spans)
        cpu1 = time.thread_time()
        per_span.append(took / spans * 1e6)
        app_cpu.append((cpu1 - cpu0) / spans * 1e6)
        spent = [a - b for a, b in zip(clock.seconds, before_gc, strict=True)]
        gc_all.append(sum(spent) / spans * 1e6)
        gc_full.append(spent[2] / spans * 1e6)
        if processor is not None:
            processor.force_flush(60_000)
        bg_cpu.append((other_threads_cpu() - bg0) / spans * 1e6)
    stats = stats_of(system, processor) if processor is not None else {}
    if processor is not None:
        processor.shutdown()
    emitted = 2_000 + spans * rounds
    return {
        "emitted": emitted,
        "system": system,
        "span_us": statistics.median(per_span),
        "span_us_rounds": per_span,
        "app_cpu_us": statistics.median(app_cpu),
        "gc_us": statistics.median(gc_all),
        "gc_full_us": statistics.median(gc_full),
        "bg_cpu_us": statistics.median(bg_cpu),
        "dropped_counted": int(stats.get("spans_dropped", 0)),
    }


def micro(system: str, rounds: int) -> dict[str, object]:
    """CPU time of the processor's hooks alone (see the module docstring)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    processor: Any
    if system == STOCK:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        processor = BatchSpanProcessor(
            OTLPSpanExporter(endpoint="http://127.0.0.1:9/v1/traces"),
            max_queue_size=10**7,
            max_export_batch_size=10**7,  # never reached: the worker is never woken
            schedule_delay_millis=10**9,
        )
        clear: Any = processor._batch_processor._queue.clear
    else:
        from galileo_otel.export import make_pipeline
        from galileo_otel.processor import GalileoSessionProcessor
        from galileo_otel.settings import merge_settings

        settings = merge_settings(
            None,
            {
                "api_key": "bench",
                "api_url": "http://127.0.0.1:9",
                "project_id": PROJECT_ID,
                "log_stream_id": LOG_STREAM_ID,
                "reliable": system != OURS_FF,
                "export_process": system == OURS_PROC,
                "max_queue_spans": 10**7,
                "spool_dir": tempfile.mkdtemp(prefix="bench-spool-"),
            },
        )
        pipeline: Any = make_pipeline(settings, start=False, shutdown_at_exit=False)
        processor = GalileoSessionProcessor(pipeline, settings=settings)
        clear = pipeline.worker_queue().clear
    tracer = TracerProvider(shutdown_on_exit=False).get_tracer("bare")
    n_traces = 400

    def fresh() -> tuple[list[Any], list[Any]]:
        roots, children = [], []
        for i in range(n_traces):
            attrs = {"session.id": f"c{i % 10}", "gen_ai.operation.name": "invoke_agent"}
            root = tracer.start_span("invoke_agent", attributes=attrs)
            ctx = trace.set_span_in_context(root)
            for _ in range(SPANS_PER_TRACE - 1):
                children.append(
                    tracer.start_span("chat", context=ctx, attributes={"gen_ai.system": "x"})
                )
            roots.append(root)
        return roots, children

    def cost(which: str) -> float:
        best = float("inf")
        for _ in range(rounds):
            roots, children = fresh()
            if which == "on_end":
                for span in children + roots:
                    span.end()
                spans, hook = children + roots, processor.on_end
                t0 = time.thread_time()
                for span in spans:
                    hook(span)
            else:
                spans = roots if which == "root" else children
                start = processor.on_start
                t0 = time.thread_time()
                for span in spans:
                    start(span, None)
            best = min(best, (time.thread_time() - t0) / len(spans) * 1e6)
            clear()
        return best

    row: dict[str, object] = {"system": system}
    row["on_start_root_us"] = cost("root")
    row["on_start_child_us"] = cost("child")
    row["on_end_us"] = cost("on_end")
    per_span = (
        float(row["on_start_root_us"]) + (SPANS_PER_TRACE - 1) * float(row["on_start_child_us"])
    ) / SPANS_PER_TRACE + float(row["on_end_us"])
    row["hooks_per_span_us"] = per_span
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small run (seconds)")
    parser.add_argument("--child", nargs=4, metavar=("SYSTEM", "URL", "SPANS", "ROUNDS"))
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated")
    args = parser.parse_args()
    if args.child:
        system, url, spans, rounds = args.child
        if system.startswith("micro:"):  # the hooks table: --child micro:SYSTEM - - ROUNDS
            print(json.dumps(micro(system.split(":", 1)[1], int(rounds))))
        else:
            print(json.dumps(child(system, url, int(spans), int(rounds))))
        return 0
    systems = [s for s in args.systems.split(",") if s]
    spans, rounds = (10_000, 3) if args.quick else (100_000, 5)
    micro_rows = [
        run_child(Path(__file__), [f"micro:{s}", "-", "-", "15" if args.quick else "40"])
        for s in systems
        if s != "none"
    ]
    print_table(
        "Processor hooks alone (CPU µs, least of the rounds; 5-span traces)",
        micro_rows,
        ["system", "on_start_root_us", "on_start_child_us", "on_end_us", "hooks_per_span_us"],
    )
    rows = []
    with Sink() as sink:
        for system in systems:
            sink.reset()
            row = run_child(Path(__file__), [system, sink.url, str(spans), str(rounds)])
            # what the sink got tells the losses of both (the stock processor drops silently)
            row["lost"] = 0 if system == "none" else row["emitted"] - sink.received(system)
            rows.append(row)
    base = next((r["span_us"] for r in rows if r["system"] == "none"), 0.0)
    for r in rows:
        r["overhead_us"] = r["span_us"] - base
    stock = next((r for r in rows if r["system"] == STOCK), None)
    for r in rows:
        r["vs_stock"] = (
            r["overhead_us"] / stock["overhead_us"] if stock and stock["overhead_us"] else 0.0
        )
    print_table(
        f"App-thread cost per span ({spans:,} spans x {rounds} rounds, median; µs)",
        rows,
        [
            "system",
            "span_us",
            "overhead_us",
            "vs_stock",
            "app_cpu_us",
            "gc_us",
            "gc_full_us",
            "bg_cpu_us",
            "emitted",
            "lost",
        ],
    )
    path = save(
        "app_thread",
        {"quick": args.quick, "spans": spans, "rounds": rounds, "micro": micro_rows, "rows": rows},
    )
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
