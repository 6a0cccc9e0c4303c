"""OTLP/gRPC in (extra ``[gateway-grpc]``): the ``TraceService/Export`` of OTLP on port 4317.

The OpenTelemetry Collector's ``loadbalancing`` exporter, the usual way to send every span of a
trace to the same one of several gateways, speaks only OTLP/gRPC; this server takes those
requests into the same engine as ``POST /v1/traces`` (same write-ahead log, same answers):
``OK`` only once written ahead; ``UNAVAILABLE`` (retried by OTLP exporters) for a full log or
queue; ``INVALID_ARGUMENT`` for a bad request; ``UNAUTHENTICATED`` for a missing or wrong key
(metadata ``galileo-api-key`` or ``authorization: Bearer ...``). Routing headers are metadata
keys ``project``, ``logstream``, ``experimentid``.
"""

from __future__ import annotations

from concurrent import futures
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from galileo_otel.gateway.app import inbound_key_ok
from galileo_otel.gateway.core import ROUTING_HEADERS, Gateway, Refused
from galileo_otel.otlp import spans_from_request

__all__ = ["start_grpc_server"]

_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    413: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.UNAVAILABLE,  # RESOURCE_EXHAUSTED is retried only with RetryInfo
    503: grpc.StatusCode.UNAVAILABLE,
}


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        key = gateway.config.key
        self._key = key.get_secret_value() if key is not None else None

    def Export(
        self, request: ExportTraceServiceRequest, context: Any
    ) -> ExportTraceServiceResponse:
        metadata = {k.lower(): v for k, v in context.invocation_metadata() if isinstance(v, str)}
        if not inbound_key_ok(self._key, metadata):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong key")
        spans, rejected, reason = spans_from_request(request)
        headers = {k: metadata.get(k, "") for k in ROUTING_HEADERS}
        try:
            self._gateway.accept(request, spans, headers, rejected=rejected)
        except Refused as exc:
            context.abort(_CODES.get(exc.status, grpc.StatusCode.UNAVAILABLE), exc.reason)
        response = ExportTraceServiceResponse()
        if rejected:
            response.partial_success.CopyFrom(
                ExportTracePartialSuccess(rejected_spans=rejected, error_message=reason)
            )
        return response


def start_grpc_server(gateway: Gateway, host: str, port: int, *, workers: int = 8) -> Any:
    """Serve OTLP/gRPC for ``gateway`` on ``host:port`` (started; call ``.stop(grace)``).

    Returns:
        The running ``grpc.Server``; its bound port is ``.bound_port``.

    Raises:
        OSError: The port cannot be bound.
    """
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="galileo-otel-gw-grpc"),
        options=[
            ("grpc.max_receive_message_length", gateway.config.max_body_bytes),
            ("grpc.so_reuseport", 0),
        ],
    )
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(gateway), server)
    address = f"[{host.strip('[]')}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise OSError(f"cannot listen on {address} (gRPC): {exc}") from exc
    if not bound:
        raise OSError(f"cannot listen on {address} (gRPC)")
    server.start()
    server.bound_port = bound
    return server
