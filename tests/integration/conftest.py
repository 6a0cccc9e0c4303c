"""Fixtures of the integration tests that need a real external service (redis-server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest_redis import RedisServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the test session (127.0.0.1, free port, no persistence)."""
    server = RedisServer(Path(tmp_path_factory.mktemp("redis")))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The shared redis-server's URL, its database emptied before the test."""
    client = redis_server.client()
    try:
        client.flushdb()
    finally:
        client.close()
    yield redis_server.url
