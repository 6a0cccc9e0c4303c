"""Spans as records: tuples of builtins (what ``marshal`` writes), and light spans rebuilt from them.

A record is :func:`~galileo_otel.export.sdk_span.span_record`'s tuple. The app thread makes one
as soon as a span ends, so the SDK span object dies at once instead of waiting in a queue for
the worker thread (see ``handoff.py``); the worker, in this process or the export worker
process, rebuilds an :class:`OffloadedSpan` with just what assembly, conversion and sessions
read, through its own :class:`Rebuilder`.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.trace import SpanKind, StatusCode

__all__ = ["OffloadedSpan", "Rebuilder", "make_resource", "rebuild_span"]

_KINDS = {k.value: k for k in SpanKind}
_CODES = {c.value: c for c in StatusCode}


class _Ctx:
    __slots__ = ("is_remote", "span_id", "trace_id")

    def __init__(self, trace_id: int, span_id: int, is_remote: bool) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.is_remote = is_remote


class _Status:
    __slots__ = ("description", "status_code")

    def __init__(self, status_code: StatusCode, description: str | None) -> None:
        self.status_code = status_code
        self.description = description


class _Event:
    __slots__ = ("attributes", "name", "timestamp")

    def __init__(self, name: str, timestamp: int, attributes: dict[str, Any]) -> None:
        self.name = name
        self.timestamp = timestamp
        self.attributes = attributes


class _Resource:
    __slots__ = ("attributes",)

    def __init__(self, attributes: dict[str, Any]) -> None:
        self.attributes = attributes


# The status of a span without a description, one object per code (most spans): shared, never
# mutated, so a rebuild makes one object fewer.
_PLAIN_STATUS = {c.value: _Status(c, None) for c in StatusCode}
_UNSET = _PLAIN_STATUS[StatusCode.UNSET.value]
_INTERNAL = SpanKind.INTERNAL
_new = object.__new__


class OffloadedSpan:
    """A span rebuilt from a record: just what assembly, conversion and sessions read.

    Made by :class:`Rebuilder` (or :func:`rebuild_span`); read-only once made.
    """

    __slots__ = (
        "attributes",
        "context",
        "end_time",
        "events",
        "kind",
        "name",
        "parent",
        "resource",
        "start_time",
        "status",
    )

    attributes: dict[str, Any]
    context: _Ctx
    end_time: int | None
    events: tuple[_Event, ...]
    kind: SpanKind
    name: str
    parent: _Ctx | None
    resource: Any
    start_time: int | None
    status: _Status

    # Not an SDK span: sdk_span.py's readers find no frozen SDK containers here (a class
    # attribute, so they do not pay for a failed lookup) and read ``events`` as is.
    _events = None


class Rebuilder:
    """Turns queued items into the spans the worker's stages read: records are rebuilt.

    Args:
        resources: Resource number (a record's last field) -> resource object. Read only; its
            owner may add entries while this rebuilds.

    State: the parent context the last rebuild made, so that neighbours share context objects.
    Spans end children first: siblings share their parent's context object, and a parent's own
    context is the one its children's ``parent`` already holds (same ids, not remote). Reusing
    it saves one or two objects per span (contexts are never mutated). One rebuilder per
    rebuilding thread (the worker's, the export worker process's reader): no lock, and a
    rebuilder shared by mistake would only miss reuse, since the candidate is read once and
    checked in full.
    """

    __slots__ = ("_last_parent", "_resources")

    def __init__(self, resources: dict[int, Any]) -> None:
        self._resources = resources
        self._last_parent = _Ctx(0, 0, True)  # a placeholder no record matches

    def span_of(self, item: Any) -> Any:
        """A queued item as a span: a record (``tuple``) rebuilt, anything else as it is.

        Raises:
            KeyError: The record's resource number is not in ``resources``.
        """
        if type(item) is not tuple:
            return item
        (name, tid, sid, psid, premote, start, end, kind, code, desc, attrs, events, rid) = item
        span = _new(OffloadedSpan)
        span.resource = self._resources[rid]
        span.name = name
        last = self._last_parent
        if last.span_id == sid and last.trace_id == tid and last.is_remote is False:
            span.context = last
        else:
            span.context = _Ctx(tid, sid, False)
        if psid is None:
            span.parent = None
        elif last.span_id == psid and last.trace_id == tid and last.is_remote is premote:
            span.parent = last
        else:
            span.parent = self._last_parent = _Ctx(tid, psid, premote)
        span.start_time = start
        span.end_time = end
        span.kind = _KINDS.get(kind, _INTERNAL)
        if desc is None:
            span.status = _PLAIN_STATUS.get(code, _UNSET)
        else:
            span.status = _Status(_CODES.get(code, StatusCode.UNSET), desc)
        span.attributes = attrs
        span.events = tuple(_Event(*e) for e in events) if events else ()
        return span


def rebuild_span(item: tuple[Any, ...], resources: dict[int, Any]) -> OffloadedSpan:
    """The inverse of :func:`~galileo_otel.export.sdk_span.span_record`.

    ``resources``: resource number -> resource object; a number not in it gets an empty
    resource, added to it. One record at a time: a :class:`Rebuilder` rebuilds many cheaper.
    """
    if item[12] not in resources:
        resources[item[12]] = _Resource({})
    span: OffloadedSpan = Rebuilder(resources).span_of(item)
    return span


def make_resource(attributes: dict[str, Any]) -> Any:
    """A resource stand-in with ``attributes``."""
    return _Resource(attributes)
