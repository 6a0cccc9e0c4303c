"""Run the local server with uvicorn in a background thread: for tests, the demo and examples."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

import uvicorn
from fastapi import FastAPI

from galileo_otel.server.app import ServerState, create_app
from galileo_otel.server.faults import FaultInjector, FaultRule
from galileo_otel.server.limits import DEFAULT_MAX_BODY_BYTES, is_loopback

__all__ = ["RunningServer", "bind_socket", "is_loopback", "serve_in_thread", "uvicorn_config"]

_START_TIMEOUT_S = 10.0


def bind_socket(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket for uvicorn (port 0 = a free port).

    Raises:
        OSError: The address cannot be bound (e.g. the port is taken).
    """
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on sockets whose proto says TCP, and
    # without it a keep-alive answer written in two parts waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        if os.name != "nt":  # on Windows SO_REUSEADDR would let two servers share the port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        # Listen now, not when uvicorn gets to it: `serve` prints "listening on" before uvicorn
        # starts, and a client that connects in between must queue, not be refused.
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def uvicorn_config(app: FastAPI, **overrides: Any) -> uvicorn.Config:
    """A uvicorn config that leaves the host's logging and signals alone and stops quickly."""
    options: dict[str, Any] = {
        "log_config": None,
        "access_log": False,
        "http": "h11",
        "ws": "none",
        "lifespan": "on",
        "proxy_headers": False,
        "server_header": False,
        "timeout_graceful_shutdown": 1,
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)


class RunningServer:
    """A local server on a uvicorn thread. Use as a context manager, or ``start()``/``stop()``.

    Attributes:
        app: The FastAPI app.
        faults: The live :class:`~galileo_otel.server.faults.FaultInjector`.
        host: The bound host.
        port: The bound port (known once started).
    """

    def __init__(self, app: FastAPI, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._state: ServerState = app.state.galileo
        self.faults: FaultInjector = self._state.faults
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    def __repr__(self) -> str:
        return f"RunningServer(url={self.url!r})"

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def ui_url(self) -> str:
        """The web UI's login URL, ``{url}/?token=...``: opening it lets that browser in.

        The token is stored next to the database (``<db>.ui-token``), so it stays the same
        across restarts; ``?token=`` works on any page of the UI.
        """
        from galileo_otel.server.ui import ui_access

        return ui_access(self.app).login_url(self.url)

    @property
    def api_key(self) -> str:
        """The key clients must send in ``Galileo-API-Key``."""
        return self._state.api_key

    @property
    def state(self) -> ServerState:
        """The app's store, writer and faults."""
        return self._state

    def wait_idle(self, timeout: float | None = 10.0) -> bool:
        """Wait until background (``reliable: false``) ingestion is done; False on timeout."""
        return self._state.wait_idle(timeout)

    def start(self) -> RunningServer:
        """Bind (port 0 = a free port), start uvicorn and wait until it accepts connections.

        Raises:
            OSError: The address cannot be bound.
            RuntimeError: The server did not start within 10 seconds.
        """
        if self._thread is not None:
            return self
        sock = bind_socket(self.host, self.port)
        self._socket = sock
        self.port = sock.getsockname()[1]
        self._server = uvicorn.Server(uvicorn_config(self.app, log_level="warning"))
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name=f"galileo-otel-server:{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the local Galileo server did not start")
            time.sleep(0.005)
        return self

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop within about ``timeout`` seconds even if a request hangs; True if the thread ended.

        Hanging faults are released first; uvicorn gets a graceful second, then is forced.
        """
        self._state.faults.close()
        ended = True
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(max(timeout - 1.0, 0.1))
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(1.0)
            ended = not self._thread.is_alive()
        self._state.close(timeout=max(timeout / 2, 0.5))
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        return ended

    def __enter__(self) -> RunningServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve_in_thread(
    *,
    db_path: str | os.PathLike[str] | None = None,
    api_key: str | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    faults: FaultInjector | Iterable[FaultRule | Mapping[str, Any]] | None = None,
    fault_admin: bool = False,
    allow_remote: bool = False,
    start: bool = True,
    open_docs: bool | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> RunningServer:
    """Serve the local Galileo-compatible API on a background thread.

    Args:
        db_path: SQLite file; default under ``$XDG_DATA_HOME/galileo-otel/``.
        api_key: The key clients must send; default ``GALILEO_API_KEY``, else the key stored
            next to the database (generated on first use; read it from ``.api_key``).
        host: Bind address; a non-loopback one needs ``allow_remote=True`` and an ``api_key``.
        port: Port; 0 picks a free one (read it from ``.url``/``.port``).
        faults: A live :class:`FaultInjector` or initial rules.
        fault_admin: Also serve the ``/local/faults`` admin endpoints.
        allow_remote: Permit a non-loopback ``host``.
        start: Start now (default); otherwise call ``start()`` or use ``with``.
        open_docs: Serve ``/docs``, ``/redoc`` and ``/openapi.json`` without a key. Default:
            only on a loopback ``host`` with no ``api_key`` given.
        max_body_bytes: Largest request body accepted; more is answered 413.

    Returns:
        The :class:`RunningServer` (a context manager that stops it).

    Raises:
        ValueError: A non-loopback host without ``allow_remote`` and an explicit key.
    """
    if not is_loopback(host) and not (allow_remote and api_key):
        raise ValueError(
            f"refusing to serve on non-loopback address {host!r}: "
            "pass allow_remote=True and an explicit api_key"
        )
    if open_docs is None:
        open_docs = is_loopback(host) and api_key is None
    app = create_app(
        db_path=db_path,
        api_key=api_key,
        faults=faults,
        fault_admin=fault_admin,
        open_docs=open_docs,
        max_body_bytes=max_body_bytes,
    )
    server = RunningServer(app, host=host, port=port)
    if start:
        try:
            server.start()
        except BaseException:
            app.state.galileo.close()
            raise
    return server
