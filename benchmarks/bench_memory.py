"""Peak memory with the server down during a big burst: bounded by the queue, not the burst.

Each system runs in a fresh process pointed at a loopback port nobody listens on, emits the
burst as fast as it can, then shuts down (bounded). Two burst sizes show whether peak RSS grows
with the burst. Ours runs with its defaults (queue 20,480 spans; reliable mode spools to disk).

Run: ``python benchmarks/bench_memory.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
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


def child(system: str, spans: int) -> dict[str, object]:
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
    t0 = time.perf_counter()
    if system == STOCK:
        provider.shutdown()
    else:
        processor.shutdown(5_000)
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
        "dropped": int(stats.get("spans_dropped", 0)),
        "spooled_traces": int(after.get("traces_spooled", 0)),
        "spool_mb": spool_mb,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small run (seconds)")
    parser.add_argument("--child", nargs=2, metavar=("SYSTEM", "SPANS"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]))))
        return 0
    bursts = [50_000, 200_000] if args.quick else [250_000, 1_000_000]
    rows = []
    for spans in bursts:
        for system in SYSTEMS:
            rows.append(run_child(Path(__file__), [system, str(spans)], timeout_s=1800))
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
        ],
    )
    path = save("memory", {"quick": args.quick, "bursts": bursts, "rows": rows})
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
