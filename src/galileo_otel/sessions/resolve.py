"""Session attribute names, and which session key and user a span's attributes name.

The names are local string constants on purpose: several GenAI names are moving between
semantic-convention packages, and we read the old and the new spelling alike.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

__all__ = [
    "CAPTURED_GALILEO_ID",
    "CAPTURED_KEY",
    "CAPTURED_NAME",
    "ENDUSER_ID",
    "GALILEO_SESSION_FROM_BAGGAGE",
    "GALILEO_SESSION_ID",
    "GALILEO_SESSION_METADATA",
    "GALILEO_SESSION_NAME",
    "GEN_AI_CONVERSATION_ID",
    "KEY_ATTRIBUTES",
    "LANGFUSE_SESSION_ID",
    "LANGFUSE_USER_ID",
    "SERVICE_NAME",
    "SESSION_ID",
    "SESSION_PREVIOUS_ID",
    "TRACELOOP_SESSION_ID",
    "TRACELOOP_USER_ID",
    "USER_ID",
    "as_uuid4",
    "decode_captured",
    "encode_captured",
    "galileo_session_id",
    "is_scrubbed",
    "previous_id",
    "session_key",
    "session_name",
    "user_id",
]

SESSION_ID = "session.id"
SESSION_PREVIOUS_ID = "session.previous_id"
GEN_AI_CONVERSATION_ID = "gen_ai.conversation.id"
LANGFUSE_SESSION_ID = "langfuse.session.id"
TRACELOOP_SESSION_ID = "traceloop.association.properties.session_id"
USER_ID = "user.id"
ENDUSER_ID = "enduser.id"
LANGFUSE_USER_ID = "langfuse.user.id"
TRACELOOP_USER_ID = "traceloop.association.properties.user_id"
# Set by the official Galileo OpenTelemetry integration: an existing Galileo session's id.
GALILEO_SESSION_ID = "galileo.session.id"
SERVICE_NAME = "service.name"
GALILEO_SESSION_NAME = "galileo.session.name"
GALILEO_SESSION_METADATA = "galileo.session.metadata"  # a JSON object of strings
# Set (True) by the processor when the ``session.id`` it stamped came from inbound baggage, so
# that a key attribute the app sets later still wins over it (baggage is the last resort).
GALILEO_SESSION_FROM_BAGGAGE = "galileo.session.from_baggage"

# Copies taken at span start (``capture_keys`` in context.py, and ``session()``) under names that
# logfire's default scrubbing leaves alone (no "session" in them), with hex-encoded values (no
# scrubbing pattern can match hex digits): logfire rewrites ``session.*`` attributes, and any
# value containing e.g. "session", before a processor's ``on_end`` sees the span. The key's
# first character says where it came from: "a" (attributes) or "b" (baggage).
CAPTURED_KEY = "galileo.otel.conversation_key"
CAPTURED_NAME = "galileo.otel.conversation_name"
CAPTURED_GALILEO_ID = "galileo.otel.galileo_id"
_SCRUBBED_PREFIX = "[Scrubbed due to "

#: Span attributes that name a session, in precedence order (first match wins).
KEY_ATTRIBUTES: tuple[str, ...] = (
    SESSION_ID,
    GEN_AI_CONVERSATION_ID,
    LANGFUSE_SESSION_ID,
    TRACELOOP_SESSION_ID,
)
_USER_ATTRIBUTES: tuple[str, ...] = (USER_ID, ENDUSER_ID, LANGFUSE_USER_ID, TRACELOOP_USER_ID)
_GALILEO_ID_ATTRIBUTES = (GALILEO_SESSION_ID, CAPTURED_GALILEO_ID)


def is_scrubbed(value: Any) -> bool:
    """Whether ``value`` is what logfire's scrubbing left of a value (never a usable key).

    Cheap enough for every root span: an ordinary key fails the prefix test on its first
    character (``str.startswith`` stops there), so callers need no quicker test of their own.
    """
    return isinstance(value, str) and value.startswith(_SCRUBBED_PREFIX) and value.endswith("]")


def encode_captured(text: str, source: str = "a") -> str:
    """``text`` as a captured value: ``source`` then its UTF-8 bytes in hex."""
    return source + text.encode().hex()


def decode_captured(value: Any) -> tuple[str, str] | None:
    """``(source, text)`` of a captured value, or ``None`` when it is absent or malformed."""
    if not isinstance(value, str) or len(value) < 3:
        return None
    try:
        text = bytes.fromhex(value[1:]).decode()
    except ValueError:
        return None
    return value[0], text


def _text(value: Any) -> str | None:
    """A usable identifier from an attribute value: non-empty str, or an int; else None."""
    if isinstance(value, str):
        value = value.strip()
        if is_scrubbed(value):
            return None
        return value or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def session_key(attributes: Mapping[str, Any] | None) -> str | None:
    """The session key named by span attributes, or ``None`` (the trace joins an automatic session).

    First match wins: ``session.id`` (stamped by :func:`galileo_otel.session` or set by the app),
    ``gen_ai.conversation.id``, ``langfuse.session.id``,
    ``traceloop.association.properties.session_id``, then a ``session.id`` that came from inbound
    baggage. A value another tool scrubbed (logfire's ``[Scrubbed due to 'session']``) is never
    a key: the key captured at span start stands in for it.

    Args:
        attributes: The attributes of the trace's root span.
    """
    if not attributes:
        return None
    from_baggage = attributes.get(GALILEO_SESSION_FROM_BAGGAGE) is True
    scrubbed = False
    found: str | None = None
    for name in KEY_ATTRIBUTES:
        value = attributes.get(name)
        if value is None:
            continue
        if is_scrubbed(value):
            scrubbed = True
            continue
        if name == SESSION_ID and from_baggage:
            continue
        found = _text(value)
        if found is not None:
            break
    if found is not None and not scrubbed:
        return found  # the captured copy only stands in for a missing or scrubbed key
    captured = decode_captured(attributes.get(CAPTURED_KEY))
    if captured is not None and captured[0] == "a" and (scrubbed or found is None):
        # The key as the span had it at its start, before another tool rewrote it.
        return captured[1]
    if found is not None:
        return found
    if from_baggage:
        baggage_key = _text(attributes.get(SESSION_ID))
        if baggage_key is not None:
            return baggage_key
    return captured[1] if captured is not None else None


def session_name(attributes: Mapping[str, Any] | None) -> str | None:
    """The session name given by ``session(name=...)`` (``galileo.session.name``), or ``None``."""
    if not attributes:
        return None
    name = _text(attributes.get(GALILEO_SESSION_NAME))
    if name is not None:
        return name
    captured = decode_captured(attributes.get(CAPTURED_NAME))
    return captured[1] if captured is not None else None


def galileo_session_id(attributes: Mapping[str, Any] | None) -> str | None:
    """An existing Galileo session id named by ``galileo.session.id`` (canonical UUID), or None.

    Set by the official Galileo OpenTelemetry integration: such traces go to that session.
    """
    if not attributes:
        return None
    for name in _GALILEO_ID_ATTRIBUTES:
        raw = attributes.get(name)
        if raw is None:
            continue
        value = _text(raw)
        if value is not None:
            try:
                return str(uuid.UUID(value))
            except ValueError:
                continue
    return None


def user_id(attributes: Mapping[str, Any] | None) -> str | None:
    """The user named by span attributes, or ``None``.

    First match wins: ``user.id``, ``enduser.id``, ``langfuse.user.id``,
    ``traceloop.association.properties.user_id``.

    Args:
        attributes: The attributes of the trace's root span.
    """
    if not attributes:
        return None
    for name in _USER_ATTRIBUTES:
        value = attributes.get(name)
        if value is None:
            continue
        user = _text(value)
        if user is not None:
            return user
    return None


def previous_id(attributes: Mapping[str, Any] | None) -> str | None:
    """The app's ``session.previous_id``: a session key of ours or a Galileo session UUID.

    Args:
        attributes: The attributes of the trace's root span.
    """
    if not attributes:
        return None
    return _text(attributes.get(SESSION_PREVIOUS_ID))


def as_uuid4(value: str) -> str | None:
    """``value`` in canonical form when it is a version-4 UUID (what the API accepts), else None."""
    try:
        parsed = uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return None
    return str(parsed) if parsed.version == 4 else None
