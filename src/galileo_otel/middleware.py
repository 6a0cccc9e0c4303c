"""ASGI and WSGI middleware that run each request inside the Galileo session it names.

The session id comes from a request header (``X-Session-Id`` by default) or a cookie the app
names; the user id, optionally, from another header. FastAPI / Starlette::

    app.add_middleware(GalileoASGIMiddleware, header="X-Session-Id", user_header="X-User-Id")

Flask / Django (WSGI)::

    app.wsgi_app = GalileoWSGIMiddleware(app.wsgi_app, cookie="chat_session")
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from contextlib import AbstractContextManager, nullcontext
from http.cookies import CookieError, SimpleCookie
from typing import Any

from opentelemetry import trace

from galileo_otel.sessions.context import session
from galileo_otel.sessions.resolve import SESSION_ID, USER_ID

__all__ = ["GalileoASGIMiddleware", "GalileoWSGIMiddleware", "SessionExtractor"]

DEFAULT_SESSION_HEADER = "X-Session-Id"

# Longer values are not ids but garbage or abuse; they would bloat every span and session row.
MAX_ID_LENGTH = 256

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class SessionExtractor:
    """Finds the session id and user id of a request in its headers and cookies.

    Args:
        header: Request header holding the session id (case-insensitive), or ``None``.
        cookie: Cookie holding the session id, tried after the header, or ``None``.
        user_header: Request header holding the user id, or ``None``.
    """

    def __init__(
        self,
        *,
        header: str | None = DEFAULT_SESSION_HEADER,
        cookie: str | None = None,
        user_header: str | None = None,
    ) -> None:
        self.header = header.lower() if header else None
        self.cookie = cookie
        self.user_header = user_header.lower() if user_header else None

    def extract(self, get_header: Callable[[str], str | None]) -> tuple[str | None, str | None]:
        """Return ``(session_id, user_id)`` using ``get_header(lowercase_name)``."""
        session_id = _clean(get_header(self.header)) if self.header else None
        if session_id is None and self.cookie:
            session_id = _clean(_cookie_value(get_header("cookie"), self.cookie))
        user_id = _clean(get_header(self.user_header)) if self.user_header else None
        return session_id, user_id

    def context(self, session_id: str | None, user_id: str | None) -> AbstractContextManager[Any]:
        """The context a request runs in, and stamp the span that is current on entry.

        The span current here is the server span of an HTTP instrumentation wrapped *around*
        this middleware (FastAPIInstrumentor, OpenTelemetryMiddleware): it started before the
        session context existed, so the processor could not stamp it; we stamp it now, because
        a trace's session is decided by its root span.
        """
        if session_id is None and user_id is None:
            return nullcontext()
        span = trace.get_current_span()
        if span.is_recording():
            if session_id is not None:
                span.set_attribute(SESSION_ID, session_id)
            if user_id is not None:
                span.set_attribute(USER_ID, user_id)
        if session_id is None:
            # A user without a conversation id joins the user's automatic session; opening a
            # session() here would make every request a session of its own.
            return nullcontext()
        return session(session_id, user_id=user_id)


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > MAX_ID_LENGTH:
        return None
    return value


def _cookie_value(header: str | None, name: str) -> str | None:
    if not header:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None


class GalileoASGIMiddleware:
    """ASGI middleware (FastAPI, Starlette, any ASGI app) that opens ``session()`` per request.

    HTTP and WebSocket requests carrying the session header or cookie run inside
    ``galileo_otel.session(<id>, user_id=<user>)``, so every span they make belongs to that
    conversation. Requests without one pass through untouched (a user id alone is stamped on
    the current span, which puts the trace in the user's automatic session).

    Args:
        app: The ASGI app to wrap.
        header: Request header holding the session id (default ``X-Session-Id``), or ``None``.
        cookie: Cookie holding the session id, tried after the header.
        user_header: Request header holding the user id, e.g. ``X-User-Id``.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        header: str | None = DEFAULT_SESSION_HEADER,
        cookie: str | None = None,
        user_header: str | None = None,
    ) -> None:
        self.app = app
        self._extractor = SessionExtractor(header=header, cookie=cookie, user_header=user_header)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request inside its session, if it names one."""
        if scope.get("type") not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope.get("headers") or ():
            # The first occurrence wins, as in Starlette's Headers.get.
            headers.setdefault(raw_name.decode("latin-1").lower(), raw_value.decode("latin-1"))
        session_id, user_id = self._extractor.extract(headers.get)
        with self._extractor.context(session_id, user_id):
            await self.app(scope, receive, send)


class GalileoWSGIMiddleware:
    """WSGI middleware (Flask, Django, any WSGI app) that opens ``session()`` per request.

    The session stays active while the response body is produced, so spans made by a
    streaming (generator) response belong to the request's session too.

    Args:
        app: The WSGI app to wrap.
        header: Request header holding the session id (default ``X-Session-Id``), or ``None``.
        cookie: Cookie holding the session id, tried after the header.
        user_header: Request header holding the user id, e.g. ``X-User-Id``.
    """

    def __init__(
        self,
        app: WSGIApp,
        *,
        header: str | None = DEFAULT_SESSION_HEADER,
        cookie: str | None = None,
        user_header: str | None = None,
    ) -> None:
        self.app = app
        self._extractor = SessionExtractor(header=header, cookie=cookie, user_header=user_header)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Run the request, and the iteration of its body, inside its session."""

        def get_header(name: str) -> str | None:
            key = "HTTP_" + name.upper().replace("-", "_")
            value = environ.get(key)
            return value if isinstance(value, str) else None

        session_id, user_id = self._extractor.extract(get_header)
        if session_id is None and user_id is None:
            return self.app(environ, start_response)
        with self._extractor.context(session_id, user_id):
            body = self.app(environ, start_response)
        if session_id is None:
            return body
        return _SessionBody(body, lambda: session(session_id, user_id=user_id))


class _SessionBody:
    """A WSGI response body whose iteration and close() run inside the request's session.

    Each step re-enters the session instead of holding one context open between calls: the
    server may drive the iterator from another context, and a contextvar token must be reset
    in the context that set it.
    """

    def __init__(
        self, body: Iterable[bytes], enter: Callable[[], AbstractContextManager[Any]]
    ) -> None:
        self._body = body
        self._iter: Iterator[bytes] | None = None
        self._enter = enter

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        with self._enter():
            if self._iter is None:
                self._iter = iter(self._body)
            return next(self._iter)

    def close(self) -> None:
        close = getattr(self._body, "close", None)
        if close is not None:
            with self._enter():
                close()
