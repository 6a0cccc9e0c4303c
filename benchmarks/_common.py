"""Shared parts of the benchmarks: the sink process, the two pipelines under test, the workload."""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PROJECT_ID = "5b1e2a64-6f0c-4b8e-9a51-0c8f5d2e7a10"
LOG_STREAM_ID = "9d3c7e21-2b4a-4f6d-8e1b-7a6c5d4e3f20"
SPANS_PER_TRACE = 5
SESSIONS = 10

# The three systems every benchmark compares.
STOCK = "stock"  # BatchSpanProcessor + OTLPSpanExporter (proto/HTTP), SDK defaults
OURS = "ours"  # GalileoSessionProcessor, reliable (confirmed, spooled)
OURS_FF = "ours-ff"  # GalileoSessionProcessor, reliable=False (fire-and-forget)
OURS_PROC = "ours-proc"  # GalileoSessionProcessor, reliable, export_process=True (worker process)


# --- the sink --------------------------------------------------------------------------------
class Sink:
    """The stdlib HTTP sink (benchmarks/_sink.py) in its own process."""

    def __init__(self, port: int = 0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "_sink.py"), "--port", str(port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"sink did not start: {line!r}")
        self.port = int(line.split()[1])
        self.url = f"http://127.0.0.1:{self.port}"

    def _post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        req = urllib.request.Request(
            self.url + path, data=json.dumps(body or {}).encode(), method="POST"
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(self.url + "/_sink/stats", timeout=10) as resp:
            return dict(json.loads(resp.read()))

    def fault(self, **fault: Any) -> None:
        self._post("/_sink/fault", fault or {"mode": "ok"})

    def reset(self) -> None:
        self._post("/_sink/reset")
        self.fault(mode="ok")

    def received(self, system: str) -> int:
        stats = self.stats()
        return stats["otlp_unique_spans"] if system == STOCK else stats["galileo_unique_spans"]

    def wait_received(self, system: str, n: int, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        got = self.received(system)
        while got < n and time.monotonic() < deadline:
            time.sleep(0.02)
            got = self.received(system)
        return got

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def unused_port() -> int:
    """A loopback port nobody listens on (connections are refused): the server is down."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the systems under test ------------------------------------------------------------------
def make_provider(system: str, url: str, **opts: Any) -> tuple[Any, Any]:
    """A TracerProvider with the system's processor; returns (provider, processor)."""
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider(shutdown_on_exit=False)
    processor: Any = None
    if system == STOCK:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        bsp_opts = {
            k: v for k, v in opts.items() if k in ("max_queue_size", "schedule_delay_millis")
        }
        processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=url + "/v1/traces"), **bsp_opts)
    elif system in (OURS, OURS_FF, OURS_PROC):
        from galileo_otel.processor import GalileoSessionProcessor

        settings: dict[str, Any] = {
            "api_key": "bench",
            "api_url": url,
            "project_id": PROJECT_ID,
            "log_stream_id": LOG_STREAM_ID,
            "reliable": system in (OURS, OURS_PROC),
            "export_process": system == OURS_PROC,
        }
        if "max_queue_size" in opts:
            settings["max_queue_spans"] = opts["max_queue_size"]
        settings.update(opts.get("galileo", {}))
        processor = GalileoSessionProcessor(**settings)
    elif system != "none":
        raise ValueError(system)
    if processor is not None:
        provider.add_span_processor(processor)
    return provider, processor


def emit_trace(tracer: Any, i: int, spans_per_trace: int = SPANS_PER_TRACE) -> None:
    """One agent turn: 5 spans (agent, 2 llm, tool, retriever) with GenAI attributes, or 3
    (agent, llm, tool) with ``spans_per_trace=3``."""
    with tracer.start_as_current_span(
        "invoke_agent support",
        attributes={"session.id": f"conv-{i % SESSIONS}", "gen_ai.operation.name": "invoke_agent"},
    ):
        with tracer.start_as_current_span(
            "chat gpt-4o",
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.usage.input_tokens": 120,
                "gen_ai.usage.output_tokens": 48,
            },
        ):
            pass
        with tracer.start_as_current_span(
            "execute_tool search",
            attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search"},
        ):
            pass
        if spans_per_trace == 3:
            return
        with tracer.start_as_current_span("retrieve docs", attributes={"db.system": "vector"}):
            pass
        with tracer.start_as_current_span(
            "chat gpt-4o",
            attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"},
        ):
            pass


def emit_spans(tracer: Any, n_spans: int, start: int = 0) -> float:
    """Emit ``n_spans`` spans as fast as possible; returns the seconds it took."""
    t0 = time.perf_counter()
    for i in range(start, start + n_spans // SPANS_PER_TRACE):
        emit_trace(tracer, i)
    return time.perf_counter() - t0


def emit_at_rate(
    tracer: Any,
    spans_per_s: float,
    duration_s: float,
    on_tick: Callable[[float], None] | None = None,
) -> int:
    """Emit traces at a steady span rate for ``duration_s``; returns spans emitted."""
    traces_per_s = spans_per_s / SPANS_PER_TRACE
    t0 = time.monotonic()
    sent = 0
    while True:
        now = time.monotonic() - t0
        if now >= duration_s:
            return sent * SPANS_PER_TRACE
        if on_tick is not None:
            on_tick(now)
        due = int(now * traces_per_s) + 1
        while sent < due:
            emit_trace(tracer, sent)
            sent += 1
        time.sleep(0.005)


def shutdown(system: str, provider: Any, processor: Any, timeout_s: float) -> float:
    """Shut the provider down; returns how long it took."""
    t0 = time.perf_counter()
    if system == STOCK:
        provider.shutdown()
    else:
        processor.shutdown(int(timeout_s * 1000))
    return time.perf_counter() - t0


def stats_of(system: str, processor: Any) -> dict[str, int]:
    """Drop and delivery counters of a processor (the stock one only knows its queue)."""
    if system == STOCK:
        inner = getattr(processor, "_batch_processor", None)
        return {"queue_size": len(getattr(inner, "_queue", ()))}
    return dict(processor.stats())


def peak_rss_mb() -> float:
    """Peak resident memory of this process, MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


# --- child processes and output --------------------------------------------------------------
def run_child(script: Path, args: list[str], timeout_s: float = 600) -> dict[str, Any]:
    """Run ``script --child ...`` in a fresh interpreter; its last stdout line is JSON."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GALILEO_", "OTEL_"))}
    proc = subprocess.run(
        [sys.executable, str(script), "--child", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=env,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"child failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return dict(json.loads(lines[-1]))


def save(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / (f"{name}-quick.json" if data.get("quick") else f"{name}.json")
    data = {"benchmark": name, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **data}
    path.write_text(json.dumps(data, indent=2, default=str))
    return path


_BARE_SPAN_US: float | None = None


def bare_span_us() -> float:
    """This machine's cost of one bare SDK span (no processor), µs: the yardstick of every table.

    Machines differ by 2x or more (and a shared machine from minute to minute), so ratios are
    read beside it. Measured once per process: the median of 5 runs of 1,000 5-span traces.
    """
    global _BARE_SPAN_US
    if _BARE_SPAN_US is None:
        from opentelemetry.sdk.trace import TracerProvider

        tracer = TracerProvider(shutdown_on_exit=False).get_tracer("bare")
        runs = []
        for _ in range(5):
            t0 = time.perf_counter()
            for i in range(1000):
                emit_trace(tracer, i, 5)
            runs.append((time.perf_counter() - t0) / 5000 * 1e6)
        _BARE_SPAN_US = sorted(runs)[2]
    return _BARE_SPAN_US


def print_table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> None:
    def fmt(v: Any) -> str:
        if isinstance(v, bool):
            return "yes" if v else "no"
        if isinstance(v, float):
            return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)

    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print(f"\n{title}")
    print(f"(bare SDK span on this machine, now: {bare_span_us():.1f} µs)")
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=False)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=False)))
