"""Spans lost under three outages: ours (reliable and fire-and-forget) vs BatchSpanProcessor + OTLP.

Scenarios (full size; ``--quick`` scales them down):

- ``503``: 1,000 spans/s for 30 s; the server answers 503 from 10 s to 20 s.
- ``slow``: a 100k-span burst while the server takes 5 s to answer each request.
- ``down``: nothing listens (connection refused) while 30k spans are emitted; then shutdown,
  whose duration is measured.

The app runs in a fresh process per (scenario, system) and ends with a shutdown (SDK defaults;
ours: ``export_timeout``, 30 s). Reliable mode keeps what it could not deliver in its spool; a
second process then starts with the outage over, as an app's next start would, and sends it.
Lost = spans emitted - distinct spans the sink received in the end.

Run: ``python benchmarks/bench_outages.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    OURS,
    OURS_FF,
    SPANS_PER_TRACE,
    STOCK,
    Sink,
    emit_at_rate,
    emit_spans,
    make_provider,
    print_table,
    run_child,
    save,
    stats_of,
    unused_port,
)

SYSTEMS = [STOCK, OURS, OURS_FF]
FULL = {
    "rate": 1_000,
    "run_s": 30.0,
    "bad_from": 10.0,
    "bad_to": 20.0,
    "slow_burst": 100_000,
    "slow_s": 5.0,
    "down_spans": 30_000,
    "shutdown_cap_s": 120.0,
}
QUICK = {
    "rate": 1_000,
    "run_s": 4.5,
    "bad_from": 1.5,
    "bad_to": 3.0,
    "slow_burst": 10_000,
    "slow_s": 1.0,
    "down_spans": 3_000,
    "shutdown_cap_s": 4.0,
}


def child_produce(
    scenario: str, system: str, url: str, spool: str, size: dict[str, Any]
) -> dict[str, Any]:
    provider, processor = make_provider(system, url, galileo={"spool_dir": spool})
    tracer = provider.get_tracer("bench")
    t0 = time.perf_counter()
    if scenario == "503":
        emitted = emit_at_rate(tracer, size["rate"], size["run_s"])
    elif scenario == "slow":
        emitted = size["slow_burst"]
        emit_spans(tracer, emitted)
    else:
        emitted = size["down_spans"]
        emit_spans(tracer, emitted)
    emit_s = time.perf_counter() - t0
    stats = stats_of(system, processor)
    # Shutdown as the app would at exit, timed; a stock shutdown can take minutes, so the
    # quick run stops waiting at a cap and reports it as a lower bound.
    done = threading.Event()
    took: dict[str, float] = {}

    def stop() -> None:
        s0 = time.perf_counter()
        if system == STOCK:
            provider.shutdown()  # no timeout parameter
        else:
            processor.shutdown(int(min(size["shutdown_cap_s"], 30.0) * 1000))
        took["s"] = time.perf_counter() - s0
        done.set()

    threading.Thread(target=stop, daemon=True).start()
    # ours gets the cap as its shutdown timeout, and returns within it (plus a margin here)
    capped = not done.wait(size["shutdown_cap_s"] + (0.0 if system == STOCK else 2.0))
    after = stats_of(system, processor) if system != STOCK else {}
    if system != STOCK:
        stats = after
    out = {
        "emitted": emitted,
        "emit_s": emit_s,
        "shutdown_s": took.get("s", size["shutdown_cap_s"]),
        "shutdown_capped": capped,
        "dropped": int(stats.get("spans_dropped", 0)),
        "failed_traces": int(stats.get("traces_failed", 0)),
        # reliable: batches left in the spool; fire-and-forget: requests still unanswered
        "pending_traces": int(after.get("traces_pending", 0)),
    }
    print(json.dumps(out), flush=True)
    os._exit(0)  # do not wait for a stuck exporter thread


def child_drain(url: str, spool: str) -> dict[str, Any]:
    """The app's next start: a new pipeline sends what the spool holds, then shuts down."""
    _provider, processor = make_provider(OURS, url, galileo={"spool_dir": spool})
    t0 = time.perf_counter()
    # The flush covers the backlog the new process adopted from the spool.
    processor.force_flush(120_000)
    drain_s = time.perf_counter() - t0
    processor.shutdown(10_000)
    return {"drain_s": drain_s, "confirmed_traces": processor.stats()["traces_confirmed"]}


def run_case(scenario: str, system: str, sink: Sink, size: dict[str, Any]) -> dict[str, Any]:
    sink.reset()
    spool = tempfile.mkdtemp(prefix="bench-spool-")
    url = sink.url
    if scenario == "down":
        url = f"http://127.0.0.1:{unused_port()}"
    elif scenario == "slow":
        sink.fault(mode="ok", latency_s=size["slow_s"])
    args = ["produce", scenario, system, url, spool, json.dumps(size)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GALILEO_", "OTEL_"))}
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", *args], stdout=subprocess.PIPE, text=True, env=env
    )
    if scenario == "503":
        time.sleep(size["bad_from"])
        sink.fault(mode="error", status=503)
        time.sleep(size["bad_to"] - size["bad_from"])
        sink.fault(mode="ok")
    out_text, _ = proc.communicate(timeout=1800)
    row: dict[str, Any] = {"scenario": scenario, "system": system}
    row.update(json.loads(out_text.strip().splitlines()[-1]))
    sink.fault(mode="ok")  # the outage is over
    row["received_first_run"] = sink.received(system)
    if system == OURS:
        row.update(run_child(Path(__file__), ["drain", sink.url, spool]))
    received = sink.wait_received(system, row["emitted"], timeout_s=2.0)
    row["received"] = received
    row["lost"] = row["emitted"] - received
    row["lost_pct"] = 100.0 * row["lost"] / row["emitted"] if row["emitted"] else 0.0
    if system == OURS_FF:
        # lost spans not in a counter (dropped or failed); requests still unanswered at exit
        # (pending_traces) may or may not have reached the server, so they are shown apart
        counted = row["dropped"] + SPANS_PER_TRACE * row["failed_traces"]
        row["uncounted"] = row["lost"] - counted
    shutil.rmtree(spool, ignore_errors=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small run (under a minute)")
    parser.add_argument("--only", choices=["503", "slow", "down"], action="append")
    parser.add_argument("--child", nargs="+")
    args = parser.parse_args()
    if args.child:
        if args.child[0] == "produce":
            _, scenario, system, url, spool, size = args.child
            child_produce(scenario, system, url, spool, json.loads(size))
        else:
            print(json.dumps(child_drain(args.child[1], args.child[2])))
        return 0
    size = QUICK if args.quick else FULL
    rows = []
    with Sink() as sink:
        for scenario in args.only or ["503", "slow", "down"]:
            for system in SYSTEMS:
                rows.append(run_case(scenario, system, sink, size))
    print_table(
        "Spans lost under outages (reliable mode resends its spool at the next start)",
        rows,
        [
            "scenario",
            "system",
            "emitted",
            "received_first_run",
            "received",
            "lost",
            "lost_pct",
            "dropped",
            "failed_traces",
            "pending_traces",
            "uncounted",
            "shutdown_s",
            "shutdown_capped",
        ],
    )
    path = save("outages", {"quick": args.quick, "size": size, "rows": rows})
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
