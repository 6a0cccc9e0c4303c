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


def test_scrubbed_values_are_skipped_and_the_captured_key_stands_in() -> None:
    from galileo_otel.sessions.resolve import (
        CAPTURED_KEY,
        decode_captured,
        encode_captured,
        galileo_session_id,
        is_scrubbed,
    )

    scrubbed = "[Scrubbed due to 'session']"
    assert is_scrubbed(scrubbed) and not is_scrubbed("session-1") and not is_scrubbed(3)
    assert decode_captured(encode_captured("conv-ü", "b")) == ("b", "conv-ü")
    assert decode_captured("azz") is None and decode_captured(None) is None
    captured = encode_captured("conv-1")
    # scrubbed session.id: the capture (the key at span start) wins over lower attributes
    attrs = {SESSION_ID: scrubbed, GEN_AI_CONVERSATION_ID: "g", CAPTURED_KEY: captured}
    assert session_key(attrs) == "conv-1"
    assert session_key({SESSION_ID: scrubbed, GEN_AI_CONVERSATION_ID: "g"}) == "g"
    assert session_key({SESSION_ID: scrubbed}) is None
    # nothing scrubbed: the end-of-span attributes decide, as before
    assert session_key({SESSION_ID: "late", CAPTURED_KEY: captured}) == "late"
    # a baggage capture is the last resort
    assert session_key({CAPTURED_KEY: encode_captured("up", "b"), LANGFUSE_SESSION_ID: "l"}) == "l"
    assert session_key({SESSION_ID: scrubbed, CAPTURED_KEY: encode_captured("up", "b")}) == "up"
    assert user_id({USER_ID: "[Scrubbed due to 'auth']", ENDUSER_ID: "e"}) == "e"
    assert previous_id({SESSION_PREVIOUS_ID: scrubbed}) is None
    gid = str(uuid.uuid4())
    assert (
        galileo_session_id({"galileo.session.id": scrubbed, "galileo.otel.galileo_id": gid}) == gid
    )
    assert galileo_session_id({"galileo.session.id": "not-a-uuid"}) is None


def test_capture_keys_at_span_start() -> None:
    from opentelemetry import baggage, trace
    from opentelemetry.sdk.trace import TracerProvider

    from galileo_otel.sessions.context import capture_keys
    from galileo_otel.sessions.resolve import CAPTURED_GALILEO_ID, CAPTURED_KEY, encode_captured

    tracer = TracerProvider().get_tracer("t")
    gid = str(uuid.uuid4())
    span = tracer.start_span("s", attributes={LANGFUSE_SESSION_ID: "l", "galileo.session.id": gid})
    assert capture_keys(span) is True  # the span names its own key
    assert span.attributes[CAPTURED_KEY] == encode_captured("l")  # type: ignore[index]
    assert span.attributes[CAPTURED_GALILEO_ID] == gid  # type: ignore[index]
    span.end()
    upstream = tracer.start_span("b")
    assert capture_keys(upstream, baggage.set_baggage(SESSION_ID, "from-up")) is False
    assert upstream.attributes[CAPTURED_KEY] == encode_captured("from-up", "b")  # type: ignore[index]
    upstream.end()
    plain = tracer.start_span("p", attributes={"other": 1})
    assert capture_keys(plain) is False
    assert dict(plain.attributes or {}) == {"other": 1}  # nothing to keep, nothing written
    # a child span never decides its trace's session: nothing is captured (and nothing paid)
    child = tracer.start_span(
        "c", context=trace.set_span_in_context(plain), attributes={SESSION_ID: "k"}
    )
    assert capture_keys(child) is False
    assert CAPTURED_KEY not in (child.attributes or {})
    # a falsy key (int 0) is captured, but does not count as naming one: baggage may still win
    zero = tracer.start_span("z", attributes={SESSION_ID: 0})
    assert capture_keys(zero) is False
    assert zero.attributes[CAPTURED_KEY] == encode_captured("0")  # type: ignore[index]
    child.end()
    plain.end()


def test_users_of_other_tools() -> None:
    assert user_id({"langfuse.user.id": "lf"}) == "lf"
    assert user_id({"traceloop.association.properties.user_id": "tl"}) == "tl"
    assert user_id({USER_ID: "u", "langfuse.user.id": "lf"}) == "u"
