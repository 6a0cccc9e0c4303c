"""A real redis-server for the tests: 127.0.0.1, a free port, its own directory, no persistence.

Missing ``redis-server`` (or the ``redis`` package) skips the test with the reason, except under
``CI=true`` where it fails: CI installs the Debian package ``redis-server`` and the ``[redis]``
extra.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

START_TIMEOUT_S = 20.0


def require(what: str, reason: str) -> None:
    """Skip (or, under CI, fail) because ``what`` is missing."""
    message = f"{what} is missing: {reason}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (CI must install it)")
    pytest.skip(message)


def redis_server_binary() -> str:
    """The redis-server executable, or skip/fail."""
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )
    if found is None:
        require("redis-server", "install the Debian/Ubuntu package 'redis-server'")
    assert found is not None
    try:
        import redis  # noqa: F401
    except ImportError:
        require("the 'redis' package", "pip install -e '.[dev,redis]'")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server process that can be killed and started again on the same port."""

    def __init__(self, directory: Path, port: int | None = None, unixsocket: bool = False) -> None:
        self.binary = redis_server_binary()
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        # AF_UNIX paths are limited to ~100 bytes: pytest's tmp dirs can be longer.
        self.socket = Path(tempfile.mkdtemp(prefix="redis-")) / "redis.sock" if unixsocket else None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--logfile",
                str(self.directory / "redis.log"),
                *(
                    ("--unixsocket", str(self.socket), "--unixsocketperm", "700")
                    if self.socket
                    else ()
                ),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.wait_ready()
        return self

    def client(self):  # type: ignore[no-untyped-def]
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def wait_ready(self) -> None:
        import redis

        deadline = time.monotonic() + START_TIMEOUT_S
        client = self.client()
        try:
            while True:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"redis-server exited ({self.proc.returncode}): {log}")
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not answer on {self.port}")
                time.sleep(0.02)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: no shutdown, connections cut as by a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None
