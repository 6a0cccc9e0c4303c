"""Instructions per span of each export stage, counted by valgrind: steady where CPU time is not.

``bench_stages.py`` reports CPU time per stage, which on a shared machine moves by 10-30% from
one minute to the next (a bare SDK span has cost anywhere from 12 to 60 µs on this project's
machine). A change that saves 5% cannot be seen through that. This script runs the same stages
under valgrind's ``callgrind`` and counts the instructions each one executes instead: the same
code gives the same count to within a fraction of a percent, whatever else the machine runs.

How: a child process runs ``bench_stages.run_stages`` under ``valgrind --tool=callgrind
--dump-before=getppid`` and calls ``os.getppid()`` right before and right after each stage, so
callgrind writes one count per stage. The child runs twice, with ``--small`` and with
``--traces`` traces; the difference between the two counts of a stage, divided by the spans
between them, is the stage's instructions per span, with everything that does not grow with
the spans (imports, warm-up, first calls) cancelled out. The ``bare_span`` row is the SDK's
own cost of emitting the same spans with no span processor, the yardstick of every other row;
``stock_encode`` is the stock path's work per span (``OTLPSpanExporter``'s protobuf encoding of
the SDK spans, in the ``BatchSpanProcessor``'s batches of 512, without the POST).

The stages are ``bench_stages.py``'s (see its docstring) that work per span: ``record`` (the
app thread's part), then the worker's ``rebuild``, ``assemble``, ``sessions``, ``convert``,
``encode``, ``fit`` and the whole ``worker`` loop (on a thread of its own; its count also holds
a little waiting, so it moves more between runs than the single-threaded rows). The spool and
sender stages work per batch, and at the default sizes every session's one batch closes at
either size, so their per-batch cost cancels out. ``--batches`` runs 2,000 less 1,000 traces
instead (about 6 minutes per workload): each of the 10 sessions then closes ten more full
batches in the larger run, and the table adds ``spool_write``, ``spool_delete``, ``deliver``
(the senders' work: the POST to a sink on 127.0.0.1, the confirmation, the spool delete),
``pipeline`` (the whole in-process reliable export on its threads, end to end) and
``stock_export`` (``OTLPSpanExporter.export`` of the SDK spans in batches of 512: the encoding
and its POST through ``requests`` to the same sink). ``pipeline`` closes some batches on its
timers, which under valgrind fire early, so it moves more between runs than the other rows.
Instructions are not time: a cache miss costs no instruction, and nothing here sees the GIL
hand-offs between an app and the export (``bench_stages.py``'s ``app_*`` rows do). Use this to
compare two versions of the code; use ``bench_compare.py`` for what a user pays.

    python benchmarks/bench_instructions.py --quick              # 3 spans/trace, ~6 minutes
    python benchmarks/bench_instructions.py                      # 3 and 5 spans/trace, ~15 minutes
    python benchmarks/bench_instructions.py --workloads 5 --messages
    python benchmarks/bench_instructions.py --batches --workloads 3   # + per-batch rows, ~6 min

Needs ``valgrind`` on PATH (``apt-get install valgrind``); exits with a message without it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Sink, print_table, save

# The rows reported: the stages whose work grows with the spans. The spool and sender stages
# (and the whole pipeline, which holds them) work per batch, and every session's batch closes at
# the end of a run, so runs small enough for valgrind have as many batches at either size and
# the difference cancels their per-batch cost: bench_stages.py measures them.
_ROWS = (
    "bare_span",
    "stock_encode",
    "record",
    "rebuild",
    "assemble",
    "sessions",
    "convert",
    "convert_sdk",
    "encode",
    "fit",
    "worker",
    "worker_overhead",
)
_WORKER_PARTS = ("rebuild", "assemble", "sessions", "convert", "encode", "fit")
# With --batches: the stages that work per batch, and the stock exporter's whole export. At
# 2,000 less 1,000 traces every one of the 10 sessions closes ten more full 100-trace batches
# in the larger run, so the difference holds their per-batch cost.
_BATCH_ROWS = ("spool_write", "spool_delete", "deliver", "pipeline", "stock_export")


def child(
    traces: int, spans_per_trace: int, messages: bool, labels_path: str, batches: bool
) -> int:
    """Run the stages once with marks between them (under callgrind, by :func:`measure`)."""
    import bench_stages
    from _common import emit_trace
    from opentelemetry.sdk.trace import TracerProvider

    labels: list[str] = []

    def mark(stage: str | None) -> None:
        # callgrind dumps its counters on entry to getppid(): the part that ends here is the
        # stage just run (a name) or what ran between two stages (None).
        labels.append(stage or "-")
        os.getppid()

    spans = bench_stages.make_spans(traces, spans_per_trace, messages)
    bare = TracerProvider(shutdown_on_exit=False)
    tracer = bare.get_tracer("bench")
    for i in range(20):  # warm-up: the SDK's first spans
        emit_trace(tracer, i, spans_per_trace)
    mark(None)
    for i in range(traces):
        emit_trace(tracer, i, spans_per_trace)
    mark("bare_span")
    with Sink() as sink:
        warm = bench_stages.make_spans(20, spans_per_trace, messages)
        bench_stages.run_stages(warm, sink.url, None)  # first calls: imports, caches, sessions
        bench_stages.MARK = mark
        sink.reset()
        bench_stages.run_stages(spans, sink.url, None)
    # Last, so it cannot change what the stages find. The stock path's work per span: what OTLPSpanExporter does to a batch before its POST (the
    # protobuf encoding of the SDK spans), in batches of the BatchSpanProcessor's 512.
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    encode_spans(spans[:20]).SerializePartialToString()  # first call
    mark(None)
    for i in range(0, len(spans), 512):
        encode_spans(spans[i : i + 512]).SerializePartialToString()
    mark("stock_encode")
    if batches:
        # The stock path's whole export: OTLPSpanExporter.export (the encoding and its POST
        # through requests) of the same batches of 512, to the same sink.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        with Sink() as sink:
            exporter = OTLPSpanExporter(endpoint=sink.url + "/v1/traces")
            exporter.export(spans[:20])  # first call: the connection, the first encoding
            mark(None)
            for i in range(0, len(spans), 512):
                exporter.export(spans[i : i + 512])
            mark("stock_export")
            exporter.shutdown()
    mark(None)
    Path(labels_path).write_text(json.dumps(labels))
    return 0


def _counts(out_dir: Path, labels: list[str]) -> dict[str, int]:
    """Instructions per labelled part of one callgrind run (parts ``.1``, ``.2``... in order)."""
    parts = sorted(
        (p for p in out_dir.glob("callgrind.out.*") if p.suffix[1:].isdigit()),
        key=lambda p: int(p.suffix[1:]),
    )
    if len(parts) != len(labels):
        raise RuntimeError(f"callgrind wrote {len(parts)} parts for {len(labels)} marks")
    counts: dict[str, int] = {}
    for label, part in zip(labels, parts, strict=True):
        if label == "-":
            continue
        for line in part.read_text(errors="replace").splitlines():
            if line.startswith("totals:"):
                counts[label] = counts.get(label, 0) + int(line.split()[1])
                break
    return counts


def measure(traces: int, spans_per_trace: int, messages: bool, batches: bool) -> dict[str, int]:
    """Instructions per stage of one child run of ``traces`` traces under callgrind."""
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = Path(tmp)
        labels_path = out_dir / "labels.json"
        cmd = [
            "valgrind",
            "--tool=callgrind",
            "--dump-before=getppid",
            f"--callgrind-out-file={out_dir / 'callgrind.out'}",
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            "--traces",
            str(traces),
            "--workloads",
            str(spans_per_trace),
            "--labels",
            str(labels_path),
        ]
        if messages:
            cmd.append("--messages")
        if batches:
            cmd.append("--batches")
        # The same hash seed in every child: dict and set layouts, and so the counts, repeat.
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0 or not labels_path.exists():
            sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
            raise RuntimeError(f"the callgrind child failed (exit {proc.returncode})")
        return _counts(out_dir, json.loads(labels_path.read_text()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--traces", type=int, default=250, help="traces of the larger run")
    parser.add_argument("--small", type=int, default=50, help="traces of the smaller run")
    parser.add_argument("--workloads", default="3,5", help="spans per trace: 3, 5 or both")
    parser.add_argument("--messages", action="store_true", help="llm/agent spans carry messages")
    parser.add_argument("--quick", action="store_true", help="3 spans/trace, 50 and 200 traces")
    parser.add_argument(
        "--batches",
        action="store_true",
        help="also the per-batch stages and the stock export with its POST (1000 and 2000 traces)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--labels", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.traces, int(args.workloads), args.messages, args.labels, args.batches)
    if args.quick:
        args.workloads, args.small, args.traces = "3", 50, 200
    if args.batches:
        args.small, args.traces = max(args.small, 1000), max(args.traces, 2000)
    if args.traces <= args.small:
        parser.error("--traces must be larger than --small")
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind): nothing measured")
        return 2

    rows: list[dict[str, Any]] = []
    for spans_per_trace in [int(w) for w in args.workloads.split(",")]:
        small = measure(args.small, spans_per_trace, args.messages, args.batches)
        large = measure(args.traces, spans_per_trace, args.messages, args.batches)
        n_spans = (args.traces - args.small) * spans_per_trace
        per_span = {s: (large[s] - small[s]) / n_spans for s in large}
        per_span["fit"] -= per_span["encode"]
        per_span["worker_overhead"] = per_span["worker"] - sum(per_span[s] for s in _WORKER_PARTS)
        per_span = {s: per_span[s] for s in _ROWS + (_BATCH_ROWS if args.batches else ())}
        rows.append({"spans/trace": spans_per_trace, "spans": n_spans, "per_span": per_span})

    columns = ["stage"]
    for r in rows:
        columns += [f"{r['spans/trace']} spans/trace", f"{r['spans/trace']}: vs bare span"]
    table = []
    for stage in _ROWS + (_BATCH_ROWS if args.batches else ()):
        line: dict[str, Any] = {"stage": stage}
        for r in rows:
            n = r["per_span"][stage]
            line[f"{r['spans/trace']} spans/trace"] = round(n / 1000, 1)
            line[f"{r['spans/trace']}: vs bare span"] = round(n / r["per_span"]["bare_span"], 3)
        table.append(line)
    print_table(
        f"Thousands of instructions per span (callgrind), {args.traces} less {args.small} "
        f"traces ({'with' if args.messages else 'no'} messages)",
        table,
        columns,
    )
    save("bench_instructions", {"quick": args.quick, "args": vars(args), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
