"""``galileo-otel gateway``: its arguments; importable without the ``[gateway]`` extra."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_gateway_parser", "run_gateway_command"]


def add_gateway_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``gateway`` subcommand (``func=run_gateway_command``)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "gateway",
        help="take OTLP/HTTP traces from any language and deliver them to Galileo in sessions",
        description=(
            "Serve POST /v1/traces (OTLP/HTTP, protobuf or JSON, gzip). Each request is written "
            "to disk before it is answered 200, then assembled, grouped into sessions, converted "
            "and delivered to Galileo as configured by GALILEO_* (URL, key, project, log stream). "
            "Headers project / logstream / experimentid override the destination per request."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=4318, help="port (default 4318, the OTLP/HTTP port)"
    )
    parser.add_argument(
        "--grpc-port",
        type=int,
        default=None,
        help="also serve OTLP/gRPC on this port (4317 is usual; needs the gateway-grpc extra)",
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn log level (default warning)",
    )
    parser.set_defaults(func=run_gateway_command)
    return parser


def run_gateway_command(args: argparse.Namespace) -> int:
    """Run the gateway until SIGTERM / Ctrl-C; the exit status."""
    try:
        from galileo_otel.gateway.runner import run_gateway
    except ImportError as exc:
        missing = getattr(exc, "name", None) or str(exc)
        print(
            f"galileo-otel gateway needs the gateway extra ({missing} is not installed): "
            "pip install 'galileo-otel[gateway]'",
            file=sys.stderr,
        )
        return 1
    return run_gateway(args.host, args.port, log_level=args.log_level, grpc_port=args.grpc_port)
