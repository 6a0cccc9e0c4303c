"""A tiny HTTP sink for the benchmarks, run in its own process: OTLP/HTTP and Galileo Log Traces.

It answers 200 (or an injected fault) and counts what it received, deduplicating by span id
(OTLP) and trace id (Galileo). Both protocols get the same stdlib server, so neither exporter is
measured against a slower peer. Control endpoints (never faulted)::

    GET  /_sink/stats            counts as JSON
    POST /_sink/fault  {"mode": "ok" | "error", "status": 503, "latency_s": 5, "hang_s": 5}
    POST /_sink/reset            zero the counts

Run: ``python benchmarks/_sink.py [--port 0]``; prints ``PORT <n>`` when ready.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from _common import LOG_STREAM_ID

_lock = threading.Lock()
_fault: dict[str, Any] = {"mode": "ok"}
_counts: dict[str, Any] = {}


def _reset() -> None:
    with _lock:
        _counts.clear()
        _counts.update(
            otlp_requests=0,
            otlp_spans=0,
            galileo_requests=0,
            galileo_traces=0,
            galileo_spans=0,
            sessions_created=0,
            faulted=0,
        )
        _counts["_otlp_ids"] = set()
        _counts["_galileo_ids"] = set()
        _counts["_galileo_span_ids"] = set()


def _count_spans(node: dict[str, Any], ids: set[str]) -> int:
    n = 0
    for child in node.get("spans") or ():
        n += 1
        if "id" in child:
            ids.add(child["id"])
        n += _count_spans(child, ids)
    return n


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without TCP_NODELAY a keep-alive answer waits
    # ~40 ms for the client's delayed ACK.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.startswith("/_sink/stats"):
            with _lock:
                out = {k: v for k, v in _counts.items() if not k.startswith("_")}
                out["otlp_unique_spans"] = len(_counts["_otlp_ids"])
                out["galileo_unique_traces"] = len(_counts["_galileo_ids"])
                out["galileo_unique_spans"] = len(_counts["_galileo_span_ids"])
            self._answer(200, out)
        elif self.path.startswith("/healthcheck"):
            self._answer(200, {"status": "ok"})
        elif self.path.endswith("/log_streams"):
            # configure() checks the destination: the benchmarks' one log stream exists.
            pid = self.path.split("/")[3]
            self._answer(200, [{"id": LOG_STREAM_ID, "name": "bench", "project_id": pid}])
        else:
            self._answer(404, {"detail": "not found"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path.startswith("/_sink/"):
            if self.path.startswith("/_sink/fault"):
                with _lock:
                    _fault.clear()
                    _fault.update(json.loads(body or b"{}"))
            elif self.path.startswith("/_sink/reset"):
                _reset()
            self._answer(200, {"ok": True})
            return
        with _lock:
            fault = dict(_fault)
        if fault.get("latency_s"):
            time.sleep(float(fault["latency_s"]))
        if fault.get("mode") == "error":
            with _lock:
                _counts["faulted"] += 1
            headers = {}
            if fault.get("retry_after_s") is not None:
                headers["Retry-After"] = str(fault["retry_after_s"])
            self._answer(int(fault.get("status", 503)), {"detail": "injected"}, headers)
            return
        if fault.get("mode") == "hang":
            with _lock:
                _counts["faulted"] += 1
            time.sleep(float(fault.get("hang_s", 5)))
            self.close_connection = True
            return
        if self.path.startswith("/v1/traces"):
            self._otlp(body)
        elif self.path.endswith("/traces"):
            self._galileo_traces(body)
        elif self.path.endswith("/sessions"):
            data = json.loads(body)
            with _lock:
                _counts["sessions_created"] += 1
            pid = self.path.split("/")[3]
            self._answer(
                200,
                {
                    "id": str(uuid.uuid4()),
                    "name": data.get("name"),
                    "project_id": pid,
                    "project_name": "bench",
                    "external_id": data.get("external_id"),
                },
            )
        else:
            self._answer(404, {"detail": "not found"})

    def _otlp(self, body: bytes) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        ids = [sp.span_id for rs in req.resource_spans for ss in rs.scope_spans for sp in ss.spans]
        with _lock:
            _counts["otlp_requests"] += 1
            _counts["otlp_spans"] += len(ids)
            _counts["_otlp_ids"].update(ids)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _galileo_traces(self, body: bytes) -> None:
        data = json.loads(body)
        traces = data["traces"]
        span_ids: set[str] = set()
        # The OTel root is the trace's top span, so nested spans = OTel spans.
        spans = sum(_count_spans(t, span_ids) for t in traces)
        with _lock:
            _counts["galileo_requests"] += 1
            _counts["galileo_traces"] += len(traces)
            _counts["galileo_spans"] += spans
            _counts["_galileo_ids"].update(t["id"] for t in traces)
            _counts["_galileo_span_ids"].update(span_ids)
        pid = self.path.split("/")[3]
        self._answer(
            200,
            {
                "project_id": pid,
                "project_name": "bench",
                "records_count": spans,
                "traces_count": len(traces),
                "spans_count": spans,
                "session_id": data.get("session_id"),
            },
        )


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout, shutdown) is part of the scenario, not an error.
        exc = sys.exc_info()[1]
        if not isinstance(exc, (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    _reset()
    server = Server(("127.0.0.1", args.port), Handler)
    print(f"PORT {server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.05)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
