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

from conftest_convert import TRACE_ID, make_span
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


# A streamed run (``Runner.run_streamed``): OpenInference records the generation's output as the
# SDK's list of Responses objects (``output.mime_type`` JSON), with no ``llm.output_messages``.
# Recorded against the stub (ids renumbered, the Response's null fields trimmed).
_STREAMED_RESPONSE = {
    "id": "__fake_id__",
    "created_at": 1796552508.7644017,
    "error": None,
    "model": "gpt-4o-mini",
    "object": "response",
    "output": [
        {
            "id": "__fake_id__",
            "content": [
                {
                    "annotations": [],
                    "text": "Paris is a city of light, art and cafes along the Seine.",
                    "type": "output_text",
                    "logprobs": [],
                }
            ],
            "role": "assistant",
            "status": "completed",
            "type": "message",
            "provider_data": {"model": "gpt-4o-mini", "response_id": "chatcmpl-stub"},
        }
    ],
    "parallel_tool_calls": False,
    "tool_choice": "auto",
    "tools": [],
    "usage": {"input_tokens": 14, "output_tokens": 12, "total_tokens": 26},
}


def _agents_span(name: str, span_id: int, parent: int | None, kind: str, **attrs: Any) -> Any:
    return make_span(
        name,
        span_id,
        parent,
        start=span_id * 10,
        end=1_000 - span_id * 10,
        attributes={"openinference.span.kind": kind, **attrs},
    )


def test_a_streamed_generation_reads_its_responses_objects_answer() -> None:
    question = "Describe Paris in one sentence."
    answer = "Paris is a city of light, art and cafes along the Seine."
    spans = [
        _agents_span("Agent workflow", 1, None, "AGENT"),
        _agents_span("Agent workflow", 2, 1, "CHAIN"),
        _agents_span(
            "Assistant", 3, 2, "AGENT", **{"agent.name": "Assistant", "graph.node.id": "Assistant"}
        ),
        _agents_span("turn", 4, 3, "CHAIN"),
        _agents_span(
            "generation",
            5,
            4,
            "LLM",
            **{
                "llm.model_name": "gpt-4o-mini",
                "input.value": json.dumps([{"role": "user", "content": question}]),
                "input.mime_type": "application/json",
                "llm.input_messages.0.message.role": "user",
                "llm.input_messages.0.message.content": question,
                "output.value": json.dumps([_STREAMED_RESPONSE]),
                "output.mime_type": "application/json",
                "llm.token_count.prompt": 14,
                "llm.token_count.completion": 12,
            },
        ),
    ]
    trace = convert_trace(AssembledTrace(TRACE_ID, spans[0], spans, True))
    assert_valid_trace(trace)
    assert (trace["input"], trace["output"]) == (question, answer)
    llm = next(s for s in walk(trace) if s["type"] == "llm")
    assert llm["output"] == {"role": "assistant", "content": answer}
    assistant = next(s for s in walk(trace) if s["name"] == "Assistant")
    assert (assistant["input"], assistant["output"]) == (question, answer)


def test_a_responses_function_call_is_a_tool_call() -> None:
    response = {
        "object": "response",
        "output": [
            {
                "type": "function_call",
                "call_id": "call_7",
                "name": "get_weather",
                "arguments": '{"city": "Paris"}',
            }
        ],
    }
    spans = [
        _agents_span(
            "generation",
            1,
            None,
            "LLM",
            **{"output.value": json.dumps(response), "output.mime_type": "application/json"},
        )
    ]
    trace = convert_trace(AssembledTrace(TRACE_ID, spans[0], spans, True))
    assert_valid_trace(trace)
    (llm,) = trace["spans"]
    assert llm["output"]["content"] == ""
    assert llm["output"]["tool_calls"] == [
        {"id": "call_7", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    ]


def test_an_agent_that_hands_off_reads_as_the_next_agent() -> None:
    # The triage agent of a handoff: its only llm call answers with the transfer tool call (no
    # text), then the SDK records the "handoff to" TOOL span (recorded against the stub).
    question = "What is the weather in Paris today?"
    spans = [
        _agents_span("Agent workflow", 1, None, "AGENT"),
        _agents_span("Triage agent", 2, 1, "AGENT", **{"agent.name": "Triage agent"}),
        _agents_span("turn", 3, 2, "CHAIN"),
        _agents_span(
            "generation",
            4,
            3,
            "LLM",
            **{
                "llm.input_messages.0.message.role": "user",
                "llm.input_messages.0.message.content": question,
                "llm.output_messages.0.message.role": "assistant",
                "llm.output_messages.0.message.tool_calls.0.tool_call.id": "call_1",
                "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": (
                    "transfer_to_weather_agent"
                ),
                "llm.token_count.prompt": 14,
                "llm.token_count.completion": 5,
            },
        ),
        _agents_span(
            "handoff to Weather agent",
            5,
            3,
            "TOOL",
            **{"input.value": "Triage agent", "output.value": "Weather agent"},
        ),
    ]
    trace = convert_trace(AssembledTrace(TRACE_ID, spans[0], spans, True))
    assert_valid_trace(trace)
    triage = next(s for s in walk(trace) if s["name"] == "Triage agent")
    assert (triage["input"], triage["output"]) == (question, "Weather agent")
    assert triage["metrics"]["num_input_tokens"] == 14
