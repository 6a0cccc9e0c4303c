"""The OpenAI Agents SDK (openai-agents 0.24) through openinference-instrumentation-openai-agents
2.6, from spans recorded against tests/openai_stub.py (chat completions model): the second turn
of a chat fed with ``result.to_input_list()``, the agent calling one tool.

Recorded by running the real SDK (``recorded/openai_agents_openinference_second_turn.json``:
span ids renumbered from 1, times in ns from the trace's start, attributes as the SDK held them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest_convert import TRACE_ID
from test_convert_pydantic_ai import recorded_spans

from galileo_otel.export.assemble import AssembledTrace
from galileo_otel.export.convert import convert_trace
from trace_schema import assert_valid_trace, walk

RECORDED = Path(__file__).parent / "recorded" / "openai_agents_openinference_second_turn.json"


def converted() -> dict[str, Any]:
    spans = recorded_spans(RECORDED)
    root = next(s for s in spans if s.parent is None)
    trace = convert_trace(AssembledTrace(TRACE_ID, root, spans, True))
    assert_valid_trace(trace)
    return trace


def test_the_second_turn_reads_as_its_own_question_and_answer() -> None:
    trace = converted()
    assert trace["input"] == "turn 2: and tomorrow?"
    assert trace["output"] == "Stub answer to: turn 2: and tomorrow?"


def test_agent_steps_carry_content_and_the_workflow_chain_collapses() -> None:
    (workflow,) = converted()["spans"]
    # The "Agent workflow" CHAIN directly inside the "Agent workflow" AGENT is gone.
    assert (workflow["type"], workflow["name"]) == ("agent", "Agent workflow")
    (assistant,) = workflow["spans"]
    assert (assistant["type"], assistant["name"]) == ("agent", "Assistant")
    llm_tokens = [s["metrics"]["num_input_tokens"] for s in walk(assistant) if s["type"] == "llm"]
    for agent in (workflow, assistant):
        assert agent["input"] == "turn 2: and tomorrow?"
        assert agent["output"] == "Stub answer to: turn 2: and tomorrow?"
        assert agent["metrics"]["num_input_tokens"] == sum(llm_tokens)
    assert assistant["user_metadata"]["graph.node.id"] == "Assistant"


def test_the_tool_step_is_linked_to_the_call_it_answers() -> None:
    steps = walk(converted())
    llm = next(s for s in steps if s["type"] == "llm")
    tool = next(s for s in steps if s["type"] == "tool")
    call = llm["output"]["tool_calls"][0]
    # OpenInference records no call id on the tool span: linked by name and arguments.
    assert tool["tool_call_id"] == call["id"]
    assert json.loads(tool["input"]) == json.loads(call["function"]["arguments"])
    assert tool["output"] == "rain in Paris"
    assert tool["user_metadata"]["tool.description"] == "Weather of a city."
