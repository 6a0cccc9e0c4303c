"""The one place that reads OpenTelemetry SDK internals of an ended span, for speed.

An ended SDK span freezes its attributes (``BoundedAttributes`` with ``_dict``) and its events
(``BoundedList`` with ``_dq``). Their public accessors copy (the attribute proxy goes key by key
in Python; ``events`` takes a lock and copies), which cost more than converting a small span.
Every read here falls back to the public API when the internals are not what we expect, and
``tests/unit/test_sdk_span.py`` pins these reads to the installed ``opentelemetry-sdk``, so an SDK
release that moves them fails a test instead of silently taking the slow path.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any


def span_attributes(span: Any) -> Mapping[str, Any]:
    """The span's attributes as a read-only mapping, without copying when the span has ended."""
    raw = getattr(span, "_attributes", None)
    inner = getattr(raw, "_dict", None)
    if type(inner) is dict:
        return inner
    if type(raw) is dict:
        return raw
    return dict(span.attributes or {})


def span_events(span: Any) -> Sequence[Any]:
    """The span's events; an ended SDK span's frozen deque is read without the locked copy."""
    inner = getattr(getattr(span, "_events", None), "_dq", None)
    if type(inner) is deque:
        return tuple(inner) if inner else ()
    events: Sequence[Any] = span.events
    return events


def plain_mapping(mapping: Any) -> dict[str, Any]:
    """A ``BoundedAttributes`` (or any mapping) as a plain dict, its inner dict when frozen."""
    inner = getattr(mapping, "_dict", None)
    if type(inner) is dict:
        return inner
    return dict(mapping or {})


def uses_fast_path(span: Any) -> bool:
    """Whether both reads above take the internal path for this span (tests pin this)."""
    attrs = getattr(getattr(span, "_attributes", None), "_dict", None)
    events = getattr(getattr(span, "_events", None), "_dq", None)
    return type(attrs) is dict and type(events) is deque
