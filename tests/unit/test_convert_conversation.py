"""A trace reads as its turn: the turn's own question and answer, failures where they happened,
agents with content, tool steps linked to their calls, plumbing collapsed, only the user's
metadata. Every trace goes through ``assert_valid_trace`` (the official models, unchanged)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest_convert import TRACE_ID, make_span
from opentelemetry.sdk.trace import ReadableSpan

from galileo_otel.export.assemble import AssembledTrace
from galileo_otel.export.convert import PLUMBING_STEP_NAMES, convert_trace
from trace_schema import assert_valid_trace, walk


def convert(*spans: ReadableSpan) -> dict[str, Any]:
    root = next(s for s in spans if s.parent is None)
    trace = convert_trace(AssembledTrace(TRACE_ID, root, list(spans), True))
    assert_valid_trace(trace)
    return trace


def genai(role: str, text: str) -> dict[str, Any]:
    return {"role": role, "parts": [{"type": "text", "content": text}]}


HISTORY = [
    genai("system", "Be brief."),
    genai("user", "turn 1: what is 2+2?"),
    genai("assistant", "4"),
    genai("user", "turn 2: and times 3?"),
]


def chat_span(
    span_id: int, parent: int, history: list[dict[str, Any]], answer: str
) -> ReadableSpan:
    return make_span(
        "chat gpt-4o",
        span_id,
        parent,
        start=span_id * 100,
        end=span_id * 100 + 50,
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.input.messages": json.dumps(history),
            "gen_ai.output.messages": json.dumps([genai("assistant", answer)]),
            "gen_ai.usage.input_tokens": 20,
            "gen_ai.usage.output_tokens": 3,
        },
    )


# --- the conversation rule ---------------------------------------------------------------------
def test_a_turn_reads_as_its_own_question_not_the_first_of_the_history() -> None:
    trace = convert(make_span("turn", 1, end=10_000), chat_span(2, 1, HISTORY, "12"))
    assert trace["input"] == "turn 2: and times 3?"
    assert trace["output"] == "12"


def test_the_first_llm_call_sets_the_question_and_the_last_the_answer() -> None:
    with_tool_result = [*HISTORY, {"role": "tool", "parts": [{"type": "text", "content": "x"}]}]
    trace = convert(
        make_span("turn", 1, end=10_000),
        chat_span(2, 1, HISTORY, "let me check"),
        chat_span(3, 1, with_tool_result, "final: 12"),
    )
    assert (trace["input"], trace["output"]) == ("turn 2: and times 3?", "final: 12")


def test_openinference_and_openllmetry_histories_read_the_same() -> None:
    oi = {
        "openinference.span.kind": "LLM",
        "llm.input_messages.0.message.role": "user",
        "llm.input_messages.0.message.content": "turn 1",
        "llm.input_messages.1.message.role": "assistant",
        "llm.input_messages.1.message.content": "a1",
        "llm.input_messages.2.message.role": "user",
        "llm.input_messages.2.message.content": "turn 2",
        "llm.output_messages.0.message.role": "assistant",
        "llm.output_messages.0.message.content": "a2",
    }
    traceloop = {
        "gen_ai.system": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.prompt.0.role": "user",
        "gen_ai.prompt.0.content": "turn 1",
        "gen_ai.prompt.1.role": "assistant",
        "gen_ai.prompt.1.content": "a1",
        "gen_ai.prompt.2.role": "user",
        "gen_ai.prompt.2.content": "turn 2",
        "gen_ai.completion.0.role": "assistant",
        "gen_ai.completion.0.content": "a2",
    }
    for attrs in (oi, traceloop):
        trace = convert(make_span("turn", 1, end=10_000), make_span("llm", 2, 1, attributes=attrs))
        assert (trace["input"], trace["output"]) == ("turn 2", "a2")


def test_the_roots_own_input_wins_and_an_agent_root_reads_its_last_user_message() -> None:
    explicit = make_span("turn", 1, end=10_000, attributes={"input.value": "explicit question"})
    trace = convert(explicit, chat_span(2, 1, HISTORY, "12"))
    assert trace["input"] == "explicit question"

    agent_root = make_span(
        "invoke_agent helper",
        1,
        end=10_000,
        attributes={
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "helper",
            "gen_ai.input.messages": json.dumps(HISTORY),
            "gen_ai.output.messages": json.dumps([genai("assistant", "12")]),
        },
    )
    trace = convert(agent_root, chat_span(2, 1, HISTORY, "12"))
    assert (trace["input"], trace["output"]) == ("turn 2: and times 3?", "12")


# --- JSON inputs and outputs ---------------------------------------------------------------------
LANGGRAPH_STATE_IN = {
    "messages": [
        {"type": "human", "data": {"content": "turn 1", "type": "human"}},
        {"type": "ai", "data": {"content": "a1", "type": "ai"}},
        {"type": "human", "data": {"content": "turn 2", "type": "human"}},
    ]
}
SERIALIZED_AI_MESSAGE = {
    "lc": 1,
    "type": "constructor",
    "id": ["langchain", "schema", "messages", "AIMessage"],
    "kwargs": {
        "content": "",
        "type": "ai",
        "tool_calls": [{"name": "weather", "args": {"city": "Paris"}, "id": None}],
    },
}


def test_json_inputs_and_outputs_are_read_by_mime_type() -> None:
    chain = make_span(
        "LangGraph",
        1,
        end=10_000,
        attributes={
            "openinference.span.kind": "CHAIN",
            "input.value": json.dumps(LANGGRAPH_STATE_IN),
            "input.mime_type": "application/json",
            "output.value": json.dumps({"messages": [{"type": "ai", "content": "a2"}]}),
            "output.mime_type": "application/json",
        },
    )
    node = make_span(
        "agent",
        2,
        1,
        attributes={
            "openinference.span.kind": "CHAIN",
            "input.value": json.dumps(LANGGRAPH_STATE_IN),
            "input.mime_type": "application/json",
            "output.value": json.dumps({"messages": [SERIALIZED_AI_MESSAGE]}),
            "output.mime_type": "application/json",
        },
    )
    plain = make_span(
        "format",
        3,
        1,
        attributes={
            "openinference.span.kind": "CHAIN",
            "input.value": json.dumps({"question": "in one field"}),
            "input.mime_type": "application/json",
            "output.value": '{"not": "messages", "n": 1}',
            "output.mime_type": "application/json",
        },
    )
    trace = convert(chain, node, plain)
    assert (trace["input"], trace["output"]) == ("turn 2", "a2")
    step, formatted = trace["spans"]
    assert [m["role"] for m in step["input"]] == ["user", "assistant", "user"]
    assert step["input"][2]["content"] == "turn 2"
    call = step["output"]["tool_calls"][0]
    assert call["function"] == {"name": "weather", "arguments": '{"city": "Paris"}'}
    assert call["id"].startswith("call_")  # LangChain gave none: a deterministic one
    assert formatted["input"] == "in one field"
    assert formatted["output"] == '{"not": "messages", "n": 1}'  # not messages: kept as sent


def test_text_that_looks_like_json_without_a_json_mime_type_stays_text() -> None:
    step = convert(
        make_span("root", 1, end=10_000),
        make_span("x", 2, 1, attributes={"input.value": '{"messages": []}'}),
    )["spans"][0]
    assert step["input"] == '{"messages": []}'


# --- failures ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("attributes", "events", "status"),
    [
        ({"error.type": "TimeoutError"}, [], 500),
        ({"error.type": "RateLimitError", "http.response.status_code": 429}, [], 429),
        ({"http.status_code": 503}, [("exception", {"exception.type": "APIError"})], 503),
        ({}, [("exception", {"exception.type": "KeyError", "exception.message": "city"})], 500),
    ],
)
def test_a_step_fails_by_error_type_or_an_exception_event_not_only_by_status(
    attributes: dict[str, Any], events: list[Any], status: int
) -> None:
    trace = convert(
        make_span("turn", 1, end=10_000),
        make_span(
            "tool",
            2,
            1,
            attributes={"gen_ai.operation.name": "execute_tool", **attributes},
            events=events,
        ),
    )
    (step,) = trace["spans"]
    assert step["status_code"] == status
    meta = step["user_metadata"]
    assert meta.get("error.type") or meta.get("exception.type")
    # What Galileo receives keeps the root's status on the trace.
    assert trace["status_code"] == 200


def test_an_empty_error_type_and_a_plain_event_are_not_failures() -> None:
    trace = convert(
        make_span("turn", 1, end=10_000),
        make_span("x", 2, 1, attributes={"error.type": ""}, events=[("retry", {"n": 1})]),
    )
    assert trace["spans"][0]["status_code"] == 200


# --- metadata ------------------------------------------------------------------------------------
def test_our_own_attributes_and_instrumentation_internals_never_reach_galileo() -> None:
    noisy = {
        "galileo.otel.conversation_key": "conv-1",
        "user.id": "ana",
        "logfire.msg": "running tool: weather",
        "logfire.json_schema": '{"type": "object"}',
        "metadata": json.dumps(
            {
                "langgraph_step": 1,
                "langgraph_node": "agent",
                "langgraph_triggers": ["start:agent"],
                "checkpoint_ns": "agent:1",
                "__pregel_task_id": "x",
                "thread_id": "t-9",
                "tier": "gold",
            }
        ),
        "app.flag": "kept",
    }
    trace = convert(
        make_span("turn", 1, end=10_000, attributes=noisy),
        make_span("step", 2, 1, attributes=noisy),
        chat_span(3, 2, HISTORY, "12"),
    )
    for step in [trace, *walk(trace)]:
        meta = step["user_metadata"]
        assert not [k for k in meta if k.startswith(("galileo.otel.", "logfire."))]
        assert not [k for k in meta if "langgraph" in k or "pregel" in k or "checkpoint" in k]
    assert trace["user_metadata"]["app.flag"] == trace["spans"][0]["user_metadata"]["app.flag"]
    assert trace["user_metadata"]["user.id"] == "ana"
    step = trace["spans"][0]
    assert "user.id" not in step["user_metadata"]
    assert step["user_metadata"]["metadata.thread_id"] == "t-9"
    assert step["user_metadata"]["metadata.tier"] == "gold"


def test_a_metadata_attribute_that_is_not_an_object_is_kept_whole() -> None:
    step = convert(
        make_span("root", 1, end=10_000),
        make_span("x", 2, 1, attributes={"metadata": "plain words"}),
    )["spans"][0]
    assert step["user_metadata"]["metadata"] == "plain words"


# --- tool steps and their calls ------------------------------------------------------------------
def oi_llm_with_calls(
    span_id: int, parent: int, calls: list[tuple[str | None, str, str]]
) -> ReadableSpan:
    attrs: dict[str, Any] = {
        "openinference.span.kind": "LLM",
        "llm.input_messages.0.message.role": "user",
        "llm.input_messages.0.message.content": "weather in Paris and Rome?",
        "llm.output_messages.0.message.role": "assistant",
    }
    for k, (call_id, name, arguments) in enumerate(calls):
        prefix = f"llm.output_messages.0.message.tool_calls.{k}.tool_call."
        if call_id is not None:
            attrs[prefix + "id"] = call_id
        attrs[prefix + "function.name"] = name
        attrs[prefix + "function.arguments"] = arguments
    return make_span(
        "ChatOpenAI", span_id, parent, start=span_id * 100, end=span_id * 100 + 10, attributes=attrs
    )


def lc_tool(span_id: int, parent: int, tool_input: str, output: str) -> ReadableSpan:
    return make_span(
        "weather",
        span_id,
        parent,
        start=span_id * 100,
        end=span_id * 100 + 10,
        attributes={
            "openinference.span.kind": "TOOL",
            "tool.name": "weather",
            "input.value": tool_input,
            "output.value": output,
        },
    )


def test_tool_steps_without_an_id_are_linked_by_name_and_arguments_in_order() -> None:
    trace = convert(
        make_span("turn", 1, end=10_000),
        oi_llm_with_calls(
            2, 1, [("c1", "weather", '{"city": "Paris"}'), ("c2", "weather", '{"city": "Rome"}')]
        ),
        # The second call answered first: the arguments pick the call, not the order.
        lc_tool(3, 1, '{"city": "Rome"}', "sunny"),
        lc_tool(4, 1, "Paris", "rain"),  # LangChain's raw input: the call's arguments replace it
    )
    rome, paris = trace["spans"][1:]
    assert (rome["tool_call_id"], rome["input"], rome["output"]) == (
        "c2",
        '{"city": "Rome"}',
        "sunny",
    )
    assert (paris["tool_call_id"], paris["input"]) == ("c1", '{"city": "Paris"}')


def test_a_tool_call_without_an_id_gets_one_its_tool_step_shares() -> None:
    trace = convert(
        make_span("turn", 1, end=10_000),
        oi_llm_with_calls(2, 1, [(None, "weather", '{"city": "Paris"}')]),
        lc_tool(3, 1, "Paris", "rain"),
    )
    llm, tool = trace["spans"]
    assert tool["tool_call_id"] == llm["output"]["tool_calls"][0]["id"]


def test_a_langchain_tool_message_output_is_its_content_and_names_its_call() -> None:
    message = {
        "lc": 1,
        "type": "constructor",
        "id": ["langchain", "schema", "messages", "ToolMessage"],
        "kwargs": {"content": "rain, 12C", "type": "tool", "name": "weather", "tool_call_id": "c9"},
    }
    step = convert(
        make_span("turn", 1, end=10_000),
        make_span(
            "weather",
            2,
            1,
            attributes={
                "openinference.span.kind": "TOOL",
                "input.value": "Paris",
                "output.value": json.dumps(message),
                "output.mime_type": "application/json",
            },
        ),
    )["spans"][0]
    assert (step["output"], step["tool_call_id"]) == ("rain, 12C", "c9")


def test_a_handoff_reads_as_the_next_agent() -> None:
    step = convert(
        make_span("Agent workflow", 1, end=10_000),
        make_span("handoff to Spanish agent", 2, 1, attributes={"openinference.span.kind": "TOOL"}),
    )["spans"][0]
    assert step["output"] == "Spanish agent"


# --- plumbing ------------------------------------------------------------------------------------
def chain(name: str, span_id: int, parent: int | None, **attrs: Any) -> ReadableSpan:
    return make_span(
        name,
        span_id,
        parent,
        start=span_id * 10,
        end=10_000 - span_id,
        attributes={"openinference.span.kind": "CHAIN", **attrs},
    )


def test_plumbing_collapses_and_its_children_take_its_place() -> None:
    trace = convert(
        chain("LangGraph", 1, None),
        chain("agent", 2, 1, **{"input.value": "state"}),
        chain("RunnableSequence", 3, 2),
        chain("Prompt", 4, 3, **{"input.value": "template", "output.value": "messages"}),
        chat_span(50, 3, HISTORY, "12"),
        chain("should_continue", 60, 2, **{"output.value": "__end__"}),
        chain("RunnableParallel<a,b>", 70, 1),
    )
    (agent,) = trace["spans"]
    assert agent["name"] == "agent"
    (llm,) = agent["spans"]
    assert llm["type"] == "llm" and llm["parent_id"] == agent["id"]
    assert [s["step_number"] for s in walk(trace)] == [1, 2]
    assert {
        "RunnableSequence",
        "Prompt",
        "should_continue",
        "RunnableParallel",
    } <= PLUMBING_STEP_NAMES


def test_a_chain_wrapping_its_namesake_collapses_unless_it_says_something() -> None:
    agent = make_span(
        "Agent workflow", 1, end=10_000, attributes={"openinference.span.kind": "AGENT"}
    )
    trace = convert(agent, chain("Agent workflow", 2, 1), chat_span(3, 2, HISTORY, "12"))
    (root,) = trace["spans"]
    assert [s["type"] for s in root["spans"]] == ["llm"]

    said = chain("Agent workflow", 2, 1, **{"input.value": "own words"})
    trace = convert(agent, said, chat_span(3, 2, HISTORY, "12"))
    assert [s["type"] for s in trace["spans"][0]["spans"]] == ["workflow"]


def test_a_failed_plumbing_step_is_kept() -> None:
    trace = convert(
        chain("LangGraph", 1, None),
        make_span(
            "RunnableSequence", 2, 1, error="boom", attributes={"openinference.span.kind": "CHAIN"}
        ),
    )
    assert [s["name"] for s in trace["spans"]] == ["RunnableSequence"]


# --- agents --------------------------------------------------------------------------------------
def test_an_agent_without_its_own_content_takes_its_childrens() -> None:
    trace = convert(
        make_span("Agent workflow", 1, end=10_000, attributes={"openinference.span.kind": "AGENT"}),
        make_span(
            "Assistant",
            2,
            1,
            end=9_000,
            attributes={"openinference.span.kind": "AGENT", "graph.node.id": "Assistant"},
        ),
        chat_span(3, 2, HISTORY, "let me look"),
        chat_span(4, 2, HISTORY, "12"),
    )
    (root,) = trace["spans"]
    (assistant,) = root["spans"]
    for agent in (root, assistant):
        assert agent["input"] == "turn 2: and times 3?"
        assert agent["output"] == "12"
        assert agent["metrics"]["num_input_tokens"] == 40
        assert agent["metrics"]["num_output_tokens"] == 6
    assert assistant["user_metadata"]["graph.node.id"] == "Assistant"
    assert trace["input"] == "turn 2: and times 3?"


def test_a_chain_wrapping_one_llm_step_of_its_name_collapses_into_it() -> None:
    llm = chat_span(3, 2, HISTORY, "12")
    wrapped = make_span(
        llm.name, 2, 1, start=150, end=800, attributes={"openinference.span.kind": "CHAIN"}
    )
    trace = convert(chain("LangGraph", 1, None), wrapped, llm)
    assert [(s["type"], s["step_number"]) for s in trace["spans"]] == [("llm", 1)]


@pytest.mark.parametrize(
    "state",
    [
        {"messages": [["user", "turn 1"], ["assistant", "a1"], ["user", "turn 2"]]},
        {"messages": ["turn 1", {"role": "assistant", "content": "a1"}, "turn 2"]},
    ],
    ids=["pairs", "strings"],
)
def test_langgraph_shorthand_states_read_as_messages(state: dict[str, Any]) -> None:
    trace = convert(
        chain(
            "LangGraph",
            1,
            None,
            **{"input.value": json.dumps(state), "input.mime_type": "application/json"},
        )
    )
    assert trace["input"] == "turn 2"


def test_a_single_message_output_with_a_call_without_id_gets_one() -> None:
    step = convert(
        make_span("root", 1, end=10_000),
        chain(
            "agent",
            2,
            1,
            **{
                "output.value": json.dumps(SERIALIZED_AI_MESSAGE),
                "output.mime_type": "application/json",
            },
        ),
    )["spans"][0]
    assert step["output"]["tool_calls"][0]["id"].startswith("call_")


def test_framework_metadata_is_cut_to_sixteen_keys_and_the_user_comes_from_a_child() -> None:
    blob = json.dumps({f"k{i:02d}": i for i in range(40)})
    trace = convert(
        make_span("root", 1, end=10_000),
        make_span("x", 2, 1, attributes={"metadata": blob, "enduser.id": "bo"}),
    )
    meta = trace["spans"][0]["user_metadata"]
    assert sorted(meta) == [f"metadata.k{i:02d}" for i in range(16)]
    assert trace["user_metadata"]["user.id"] == "bo"
