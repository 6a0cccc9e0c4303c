"""``galileo-otel serve``: argument parsing and the blocking run of the local server.

Importable without the ``[server]`` extra, so the main CLI can always mount the subcommand and
explain what to install when it is missing.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "add_serve_parser",
    "missing_server_extra",
    "run_serve",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8088


def add_serve_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``serve`` subcommand to an ``argparse`` subparsers object.

    Sets ``func=run_serve`` as the parser default, so the main CLI can dispatch with
    ``args.func(args)``.

    Returns:
        The ``serve`` parser.
    """
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="run a local Galileo-compatible server (SQLite) for offline work and tests",
        description=(
            "Serve the Galileo endpoints galileo-otel uses (sessions, traces, projects, log "
            "streams) from a local SQLite file. Clients send the key in the Galileo-API-Key "
            "header; point them here with GALILEO_API_URL=http://127.0.0.1:8088."
        ),
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="bind address (default 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_PORT,
        help="port, 1-65535 (default 8088; 0 picks a free port and prints it)",
    )
    parser.add_argument(
        "--db",
        default=None,
        help="SQLite file (default $XDG_DATA_HOME/galileo-otel/galileo.db)",
    )
    parser.add_argument(
        "--api-key",
        default=None,
        help=(
            "key clients must send (default GALILEO_API_KEY, else the key stored next to the "
            "database as <db>.api-key, generated and printed on first use)"
        ),
    )
    parser.add_argument(
        "--max-body-bytes",
        type=_positive_size,
        default=None,
        help="largest request body accepted, in bytes (default 64 MiB); more is answered 413",
    )
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="permit a non-loopback --host (requires an explicit key)",
    )
    parser.add_argument(
        "--faults",
        action="store_true",
        help="serve the /local/faults admin endpoints (fault injection for tests and benchmarks)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn log level (default info)",
    )
    parser.set_defaults(func=run_serve)
    return parser


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(
            f"{value} is out of range: use 1-65535 (or 0 for a free port)"
        )
    return value


def missing_server_extra(command: str) -> str | None:
    """Why ``command`` cannot run without the ``[server]`` extra, in one line; ``None`` if it can."""
    import importlib.util

    for module in ("uvicorn", "fastapi", "jinja2", "jwt", "opentelemetry.proto"):
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a parent package is missing, or a half import
            found = False
        if not found:
            return (
                f"galileo-otel {command} needs the 'server' extra ({module.split('.')[0]} is "
                "not installed): pip install 'galileo-otel[server]'"
            )
    return None


def _positive_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of bytes: {text!r}") from None
    if value < 1024:
        raise argparse.ArgumentTypeError("must be at least 1024 bytes")
    return value


def run_serve(args: argparse.Namespace) -> int:
    """Run the server until interrupted; the exit status (0 ok, 1 cannot serve, 2 refused)."""
    missing = missing_server_extra("serve")
    if missing:
        print(missing, file=sys.stderr)
        return 2
    from galileo_otel.server.runner import is_loopback

    explicit_key = args.api_key or os.environ.get("GALILEO_API_KEY")
    if not is_loopback(args.host):
        if not args.allow_remote or not explicit_key:
            print(
                f"galileo-otel serve: refusing to bind non-loopback address {args.host!r}; "
                "pass --allow-remote and a key (--api-key or GALILEO_API_KEY)",
                file=sys.stderr,
            )
            return 2
    import uvicorn

    from galileo_otel.server.app import create_app, default_db_path
    from galileo_otel.server.auth import key_file_for, load_or_create_key
    from galileo_otel.server.runner import bind_socket, uvicorn_config
    from galileo_otel.server.ui import ui_access

    try:
        # Bound here, not by uvicorn: a taken port gets a clear message, and --port 0 a real one.
        sock = bind_socket(args.host, args.port)
    except OSError as exc:
        print(
            f"galileo-otel serve: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr
        )
        return 1
    db_path = args.db or default_db_path()
    try:
        if explicit_key:
            key, created = explicit_key, False
        else:
            key, created = load_or_create_key(db_path)
        app = create_app(
            db_path=db_path,
            api_key=key,
            fault_admin=args.faults,
            # The docs are open only where the API itself is: loopback with no key given.
            open_docs=is_loopback(args.host) and not explicit_key,
            **({"max_body_bytes": args.max_body_bytes} if args.max_body_bytes else {}),
        )
    except OSError as exc:
        sock.close()
        print(f"galileo-otel serve: cannot open database {db_path}: {exc}", file=sys.stderr)
        return 1
    host = f"[{args.host}]" if ":" in args.host else args.host
    port = sock.getsockname()[1]
    if created:
        # Printed once, on purpose: a generated key is useless unless the user can read it.
        print(
            f"galileo-otel serve: generated API key (use it as GALILEO_API_KEY; stored in "
            f"{key_file_for(db_path)}): {key}"
        )
    elif not explicit_key:
        print(f"galileo-otel serve: API key read from {key_file_for(db_path)}")
    print(f"galileo-otel serve: listening on http://{host}:{port}  database: {db_path}")
    if not app.state.galileo.store.stats()["sessions"]:
        print(
            "galileo-otel serve: no sessions yet: run 'galileo-otel demo' in another terminal, "
            f"or point an app here (GALILEO_API_URL=http://{host}:{port})"
        )
    print(f"galileo-otel serve: web UI: {ui_access(app).login_url(f'http://{host}:{port}')}")
    if args.faults:
        print("galileo-otel serve: fault injection admin at /local/faults")
    sys.stdout.flush()
    config = uvicorn_config(
        app,
        log_level=args.log_level,
        log_config=uvicorn.config.LOGGING_CONFIG,
        access_log=True,
        timeout_graceful_shutdown=3,
    )
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # pragma: no cover - a second Ctrl-C during shutdown
        pass
    finally:
        app.state.galileo.close()
        sock.close()
    return 0 if server.started else 1
