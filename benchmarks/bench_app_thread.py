"""App-thread cost per span: GalileoSessionProcessor vs the stock BatchSpanProcessor + OTLP/HTTP.

Two numbers per system, each the median of several rounds, in a fresh process per system with
the sink (benchmarks/_sink.py) in another process:

- span: wall time of start + end of one span on the app thread, background export running (on
  CPython the worker's encoding holds the GIL, so it is app cost too), minus nothing;
- hooks: just ``on_start`` + ``on_end`` of the processor on ready-made spans.

Run: ``python benchmarks/bench_app_thread.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    OURS,
    OURS_FF,
    OURS_PROC,
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


def child(system: str, url: str, spans: int, rounds: int) -> dict[str, object]:
    spool = tempfile.mkdtemp(prefix="bench-spool-")
    provider, processor = make_provider(
        system, url, max_queue_size=QUEUE, galileo={"spool_dir": spool}
    )
    tracer = provider.get_tracer("bench")
    emit_spans(tracer, 2_000)  # warm up imports, caches, connections
    if processor is not None:
        processor.force_flush(30_000)
    per_span = []
    for r in range(rounds):
        took = emit_spans(tracer, spans, start=r * spans)
        per_span.append(took / spans * 1e6)
        if processor is not None:
            processor.force_flush(60_000)
    hooks = []
    if processor is not None:
        from opentelemetry.sdk.trace import TracerProvider

        bare = TracerProvider(shutdown_on_exit=False).get_tracer("bare")
        for _ in range(rounds):
            made = []
            for i in range(spans // SPANS_PER_TRACE):
                # an agent root, as in emit_trace (a plain root becomes the Galileo trace itself)
                attrs = {"session.id": f"c{i % 10}", "gen_ai.operation.name": "invoke_agent"}
                with bare.start_as_current_span("root", attributes=attrs) as root:
                    for _ in range(SPANS_PER_TRACE - 1):
                        with bare.start_as_current_span("child") as child_span:
                            made.append(child_span)
                made.append(root)  # in end order, as a processor sees them
            on_start, on_end = processor.on_start, processor.on_end
            t0 = time.perf_counter()
            for span in made:
                on_start(span, None)
                on_end(span)
            hooks.append((time.perf_counter() - t0) / len(made) * 1e6)
            processor.force_flush(60_000)
    stats = stats_of(system, processor) if processor is not None else {}
    if processor is not None:
        processor.shutdown()
    emitted = 2_000 + spans * rounds * (2 if processor is not None else 1)
    return {
        "emitted": emitted,
        "system": system,
        "span_us": statistics.median(per_span),
        "span_us_rounds": per_span,
        "hooks_us": statistics.median(hooks) if hooks else 0.0,
        "dropped_counted": int(stats.get("spans_dropped", 0)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small run (seconds)")
    parser.add_argument("--child", nargs=4, metavar=("SYSTEM", "URL", "SPANS", "ROUNDS"))
    args = parser.parse_args()
    if args.child:
        system, url, spans, rounds = args.child
        print(json.dumps(child(system, url, int(spans), int(rounds))))
        return 0
    spans, rounds = (10_000, 3) if args.quick else (100_000, 5)
    rows = []
    with Sink() as sink:
        for system in SYSTEMS:
            sink.reset()
            row = run_child(Path(__file__), [system, sink.url, str(spans), str(rounds)])
            # what the sink got tells the losses of both (the stock processor drops silently)
            row["lost"] = 0 if system == "none" else row["emitted"] - sink.received(system)
            rows.append(row)
    base = next(r["span_us"] for r in rows if r["system"] == "none")
    for r in rows:
        r["overhead_us"] = r["span_us"] - base
    stock = next(r for r in rows if r["system"] == STOCK)
    for r in rows:
        r["vs_stock"] = (r["overhead_us"] / stock["overhead_us"]) if stock["overhead_us"] else 0.0
    print_table(
        f"App-thread cost per span ({spans:,} spans x {rounds} rounds, median; µs)",
        rows,
        ["system", "span_us", "overhead_us", "vs_stock", "hooks_us", "emitted", "lost"],
    )
    path = save("app_thread", {"quick": args.quick, "spans": spans, "rounds": rounds, "rows": rows})
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
