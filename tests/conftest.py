"""Shared fixtures: a clean environment for every test, and a real local server on 127.0.0.1."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings as hypothesis_settings

# CI must be deterministic: the same examples on every run (a developer's runs stay random, and
# that is where new failing examples are found; each one found becomes a regression test).
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test sees the developer's GALILEO_*/OTEL_* settings, and caches go to a temp dir."""
    for name in list(os.environ):
        if name.startswith(("GALILEO_", "OTEL_")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("data")))


TEST_API_KEY = "test-key"


@pytest.fixture
def local_server(tmp_path):  # type: ignore[no-untyped-def]
    """A real local Galileo-compatible server (uvicorn on 127.0.0.1, free port, temp SQLite)."""
    from galileo_otel.server import serve_in_thread

    with serve_in_thread(db_path=tmp_path / "galileo.db", api_key=TEST_API_KEY) as server:
        yield server


@pytest.fixture
def local_project(local_server) -> Iterator[tuple[object, object, str]]:  # type: ignore[no-untyped-def]
    """(server, GalileoClient, project_id) with a fresh project "test" and log stream "default"."""
    from galileo_otel.api.client import GalileoClient

    with GalileoClient(api_url=local_server.url, api_key=TEST_API_KEY) as client:
        dest = client.resolve_destination(project="test", log_stream="default", create=True)
        with GalileoClient(
            api_url=local_server.url,
            api_key=TEST_API_KEY,
            project_id=dest.project_id,
            log_stream_id=dest.log_stream_id,
        ) as bound:
            yield local_server, bound, dest.project_id
