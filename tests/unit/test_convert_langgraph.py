"""LangGraph (1.2, ``create_react_agent``) with langchain-openai through
openinference-instrumentation-langchain 0.1.80, from spans recorded against tests/openai_stub.py:
the second turn of a chat whose state carries the history, the agent calling one tool.

Recorded by running the real graph (``recorded/langgraph_openinference_second_turn.json``: span
ids renumbered from 1, times in ns from the trace's start, attributes as the SDK held them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest_convert import TRACE_ID
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
