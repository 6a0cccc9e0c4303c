"""The one place that touches OpenTelemetry SDK span internals, for speed.

An ended SDK span freezes its attributes (``BoundedAttributes`` with ``_dict``) and its events
(``BoundedList`` with ``_dq``). Their public accessors copy (the attribute proxy goes key by key
in Python; ``events`` takes a lock and copies), which cost more than converting a small span.
On the app thread, ``Span.set_attributes`` takes the span's lock and the attribute container's
lock and re-validates every value (~1.5 us for one attribute): :func:`stamp_attributes` writes
our own ``str`` values straight into a starting span's dict when the SDK's limits cannot apply.
Every access here falls back to the public API when the internals are not what we expect, and
``tests/unit/test_sdk_span.py`` pins them to the installed ``opentelemetry-sdk``, so an SDK
release that moves them fails a test instead of silently taking the slow path.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from typing import Any

from opentelemetry import baggage as _baggage
from opentelemetry import context as _context
from opentelemetry.context import Context, get_current
from opentelemetry.trace import SpanContext

from galileo_otel.export.record import OffloadedSpan

# The context key the API keeps baggage under; get_baggage() wraps the lookup in three calls and
# a MappingProxyType (~0.3 us), paid by every span's on_start. None: take the public path.
_BAGGAGE_KEY: str | None = getattr(_baggage, "_BAGGAGE_KEY", None)

# The API's runtime context and, when it is the default contextvars one, its ContextVar:
# get_current() is two Python calls around that ContextVar's get (~1 thousand instructions, on
# every span outside a session()). Read directly while the API still uses that runtime context.
_RUNTIME: Any = getattr(_context, "_RUNTIME_CONTEXT", None)
_RUNTIME_VAR: Any = getattr(_RUNTIME, "_current_context", None)
_current_get: Any = _RUNTIME_VAR.get if type(_RUNTIME_VAR) is ContextVar else None


def _frozen_dict(attributes: Any) -> dict[str, Any] | None:
    """A ``BoundedAttributes``' own dict (``None``: not one, or moved by an SDK release)."""
    inner = getattr(attributes, "_dict", None)
    return inner if type(inner) is dict else None


def _frozen_events(span: Any) -> deque[Any] | None:
    """An SDK span's own deque of events (``None``: not one, or moved by an SDK release)."""
    inner = getattr(getattr(span, "_events", None), "_dq", None)
    return inner if type(inner) is deque else None


# span_attributes, start_attributes, stamp_attributes and span_record run for every span (the
# last three on the app thread), so they read the internals inline: a call to the helpers
# above costs them ~30 ns (about a tenth) per span.


def span_attributes(span: Any) -> Mapping[str, Any]:
    """The span's attributes as a read-only mapping, without copying when the span has ended."""
    if type(span) is OffloadedSpan:  # a rebuilt span (record.py): its plain dict, as is
        return span.attributes
    inner = getattr(getattr(span, "_attributes", None), "_dict", None)
    return inner if type(inner) is dict else dict(span.attributes or {})


def span_events(span: Any) -> Sequence[Any]:
    """The span's events; an ended SDK span's frozen deque is read without the locked copy."""
    inner = _frozen_events(span)
    if inner is None:
        events: Sequence[Any] = span.events
        return events
    return tuple(inner) if inner else ()


def plain_mapping(mapping: Any) -> dict[str, Any]:
    """A ``BoundedAttributes`` (or any mapping) as a plain dict, its inner dict when frozen."""
    inner = _frozen_dict(mapping)
    return inner if inner is not None else dict(mapping or {})


def start_attributes(span: Any) -> Mapping[str, Any] | None:
    """A starting span's attributes, read without the proxy (``None``: no attributes)."""
    inner = getattr(getattr(span, "_attributes", None), "_dict", None)
    if type(inner) is dict:
        return inner
    attributes: Mapping[str, Any] | None = span.attributes
    return attributes


def stamp_attributes(span: Any, attributes: Mapping[str, str]) -> None:
    """Add our own ``str`` attributes to a span that is starting (``on_start``), cheaply.

    Straight into the span's dict when the SDK's limits cannot change them (no value length
    limit, room under the count limit, the span not ended); through ``set_attributes`` else.
    """
    try:  # plain attribute reads: cheaper than getattr() with a default, on every stamped span
        raw = span._attributes
        inner = raw._dict
        maxlen = raw.maxlen
        if (
            type(inner) is dict
            and raw._immutable is False
            and raw.max_value_len is None
            and (maxlen is None or len(inner) + len(attributes) <= maxlen)
        ):
            inner.update(attributes)
            return
    except AttributeError:
        pass
    span.set_attributes(attributes)


def span_resource(span: Any) -> Any:
    """The span's resource (read off the SDK span without the property when it can)."""
    try:
        return span._resource
    except AttributeError:
        return getattr(span, "resource", None)


def span_record(span: Any, resource_id: int) -> tuple[Any, ...]:
    """An ended span's fields as a tuple of builtins, read off the SDK's slots when it has them.

    ``(name, trace_id, span_id, parent_span_id | None, parent_is_remote, start_time, end_time,
    kind value, status code value, status description, attributes, events | None,
    resource_id)``, events as ``(name, timestamp, attributes)``. What the export worker process
    is sent (offload/parent.py); ~0.9 us against ~1.6 us through the public properties.
    """
    try:
        name = span._name
        ctx = span._context
        parent = span._parent
        start, end = span._start_time, span._end_time
        # An enum member's value is its ``_value_`` (the ``value`` property is a Python-level
        # descriptor call): read directly, like the frozen containers.
        kind = span._kind._value_
        status = span._status
        code = status._status_code._value_
        description = status._description
        attrs = span._attributes._dict
        evs = span._events._dq
        if type(attrs) is not dict or type(evs) is not deque:
            raise AttributeError("not a frozen SDK span")
    except AttributeError:
        name, ctx, parent = span.name, span.context, span.parent
        start, end, kind = span.start_time, span.end_time, span.kind.value
        code, description = span.status.status_code.value, span.status.description
        attrs = span_attributes(span)
        evs = span_events(span)
    # Both paths end here. A SpanContext is a tuple (trace_id, span_id, is_remote, ...) whose
    # properties are Python-level calls: read by index (~0.4 us less per span with the enum
    # values above); any other context through its properties.
    if parent is None:
        parent_id, remote = None, False
    elif type(parent) is SpanContext:
        parent_id, remote = parent[1], bool(parent[2])
    else:
        parent_id, remote = parent.span_id, bool(parent.is_remote)
    if type(ctx) is not SpanContext:
        ctx = (0, 0) if ctx is None else (ctx.trace_id, ctx.span_id)
    events = None
    if evs:
        events = tuple((e.name, e.timestamp, plain_mapping(e.attributes)) for e in evs)
    return (
        name,
        ctx[0],
        ctx[1],
        parent_id,
        remote,
        start,
        end,
        kind,
        code,
        description,
        attrs,
        events,
        resource_id,
    )


def uses_fast_path(span: Any) -> bool:
    """Whether both reads above take the internal path for this span (tests pin this)."""
    return (
        _frozen_dict(getattr(span, "_attributes", None)) is not None
        and _frozen_events(span) is not None
    )


def baggage_value(name: str, context: Context | None = None) -> object | None:
    """``baggage.get_baggage(name, context)``, without its wrapping when the API allows."""
    if _BAGGAGE_KEY is None:
        return _baggage.get_baggage(name, context)
    if context is None:
        if _current_get is not None and _context._RUNTIME_CONTEXT is _RUNTIME:
            context = _current_get()
        else:
            context = get_current()
    bag = context.get(_BAGGAGE_KEY)
    return bag.get(name) if type(bag) is dict else None


def uses_fast_stamp(span: Any) -> bool:
    """Whether :func:`stamp_attributes` writes straight into this (starting) span (tests pin this)."""
    raw = getattr(span, "_attributes", None)
    return (
        _frozen_dict(raw) is not None
        and getattr(raw, "_immutable", True) is False
        and getattr(raw, "max_value_len", 0) is None
        and hasattr(raw, "maxlen")
    )
