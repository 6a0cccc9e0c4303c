"""ASGI/WSGI middleware: each request runs inside the session its header or cookie names."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from galileo_otel.middleware import GalileoASGIMiddleware, GalileoWSGIMiddleware, SessionExtractor
from galileo_otel.sessions.context import current_session


def _seen_asgi() -> tuple[list[Any], Any]:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(current_session())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return seen, app


def _call_asgi(app: Any, headers: list[tuple[bytes, bytes]], scope_type: str = "http") -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        return None

    scope = {"type": scope_type, "method": "GET", "path": "/", "headers": headers}
    asyncio.run(app(scope, receive, send))


def test_asgi_header_opens_session_with_user() -> None:
    seen, app = _seen_asgi()
    mw = GalileoASGIMiddleware(app, header="X-Session-Id", user_header="X-User-Id")
    _call_asgi(mw, [(b"x-session-id", b"conv-1"), (b"x-user-id", b"alice")])
    assert seen[0] is not None
    assert (seen[0].key, seen[0].external_id, seen[0].user_id) == ("conv-1", "conv-1", "alice")
    assert current_session() is None  # restored after the request


def test_asgi_cookie_used_when_header_absent() -> None:
    seen, app = _seen_asgi()
    mw = GalileoASGIMiddleware(app, cookie="chat_sid")
    _call_asgi(mw, [(b"cookie", b"theme=dark; chat_sid=conv-9")])
    assert seen[0].key == "conv-9"


def test_asgi_header_wins_over_cookie() -> None:
    seen, app = _seen_asgi()
    mw = GalileoASGIMiddleware(app, cookie="chat_sid")
    _call_asgi(mw, [(b"cookie", b"chat_sid=from-cookie"), (b"x-session-id", b"from-header")])
    assert seen[0].key == "from-header"


@pytest.mark.parametrize(
    "headers",
    [[], [(b"x-session-id", b"   ")], [(b"x-session-id", b"x" * 300)], [(b"cookie", b"a=b")]],
)
def test_asgi_without_usable_id_passes_through(headers: list[tuple[bytes, bytes]]) -> None:
    seen, app = _seen_asgi()
    _call_asgi(GalileoASGIMiddleware(app, cookie="sid"), headers)
    assert seen == [None]


def test_asgi_lifespan_and_other_scopes_untouched() -> None:
    calls: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        calls.append(scope["type"])

    asyncio.run(GalileoASGIMiddleware(app)({"type": "lifespan"}, None, None))  # type: ignore[arg-type]
    assert calls == ["lifespan"]


def test_asgi_websocket_scope_gets_session() -> None:
    seen, app = _seen_asgi()
    _call_asgi(GalileoASGIMiddleware(app), [(b"x-session-id", b"ws-1")], scope_type="websocket")
    assert seen[0].key == "ws-1"


def test_asgi_concurrent_requests_keep_their_own_session() -> None:
    seen: dict[str, str | None] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        path = scope["path"]
        await asyncio.sleep(0)  # interleave the two requests
        s = current_session()
        seen[path] = s.key if s else None

    mw = GalileoASGIMiddleware(app)

    async def both() -> None:
        await asyncio.gather(
            mw({"type": "http", "path": "/a", "headers": [(b"x-session-id", b"A")]}, None, None),  # type: ignore[arg-type]
            mw({"type": "http", "path": "/b", "headers": [(b"x-session-id", b"B")]}, None, None),  # type: ignore[arg-type]
        )

    asyncio.run(both())
    assert seen == {"/a": "A", "/b": "B"}


def _tracer() -> tuple[Any, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test"), exporter


def test_asgi_stamps_outer_server_span() -> None:
    # An HTTP instrumentation wrapped around the middleware starts the root span before the
    # session exists; the middleware stamps it so the trace lands in the right session.
    tracer, exporter = _tracer()
    _, app = _seen_asgi()
    _call_asgi_with_span(tracer, GalileoASGIMiddleware(app, user_header="X-User-Id"))
    (span,) = exporter.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes["session.id"] == "c-7"
    assert span.attributes["user.id"] == "bob"


def _call_asgi_with_span(tracer: Any, mw: Any) -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        return None

    async def run() -> None:
        with tracer.start_as_current_span("GET /chat"):
            await mw(
                {"type": "http", "headers": [(b"x-session-id", b"c-7"), (b"x-user-id", b"bob")]},
                receive,
                send,
            )

    asyncio.run(run())


def test_user_header_alone_stamps_span_without_opening_a_session() -> None:
    tracer, exporter = _tracer()
    extractor = SessionExtractor(user_header="X-User-Id")
    sid, uid = extractor.extract({"x-user-id": "carol"}.get)
    assert (sid, uid) == (None, "carol")
    with tracer.start_as_current_span("root"):
        with extractor.context(sid, uid):
            assert current_session() is None
    (span,) = exporter.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes["user.id"] == "carol"
    assert "session.id" not in span.attributes


def _wsgi_app(seen: list[Any]) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> Any:
        seen.append(("call", current_session()))
        start_response("200 OK", [("Content-Type", "text/plain")])

        def body() -> Any:
            # A streaming body: runs when the server iterates, after app() returned.
            seen.append(("body", current_session()))
            yield b"a"
            seen.append(("body", current_session()))
            yield b"b"

        return body()

    return app


def test_wsgi_session_covers_call_and_streamed_body() -> None:
    seen: list[Any] = []
    mw = GalileoWSGIMiddleware(_wsgi_app(seen), user_header="X-User-Id")
    environ = {"HTTP_X_SESSION_ID": "conv-w", "HTTP_X_USER_ID": "dan", "REQUEST_METHOD": "GET"}
    body = mw(environ, lambda status, headers: None)
    assert current_session() is None
    chunks = list(body)
    body.close()  # type: ignore[attr-defined]
    assert chunks == [b"a", b"b"]
    assert [k for k, _ in seen] == ["call", "body", "body"]
    assert all(s is not None and s.key == "conv-w" and s.user_id == "dan" for _, s in seen)
    assert current_session() is None


def test_wsgi_cookie_and_passthrough() -> None:
    seen: list[Any] = []
    mw = GalileoWSGIMiddleware(_wsgi_app(seen), header=None, cookie="sid")
    list(mw({"HTTP_COOKIE": "sid=conv-c"}, lambda s, h: None))
    assert seen[0][1].key == "conv-c"
    seen.clear()
    list(mw({}, lambda s, h: None))
    assert seen == [("call", None), ("body", None), ("body", None)]


def test_wsgi_close_is_forwarded() -> None:
    closed: list[Any] = []

    class Body:
        def __iter__(self) -> Any:
            return iter([b"x"])

        def close(self) -> None:
            closed.append(current_session())

    mw = GalileoWSGIMiddleware(lambda e, s: Body())
    body = mw({"HTTP_X_SESSION_ID": "k"}, lambda s, h: None)
    assert list(body) == [b"x"]
    body.close()  # type: ignore[attr-defined]
    assert closed[0].key == "k"


def test_fastapi_add_middleware() -> None:
    fastapi = pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    app = fastapi.FastAPI()
    app.add_middleware(GalileoASGIMiddleware, header="X-Session-Id", user_header="X-User-Id")

    @app.get("/who")
    async def who() -> dict[str, Any]:
        s = current_session()
        return {"key": s.key if s else None, "user": s.user_id if s else None}

    with TestClient(app) as client:
        answer = client.get("/who", headers={"X-Session-Id": "f-1", "X-User-Id": "eve"}).json()
        none = client.get("/who").json()
    assert answer == {"key": "f-1", "user": "eve"}
    assert none == {"key": None, "user": None}
