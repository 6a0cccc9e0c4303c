"""Pydantic AI's built-in instrumentation (pydantic-ai-slim 2.78, ``Agent.instrument_all``),
from spans recorded against tests/openai_stub.py: the second turn of a chat that passes
``message_history``, with one tool call per turn.

Recorded by running the real agent, in its default instrumentation format and in format 2 (the
oldest it still writes: an "agent run" span, "running tool" spans with ``tool_arguments`` /
``tool_response``). Files ``recorded/pydantic_ai_2_78_*.json``: span ids renumbered from 1,
times in ns from the trace's start, attributes as the SDK held them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest_convert import TRACE_ID, make_span
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from galileo_otel.export.assemble import AssembledTrace
from galileo_otel.export.convert import convert_trace
from trace_schema import assert_valid_trace, walk

HERE = Path(__file__).parent / "recorded"
RECORDINGS = [
    HERE / "pydantic_ai_2_78_second_turn.json",
    HERE / "pydantic_ai_2_78_v2_second_turn.json",
]


@pytest.fixture(params=RECORDINGS, ids=["default-format", "format-2"])
def recorded(request: pytest.FixtureRequest) -> Path:
    path: Path = request.param
    return path


def recorded_spans(path: Path) -> list[ReadableSpan]:
    return [
        make_span(
            item["name"],
            item["span_id"],
            item["parent"],
            start=item["start"],
            end=item["end"],
            attributes=item["attributes"],
            events=[tuple(event) for event in item["events"]],
            kind=SpanKind[item["kind"]],
        )
        for item in json.loads(path.read_text())
    ]


def converted(path: Path) -> dict[str, Any]:
    spans = recorded_spans(path)
    root = next(s for s in spans if s.parent is None)
    trace = convert_trace(AssembledTrace(TRACE_ID, root, spans, True))
    assert_valid_trace(trace)
    return trace


def test_the_second_turn_reads_as_its_own_question_and_final_result(recorded: Path) -> None:
    trace = converted(recorded)
    assert trace["input"] == "turn 2: and tomorrow?"
    assert trace["output"] == "Stub answer to: turn 2: and tomorrow?"


def test_the_agent_run_carries_its_question_answer_and_aggregated_usage(recorded: Path) -> None:
    (agent,) = converted(recorded)["spans"]
    attrs = next(s for s in json.loads(recorded.read_text()) if s["parent"] is None)["attributes"]
    assert agent["type"] == "agent" and agent["name"] == "weather_agent"
    assert agent["input"] == "turn 2: and tomorrow?"
    assert agent["output"] == "Stub answer to: turn 2: and tomorrow?"
    assert agent["metrics"]["num_input_tokens"] == attrs["gen_ai.aggregated_usage.input_tokens"]
    assert agent["metrics"]["num_output_tokens"] == attrs["gen_ai.aggregated_usage.output_tokens"]
    # The conversation is read, not copied: no all_messages blob, no Logfire hints.
    assert not [k for k in agent["user_metadata"] if k.startswith(("pydantic_ai.", "logfire."))]
    assert "final_result" not in agent["user_metadata"]


def test_the_tool_step_answers_the_llm_call_by_id_with_arguments_and_result(recorded: Path) -> None:
    (agent,) = converted(recorded)["spans"]
    first_llm, tool, second_llm = agent["spans"]
    call = first_llm["output"]["tool_calls"][0]
    assert tool["type"] == "tool" and tool["name"] == "weather"
    assert tool["tool_call_id"] == call["id"] == "call_stub_1"
    # The tool's own record of its arguments (Pydantic AI re-serializes them compactly).
    assert (
        json.loads(tool["input"]) == json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    )
    assert tool["output"] == "rain in Paris"
    # The tool's result is the tool message of the next call (Pydantic AI names it "result").
    tool_messages = [m for m in second_llm["input"] if m["role"] == "tool"]
    assert tool_messages[-1] == {
        "role": "tool",
        "content": "rain in Paris",
        "tool_call_id": "call_stub_1",
    }


def test_llm_steps_read_the_generation_and_leave_the_plumbing_out(recorded: Path) -> None:
    trace = converted(recorded)
    for step in walk(trace):
        meta = step["user_metadata"]
        assert "model_request_parameters" not in meta
        assert "gen_ai.conversation.id" not in meta  # a session key, like session.id
        assert "user.id" not in meta
    llm = next(s for s in walk(trace) if s["type"] == "llm")
    assert llm["input"][0] == {"role": "system", "content": "Be brief."}
    assert llm["model"] and llm["tools"][0]["function"]["name"] == "weather"
    assert llm["user_metadata"]["gen_ai.response.id"]  # kept, for finding the provider's log


# Pydantic AI's first instrumentation format (older releases; 2.78 no longer writes it): message
# events as one JSON attribute, in the shape of pydantic-ai's own snapshot tests.
V1_EVENTS = [
    {"content": "Be brief.", "role": "system", "event.name": "gen_ai.system.message"},
    {
        "content": "turn 1",
        "role": "user",
        "gen_ai.message.index": 0,
        "event.name": "gen_ai.user.message",
    },
    {"content": "a1", "role": "assistant", "event.name": "gen_ai.assistant.message"},
    {
        "content": "turn 2",
        "role": "user",
        "gen_ai.message.index": 2,
        "event.name": "gen_ai.user.message",
    },
]
V1_CHOICE = {
    "index": 0,
    "message": {
        "role": "assistant",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "add", "arguments": '{"a": 1}'},
            }
        ],
    },
    "event.name": "gen_ai.choice",
}


def test_the_first_format_reads_message_events_from_attributes() -> None:
    run = make_span(
        "agent run",
        1,
        end=10_000,
        attributes={
            "agent_name": "my_agent",
            "model_name": "test",
            "logfire.msg": "my_agent run",
            "gen_ai.usage.input_tokens": 103,
            "all_messages_events": json.dumps(V1_EVENTS),
            "final_result": "3",
        },
    )
    chat = make_span(
        "chat test",
        2,
        1,
        start=10,
        end=500,
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.system": "openai",
            "gen_ai.request.model": "test",
            "events": json.dumps([*V1_EVENTS, V1_CHOICE]),
        },
    )
    trace = convert_trace(AssembledTrace(TRACE_ID, run, [chat, run], True))
    assert_valid_trace(trace)
    (agent,) = trace["spans"]
    assert (agent["type"], agent["name"], agent["input"], agent["output"]) == (
        "agent",
        "my_agent",
        "turn 2",
        "3",
    )
    (llm,) = agent["spans"]
    assert [m["role"] for m in llm["input"]] == ["system", "user", "assistant", "user"]
    assert llm["output"]["tool_calls"][0]["function"]["name"] == "add"
    assert "events" not in llm["user_metadata"]
    assert (trace["input"], trace["output"]) == ("turn 2", "3")
