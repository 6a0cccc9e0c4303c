"""Fixtures of the conformance suite: the local Galileo server and the scripted OpenAI stub."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from openai_stub import OpenAIStub, start_openai_stub

API_KEY = "conformance-key"


@pytest.fixture(scope="session")
def galileo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One local server (uvicorn on 127.0.0.1, temp SQLite) for the whole suite; every run
    writes to its own project."""
    from galileo_otel.server import serve_in_thread

    path = tmp_path_factory.mktemp("conformance") / "galileo.db"
    with serve_in_thread(db_path=path, api_key=API_KEY) as server:
        yield server


@pytest.fixture(scope="session")
def openai_stub() -> Iterator[OpenAIStub]:
    with start_openai_stub() as stub:
        yield stub
