"""Spans as records: tuples of builtins (what ``marshal`` writes), and light spans rebuilt from them.

A record is :func:`~galileo_otel.export.sdk_span.span_record`'s tuple. The app thread makes one
as soon as a span ends, so the SDK span object dies at once instead of waiting in a queue for
the worker thread (see ``handoff.py``); the worker, in this process or the export worker
process, rebuilds an :class:`OffloadedSpan` with just what assembly, conversion and sessions
read.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.trace import SpanKind, StatusCode

__all__ = ["OffloadedSpan", "make_resource", "rebuild_span"]

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
# The parent context the last rebuild made (see OffloadedSpan.__init__); a placeholder at first.
_last_parent = _Ctx(0, 0, True)


class OffloadedSpan:
    """A span rebuilt in the worker process: just what assembly, conversion and sessions read."""

    __slots__ = (
        "_attributes",
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

    # Not an SDK span: sdk_span.py's readers find no frozen SDK containers here (a class
    # attribute, so they do not pay for a failed lookup) and read ``events`` as is.
    _events = None

    def __init__(self, item: tuple[Any, ...], resource: Any) -> None:
        global _last_parent
        (name, tid, sid, psid, premote, start, end, kind, code, desc, attrs, events, _) = item
        self.name = name
        # Spans end children first: siblings share their parent's context object, and a
        # parent's own context is the one its children's `parent` already holds (same ids, not
        # remote). Reusing the last parent made saves one or two objects per span (contexts are
        # never mutated). A race between two rebuilding threads only misses the reuse: the
        # candidate is read once and checked in full.
        last = _last_parent
        if last.span_id == sid and last.trace_id == tid and last.is_remote is False:
            self.context = last
        else:
            self.context = _Ctx(tid, sid, False)
        if psid is None:
            self.parent = None
        elif last.span_id == psid and last.trace_id == tid and last.is_remote is premote:
            self.parent = last
        else:
            self.parent = _last_parent = _Ctx(tid, psid, premote)
        self.start_time = start
        self.end_time = end
        self.kind = _KINDS.get(kind, _INTERNAL)
        if desc is None:
            self.status = _PLAIN_STATUS.get(code, _UNSET)
        else:
            self.status = _Status(_CODES.get(code, StatusCode.UNSET), desc)
        self._attributes = attrs
        self.attributes = attrs
        self.events = tuple(_Event(*e) for e in events) if events else ()
        self.resource = resource


def rebuild_span(item: tuple[Any, ...], resources: dict[int, Any]) -> OffloadedSpan:
    """The inverse of :func:`extract_span` (``resources``: id -> resource object)."""
    res = resources.get(item[12])
    if res is None:
        res = resources[item[12]] = _Resource({})
    return OffloadedSpan(item, res)


def make_resource(attributes: dict[str, Any]) -> Any:
    """A resource stand-in with ``attributes``."""
    return _Resource(attributes)
