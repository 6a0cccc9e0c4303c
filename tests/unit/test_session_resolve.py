"""Session key and user resolution from span attributes."""

from __future__ import annotations

import uuid

import pytest

from galileo_otel.sessions.resolve import (
    ENDUSER_ID,
    GALILEO_SESSION_FROM_BAGGAGE,
    GEN_AI_CONVERSATION_ID,
    LANGFUSE_SESSION_ID,
    SESSION_ID,
    SESSION_PREVIOUS_ID,
    TRACELOOP_SESSION_ID,
    USER_ID,
    as_uuid4,
    previous_id,
    session_key,
    user_id,
)


def test_attribute_names() -> None:
    assert SESSION_ID == "session.id"
    assert SESSION_PREVIOUS_ID == "session.previous_id"
    assert GEN_AI_CONVERSATION_ID == "gen_ai.conversation.id"
    assert LANGFUSE_SESSION_ID == "langfuse.session.id"
    assert TRACELOOP_SESSION_ID == "traceloop.association.properties.session_id"
    assert USER_ID == "user.id" and ENDUSER_ID == "enduser.id"


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ({}, None),
        (None, None),
        ({SESSION_ID: "s", GEN_AI_CONVERSATION_ID: "g", LANGFUSE_SESSION_ID: "l"}, "s"),
        ({GEN_AI_CONVERSATION_ID: "g", LANGFUSE_SESSION_ID: "l", TRACELOOP_SESSION_ID: "t"}, "g"),
        ({LANGFUSE_SESSION_ID: "l", TRACELOOP_SESSION_ID: "t"}, "l"),
        ({TRACELOOP_SESSION_ID: "t"}, "t"),
        ({SESSION_ID: "", GEN_AI_CONVERSATION_ID: "g"}, "g"),
        ({SESSION_ID: "  ", TRACELOOP_SESSION_ID: "t"}, "t"),
        ({SESSION_ID: 42}, "42"),
        ({SESSION_ID: True, LANGFUSE_SESSION_ID: "l"}, "l"),
        ({SESSION_ID: ["a"], TRACELOOP_SESSION_ID: "t"}, "t"),
        # a session.id from baggage is the last resort: any key attribute wins over it
        ({SESSION_ID: "bag", GALILEO_SESSION_FROM_BAGGAGE: True, GEN_AI_CONVERSATION_ID: "g"}, "g"),
        ({SESSION_ID: "bag", GALILEO_SESSION_FROM_BAGGAGE: True}, "bag"),
        ({"other": "x"}, None),
    ],
)
def test_session_key_precedence(attrs: dict[str, object] | None, expected: str | None) -> None:
    assert session_key(attrs) == expected


def test_user_id() -> None:
    assert user_id({USER_ID: "u", ENDUSER_ID: "e"}) == "u"
    assert user_id({ENDUSER_ID: "e"}) == "e"
    assert user_id({USER_ID: "", ENDUSER_ID: "e"}) == "e"
    assert user_id({USER_ID: 7}) == "7"
    assert user_id({}) is None and user_id(None) is None


def test_previous_id_and_uuid4() -> None:
    assert previous_id({SESSION_PREVIOUS_ID: "conv-1"}) == "conv-1"
    assert previous_id({}) is None
    u4 = uuid.uuid4()
    assert as_uuid4(str(u4).upper()) == str(u4)
    assert as_uuid4(u4.hex) == str(u4)
    assert as_uuid4(str(uuid.uuid1())) is None  # the API only takes version 4
    assert as_uuid4("conv-1") is None
