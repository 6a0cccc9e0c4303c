"""Peak memory with the server down during a big burst: bounded by the queue, not the burst.

Each system runs in a fresh process pointed at a loopback port nobody listens on, emits the
burst as fast as it can, then shuts down (bounded). Two burst sizes show whether peak RSS grows
with the burst. Ours runs with its defaults (queue 20,480 spans; reliable mode spools to disk).

The stock shutdown retries for about 30 s with the server down; the run stops waiting at a cap
(3 s quick, 60 s full) and marks the time as a lower bound. Ours gets the cap as its shutdown
timeout.

Run: ``python benchmarks/bench_memory.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    OURS,
    OURS_FF,
    STOCK,
    emit_spans,
    make_provider,
    peak_rss_mb,
    print_table,
    run_child,
    save,
    stats_of,
    unused_port,
)

SYSTEMS = [STOCK, OURS, OURS_FF]


def child(system: str, spans: int, cap_s: float) -> dict[str, object]:
    spool = tempfile.mkdtemp(prefix="bench-spool-")
    url = f"http://127.0.0.1:{unused_port()}"
    provider, processor = make_provider(
        system, url, galileo={"spool_dir": spool, "export_timeout": 5.0}
    )
    tracer = provider.get_tracer("bench")
    emit_spans(tracer, 1_000)
    before = peak_rss_mb()
    took = emit_spans(tracer, spans)
    during = peak_rss_mb()
    stats = stats_of(system, processor)
    # The stock shutdown retries for ~30 s with the server down: stop waiting at a cap.
    done = threading.Event()
    t0 = time.perf_counter()

    def stop() -> None:
        if system == STOCK:
            provider.shutdown()
        else:
            processor.shutdown(int(cap_s * 1000))
        done.set()

    threading.Thread(target=stop, daemon=True).start()
    capped = not done.wait(cap_s + (0.0 if system == STOCK else 2.0))
    shutdown_s = time.perf_counter() - t0
    after = stats_of(system, processor)
    spool_mb = sum(f.stat().st_size for f in Path(spool).rglob("*") if f.is_file()) / 2**20
    shutil.rmtree(spool, ignore_errors=True)
    return {
        "system": system,
        "burst": spans,
        "rss_before_mb": before,
        "rss_peak_mb": max(during, peak_rss_mb()),
        "emit_s": took,
        "shutdown_s": shutdown_s,
        "shutdown_capped": capped,
        "dropped": int(stats.get("spans_dropped", 0)),
        "spooled_traces": int(after.get("traces_spooled", 0)),
        "spool_mb": spool_mb,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small run (seconds)")
    parser.add_argument("--child", nargs=3, metavar=("SYSTEM", "SPANS", "CAP_S"))
    args = parser.parse_args()
    if args.child:
        print(
            json.dumps(child(args.child[0], int(args.child[1]), float(args.child[2]))), flush=True
        )
        os._exit(0)  # a stock exporter thread may still be retrying
    bursts = [25_000, 100_000] if args.quick else [250_000, 1_000_000]
    cap_s = 3.0 if args.quick else 60.0
    rows = []
    for spans in bursts:
        for system in SYSTEMS:
            rows.append(run_child(Path(__file__), [system, str(spans), str(cap_s)], timeout_s=1800))
    print_table(
        "Peak RSS with the server down (connection refused), MiB",
        rows,
        [
            "system",
            "burst",
            "rss_before_mb",
            "rss_peak_mb",
            "dropped",
            "spooled_traces",
            "spool_mb",
            "shutdown_s",
            "shutdown_capped",
        ],
    )
    path = save("memory", {"quick": args.quick, "bursts": bursts, "rows": rows})
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
