"""Side by side, from every way in: galileo-otel vs BatchSpanProcessor + OTLP/HTTP.

For each way in (``configure()`` in the app, and zero-code: ``opentelemetry-instrument`` with env
vars), each trace workload (3 and 5 spans per trace) and each system (stock; ours reliable and
fire-and-forget, in-process and with the export worker process), one fresh app process emits
bursts of traces as fast as its thread can and flushes after each burst. Each burst gives:

- ``app_us``: wall time per span on the app thread while the export runs in the background (on
  CPython the in-process export shares the GIL, so that is app cost too); ``overhead_us`` is that
  minus ``bare_us``, the same burst on a provider with no span processor, run in the same
  process just before (paired in time; the ``none`` row is the check that it is ~0);
- ``spans_per_s``: spans of the burst / (first span started .. flush returned). The flush returns
  when stock has exported everything, reliable mode has every batch confirmed, fire-and-forget
  has every batch answered; the sink (another process) then holds every span (checked: ``lost``);
- ``cpu_us``: CPU time (user + system) per span of the app process, all its threads, and its
  child processes (the export worker), from the first span of a burst to its flush returning.
  Wall times swing with whatever else the machine runs; CPU time hardly does, so on a busy
  machine ``cpu_vs_stock`` is the steadiest comparison (the sink's CPU is not counted);
  ``own_cpu_us`` is that minus the ``none`` row's (the same app with no span processor): what the
  processor and its export cost, whatever the machine's bare span costs;
- ``threads_us``: that CPU per span split by thread (Linux: ``/proc/self/task``): the app thread
  (the span itself included), the export worker thread (ours, or the BatchSpanProcessor's), our
  spooler and senders, other threads, and the export worker process. ``--markdown`` prints it
  as a second table.

The best burst of a process (the fastest: a burst on a shared machine is only ever slowed down
by other work, which is why ``timeit`` reports a minimum), then the median over repeats
(interleaved, full runs only); the JSON keeps every burst and their medians. Public API
only: ``configure()`` and its handle, the tracer provider, env vars; nothing of the pipeline's
internals. ``workers`` counts the app's child processes (1 when the export worker process runs).

Run: ``python benchmarks/bench_compare.py [--quick] [--entries configure,zero-code]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import LOG_STREAM_ID, PROJECT_ID, Sink, emit_trace, print_table, save

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent

CONFIGURE = "configure"
ZERO_CODE = "zero-code"
PROCESSOR = "processor"  # GalileoSessionProcessor added by hand (optional: --entries)
ENTRIES = [CONFIGURE, ZERO_CODE]
# system -> (reliable, export_process); "stock" and "none" are not ours.
OURS_SYSTEMS: dict[str, tuple[bool, bool]] = {
    "ours": (True, False),
    "ours-ff": (False, False),
    "ours-proc": (True, True),
    "ours-proc-ff": (False, True),
}
SYSTEMS = ["none", "stock", *OURS_SYSTEMS]
WORKLOADS = [3, 5]  # spans per trace
FLUSH_TIMEOUT_S = 300


# --- the app (child process) -----------------------------------------------------------------
def _children() -> list[tuple[str, list[str]]]:
    """(pid, fields of /proc/<pid>/stat after the name) of this process's children (Linux)."""
    me = str(os.getpid())
    out = []
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me and fields[0] != "Z":
            out.append((pid, fields))
    return out


def child_processes() -> int:
    """How many live child processes this process has (Linux /proc; 0 elsewhere)."""
    return len(_children())


_TICK_S = 1 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01


def cpu_seconds() -> float:
    """CPU time (user + system) of this process's threads and of its live children.

    Unlike wall time, it hardly moves when other work shares the machine: it says what the app
    and its export cost in CPU, wherever that runs.
    """
    t = os.times()
    total = t.user + t.system
    for _, fields in _children():
        total += (int(fields[11]) + int(fields[12])) * _TICK_S  # utime, stime
    return total


# Thread name -> the column it is counted in (``threads_us``): where the CPU of a burst goes.
_THREAD_GROUPS = (
    ("MainThread", "app"),
    ("galileo-otel-worker", "worker"),
    ("OtelBatchSpanRecordProcessor", "worker"),  # the stock BatchSpanProcessor's thread
    ("OtelBatchSpanProcessor", "worker"),
    ("galileo-otel-spooler", "spooler"),
    ("galileo-otel-sender", "senders"),
)
THREAD_COLUMNS = ("app", "worker", "spooler", "senders", "other", "child")


def thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) so far of this process's live threads, by column, and of its
    live child processes (``child``: the export worker process). Linux; empty elsewhere."""
    import threading

    out = dict.fromkeys(THREAD_COLUMNS, 0.0)
    for thread in threading.enumerate():
        try:
            with open(f"/proc/self/task/{thread.native_id}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        group = next((g for p, g in _THREAD_GROUPS if thread.name.startswith(p)), "other")
        out[group] += (int(fields[11]) + int(fields[12])) * _TICK_S
    for _, fields in _children():
        out["child"] += (int(fields[11]) + int(fields[12])) * _TICK_S
    return out


def _setup(entry: str, system: str, url: str, queue: int) -> tuple[Any, Any, Any]:
    """(tracer provider, flush(timeout_s) -> bool, handle or None) for the app."""
    from opentelemetry import trace

    if entry == ZERO_CODE:
        provider = trace.get_tracer_provider()
        return provider, lambda t: provider.force_flush(int(t * 1000)), None
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider(shutdown_on_exit=False)
    if system == "none":
        return provider, lambda t: True, None
    if system == "stock":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=url + "/v1/traces"), max_queue_size=queue)
        )
        return provider, lambda t: provider.force_flush(int(t * 1000)), None
    import galileo_otel

    reliable, export_process = OURS_SYSTEMS[system]
    settings: dict[str, Any] = {
        "api_url": url,
        "api_key": "bench",
        "project_id": PROJECT_ID,
        "log_stream_id": LOG_STREAM_ID,
        "reliable": reliable,
        "export_process": export_process,
        "max_queue_spans": queue,
        "spool_dir": tempfile.mkdtemp(prefix="bench-spool-"),
    }
    if entry == PROCESSOR:
        processor = galileo_otel.GalileoSessionProcessor(**settings)
        provider.add_span_processor(processor)
        return provider, lambda t: processor.force_flush(int(t * 1000)), processor
    handle = galileo_otel.configure(tracer_provider=provider, **settings)
    return provider, handle.force_flush, handle


def child(
    entry: str, system: str, url: str, spans_per_trace: int, traces: int, bursts: int
) -> dict[str, Any]:
    queue = traces * spans_per_trace + 10_000
    provider, flush, handle = _setup(entry, system, url, queue)
    tracer = provider.get_tracer("bench")
    warm = 200
    for i in range(warm):  # imports, caches, connections, the worker process
        emit_trace(tracer, i, spans_per_trace)
    warm_ok = flush(FLUSH_TIMEOUT_S)
    workers = child_processes()
    # The baseline runs in the same process, just before each burst: the SDK with no span
    # processor at all. Paired in time, a busy spell of the machine hits both alike.
    from opentelemetry.sdk.trace import TracerProvider

    bare = TracerProvider(shutdown_on_exit=False).get_tracer("bare")
    app_us, bare_us, cpu_us, spans_per_s = [], [], [], []
    threads_us: dict[str, list[float]] = {g: [] for g in THREAD_COLUMNS}
    flush_ok = [bool(warm_ok)]
    n = traces * spans_per_trace
    for b in range(bursts):
        start = warm + b * traces
        t0 = time.perf_counter()
        for i in range(start, start + traces):
            emit_trace(bare, i, spans_per_trace)
        bare_us.append((time.perf_counter() - t0) / n * 1e6)
        c0 = cpu_seconds()
        th0 = thread_cpu()
        t0 = time.perf_counter()
        for i in range(start, start + traces):
            emit_trace(tracer, i, spans_per_trace)
        t_emit = time.perf_counter() - t0
        flush_ok.append(bool(flush(FLUSH_TIMEOUT_S)))
        t_flush = time.perf_counter() - t0
        cpu_us.append((cpu_seconds() - c0) / n * 1e6)
        th1 = thread_cpu()
        for g in THREAD_COLUMNS:  # a thread that ended during the burst is not counted
            threads_us[g].append(max(th1[g] - th0[g], 0.0) / n * 1e6)
        app_us.append(t_emit / n * 1e6)
        spans_per_s.append(n / t_flush)
    overhead = [a - b for a, b in zip(app_us, bare_us, strict=True)]
    stats = handle.stats() if handle is not None else {}
    out = {
        "entry": entry,
        "system": system,
        "spans_per_trace": spans_per_trace,
        "emitted": (warm + traces * bursts) * spans_per_trace,
        "app_us": statistics.median(app_us),
        "app_us_bursts": [round(v, 2) for v in app_us],
        "bare_us": statistics.median(bare_us),
        "overhead_us": statistics.median(overhead),
        "overhead_us_bursts": [round(v, 2) for v in overhead],
        # Best of the bursts: on a shared machine a burst is only ever slowed by other work
        # (as timeit takes the minimum); the median is kept too.
        "spans_per_s": max(spans_per_s),
        "spans_per_s_median": statistics.median(spans_per_s),
        "spans_per_s_bursts": [round(v) for v in spans_per_s],
        "cpu_us": statistics.median(cpu_us),
        "cpu_us_bursts": [round(v, 2) for v in cpu_us],
        # Per thread (median over bursts): the app thread's includes the bare span itself.
        "threads_us": {g: round(statistics.median(v), 2) for g, v in threads_us.items()},
        "flush_ok": all(flush_ok),
        "workers": workers,
        "dropped_counted": int(stats.get("spans_dropped", 0)),
    }
    # The result goes out before shutdown: a slow shutdown is not what is measured here.
    print(json.dumps(out), flush=True)
    if entry == PROCESSOR:
        handle.shutdown()
    elif handle is not None:
        handle.shutdown(30)
    elif hasattr(provider, "shutdown"):
        provider.shutdown()
    return out


# --- the driver --------------------------------------------------------------------------------
def _env(entry: str, system: str, url: str, queue: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GALILEO_", "OTEL_"))}
    env.pop("PYTHONPATH", None)
    if entry != ZERO_CODE:
        return env
    env.update(
        OTEL_SERVICE_NAME="bench",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        OTEL_BSP_MAX_QUEUE_SIZE=str(queue),
    )
    if system in ("none", "stock"):
        env.update(
            OTEL_PYTHON_DISTRO="distro",
            OTEL_PYTHON_CONFIGURATOR="configurator",
            OTEL_TRACES_EXPORTER="none" if system == "none" else "otlp",
            OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="http/protobuf",
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=url + "/v1/traces",
        )
        return env
    reliable, export_process = OURS_SYSTEMS[system]
    env.update(
        OTEL_PYTHON_DISTRO="galileo",
        OTEL_PYTHON_CONFIGURATOR="galileo",
        GALILEO_API_URL=url,
        GALILEO_API_KEY="bench",
        GALILEO_PROJECT_ID=PROJECT_ID,
        GALILEO_LOG_STREAM_ID=LOG_STREAM_ID,
        GALILEO_RELIABLE=str(reliable).lower(),
        GALILEO_EXPORT_PROCESS=str(export_process).lower(),
        GALILEO_MAX_QUEUE_SPANS=str(queue),
        GALILEO_SPOOL_DIR=tempfile.mkdtemp(prefix="bench-spool-"),
    )
    return env


def run_one(
    entry: str, system: str, sink: Sink, spt: int, traces: int, bursts: int
) -> dict[str, Any]:
    args = [
        str(Path(__file__)),
        "--child",
        entry,
        system,
        sink.url,
        str(spt),
        str(traces),
        str(bursts),
    ]
    cmd = [sys.executable, *args]
    if entry == ZERO_CODE:
        cmd = [str(BIN / "opentelemetry-instrument"), sys.executable, *args]
    env = _env(entry, system, sink.url, traces * spt + 10_000)
    sink.reset()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"{entry}/{system} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    row: dict[str, Any] = json.loads(lines[-1])
    if proc.returncode != 0:
        row["exit"] = proc.returncode
    if system != "none":
        got = sink.wait_received(system, row["emitted"], 30)  # "stock" counts OTLP spans
        row["lost"] = row["emitted"] - got
    return row


def _median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    rows = sorted(rows, key=lambda r: float(r["spans_per_s"]))
    row = dict(rows[len(rows) // 2])
    row["app_us"] = statistics.median(r["app_us"] for r in rows)
    row["bare_us"] = statistics.median(r["bare_us"] for r in rows)
    row["overhead_us"] = statistics.median(r["overhead_us"] for r in rows)
    row["cpu_us"] = statistics.median(r["cpu_us"] for r in rows)
    row["lost"] = max(r.get("lost", 0) for r in rows)
    row["threads_us"] = {
        g: statistics.median(r["threads_us"][g] for r in rows) for g in THREAD_COLUMNS
    }
    row["flush_ok"] = all(r["flush_ok"] for r in rows)
    row["repeats"] = len(rows)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="scaled down: about 2 minutes")
    parser.add_argument(
        "--entries", default=",".join(ENTRIES), help="configure,zero-code[,processor]"
    )
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--workloads", default="3,5", help="spans per trace")
    parser.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    parser.add_argument(
        "--child", nargs=6, metavar=("ENTRY", "SYSTEM", "URL", "SPT", "TRACES", "BURSTS")
    )
    args = parser.parse_args()
    if args.child:
        entry, system, url, spt, traces, bursts = args.child
        child(entry, system, url, int(spt), int(traces), int(bursts))
        return 0
    entries = args.entries.split(",")
    systems = args.systems.split(",")
    workloads = [int(w) for w in args.workloads.split(",")]
    # The same number of traces for both workloads: 9k or 15k spans a burst (quick), 30k or 50k.
    traces, bursts, repeats = (3_000, 5, 1) if args.quick else (10_000, 5, 3)
    runs: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    t0 = time.perf_counter()
    with Sink() as sink:
        for _ in range(repeats):  # interleaved: a busy spell hits every system alike
            for entry in entries:
                for spt in workloads:
                    for system in systems:
                        row = run_one(entry, system, sink, spt, traces, bursts)
                        runs.setdefault((entry, spt, system), []).append(row)
                        print(
                            f"  {entry:<9} {spt} spans/trace  {system:<12} "
                            f"{row['spans_per_s']:>9,.0f} spans/s  {row['app_us']:6.2f} µs/span"
                            f"  lost {row.get('lost', '-')}",
                            flush=True,
                        )
    rows = [_median_row(r) for r in runs.values()]
    by_key = {(r["entry"], r["spans_per_trace"], r["system"]): r for r in rows}
    for row in rows:
        none = by_key.get((row["entry"], row["spans_per_trace"], "none"))
        if none is not None:
            # Own CPU: the process's CPU per span minus the same app's with no processor at all.
            row["own_cpu_us"] = row["cpu_us"] - none["cpu_us"]
    for row in rows:
        if row["system"] == "none":
            row.pop("spans_per_s")  # the bare emission rate: nothing is exported
            row.pop("own_cpu_us", None)
            continue
        stock = by_key.get((row["entry"], row["spans_per_trace"], "stock"))
        if stock is None:
            continue
        row["tput_vs_stock"] = row["spans_per_s"] / stock["spans_per_s"]
        row["cpu_vs_stock"] = row["cpu_us"] / stock["cpu_us"]
        row["app_vs_stock"] = (
            row["overhead_us"] / stock["overhead_us"] if stock["overhead_us"] > 0 else float("nan")
        )
        if "own_cpu_us" in row and stock.get("own_cpu_us", 0) > 0:
            row["own_cpu_vs_stock"] = row["own_cpu_us"] / stock["own_cpu_us"]
    columns = [
        "entry",
        "spans_per_trace",
        "system",
        "workers",
        "spans_per_s",
        "tput_vs_stock",
        "bare_us",
        "app_us",
        "overhead_us",
        "app_vs_stock",
        "cpu_us",
        "cpu_vs_stock",
        "own_cpu_us",
        "own_cpu_vs_stock",
        "lost",
        "flush_ok",
    ]
    size = traces * bursts
    print_table(
        f"From every way in: {traces:,} traces x {bursts} bursts per process, "
        f"{repeats} repeat(s), best burst ({time.perf_counter() - t0:.0f} s)",
        rows,
        columns,
    )
    path = save(
        "compare",
        {
            "quick": args.quick,
            "traces_per_burst": traces,
            "bursts": bursts,
            "traces": size,
            "repeats": repeats,
            "rows": rows,
        },
    )
    print(f"\nwrote {path}")
    if args.markdown:
        print()
        print(markdown_table(rows))
        print()
        print(markdown_threads(rows))
    return 0


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The rows as the Markdown table of benchmarks/README.md and README.md."""

    def num(v: Any, fmt: str) -> str:
        return "" if v is None else format(v, fmt)

    lines = [
        "| way in | spans/trace | system | spans/s | vs stock | overhead µs/span | vs stock "
        "| CPU µs/span | own CPU µs/span | vs stock | lost | flush |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        system = "none (check)" if r["system"] == "none" else r["system"]
        lines.append(
            f"| {r['entry']} | {r['spans_per_trace']} | {system} "
            f"| {num(r.get('spans_per_s'), ',.0f')} | {num(r.get('tput_vs_stock'), '.2f')}"
            f"{'x' if r.get('tput_vs_stock') is not None else ''} "
            f"| {r['overhead_us']:.1f} | {num(r.get('app_vs_stock'), '.2f')}"
            f"{'x' if r.get('app_vs_stock') is not None else ''} "
            f"| {r['cpu_us']:.1f} | {num(r.get('own_cpu_us'), '.1f')} "
            f"| {num(r.get('own_cpu_vs_stock'), '.2f')}"
            f"{'x' if r.get('own_cpu_vs_stock') is not None else ''} "
            f"| {r.get('lost', '')} | {'ok' if r.get('flush_ok') else 'FALSE'} |"
        )
    return "\n".join(lines)


def markdown_threads(rows: list[dict[str, Any]]) -> str:
    """Where each row's CPU went, µs per span by thread (the app thread's holds the span itself)."""
    lines = [
        "| way in | spans/trace | system | bare span µs | app thread | export worker "
        "| spooler | senders | other threads | worker process |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t = r["threads_us"]
        lines.append(
            f"| {r['entry']} | {r['spans_per_trace']} | {r['system']} | {r['bare_us']:.1f} "
            + " ".join(f"| {t[g]:.1f}" for g in THREAD_COLUMNS)
            + " |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
