"""Session attribute names, and which session key and user a span's attributes name.

The names are local string constants on purpose: several GenAI names are moving between
semantic-convention packages, and we read the old and the new spelling alike.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

__all__ = [
    "ENDUSER_ID",
    "GALILEO_SESSION_FROM_BAGGAGE",
    "GALILEO_SESSION_METADATA",
    "GALILEO_SESSION_NAME",
    "GEN_AI_CONVERSATION_ID",
    "KEY_ATTRIBUTES",
    "LANGFUSE_SESSION_ID",
    "SERVICE_NAME",
    "SESSION_ID",
    "SESSION_PREVIOUS_ID",
    "TRACELOOP_SESSION_ID",
    "USER_ID",
    "as_uuid4",
    "previous_id",
    "session_key",
    "user_id",
]

SESSION_ID = "session.id"
SESSION_PREVIOUS_ID = "session.previous_id"
GEN_AI_CONVERSATION_ID = "gen_ai.conversation.id"
LANGFUSE_SESSION_ID = "langfuse.session.id"
TRACELOOP_SESSION_ID = "traceloop.association.properties.session_id"
USER_ID = "user.id"
ENDUSER_ID = "enduser.id"
SERVICE_NAME = "service.name"
GALILEO_SESSION_NAME = "galileo.session.name"
GALILEO_SESSION_METADATA = "galileo.session.metadata"  # a JSON object of strings
# Set (True) by the processor when the ``session.id`` it stamped came from inbound baggage, so
# that a key attribute the app sets later still wins over it (baggage is the last resort).
GALILEO_SESSION_FROM_BAGGAGE = "galileo.session.from_baggage"

#: Span attributes that name a session, in precedence order (first match wins).
KEY_ATTRIBUTES: tuple[str, ...] = (
    SESSION_ID,
    GEN_AI_CONVERSATION_ID,
    LANGFUSE_SESSION_ID,
    TRACELOOP_SESSION_ID,
)
_USER_ATTRIBUTES: tuple[str, ...] = (USER_ID, ENDUSER_ID)


def _text(value: Any) -> str | None:
    """A usable identifier from an attribute value: non-empty str, or an int; else None."""
    if isinstance(value, str):
        value = value.strip()
        return value or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def session_key(attributes: Mapping[str, Any] | None) -> str | None:
    """The session key named by span attributes, or ``None`` (the trace joins an automatic session).

    First match wins: ``session.id`` (stamped by :func:`galileo_otel.session` or set by the app),
    ``gen_ai.conversation.id``, ``langfuse.session.id``,
    ``traceloop.association.properties.session_id``, then a ``session.id`` that came from inbound
    baggage.

    Args:
        attributes: The attributes of the trace's root span.
    """
    if not attributes:
        return None
    from_baggage = attributes.get(GALILEO_SESSION_FROM_BAGGAGE) is True
    for name in KEY_ATTRIBUTES:
        if name == SESSION_ID and from_baggage:
            continue
        key = _text(attributes.get(name))
        if key is not None:
            return key
    return _text(attributes.get(SESSION_ID)) if from_baggage else None


def user_id(attributes: Mapping[str, Any] | None) -> str | None:
    """The user named by span attributes: ``user.id``, else ``enduser.id``, else ``None``.

    Args:
        attributes: The attributes of the trace's root span.
    """
    if not attributes:
        return None
    for name in _USER_ATTRIBUTES:
        user = _text(attributes.get(name))
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
