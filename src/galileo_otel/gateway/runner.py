"""Run the gateway: check where it may listen, say where traces go, serve until SIGTERM."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from galileo_otel.errors import ConfigError
from galileo_otel.gateway.config import GatewaySettings
from galileo_otel.server.limits import is_loopback
from galileo_otel.settings import GalileoSettings, mask_secret

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "check_listen",
    "gateway_settings",
    "is_loopback",
    "run_gateway",
    "startup_line",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4318
"""The OTLP/HTTP port."""
_GRACEFUL_S = 2
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def check_listen(host: str, config: GatewaySettings) -> None:
    """Refuse to listen beyond loopback without an inbound key.

    Raises:
        ConfigError: ``host`` is not loopback and ``GALILEO_GATEWAY_KEY`` is not set.
    """
    if not is_loopback(host) and config.key is None:
        raise ConfigError(
            f"refusing to listen on non-loopback address {host!r} without an inbound key: set "
            "GALILEO_GATEWAY_KEY (clients then send it as Galileo-API-Key or Authorization: Bearer)"
        )


def gateway_settings(settings: GalileoSettings, config: GatewaySettings) -> GalileoSettings:
    """``settings`` as the gateway runs them: sessions survive restarts by default.

    With no ``GALILEO_SESSION_STORE`` the in-process default (memory) would forget every
    conversation at a restart; the gateway keeps its sessions in SQLite in its state directory.
    """
    if settings.session_store == "memory" and not os.environ.get("GALILEO_SESSION_STORE"):
        path = config.state_dir() / "sessions.db"
        return settings.model_copy(update={"session_store": f"sqlite:///{path}"})
    return settings


def _store_label(settings: GalileoSettings) -> str:
    url = settings.session_store_url()
    if url is None:
        path = settings.session_store_path()
        return "memory" if path is None else f"sqlite {path}"
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"
    except ValueError:
        return "redis"


def startup_line(settings: GalileoSettings, config: GatewaySettings, host: str, port: int) -> str:
    """The one start-up line: where the gateway listens and where traces go (key masked)."""
    key = settings.api_key.get_secret_value() if settings.api_key is not None else ""
    target = settings.experiment_id or settings.log_stream or settings.log_stream_id or "-"
    project = settings.project or settings.project_id or "(from the 'project' header)"
    spool = settings.spool_path()
    shown_host = f"[{host}]" if ":" in host else host
    return (
        f"galileo-otel gateway: OTLP/HTTP on http://{shown_host}:{port}/v1/traces -> "
        f"{settings.resolved_api_url()} project {project} log stream/experiment {target} "
        f"key {mask_secret(key) if key else '(none)'}; "
        f"{'reliable' if settings.reliable else 'fire-and-forget'}, "
        f"spool {spool if spool is not None else 'off'}, sessions {_store_label(settings)}, "
        f"write-ahead log {config.state_dir()}; inbound key "
        f"{'required' if config.key is not None else 'not required (loopback)'}"
    )


def _bind(host: str, port: int) -> socket.socket:
    bare = host.strip("[]")
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        if os.name != "nt":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((bare, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def run_gateway(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    settings: GalileoSettings | None = None,
    config: GatewaySettings | None = None,
    log_level: str = "warning",
    grpc_port: int | None = None,
) -> int:
    """Serve until SIGTERM / SIGINT; returns the exit status (0 stopped cleanly, 1 could not run).

    ``grpc_port`` also serves OTLP/gRPC there (extra ``[gateway-grpc]``); ``None``: HTTP only.

    Raises:
        ConfigError: Invalid settings, or a non-loopback ``host`` without an inbound key.
    """
    import uvicorn

    from galileo_otel.gateway.app import create_gateway_app
    from galileo_otel.gateway.core import Gateway
    from galileo_otel.gateway.wal import WalLockedError
    from galileo_otel.settings import merge_settings

    config = config if config is not None else _load_config()
    check_listen(host, config)
    settings = gateway_settings(merge_settings(settings), config)
    if settings.logging_disabled:
        raise ConfigError("GALILEO_LOGGING_DISABLED is set: the gateway would accept and drop")
    try:
        gateway = Gateway(settings, config)
    except (WalLockedError, OSError) as exc:
        print(f"galileo-otel gateway: {exc}", file=sys.stderr)
        return 1
    try:
        sock = _bind(host, port)
    except OSError as exc:
        gateway.wal.close()
        print(f"galileo-otel gateway: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    grpc_server: Any = None
    if grpc_port is not None:
        try:
            from galileo_otel.gateway.grpc_server import start_grpc_server

            grpc_server = start_grpc_server(gateway, host, grpc_port)
        except ImportError:
            sock.close()
            gateway.wal.close()
            print(
                "galileo-otel gateway: --grpc-port needs the gateway-grpc extra: "
                "pip install 'galileo-otel[gateway-grpc]'",
                file=sys.stderr,
            )
            return 1
        except OSError as exc:
            sock.close()
            gateway.wal.close()
            print(f"galileo-otel gateway: {exc}", file=sys.stderr)
            return 1
    line = startup_line(settings, config, host, sock.getsockname()[1])
    if grpc_server is not None:
        line += f"; OTLP/gRPC on port {grpc_server.bound_port}"
    print(line, file=sys.stderr, flush=True)

    def stop_grpc() -> None:
        if grpc_server is not None:
            grpc_server.stop(_GRACEFUL_S).wait(_GRACEFUL_S + 1)

    options: dict[str, Any] = {
        "log_config": None,
        "log_level": log_level,
        "access_log": False,
        "http": "h11",
        "ws": "none",
        "lifespan": "on",
        "proxy_headers": False,
        "server_header": False,
        # Open connections get this long after SIGTERM; then the pipelines get
        # GALILEO_GATEWAY_SHUTDOWN_TIMEOUT to flush (what they cannot deliver stays on disk).
        "timeout_graceful_shutdown": _GRACEFUL_S,
    }
    app = create_gateway_app(gateway, before_close=stop_grpc)
    server = _server_class()(uvicorn.Config(app, **options))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        stop_grpc()
        gateway.close()  # a no-op after the app's own shutdown; covers a failed start
    print("galileo-otel gateway: stopped", file=sys.stderr, flush=True)
    return 0 if server.started else 1


def _server_class() -> type[Any]:
    import uvicorn

    class _GatewayServer(uvicorn.Server):
        """uvicorn, minus re-raising SIGTERM after a clean stop (the exit status stays 0)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in _SIGNALS}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return _GatewayServer


def _load_config() -> GatewaySettings:
    from pydantic import ValidationError

    try:
        return GatewaySettings()
    except ValidationError as exc:
        problems = "; ".join(
            f"GALILEO_GATEWAY_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(problems) from None
