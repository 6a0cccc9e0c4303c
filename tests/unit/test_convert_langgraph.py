"""LangGraph (1.2, ``create_react_agent``) with langchain-openai through
openinference-instrumentation-langchain 0.1.80, from spans recorded against tests/openai_stub.py:
the second turn of a chat whose state carries the history, the agent calling one tool.

Recorded by running the real graph (``recorded/langgraph_openinference_second_turn.json``: span
ids renumbered from 1, times in ns from the trace's start, attributes as the SDK held them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest_convert import TRACE_ID, make_span
from test_convert_pydantic_ai import recorded_spans

from galileo_otel.export.assemble import AssembledTrace
from galileo_otel.export.convert import convert_trace
from trace_schema import assert_valid_trace, walk

RECORDED = Path(__file__).parent / "recorded" / "langgraph_openinference_second_turn.json"


def converted() -> dict[str, Any]:
    spans = recorded_spans(RECORDED)
    root = next(s for s in spans if s.parent is None)
    trace = convert_trace(AssembledTrace(TRACE_ID, root, spans, True))
    assert_valid_trace(trace)
    return trace


def test_the_state_is_read_as_messages_and_the_turn_as_its_own_question() -> None:
    trace = converted()
    assert trace["input"] == "turn 2: and tomorrow?"
    assert trace["output"] == "Stub answer to: turn 2: and tomorrow?"
    first_agent = trace["spans"][0]
    assert first_agent["type"] == "agent"
    assert [m["role"] for m in first_agent["input"]][:2] == ["user", "assistant"]
    assert first_agent["output"]["tool_calls"][0]["function"]["name"] == "weather"


def test_routing_and_runnable_plumbing_collapse_and_no_model_call_is_lost() -> None:
    steps = walk(converted())
    names = {s["name"] for s in steps}
    assert not names & {"RunnableSequence", "Prompt", "should_continue"}
    assert [s["type"] for s in steps].count("llm") == 2
    assert sorted(s["step_number"] for s in steps) == list(range(1, len(steps) + 1))


def test_the_tool_step_carries_the_calls_arguments_and_the_tool_messages_content() -> None:
    steps = walk(converted())
    llm = next(s for s in steps if s["type"] == "llm")
    tool = next(s for s in steps if s["type"] == "tool")
    call = llm["output"]["tool_calls"][0]
    # LangChain records the tool's input as "Paris" and its output as a ToolMessage.
    assert (tool["input"], tool["output"]) == (call["function"]["arguments"], "rain in Paris")
    assert tool["tool_call_id"] == call["id"] == "call_stub_1"


def test_langgraphs_metadata_wiring_stays_home() -> None:
    for step in walk(converted()):
        assert not [k for k in step["user_metadata"] if "langgraph" in k or "checkpoint" in k]


def _state(*messages: dict[str, Any]) -> str:
    return json.dumps({"messages": [{"type": m["type"], "data": m} for m in messages]})


def test_a_graph_agent_whose_answer_only_calls_tools_reads_as_where_it_routed() -> None:
    # A hand-built graph (recorded against the stub, trimmed): the weather_agent node (an
    # OpenInference AGENT span) returns an AI message that only calls get_weather, and its
    # after_weather router sends the graph to the "tools" node.
    human = {"type": "human", "content": "What is the weather in Paris today?"}
    calls = {
        "type": "ai",
        "content": "",
        "tool_calls": [{"name": "get_weather", "args": {"city": "Paris"}, "id": "call_2"}],
    }
    json_io = {"input.mime_type": "application/json", "output.mime_type": "application/json"}
    spans = [
        make_span(
            "LangGraph",
            1,
            attributes={
                "openinference.span.kind": "CHAIN",
                "input.value": _state(human),
                **json_io,
            },
        ),
        make_span(
            "weather_agent",
            2,
            1,
            start=10,
            end=500,
            attributes={
                "openinference.span.kind": "AGENT",
                "input.value": _state(human),
                "output.value": _state(calls),
                **json_io,
            },
        ),
        make_span(
            "ChatOpenAI",
            3,
            2,
            start=20,
            end=300,
            attributes={
                "openinference.span.kind": "LLM",
                "llm.input_messages.0.message.role": "user",
                "llm.input_messages.0.message.content": human["content"],
                "llm.output_messages.0.message.role": "assistant",
                "llm.output_messages.0.message.tool_calls.0.tool_call.id": "call_2",
                "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "get_weather",
                "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": (
                    '{"city": "Paris"}'
                ),
            },
        ),
        make_span(
            "after_weather",
            4,
            2,
            start=310,
            end=400,
            attributes={
                "openinference.span.kind": "CHAIN",
                "input.value": _state(human, calls),
                "input.mime_type": "application/json",
                "output.value": "tools",
            },
        ),
    ]
    trace = convert_trace(AssembledTrace(TRACE_ID, spans[0], spans, True))
    assert_valid_trace(trace)
    agent = next(s for s in walk(trace) if s["name"] == "weather_agent")
    assert agent["type"] == "agent"
    # Its own input (the state) stays; its output had no text, so it reads as the route taken.
    assert agent["input"] == [{"role": "user", "content": human["content"]}]
    assert agent["output"] == "tools"


def test_a_state_recorded_as_message_reprs_reads_as_messages() -> None:
    # openinference-instrumentation-langchain 0.1.29 records a LangGraph state's messages as
    # str(message): pydantic's field repr without the class name (recorded against the stub,
    # the AI message's metadata trimmed).
    human = "content='How many people live there?' additional_kwargs={} response_metadata={} id='b'"
    ai = (
        "content='About two million people live in Paris.' additional_kwargs={'refusal': None}"
        " response_metadata={'finish_reason': 'stop'} id='lc_run--c3-0'"
        " usage_metadata={'input_tokens': 28, 'output_tokens': 7, 'total_tokens': 35}"
    )
    tool = "content='sunny, 21 degrees' name='get_weather' tool_call_id='call_2'"
    first = 'content="What\'s the capital of France?" additional_kwargs={} response_metadata={}'
    state = {"messages": [first, ai, human]}
    attributes = {
        "openinference.span.kind": "CHAIN",
        "input.value": json.dumps(state),
        "input.mime_type": "application/json",
        "output.value": json.dumps({"messages": [*state["messages"], tool, ai]}),
        "output.mime_type": "application/json",
    }
    spans = [
        make_span("LangGraph", 1, attributes=attributes),
        make_span("agent", 2, 1, start=10, end=900, attributes=attributes),
    ]
    trace = convert_trace(AssembledTrace(TRACE_ID, spans[0], spans, True))
    assert_valid_trace(trace)
    assert trace["input"] == "How many people live there?"
    assert trace["output"] == "About two million people live in Paris."
    (step,) = trace["spans"]
    assert step["input"] == [
        {"role": "user", "content": "What's the capital of France?"},
        {"role": "assistant", "content": "About two million people live in Paris."},
        {"role": "user", "content": "How many people live there?"},
    ]
    assert step["output"] == {
        "role": "assistant",
        "content": "About two million people live in Paris.",
    }


def test_a_tool_message_recorded_as_its_repr_is_the_tools_result() -> None:
    # openinference-instrumentation-langchain 0.1.29: a tool span's output.value is
    # str(ToolMessage), with no mime type (recorded against the stub).
    spans = [
        make_span("LangGraph", 1, attributes={"openinference.span.kind": "CHAIN"}),
        make_span(
            "get_weather",
            2,
            1,
            start=10,
            end=900,
            attributes={
                "openinference.span.kind": "TOOL",
                "tool.name": "get_weather",
                "input.value": "{'city': 'Paris'}",
                "output.value": (
                    "content='sunny, 21 degrees' name='get_weather' tool_call_id='call_2'"
                ),
            },
        ),
    ]
    trace = convert_trace(AssembledTrace(TRACE_ID, spans[0], spans, True))
    assert_valid_trace(trace)
    (tool,) = trace["spans"]
    assert (tool["output"], tool["tool_call_id"]) == ("sunny, 21 degrees", "call_2")
