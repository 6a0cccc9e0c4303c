"""End-to-end throughput of a span burst with nothing dropped: ours vs BatchSpanProcessor + OTLP.

Each system gets a queue big enough for the whole burst, emits it as fast as the app thread can,
flushes, and the clock stops when the sink (another process) has received every span. Spans/s =
burst / (first span .. last span received). Reliable mode counts only confirmed batches.

Run: ``python benchmarks/bench_throughput.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    OURS,
    OURS_FF,
    OURS_PROC,
    STOCK,
    Sink,
    emit_spans,
    make_provider,
    print_table,
    run_child,
    save,
    stats_of,
)

SYSTEMS = [STOCK, OURS, OURS_FF, OURS_PROC]


def child(system: str, url: str, spans: int) -> dict[str, object]:
    spool = tempfile.mkdtemp(prefix="bench-spool-")
    provider, processor = make_provider(
        system, url, max_queue_size=spans + 10_000, galileo={"spool_dir": spool}
    )
    tracer = provider.get_tracer("bench")
    t0 = time.perf_counter()
    emitted_s = emit_spans(tracer, spans)
    # Stock: exports the whole queue synchronously. Ours: waits for every answer.
    flushed = processor.force_flush(600_000)
    t_flush = time.perf_counter() - t0
    stats = stats_of(system, processor)
    return {
        "system": system,
        "emit_s": emitted_s,
        "flush_returned_s": t_flush,
        "flush_ok": bool(flushed),
        "t0_wall": time.time() - t_flush,
        "dropped": int(stats.get("spans_dropped", 0)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small run (seconds)")
    parser.add_argument("--child", nargs=3, metavar=("SYSTEM", "URL", "SPANS"))
    args = parser.parse_args()
    if args.child:
        system, url, spans = args.child
        print(json.dumps(child(system, url, int(spans))))
        return 0
    spans, repeats = (20_000, 2) if args.quick else (100_000, 3)
    runs: dict[str, list[dict[str, Any]]] = {system: [] for system in SYSTEMS}
    with Sink() as sink:
        # Interleaved repeats, median kept: the machine may be busy with other work.
        for _ in range(repeats):
            for system in SYSTEMS:
                sink.reset()
                out = run_child(Path(__file__), [system, sink.url, str(spans)])
                received = sink.wait_received(system, spans, timeout_s=60)
                # The child reports when its flush returned; the sink had everything by then.
                elapsed = out["flush_returned_s"]
                out.update(
                    received=received,
                    lost=spans - received,
                    spans_per_s=spans / elapsed if received >= spans else 0.0,
                )
                runs[system].append(out)
    rows = []
    for results in runs.values():
        results.sort(key=lambda r: r["spans_per_s"])
        row = dict(results[len(results) // 2])
        row["all_spans_per_s"] = [round(r["spans_per_s"]) for r in results]
        rows.append(row)
    stock = next(r for r in rows if r["system"] == STOCK)
    for r in rows:
        r["vs_stock"] = r["spans_per_s"] / stock["spans_per_s"] if stock["spans_per_s"] else 0.0
    print_table(
        f"End-to-end throughput, {spans:,}-span burst (5 spans/trace), median of {repeats}",
        rows,
        [
            "system",
            "emit_s",
            "flush_returned_s",
            "received",
            "lost",
            "spans_per_s",
            "vs_stock",
            "all_spans_per_s",
        ],
    )
    path = save(
        "throughput", {"quick": args.quick, "spans": spans, "repeats": repeats, "rows": rows}
    )
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
