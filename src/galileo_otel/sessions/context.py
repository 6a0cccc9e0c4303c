"""``session()``: put everything that runs inside it into one Galileo session.

The current session lives in a :mod:`contextvars` variable, so it follows the code through
threads started with :func:`contextvars.copy_context` and through asyncio tasks, and leaving a
``session()`` restores the outer one. Optionally it also rides OTel baggage to other services.
"""

from __future__ import annotations

import functools
import inspect
import json
import uuid
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar, cast

from opentelemetry import baggage as otel_baggage
from opentelemetry import context as otel_context

from galileo_otel.export.sdk_span import baggage_value, stamp_attributes, start_attributes
from galileo_otel.sessions.resolve import (
    CAPTURED_GALILEO_ID,
    CAPTURED_KEY,
    CAPTURED_NAME,
    GALILEO_SESSION_ID,
    GALILEO_SESSION_METADATA,
    GALILEO_SESSION_NAME,
    KEY_ATTRIBUTES,
    SESSION_ID,
    USER_ID,
    encode_captured,
    is_scrubbed,
)

__all__ = [
    "SessionContext",
    "baggage_default",
    "capture_keys",
    "capture_root_keys",
    "current_session",
    "session",
    "set_baggage_default",
]

F = TypeVar("F", bound=Callable[..., Any])

_CURRENT: ContextVar[SessionContext | None] = ContextVar("galileo_otel_session", default=None)

# Whether session() writes OTel baggage when its ``baggage`` argument is None. Off by default:
# baggage leaves the process in every outgoing request. GalileoSessionProcessor sets it from
# GalileoSettings.session_baggage (GALILEO_SESSION_BAGGAGE).
_baggage_default = False


def set_baggage_default(enabled: bool) -> None:
    """Choose whether ``session()`` propagates through OTel baggage when not told per call.

    Args:
        enabled: True to add ``session.id`` to the OTel baggage of every ``session()``.
    """
    global _baggage_default
    _baggage_default = bool(enabled)


def baggage_default() -> bool:
    """Whether ``session()`` propagates through OTel baggage when not told per call."""
    return _baggage_default


@dataclass(frozen=True)
class SessionContext:
    """One active ``session()``: what the processor stamps on every span started inside it.

    Attributes:
        key: The session key: ``external_id``, or a generated uuid4 hex when none was given.
        external_id: The key the app gave, or ``None``.
        name: The session name for Galileo, or ``None`` (derived later).
        user_id: The user of the session, or ``None``.
        metadata: Extra session metadata (strings), or ``None``.
        baggage: Whether ``session.id`` is also put into OTel baggage for downstream services.
    """

    key: str
    external_id: str | None = None
    name: str | None = None
    user_id: str | None = None
    metadata: Mapping[str, str] | None = field(default=None, hash=False, compare=False)
    baggage: bool = False
    # Precomputed once so that on_start costs one set_attributes call and nothing else.
    span_attributes: Mapping[str, str] = field(
        default_factory=dict, repr=False, hash=False, compare=False
    )

    @classmethod
    def make(
        cls,
        external_id: str | None = None,
        *,
        name: str | None = None,
        user_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        baggage: bool = False,
    ) -> SessionContext:
        """Build a context, generating a unique key when ``external_id`` is None.

        Args:
            external_id: The app's session key (e.g. a conversation id).
            name: The session name.
            user_id: The user the session belongs to.
            metadata: Extra metadata; values are turned into strings.
            baggage: Propagate ``session.id`` through OTel baggage.
        """
        ext = None if external_id is None else str(external_id)
        key = ext if ext else uuid.uuid4().hex
        meta = None if metadata is None else {str(k): _as_str(v) for k, v in metadata.items()}
        # The captured copies survive tools that scrub "session" attributes (see resolve.py).
        attrs: dict[str, str] = {SESSION_ID: key, CAPTURED_KEY: encode_captured(key)}
        if user_id is not None:
            user_id = str(user_id)
            attrs[USER_ID] = user_id
        if name is not None:
            name = str(name)
            attrs[GALILEO_SESSION_NAME] = name
            attrs[CAPTURED_NAME] = encode_captured(name)
        if meta:
            attrs[GALILEO_SESSION_METADATA] = json.dumps(meta, sort_keys=True)
        return cls(
            key=key,
            external_id=ext or None,
            name=name,
            user_id=user_id,
            metadata=meta,
            baggage=baggage,
            span_attributes=attrs,
        )


def capture_keys(span: Any, parent_context: otel_context.Context | None = None) -> bool:
    """Copy, at span start, the session key and Galileo session id where scrubbing cannot reach.

    Tools such as logfire rewrite ``session.*`` attributes (and values that contain e.g.
    "session") before a span processor's ``on_end`` sees the span; at ``on_start`` the app's
    values are still intact. Called by the processor for spans outside any ``session()``; a
    child span returns at once; a root span costs a few dict lookups (and a baggage lookup when
    it names no key), and one attribute write only when there is something to keep.

    Args:
        span: The span being started (an SDK ``Span``).
        parent_context: Its parent context (for inbound baggage).

    Returns:
        True when the span names its own session key in an attribute (baggage cannot apply to
        it then), else False.
    """
    parent = span.parent
    if parent is not None and not parent.is_remote:
        return False  # only the root span of a trace (in this process) decides its session
    return capture_root_keys(span, parent_context) is NAMED


#: What :func:`capture_root_keys` returns for a span that names its own session key.
NAMED: Any = object()


def capture_root_keys(span: Any, parent_context: otel_context.Context | None) -> object | None:
    """:func:`capture_keys` of a span the caller knows is a root (no parent, or a remote one).

    Returns:
        :data:`NAMED` when the span names its own session key in an attribute; else the inbound
        baggage's ``session.id`` (``None`` when there is none), read once for the caller too.
    """
    # The SDK span's own dict: its public proxy costs ~1 us per lookup, set_attribute ~1.5 us
    # (see export/sdk_span.py).
    attributes = start_attributes(span)
    if attributes:
        galileo_id = attributes.get(GALILEO_SESSION_ID)
        if isinstance(galileo_id, str) and galileo_id and not is_scrubbed(galileo_id):
            stamp_attributes(span, {CAPTURED_GALILEO_ID: galileo_id})
        for name in KEY_ATTRIBUTES:
            value = attributes.get(name)
            if value is None:
                continue
            named = bool(value)  # what the processor's baggage check calls naming a key
            if isinstance(value, int) and not isinstance(value, bool):
                value = str(value)
            if isinstance(value, str):
                text = value.strip()
                # Inline, on every root: is_scrubbed only for what starts like a scrubbed value
                # (after strip: a value with leading blanks is no scrubbed value either), and
                # encode_captured(text) spelt out.
                if text and (text[0] != "[" or not is_scrubbed(value)):
                    stamp_attributes(span, {CAPTURED_KEY: "a" + text.encode().hex()})
                    # A key of 0 is captured but does not count as naming one (see above).
                    return NAMED if named else baggage_value(SESSION_ID, parent_context)
    key = baggage_value(SESSION_ID, parent_context)
    if isinstance(key, str) and key.strip():
        stamp_attributes(span, {CAPTURED_KEY: encode_captured(key.strip(), "b")})
    return key


def _as_str(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def current_session() -> SessionContext | None:
    """The innermost active ``session()`` of the current context, or ``None``."""
    return _CURRENT.get()


_Tokens = tuple[Token[SessionContext | None], object | None]


def _activate(ctx: SessionContext) -> _Tokens:
    token = _CURRENT.set(ctx)
    otel_token = None
    if ctx.baggage:
        otel_token = otel_context.attach(otel_baggage.set_baggage(SESSION_ID, ctx.key))
    return token, otel_token


def _deactivate(tokens: _Tokens) -> None:
    token, otel_token = tokens
    if otel_token is not None:
        otel_context.detach(cast("Token[otel_context.Context]", otel_token))
    _CURRENT.reset(token)


class session:  # lower-case like contextlib.suppress: it reads as a statement
    """Put everything inside into one Galileo session; a context manager and a decorator.

    The innermost ``session()`` wins; leaving it restores the outer one. With no
    ``external_id`` each entry (each call, for a decorated function) is a new session with a
    generated key. Works with ``with`` and ``async with``, and decorates sync functions, async
    functions, generators and async generators (for generators the session is active only while
    the generator body runs, not while it is suspended at a ``yield``).

    Example:
        >>> from galileo_otel import session
        >>> with session("conv-42", user_id="alice", name="support chat"):
        ...     pass  # spans started here carry session.id="conv-42", user.id="alice"

    Args:
        external_id: The app's session key, e.g. a conversation id; sent as ``external_id``.
        name: The session name shown in Galileo.
        user_id: The user of the session (stamped as ``user.id``); chains their sessions.
        metadata: Extra session metadata (``user_metadata`` in Galileo).
        baggage: Also put ``session.id`` into OTel baggage so downstream services join the
            session. ``None`` follows ``GALILEO_SESSION_BAGGAGE`` (off by default: baggage
            leaves the process in outgoing requests).
    """

    def __init__(
        self,
        external_id: str | None = None,
        *,
        name: str | None = None,
        user_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        baggage: bool | None = None,
    ) -> None:
        if callable(external_id):
            raise TypeError("use @session() with parentheses (or @session('key')), not @session")
        self._external_id = external_id
        self._name = name
        self._user_id = user_id
        self._metadata = dict(metadata) if metadata is not None else None
        self._baggage = baggage
        # One entry per active ``with``; a list, not a single slot, so that one session object
        # entered from several threads or tasks at once still restores each one correctly.
        self._active: list[_Tokens] = []
        # Reused for every entry when the key is fixed; a generated key is new per entry.
        self._fixed: SessionContext | None = None

    def _context(self) -> SessionContext:
        baggage = self._baggage if self._baggage is not None else _baggage_default
        fixed = self._fixed
        if fixed is not None and fixed.baggage == baggage:
            return fixed
        ctx = SessionContext.make(
            self._external_id,
            name=self._name,
            user_id=self._user_id,
            metadata=self._metadata,
            baggage=baggage,
        )
        if self._external_id:
            self._fixed = ctx
        return ctx

    # --- context manager ----------------------------------------------------------------------
    def __enter__(self) -> SessionContext:
        ctx = self._context()
        self._active.append(_activate(ctx))
        return ctx

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Newest first: the usual case is the last entry. A token made in another context
        # (another thread or task using the same object) refuses to reset; try the next one.
        for index in range(len(self._active) - 1, -1, -1):
            tokens = self._active[index]
            try:
                _deactivate(tokens)
            except ValueError:
                continue
            del self._active[index]
            return

    async def __aenter__(self) -> SessionContext:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    # --- decorator ----------------------------------------------------------------------------
    def __call__(self, fn: F) -> F:
        """Run every call of ``fn`` inside this session (one session per call without a key)."""
        if inspect.isasyncgenfunction(fn):
            return cast("F", self._wrap_async_gen(fn))
        if inspect.isgeneratorfunction(fn):
            return cast("F", self._wrap_gen(fn))
        if inspect.iscoroutinefunction(fn):
            return cast("F", self._wrap_async(fn))
        return cast("F", self._wrap_sync(fn))

    def _wrap_sync(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            tokens = _activate(self._context())
            try:
                return fn(*args, **kwargs)
            finally:
                _deactivate(tokens)

        return wrapper

    def _wrap_async(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            tokens = _activate(self._context())
            try:
                return await fn(*args, **kwargs)
            finally:
                _deactivate(tokens)

        return wrapper

    def _wrap_gen(self, fn: Callable[..., Generator[Any, Any, Any]]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
            ctx = self._context()  # one session for the whole life of this generator
            tokens = _activate(ctx)
            try:
                gen = fn(*args, **kwargs)
            finally:
                _deactivate(tokens)
            return _run_gen(gen, ctx)

        return wrapper

    def _wrap_async_gen(self, fn: Callable[..., AsyncGenerator[Any, Any]]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
            return _run_async_gen(fn(*args, **kwargs), self._context())

        return wrapper


def _run_gen(gen: Generator[Any, Any, Any], ctx: SessionContext) -> Generator[Any, Any, Any]:
    """Drive ``gen`` with the session active only while its body runs (a ``yield from``)."""
    to_send: Any = None
    to_throw: BaseException | None = None
    while True:
        tokens = _activate(ctx)
        try:
            if to_throw is not None:
                item = gen.throw(to_throw)
            else:
                item = gen.send(to_send)
        except StopIteration as stop:
            return stop.value
        finally:
            _deactivate(tokens)
        to_send, to_throw = None, None
        try:
            to_send = yield item
        except GeneratorExit:
            tokens = _activate(ctx)
            try:
                gen.close()
            finally:
                _deactivate(tokens)
            raise
        except BaseException as exc:  # thrown in by the caller: pass it on to the body
            to_throw = exc


async def _run_async_gen(
    agen: AsyncGenerator[Any, Any], ctx: SessionContext
) -> AsyncGenerator[Any, Any]:
    """Drive ``agen`` with the session active only while its body runs."""
    to_send: Any = None
    to_throw: BaseException | None = None
    while True:
        tokens = _activate(ctx)
        try:
            if to_throw is not None:
                item = await agen.athrow(to_throw)
            else:
                item = await agen.asend(to_send)
        except StopAsyncIteration:
            return
        finally:
            _deactivate(tokens)
        to_send, to_throw = None, None
        try:
            to_send = yield item
        except GeneratorExit:
            tokens = _activate(ctx)
            try:
                await agen.aclose()
            finally:
                _deactivate(tokens)
            raise
        except BaseException as exc:  # thrown in by the caller: pass it on to the body
            to_throw = exc
