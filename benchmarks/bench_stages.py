"""CPU cost per span of each export stage, in isolation: where the export work goes.

Feeds N ended spans of the ``bench_compare`` workloads (3 or 5 spans per trace, GenAI attributes,
10 sessions; ``--messages`` adds ``gen_ai.input/output.messages`` JSON to the llm and agent spans)
through each stage of the export pipeline on one thread, and reports the CPU time
(``time.process_time``, all threads of this process) per span of:

- ``record``: ``span_record`` of every span (what ``on_end`` does on the app thread: the span read
  into a tuple of builtins; app-thread work, not the worker's, so not in ``stages_sum``);
- ``rebuild``: the span the worker's stages read, rebuilt from each record (``OffloadedSpan``,
  what ``SpanHandoff.worker_rebuild``'s function makes of a queued record);
- ``assemble``: ``TraceAssembler.add`` for every rebuilt span (spans -> traces);
- ``sessions``: ``SessionTracker.session_for_trace`` for every trace of rebuilt spans (memory
  store);
- ``convert``: ``convert_trace`` for every trace of rebuilt spans (-> Galileo trace dicts);
- ``convert_sdk``: the same over traces of the SDK spans themselves (not what the worker reads:
  SDK spans read slower; not in ``stages_sum``);
- ``encode``: ``encode_trace`` of every converted trace (orjson when installed);
- ``fit``: ``encode_within`` (the size check around the encoding) less ``encode``;
- ``worker``: the pipeline's whole worker loop (the ``Batcher``'s thread: drain, rebuild, the
  stages above, session stamping, batching, batch headers, closing the batches) over the same
  spans, queued as records by ``submit`` (untimed); ``worker_overhead`` is ``worker`` less the
  sum of ``rebuild`` and the stages above;
- ``spool_write`` / ``spool_delete``: writing every closed batch to a SQLite spool in a temp dir,
  then deleting it (what a confirmed batch costs the spool);
- ``deliver``: the sender's work for every batch (session id, body splice, the client's POST over
  HTTP to the benchmark sink on 127.0.0.1, the confirmation and spool delete), this process's CPU
  only (the sink runs in its own process);
- ``pipeline``: an ``ExportPipeline`` in reliable mode with its spool, end to end, every span
  submitted then ``force_flush()``: the export work of one process as the app pays for it.
- ``app_*`` (POSIX): the same traces emitted by the app thread through a ``TracerProvider``
  with ``GalileoSessionProcessor`` (reliable, spool in a temp dir), then ``force_flush()``, with
  each thread's CPU clock read (``time.pthread_getcpuclockid``): ``app_thread`` (the app's own thread; its
  ``app_bare`` is the same burst on a provider without a processor), ``app_worker``,
  ``app_spooler``, ``app_senders`` and their sum ``app_export``. This is ``bench_compare``'s
  setup, split by thread.

Numbers are the minimum over ``--repeat`` runs (a run is only ever slowed down by other work).
Each isolated stage runs over every trace before the next starts, so ``encode`` (and ``fit``)
read traces that left the CPU cache long ago; inside the worker a trace is encoded right after
its conversion, which is why ``worker_overhead`` can come out negative. ``worker`` and
``pipeline`` are the numbers that count.
``--profile STAGE`` prints the top functions of one stage under cProfile instead (the first
run is the profiled one). Before Python 3.12 cProfile sees only the thread that enables it, so
there the worker stage's profiler is enabled by the worker thread itself.

Run: ``python benchmarks/bench_stages.py [--traces 4000] [--workloads 3,5] [--messages]``.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import pstats
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import LOG_STREAM_ID, PROJECT_ID, Sink, emit_trace, print_table, save
from opentelemetry.sdk.trace import SpanProcessor

STAGES = [
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
    "spool_write",
    "spool_delete",
    "deliver",
    "pipeline",
]
# Set by bench_instructions.py in its child: called with None right before a stage and with
# the stage's name right after it, so an instruction counter can cut the run at the marks.
MARK: Callable[[str | None], None] | None = None
# Beside a running app (per-thread CPU clocks: POSIX only).
IN_APP = ["app_bare", "app_thread", "app_worker", "app_spooler", "app_senders", "app_export"]

_MESSAGES_IN = json.dumps(
    [
        {"role": "system", "parts": [{"type": "text", "content": "You are a support agent."}]},
        {
            "role": "user",
            "parts": [{"type": "text", "content": "My order 1234 has not arrived, what now?"}],
        },
    ]
)
_MESSAGES_OUT = json.dumps(
    [
        {
            "role": "assistant",
            "parts": [
                {
                    "type": "text",
                    "content": "I am sorry to hear that. Let me look up order 1234 for you.",
                }
            ],
            "finish_reason": "stop",
        }
    ]
)


class _Collect(SpanProcessor):
    """A span processor that keeps every ended span (and stamps sessions as ours does)."""

    def __init__(self, messages: bool) -> None:
        from galileo_otel.sessions.context import capture_keys

        self.spans: list[Any] = []
        self._capture = capture_keys
        self._messages = messages

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self._capture(span, parent_context)
        if self._messages and span.attributes.get("gen_ai.operation.name") in (
            "chat",
            "invoke_agent",
        ):
            span.set_attributes(
                {"gen_ai.input.messages": _MESSAGES_IN, "gen_ai.output.messages": _MESSAGES_OUT}
            )

    def on_end(self, span: Any) -> None:
        self.spans.append(span)


def make_spans(n_traces: int, spans_per_trace: int, messages: bool) -> list[Any]:
    """Ended SDK spans of ``n_traces`` workload traces, in the order they ended."""
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider(shutdown_on_exit=False)
    collect = _Collect(messages)
    provider.add_span_processor(collect)
    tracer = provider.get_tracer("bench")
    for i in range(n_traces):
        emit_trace(tracer, i, spans_per_trace)
    return collect.spans


def _settings(url: str = "http://127.0.0.1:9") -> Any:
    from galileo_otel.settings import GalileoSettings

    return GalileoSettings(
        api_key="bench", api_url=url, project_id=PROJECT_ID, log_stream_id=LOG_STREAM_ID
    )


def _cpu(fn: Callable[[], Any]) -> tuple[float, Any]:
    gc.collect()
    t0 = time.process_time()
    out = fn()
    return time.process_time() - t0, out


def run_stages(spans: list[Any], url: str, profile: str | None) -> dict[str, float]:
    """CPU seconds of each stage over ``spans`` (one run)."""
    from galileo_otel.export._stage import Flush
    from galileo_otel.export.assemble import TraceAssembler
    from galileo_otel.export.batcher import encode_trace
    from galileo_otel.export.config import DEFAULT_FIRST_DELAY_S
    from galileo_otel.export.convert import ConvertStats, convert_trace
    from galileo_otel.export.fit import encode_within
    from galileo_otel.export.pipeline import ExportPipeline
    from galileo_otel.export.record import Rebuilder, make_resource
    from galileo_otel.export.sdk_span import span_attributes, span_record
    from galileo_otel.export.spool import Spool
    from galileo_otel.sessions.tracker import SessionTracker

    settings = _settings(url)
    max_payload = int(settings.batch_max_bytes) - 1024
    out: dict[str, float] = {}
    # CPU time, not wall: the sender stage waits on the sink, which is not our cost.
    prof = cProfile.Profile(time.process_time) if profile else None

    # Before 3.12 the worker stage's profiler is enabled by the worker thread (worker_loop);
    # from 3.12 cProfile (sys.monitoring) sees every thread once enabled here.
    in_worker = profile == "worker" and sys.version_info < (3, 12)

    def timed(stage: str, fn: Callable[[], Any]) -> Any:
        if MARK is not None:  # bench_instructions.py counts instructions between the marks
            gc.collect()
            # The spans, records and traces this benchmark keeps (twice as many in the larger
            # run) out of the collector's reach: its passes over them are not the stage's cost.
            gc.freeze()
            MARK(None)
            result = fn()
            MARK(stage)
            gc.unfreeze()
            out[stage] = 0.0
            return result
        if prof is not None and stage == profile and not in_worker:
            prof.enable()
        seconds, result = _cpu(fn)
        if prof is not None and stage == profile:
            prof.disable()
        out[stage] = seconds
        return result

    # What the app thread pays in on_end to read an ended span into a record (handoff.py), and
    # what the worker pays to rebuild the span its stages read from that record (record.py).
    records = timed("record", lambda: [span_record(s, 1) for s in spans])
    resource = make_resource(dict(getattr(spans[0].resource, "attributes", {}) or {}))
    span_of = Rebuilder({1: resource}).span_of
    rebuilt = timed("rebuild", lambda: [span_of(r) for r in records])

    def assemble(these: list[Any]) -> list[Any]:
        assembler = TraceAssembler(
            max_spans_per_trace=1000, max_open_traces=10_000, trace_timeout_ns=10**12
        )
        done: list[Any] = []
        for span in these:
            done.extend(assembler.add(span))
        return done

    # The stages below read what the worker reads: the spans rebuilt from records.
    traces = timed("assemble", lambda: assemble(rebuilt))

    tracker = SessionTracker()

    def sessions() -> None:
        for trace in traces:
            root = trace.root
            tracker.session_for_trace(
                span_attributes(root), root.start_time, root.end_time, root_name=root.name
            )

    timed("sessions", sessions)
    stats = ConvertStats()
    converted = timed("convert", lambda: [convert_trace(t, stats) for t in traces])
    # The same conversion of the SDK spans themselves (what a caller of convert_trace with
    # SDK spans pays; the worker never does): apart from the rest, not in stages_sum.
    sdk_traces = assemble(spans)
    timed("convert_sdk", lambda: [convert_trace(t, ConvertStats()) for t in sdk_traces])
    timed("encode", lambda: [encode_trace(d) for d in converted])
    timed("fit", lambda: [encode_within(d, max_payload, encode_trace, stats) for d in converted])
    out["fit"] -= out["encode"]

    # The worker loop over the same spans, queued as the app's submit() queues them (records):
    # everything from the queue to closed batches, the rebuild included.
    roomy = settings.model_copy(update={"max_queue_spans": len(spans) + 10})
    pipeline = ExportPipeline(roomy, start=False, spool=False, shutdown_at_exit=False)
    for span in spans:
        if not pipeline.submit(span):
            raise RuntimeError("the worker stage's queue refused a span")
    queue = pipeline.worker_queue()
    if not all(type(item) is tuple for item in queue):
        raise RuntimeError("the worker stage's queue holds spans, not records")
    queue.append(Flush(final=False))  # closes the open batches once every span is in one
    ledger, batcher = pipeline.ledger, pipeline.batcher
    ledger.stop_event.set()  # the worker drains the queue, then returns
    batcher.assembler()
    pipeline.session_tracker()

    def worker_loop() -> None:
        if in_worker:
            assert prof is not None
            prof.enable()  # cProfile before 3.12: only the thread that enables it is seen
        batcher.run()

    def worker() -> None:
        thread = threading.Thread(target=worker_loop, name="galileo-otel-worker")
        thread.start()
        thread.join()

    timed("worker", worker)
    batches = [b for b in ledger.leftovers()[0] if hasattr(b, "payload")]
    out["worker_overhead"] = out["worker"] - sum(
        out[s] for s in ("rebuild", "assemble", "sessions", "convert", "encode", "fit")
    )
    ledger.stop_event.clear()
    pipeline.shutdown(0)

    with tempfile.TemporaryDirectory() as tmp:
        spool = Spool(tmp)
        entries = timed(
            "spool_write", lambda: [spool.write(b.header.encode(), b.payload) for b in batches]
        )
        timed("spool_delete", lambda: [e.delete() for e in entries])
        spool.close()

    # The senders' work, batch after batch on this thread, against the sink.
    with tempfile.TemporaryDirectory() as tmp:
        spool = Spool(tmp)
        sender = ExportPipeline(settings, start=False, spool=spool, shutdown_at_exit=False)
        sender.session_tracker()
        sender.sink.prepare()  # type: ignore[attr-defined]
        pool = sender.senders
        for b in batches:  # the sessions exist already: a first send creates them, not timed
            b.record.galileo_id = b.record.galileo_id or b.record.local_id
        outs = []
        for i, b in enumerate(batches):
            o = type(b)(seq=i, header=b.header, payload=b.payload, record=b.record)
            o.entry = spool.write(b.header.encode(), b.payload)
            outs.append(o)

        def deliver() -> None:
            for o in outs:
                pool.deliver_now(o)

        timed("deliver", deliver)
        sender.shutdown(0)

    # The whole in-process pipeline, reliable with a spool, as the app runs it.
    with tempfile.TemporaryDirectory() as tmp:
        paced = settings
        if MARK is not None:
            # Counted by callgrind, which runs the code ~50x slower than the clock its timers
            # read: batches close when full (100 traces), not on the clock, so the count repeats.
            paced = settings.model_copy(update={"batch_delay": 3600.0})
        full = ExportPipeline(
            paced,
            start=False,
            spool=Spool(tmp),
            shutdown_at_exit=False,
            first_delay_s=3600.0 if MARK is not None else DEFAULT_FIRST_DELAY_S,
        )
        full.start()

        def whole() -> None:
            for span in spans:
                full.submit(span)
            if not full.force_flush(120):
                raise RuntimeError("pipeline flush failed")

        timed("pipeline", whole)
        full.shutdown(10)

    if prof is not None:
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
    return out


class _Stamp(SpanProcessor):
    """Adds the ``--messages`` attributes (runs before our processor)."""

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        if span.attributes.get("gen_ai.operation.name") in ("chat", "invoke_agent"):
            span.set_attributes(
                {"gen_ai.input.messages": _MESSAGES_IN, "gen_ai.output.messages": _MESSAGES_OUT}
            )


def _thread_cpu() -> dict[str, float]:
    """CPU seconds of each live thread of this process, by thread name (senders summed)."""

    out: dict[str, float] = {}
    for thread in threading.enumerate():
        if thread.ident is None:
            continue
        try:
            seconds = time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
        except (OSError, ProcessLookupError):  # ended meanwhile
            continue
        name = thread.name
        if name.startswith("galileo-otel-sender"):
            name = "galileo-otel-sender"
        out[name] = out.get(name, 0.0) + seconds
    return out


def run_in_app(n_traces: int, spans_per_trace: int, messages: bool, url: str) -> dict[str, float]:
    """CPU seconds by thread of bursts emitted through our processor (empty off Linux)."""
    from opentelemetry.sdk.trace import TracerProvider

    from galileo_otel.processor import GalileoSessionProcessor

    if not hasattr(time, "pthread_getcpuclockid"):
        return {}
    main = threading.main_thread().name
    bare = TracerProvider(shutdown_on_exit=False)
    if messages:
        bare.add_span_processor(_Stamp())
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        provider = TracerProvider(shutdown_on_exit=False)
        if messages:
            provider.add_span_processor(_Stamp())
        processor = GalileoSessionProcessor(
            api_key="bench",
            api_url=url,
            project_id=PROJECT_ID,
            log_stream_id=LOG_STREAM_ID,
            reliable=True,
            spool_dir=tmp,
            max_queue_spans=n_traces * spans_per_trace + 10_000,
        )
        provider.add_span_processor(processor)
        tracer, bare_tracer = provider.get_tracer("bench"), bare.get_tracer("bench")
        for i in range(200):  # warm-up: imports, sessions created, connections open
            emit_trace(tracer, i, spans_per_trace)
        processor.force_flush()
        gc.collect()
        t0 = _thread_cpu()
        for i in range(n_traces):
            emit_trace(bare_tracer, i, spans_per_trace)
        t1 = _thread_cpu()
        for i in range(n_traces):
            emit_trace(tracer, i, spans_per_trace)
        if not processor.force_flush(120_000):
            raise RuntimeError("processor flush failed")
        t2 = _thread_cpu()
        provider.shutdown()

    def used(name: str, a: dict[str, float], b: dict[str, float]) -> float:
        return b.get(name, 0.0) - a.get(name, 0.0)

    out["app_bare"] = used(main, t0, t1)
    out["app_thread"] = used(main, t1, t2)
    out["app_worker"] = used("galileo-otel-worker", t1, t2)
    out["app_spooler"] = used("galileo-otel-spooler", t1, t2)
    out["app_senders"] = used("galileo-otel-sender", t1, t2)
    out["app_export"] = out["app_worker"] + out["app_spooler"] + out["app_senders"]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--traces", type=int, default=4000)
    parser.add_argument("--workloads", default="3,5", help="spans per trace: 3, 5 or both")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--messages", action="store_true", help="llm/agent spans carry messages")
    parser.add_argument("--profile", choices=STAGES, help="cProfile one stage, print its top")
    parser.add_argument("--quick", action="store_true", help="1,000 traces, one run")
    args = parser.parse_args()
    if args.quick:
        args.traces, args.repeat = 1000, 1

    rows: list[dict[str, Any]] = []
    with Sink() as sink:
        for spans_per_trace in [int(w) for w in args.workloads.split(",")]:
            best: dict[str, float] = {}
            n_spans = 0
            for r in range(args.repeat):
                sink.reset()
                spans = make_spans(args.traces, spans_per_trace, args.messages)
                n_spans = len(spans)
                got = run_stages(spans, sink.url, args.profile if r == 0 else None)
                sink.reset()
                got.update(run_in_app(args.traces, spans_per_trace, args.messages, sink.url))
                for stage, seconds in got.items():
                    best[stage] = min(best.get(stage, seconds), seconds)
            row: dict[str, Any] = {
                "spans/trace": spans_per_trace,
                "messages": args.messages,
                "spans": n_spans,
            }
            row.update({f"{s}_us": round(best[s] / n_spans * 1e6, 2) for s in STAGES})
            row.update({f"{s}_us": round(best[s] / n_spans * 1e6, 2) for s in IN_APP if s in best})
            row["stages_sum_us"] = round(
                sum(
                    best[s]
                    for s in STAGES
                    if s not in ("record", "convert_sdk", "worker", "pipeline")
                )
                / n_spans
                * 1e6,
                2,
            )
            rows.append(row)
    columns = ["stage"] + [f"{r['spans/trace']} spans/trace" for r in rows]
    table = []
    for stage in [*STAGES, "stages_sum", *IN_APP]:
        if f"{stage}_us" not in rows[0]:
            continue  # no app_* rows without per-thread CPU clocks
        line: dict[str, Any] = {"stage": stage}
        for r, c in zip(rows, columns[1:], strict=True):
            line[c] = r[f"{stage}_us"]
        table.append(line)
    print_table(
        f"CPU us per span, best of {args.repeat} runs of {args.traces} traces "
        f"({'with' if args.messages else 'no'} messages)",
        table,
        columns,
    )
    save("bench_stages", {"quick": args.quick, "args": vars(args), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
