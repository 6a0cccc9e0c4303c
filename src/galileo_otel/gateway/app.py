"""The gateway's HTTP face: ``POST /v1/traces`` (OTLP/HTTP), ``/healthz``, ``/readyz``, ``/metrics``.

Answers, as OTLP/HTTP exporters expect them (the body in the request's encoding):

- 200 once the spans are in the write-ahead log; ``partial_success`` counts spans left out
  (an invalid trace or span id);
- 400 a body that does not decode, a bad ``experimentid``, no project; 401 a missing or wrong
  key; 413 a body (or its gunzipped form) over ``GALILEO_GATEWAY_MAX_BODY_BYTES``; 415 another
  content type or encoding;
- 429 (export queue full) and 503 (write-ahead log full, replaying, stopping) with
  ``Retry-After``, which OTLP exporters retry.
"""

from __future__ import annotations

import binascii
import hmac
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceResponse,
)
from starlette.concurrency import run_in_threadpool

from galileo_otel.gateway.core import ROUTING_HEADERS, Gateway, Refused
from galileo_otel.gateway.metrics import render_metrics
from galileo_otel.otlp import (
    JSON_TYPE,
    PROTOBUF_TYPES,
    OtlpDecodeError,
    decode_request,
    spans_from_request,
)
from galileo_otel.server.limits import BodyTooLargeError, gunzip_bounded

__all__ = ["create_gateway_app", "inbound_key_ok"]


def inbound_key_ok(expected: str | None, headers: Any) -> bool:
    """Whether a request carries the gateway's key (``Galileo-API-Key`` or a bearer token).

    ``expected`` ``None`` means no key is required. The comparison takes constant time.
    """
    if expected is None:
        return True
    given = headers.get("galileo-api-key") or ""
    auth = headers.get("authorization") or ""
    if not given and auth[:7].lower() == "bearer ":
        given = auth[7:].strip()
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())


def _answer(media: str, response: ExportTraceServiceResponse) -> Response:
    if media == JSON_TYPE:
        return JSONResponse(json_format.MessageToDict(response))
    return Response(response.SerializeToString(), media_type=PROTOBUF_TYPES[0])


def _error(status: int, detail: str, retry_after_s: float | None = None) -> Response:
    headers = {}
    if retry_after_s is not None:
        headers["Retry-After"] = str(max(1, round(retry_after_s)))
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


async def _read_body(request: Request, limit: int) -> bytes:
    announced = request.headers.get("content-length")
    if announced is not None and announced.isdigit() and int(announced) > limit:
        raise BodyTooLargeError(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def create_gateway_app(
    gateway: Gateway, *, manage: bool = True, before_close: Callable[[], None] | None = None
) -> FastAPI:
    """The FastAPI app over ``gateway``.

    Args:
        gateway: The engine (write-ahead log, pipelines).
        manage: Start the gateway when the app starts and close it when the app stops.
        before_close: Called (on a worker thread) just before the gateway is closed, e.g. to
            stop another server that feeds it.
    """

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if manage:
            gateway.start()
        try:
            yield
        finally:
            if before_close is not None:
                await run_in_threadpool(before_close)
            if manage:
                await run_in_threadpool(gateway.close)

    app = FastAPI(
        title="galileo-otel gateway",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    key = gateway.config.key.get_secret_value() if gateway.config.key is not None else None
    limit = gateway.config.max_body_bytes

    @app.post("/v1/traces")
    async def export_traces(request: Request) -> Response:
        """OTLP/HTTP trace export: protobuf or JSON, optionally gzip."""
        if not inbound_key_ok(key, request.headers):
            return _error(
                401, "missing or wrong key: send Galileo-API-Key or Authorization: Bearer"
            )
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media not in (*PROTOBUF_TYPES, JSON_TYPE):
            return _error(
                415,
                f"unsupported Content-Type {media or '(none)'!r}: send application/x-protobuf "
                "or application/json",
            )
        encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("identity", "", "gzip", "deflate"):
            return _error(415, f"unsupported Content-Encoding {encoding!r}: use gzip or none")
        try:
            body = await _read_body(request, limit)
            if encoding in ("gzip", "deflate"):
                body = gunzip_bounded(body, limit)
        except BodyTooLargeError as exc:
            return _error(
                413, f"{exc}; send smaller batches or raise GALILEO_GATEWAY_MAX_BODY_BYTES"
            )
        except ValueError as exc:
            return _error(400, str(exc))
        headers = {k: request.headers.get(k, "") for k in ROUTING_HEADERS}

        def work() -> tuple[int, str]:
            decoded = decode_request(body, media)
            spans, rejected, reason = spans_from_request(decoded)
            gateway.accept(decoded, spans, headers, rejected=rejected)
            return rejected, reason

        try:
            rejected, reason = await run_in_threadpool(work)
        except (OtlpDecodeError, binascii.Error) as exc:
            return _error(400, str(exc))
        except Refused as exc:
            return _error(exc.status, exc.reason, exc.retry_after_s)
        response = ExportTraceServiceResponse()
        if rejected:
            response.partial_success.CopyFrom(
                ExportTracePartialSuccess(rejected_spans=rejected, error_message=reason)
            )
        return _answer(media, response)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness: the process serves HTTP."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Response:
        """Readiness: replay done, not stopping, room in the write-ahead log."""
        if gateway.ready:
            return JSONResponse({"status": "ready"})
        return _error(503, "not ready (replaying, stopping or write-ahead log full)", 1.0)

    @app.get("/metrics")
    async def metrics() -> Response:
        """Prometheus text exposition of the gateway's and its pipelines' counters."""
        payload, content_type = await run_in_threadpool(render_metrics, gateway.stats())
        return PlainTextResponse(payload, media_type=content_type)

    return app
