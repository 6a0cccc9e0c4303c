"""Fixtures of the conformance suite: the local Galileo server and the scripted OpenAI stub."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from conformance_harness import SENT_TRACES

from openai_stub import OpenAIStub, start_openai_stub

API_KEY = "conformance-key"


class RecordTraceBodies:
    """ASGI middleware: keeps every Log Traces request body exactly as the client sent it (the
    stored records carry what the server adds, e.g. its totals), by trace id."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if not (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"].startswith("/v2/projects/")
            and scope["path"].endswith("/traces")
        ):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []

        async def recording() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    body = json.loads(b"".join(chunks) or b"{}")
                    for trace in body.get("traces") or []:
                        if isinstance(trace, dict) and trace.get("id"):
                            SENT_TRACES[str(trace["id"])] = trace
            return message

        await self.app(scope, recording, send)


@pytest.fixture(scope="session")
def galileo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One local server (uvicorn on 127.0.0.1, temp SQLite) for the whole suite; every run
    writes to its own project. What clients send is recorded on the way in."""
    from galileo_otel.server import serve_in_thread

    path = tmp_path_factory.mktemp("conformance") / "galileo.db"
    server = serve_in_thread(db_path=path, api_key=API_KEY, start=False)
    server.app.add_middleware(RecordTraceBodies)
    with server.start():
        yield server


@pytest.fixture(scope="session")
def openai_stub() -> Iterator[OpenAIStub]:
    with start_openai_stub() as stub:
        yield stub
