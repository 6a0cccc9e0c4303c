"""The export never traces itself: with the real httpx, requests and urllib3 instrumentations
active, one app span makes exactly its own requests to the local server, and no more.

Without suppression the pipeline's own Log Traces POST is a traced span, which is exported by
another POST, which is traced...: each flush sends one more request than the one before.

The checks are connected, not timed: a span made by our POST ends before the POST returns, so it
is queued before ``force_flush()`` returns; the next ``force_flush()`` would send it. After three
flushes the server and an in-memory exporter on the same provider must have seen the app span's
requests only.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest_cli import explain, galileo_env, run
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from galileo_otel.sessions.context import session

httpx_instr = pytest.importorskip("opentelemetry.instrumentation.httpx")
requests_instr = pytest.importorskip("opentelemetry.instrumentation.requests")
urllib3_instr = pytest.importorskip("opentelemetry.instrumentation.urllib3")

cfg = importlib.import_module("galileo_otel.configure")
pytestmark = pytest.mark.integration

TRACES_ROUTE = "traces"
FLUSHES = 3


class CountingServer:
    """The real local server, counting every request it gets by (method, route)."""

    def __init__(self, tmp_path: Path) -> None:
        from galileo_otel.server import serve_in_thread

        self._lock = threading.Lock()  # guards requests (uvicorn's thread adds, the test reads)
        self.requests: Counter[tuple[str, str]] = Counter()
        self.server = serve_in_thread(
            db_path=tmp_path / "galileo.db", api_key="test-key", start=False
        )

        @self.server.app.middleware("http")
        async def count(request: Any, call_next: Any) -> Any:
            path = request.url.path
            route = TRACES_ROUTE if path.endswith("/traces") and "/sessions/" not in path else path
            with self._lock:
                self.requests[(request.method, route)] += 1
            return await call_next(request)

    def log_traces_posts(self) -> int:
        with self._lock:
            return self.requests[("POST", TRACES_ROUTE)]

    def total(self) -> int:
        with self._lock:
            return sum(self.requests.values())


# opentelemetry-instrument with our distro and configurator, traces only.
ZERO_CODE_ENV = {
    "OTEL_PYTHON_DISTRO": "galileo",
    "OTEL_PYTHON_CONFIGURATOR": "galileo",
    "OTEL_METRICS_EXPORTER": "none",
    "OTEL_LOGS_EXPORTER": "none",
}


@pytest.fixture
def counting_server(tmp_path: Path) -> Iterator[CountingServer]:
    counting = CountingServer(tmp_path)
    with counting.server:
        yield counting


@pytest.fixture
def instrumented() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """A provider with an in-memory exporter, and the three HTTP instrumentations on it."""
    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    instrumentors = [
        httpx_instr.HTTPXClientInstrumentor(),
        requests_instr.RequestsInstrumentor(),
        urllib3_instr.URLLib3Instrumentor(),
    ]
    for instrumentor in instrumentors:
        instrumentor.instrument(tracer_provider=provider)
    try:
        yield provider, memory
    finally:
        for instrumentor in instrumentors:
            instrumentor.uninstrument()
        provider.shutdown()


def _http_client_spans(memory: InMemorySpanExporter) -> list[str]:
    return [
        s.name
        for s in memory.get_finished_spans()
        if "http.request.method" in (s.attributes or {}) or "http.method" in (s.attributes or {})
    ]


def test_instrumentations_are_live(
    counting_server: CountingServer, instrumented: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    # The control: an app's own httpx, requests and urllib3 calls are traced, so the test below
    # would see our POSTs if they were.
    import httpx
    import requests
    import urllib3

    _, memory = instrumented
    url = counting_server.server.url + "/healthcheck"
    with httpx.Client() as client:
        assert client.get(url).status_code == 200
    assert requests.get(url, timeout=10).status_code == 200
    pool = urllib3.PoolManager()
    assert pool.request("GET", url).status == 200
    pool.clear()
    assert len(_http_client_spans(memory)) >= 3


@pytest.mark.parametrize("reliable", [True, False], ids=["reliable", "fire-and-forget"])
def test_one_app_span_makes_only_its_own_requests(
    counting_server: CountingServer,
    instrumented: tuple[TracerProvider, InMemorySpanExporter],
    reliable: bool,
) -> None:
    provider, memory = instrumented
    server = counting_server.server
    handle = cfg.configure(
        tracer_provider=provider,
        api_url=server.url,
        api_key=server.api_key,
        project="self",
        batch_delay=0.05,
        spool_dir="off",
        reliable=reliable,
    )
    try:
        with (
            session("conv-1", user_id="u"),
            provider.get_tracer("app").start_as_current_span("app-op"),
        ):
            pass
        totals = []
        for _ in range(FLUSHES):
            assert handle.force_flush(10) is True
            if not reliable:
                assert server.wait_idle(10)
            totals.append(counting_server.total())
        posts = counting_server.log_traces_posts()
        stats = handle.stats()
    finally:
        handle.shutdown(10)

    assert [s.name for s in memory.get_finished_spans()] == ["app-op"]
    assert _http_client_spans(memory) == []
    assert posts == 1, counting_server.requests
    assert totals[0] == totals[-1], (totals, counting_server.requests)
    assert server.state.stats()["traces"] == 1
    assert stats.get("spans_dropped", 0) == 0


APP = textwrap.dedent(
    """
    import sys

    import httpx
    import requests
    import urllib3
    from opentelemetry import trace

    url = sys.argv[1]
    tracer = trace.get_tracer("app")
    with tracer.start_as_current_span("app-op"):
        # The app's own calls: traced (they are children of app-op, in its one trace).
        httpx.get(url + "/healthcheck")
        requests.get(url + "/healthcheck", timeout=10)
        urllib3.PoolManager().request("GET", url + "/healthcheck")
    provider = trace.get_tracer_provider()
    for _ in range(int(sys.argv[2])):
        assert provider.force_flush(10000), "flush failed"
    print("done")
    """
)


def test_zero_code_app_with_http_instrumentations(
    counting_server: CountingServer, tmp_path: Path
) -> None:
    # opentelemetry-instrument loads every installed instrumentation (httpx, requests, urllib3)
    # and our distro/configurator; the app's one trace must be the only one, sent once.
    script = tmp_path / "app.py"
    script.write_text(APP)
    server = counting_server.server
    env = {
        **galileo_env(server, project="zero-code"),
        **ZERO_CODE_ENV,
    }
    bin_dir = Path(sys.executable).parent
    proc = run(
        [
            str(bin_dir / "opentelemetry-instrument"),
            sys.executable,
            str(script),
            server.url,
            str(FLUSHES),
        ],
        env,
    )
    assert proc.returncode == 0 and "done" in proc.stdout, explain(proc)
    assert counting_server.log_traces_posts() == 1, (counting_server.requests, explain(proc))
    assert server.state.stats()["traces"] == 1, explain(proc)
    assert counting_server.requests[("GET", "/healthcheck")] == 3


def test_doctor_under_zero_code_sends_no_trace_of_itself(counting_server: CountingServer) -> None:
    # `opentelemetry-instrument galileo-otel doctor`: the doctor's own checks go through the
    # client, so the export that opentelemetry-instrument set up has nothing of ours to send.
    server = counting_server.server
    env = {
        **galileo_env(server, project="doctor"),
        **ZERO_CODE_ENV,
    }
    bin_dir = Path(sys.executable).parent
    proc = run(
        [str(bin_dir / "opentelemetry-instrument"), str(bin_dir / "galileo-otel"), "doctor"], env
    )
    assert proc.returncode == 0, explain(proc)
    assert counting_server.requests[("GET", "/healthcheck")] >= 1, counting_server.requests
    assert counting_server.log_traces_posts() == 0, (counting_server.requests, explain(proc))
    assert server.state.stats()["traces"] == 0


SQLITE_APP = textwrap.dedent(
    """
    import os
    import sqlite3
    import sys

    from opentelemetry import trace

    tracer = trace.get_tracer("app")
    with tracer.start_as_current_span("app-op"):
        # The app's own query: traced (a child of app-op, in its one trace).
        # (The instrumentation traces cursors; Connection.execute is not traced.)
        sqlite3.connect(":memory:").cursor().execute("SELECT 1").fetchall()
    provider = trace.get_tracer_provider()
    for _ in range(int(sys.argv[1])):
        assert provider.force_flush(10000), "flush failed"

    def ppid(pid):
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])

    def descends(pid, root):
        while pid > 1:
            if pid == root:
                return True
            pid = ppid(pid)
        return False

    workers = 0
    for entry in os.listdir("/proc"):
        if not entry.isdecimal() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read()
            if b"galileo_otel.export.offload.child" in cmd and descends(int(entry), os.getpid()):
                workers += 1
        except OSError:
            pass
    print("workers", workers)
    print("done")
    """
)


@pytest.mark.parametrize("export_process", [False, True], ids=["in-process", "worker-process"])
def test_zero_code_with_sqlite_instrumentation_and_sqlite_stores(
    counting_server: CountingServer, tmp_path: Path, export_process: bool
) -> None:
    # Zero-code with every instrumentation loaded (sqlite3 included, as opentelemetry-bootstrap
    # installs it), both SQLite stores, in-process and with the worker process: the app's one
    # trace is sent once, and the worker process is exactly one (it must not run the zero-code
    # set-up again). The self-tracing loop itself is pinned in-process below, where it showed.
    pytest.importorskip("opentelemetry.instrumentation.sqlite3")
    script = tmp_path / "app.py"
    script.write_text(SQLITE_APP)
    server = counting_server.server
    env = {
        **galileo_env(server, project="sqlite"),
        **ZERO_CODE_ENV,
        "GALILEO_SESSION_STORE": "sqlite",
        "GALILEO_SPOOL_DIR": str(tmp_path / "spool"),
        "GALILEO_BATCH_DELAY": "0.05",
        "GALILEO_EXPORT_PROCESS": "true" if export_process else "false",
    }
    bin_dir = Path(sys.executable).parent
    proc = run(
        [str(bin_dir / "opentelemetry-instrument"), sys.executable, str(script), str(FLUSHES)],
        env,
    )
    assert proc.returncode == 0 and "done" in proc.stdout, explain(proc)
    assert f"workers {1 if export_process else 0}" in proc.stdout, explain(proc)
    assert counting_server.log_traces_posts() == 1, (counting_server.requests, explain(proc))
    assert server.state.stats()["traces"] == 1, explain(proc)


def test_sqlite_stores_queries_are_not_traced(
    tmp_path: Path, counting_server: CountingServer
) -> None:
    # The sqlite3 instrumentation on the app's provider traces cursor queries; the SQLite session
    # store's run on the export worker thread, and each would be a trace of its own, exported,
    # which queries the store again: 1 app span became thousands of traces before the fix.
    sqlite_instr = pytest.importorskip("opentelemetry.instrumentation.sqlite3")
    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    instrumentor = sqlite_instr.SQLite3Instrumentor()
    instrumentor.instrument(tracer_provider=provider)
    server = counting_server.server
    try:
        handle = cfg.configure(
            tracer_provider=provider,
            api_url=server.url,
            api_key=server.api_key,
            project="sqlite-store",
            batch_delay=0.05,
            spool_dir=str(tmp_path / "spool"),
            session_store="sqlite",
        )
        try:
            with session("conv-1", user_id="u"):
                with provider.get_tracer("app").start_as_current_span("app-op"):
                    pass
                # A second trace of the same conversation reads the store again.
                with provider.get_tracer("app").start_as_current_span("app-op-2"):
                    pass
            for _ in range(FLUSHES):
                assert handle.force_flush(10) is True
            stats = handle.stats()
        finally:
            handle.shutdown(10)
    finally:
        instrumentor.uninstrument()
    assert sorted(s.name for s in memory.get_finished_spans()) == ["app-op", "app-op-2"]
    assert server.state.stats()["traces"] == 2
    assert stats["traces_batched"] == 2
