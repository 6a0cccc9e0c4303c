"""Helpers for driving the REAL official ``galileo`` SDK against the local server.

The SDK keeps process-wide singletons (its config, its logger cache, its decorator context), so
each test gets fresh ones, its own environment and its own home directory. A socket guard fails
the test if anything (the SDK, its probes) tries to reach a non-loopback address.
"""

from __future__ import annotations

import gc
import ipaddress
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

if os.environ.get("CI") == "true":
    import galileo  # noqa: F401 - under CI a missing SDK is a failure, not a skip
else:
    pytest.importorskip("galileo", reason="the official galileo SDK (dev extra) is missing")

KEY = "sdk-test-key"


@dataclass
class OffLoopback:
    """Every connection or name lookup that was refused because it left the machine."""

    attempts: list[str] = field(default_factory=list)


def _is_loopback(host: Any) -> bool:
    if not isinstance(host, str):
        return False
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture(name="loopback_only")
def loopback_only_fixture(monkeypatch: pytest.MonkeyPatch) -> Iterator[OffLoopback]:
    """Refuse (and record) any connection or DNS lookup beyond 127.0.0.1 during the test."""
    seen = OffLoopback()
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def guard(address: Any) -> None:
        if isinstance(address, tuple) and not _is_loopback(address[0]):
            seen.attempts.append(repr(address))
            raise ConnectionRefusedError(f"test guard: {address!r} is not loopback")

    def connect(self: socket.socket, address: Any) -> None:
        guard(address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        guard(address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and not _is_loopback(name):
            seen.attempts.append(f"getaddrinfo({name!r})")
            raise socket.gaierror(f"test guard: {name!r} is not loopback")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield seen
    assert seen.attempts == [], f"the official SDK tried to leave the machine: {seen.attempts}"


def reset_sdk() -> None:
    """Forget the SDK's config, loggers and context (they are process-wide singletons)."""
    from galileo import galileo_context
    from galileo.config import GalileoPythonConfig
    from galileo.utils.singleton import GalileoLoggerSingleton

    GalileoLoggerSingleton().reset_all()
    galileo_context.reset()
    GalileoPythonConfig._instance = None


@pytest.fixture(name="sdk_env")
def sdk_env_fixture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_only: OffLoopback
) -> Iterator[Any]:
    """A real server on 127.0.0.1 and the official SDK configured for it (env, home, fresh state)."""
    from galileo_otel.server import serve_in_thread

    with serve_in_thread(db_path=tmp_path / "galileo.db", api_key=KEY) as server:
        home = tmp_path / "galileo-home"
        home.mkdir()
        monkeypatch.setenv("GALILEO_CONSOLE_URL", server.url)
        monkeypatch.setenv("GALILEO_API_URL", server.url)
        monkeypatch.setenv("GALILEO_API_KEY", KEY)
        monkeypatch.setenv("GALILEO_HOME_DIR", str(home))
        monkeypatch.setenv("GALILEO_PROJECT", "sdk-project")
        monkeypatch.setenv("GALILEO_LOG_STREAM", "sdk-stream")
        reset_sdk()
        try:
            yield server
        finally:
            reset_sdk()
            # The SDK leaves the transports of its own event loops to the garbage collector;
            # collect them here, inside the test that made them (whose marks ignore that leak),
            # rather than in whichever later test the collector happens to run.
            gc.collect()
