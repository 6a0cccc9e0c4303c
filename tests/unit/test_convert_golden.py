"""convert_trace's whole output for a fixed set of varied traces, against a checked-in file.

Every field of every step and trace is compared (as canonical JSON text: an int that turns
into a float, a field that appears or goes, a changed id or time all fail). The traces are
built with fixed ids and times, both as SDK spans and as the spans the export worker rebuilds
(record.py), which must convert alike.

When a change of the output is intended, regenerate the file and review its diff::

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_convert_golden.py
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest_convert import TRACE_ID, make_span
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from galileo_otel.export.assemble import AssembledTrace
from galileo_otel.export.convert import ConvertStats, convert_trace
from galileo_otel.export.record import Rebuilder, make_resource
from galileo_otel.export.sdk_span import span_record

GOLDEN = Path(__file__).parent / "data" / "convert_golden.json"
UPDATE_ENV = "UPDATE_GOLDEN"  # (not GALILEO_*: tests/conftest.py clears those)
UPDATE = bool(os.environ.get(UPDATE_ENV))

MSGS_IN = json.dumps(
    [
        {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]},
    ]
)
MSGS_OUT_CALL = json.dumps(
    [
        {
            "role": "assistant",
            "parts": [
                {"type": "text", "content": "Let me look."},
                {
                    "type": "tool_call",
                    "id": "call_1",
                    "name": "get_weather",
                    "arguments": {"city": "Paris"},
                },
                {"type": "tool_call", "name": "get_time", "arguments": "{}"},
            ],
            "finish_reason": "tool_calls",
        }
    ]
)
MSGS_HISTORY = json.dumps(
    [
        {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]},
        {
            "role": "assistant",
            "parts": [{"type": "tool_call", "id": "call_1", "name": "get_weather"}],
        },
        {
            "role": "tool",
            "parts": [{"type": "tool_call_response", "id": "call_1", "response": "sunny"}],
        },
    ]
)
MSGS_OUT_TEXT = json.dumps(
    [
        {
            "role": "assistant",
            "parts": [
                {"type": "reasoning", "content": "Tool said sunny."},
                {"type": "text", "content": "It is sunny."},
                {"type": "uri", "modality": "image", "uri": "https://example.com/sun.png"},
            ],
            "finish_reason": "stop",
        }
    ]
)
TOOLS = json.dumps([{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}])
GENAI_LLM = {
    "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.response.model": "gpt-4o-2024-08-06",
    "gen_ai.system": "openai",
    "gen_ai.usage.input_tokens": 12,
    "gen_ai.usage.output_tokens": 7,
    "server.address": "api.openai.com",
}

# A span without events, error or kind: ((name, span id, parent span id or None, start, end),
# attributes), times in ns after T0.
_Row = tuple[tuple[str, int, "int | None", int, int], dict[str, Any]]


def _spans(*rows: _Row) -> list[ReadableSpan]:
    """One span per row, in order (a span with events, an error or a kind: make_span)."""
    return [
        make_span(name, span_id, parent, start=start, end=end, attributes=attributes)
        for (name, span_id, parent, start, end), attributes in rows
    ]


def _genai_agent() -> list[ReadableSpan]:
    """An agent with two model calls and two tools (GenAI conventions, messages recorded)."""
    return _spans(
        (
            ("invoke_agent Weather", 1, None, 0, 90_000),
            {
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": "Weather",
                "user.id": "u-42",
                "galileo.tags": "prod,beta",
                "session.id": "s-1",
            },
        ),
        (
            ("chat gpt-4o", 2, 1, 1_000, 20_000),
            {
                **GENAI_LLM,
                "gen_ai.system_instructions": json.dumps(
                    [{"type": "text", "content": "Be brief."}]
                ),
                "gen_ai.input.messages": MSGS_IN,
                "gen_ai.output.messages": MSGS_OUT_CALL,
                "gen_ai.tool.definitions": TOOLS,
                "gen_ai.request.temperature": 0.2,
                "gen_ai.response.finish_reasons": ("tool_calls",),
                "gen_ai.usage.cache_read.input_tokens": 4,
            },
        ),
        (
            ("execute_tool get_weather", 3, 1, 21_000, 30_000),
            {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": "get_weather",
                "gen_ai.tool.call.id": "call_1",
                "gen_ai.tool.call.arguments": '{"city": "Paris"}',
                "gen_ai.tool.call.result": "sunny",
            },
        ),
        (
            ("execute_tool get_time", 4, 1, 31_000, 32_000),
            {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": "get_time",
                "gen_ai.tool.call.arguments": {"tz": "CET"},
            },
        ),
        (
            ("chat gpt-4o", 5, 1, 40_000, 80_000),
            {
                **GENAI_LLM,
                "gen_ai.input.messages": MSGS_HISTORY,
                "gen_ai.output.messages": MSGS_OUT_TEXT,
                "gen_ai.response.time_to_first_chunk": 0.25,
            },
        ),
    )


def _genai_no_messages() -> list[ReadableSpan]:
    """The benchmark's shape: a workflow root, a model call without messages, a tool."""
    return _spans(
        (("handle_request", 1, None, 0, 50_000), {"http.route": "/ask"}),
        (("chat gpt-4o", 2, 1, 10, 20_000), dict(GENAI_LLM)),
        (
            ("chat", 3, 1, 20_010, 21_000),
            {
                "gen_ai.operation.name": "embeddings",
                "embedding.model_name": "text-embed-3",
                "gen_ai.usage.input_tokens": "9",
                "llm.token_count.total": 9,
            },
        ),
        (
            ("execute_tool search", 4, 1, 21_010, 30_000),
            {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search"},
        ),
        (
            ("legacy llm", 5, 1, 31_000, 32_000),
            {
                "gen_ai.request.model": "claude-3",
                "gen_ai.system": "anthropic",
                "gen_ai.usage.prompt_tokens": 3,
                "gen_ai.usage.completion_tokens": 2,
            },
        ),
    )


def _openinference() -> list[ReadableSpan]:
    """OpenInference: a chain root, an LLM with flattened messages and tool calls, a retriever."""
    llm = {
        "openinference.span.kind": "LLM",
        "llm.model_name": "gpt-4o-mini",
        "llm.invocation_parameters": '{"temperature": 0.7}',
        "llm.input_messages.0.message.role": "system",
        "llm.input_messages.0.message.content": "You are helpful.",
        "llm.input_messages.1.message.role": "user",
        "llm.input_messages.1.message.contents.0.message_content.text": "Find docs",
        "llm.output_messages.0.message.role": "assistant",
        "llm.output_messages.0.message.tool_calls.0.tool_call.id": "tc_9",
        "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "retrieve",
        "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": "{}",
        "llm.token_count.prompt": 30,
        "llm.token_count.completion": 5,
        "llm.token_count.total": 35,
        "llm.token_count.prompt_details.cache_read": 10,
        "llm.finish_reason": "tool_calls",
        "llm.tools.0.tool.json_schema": json.dumps(
            {"type": "function", "function": {"name": "retrieve"}}
        ),
        "tag.tags": ["oi", "rag"],
    }
    return [
        make_span(
            "RAG",
            1,
            end=60_000,
            attributes={
                "openinference.span.kind": "CHAIN",
                "input.value": '{"question": "Find docs"}',
                "input.mime_type": "application/json",
                "output.value": "Here they are.",
                "metadata": json.dumps({"thread_id": "t1", "langgraph_step": 3, "user": "x"}),
            },
        ),
        make_span(
            "ChatOpenAI",
            2,
            1,
            start=1_000,
            end=9_000,
            attributes=llm,
            events=[("First Token Stream Event", {}, 3_000)],
        ),
        *_spans(
            (
                ("retrieve", 3, 1, 10_000, 12_000),
                {
                    "openinference.span.kind": "RETRIEVER",
                    "input.value": "Find docs",
                    "retrieval.documents.0.document.content": "doc zero",
                    "retrieval.documents.0.document.id": "d0",
                    "retrieval.documents.0.document.score": 0.9,
                    "retrieval.documents.1.document.content": "doc one",
                    "retrieval.documents.1.document.metadata": '{"source": "wiki"}',
                },
            ),
            (
                ("embed", 4, 1, 12_500, 13_000),
                {
                    "openinference.span.kind": "EMBEDDING",
                    "embedding.model_name": "text-embedding-3-small",
                    "embedding.embeddings.0.embedding.text": "Find docs",
                },
            ),
            (
                ("retrieve tool", 5, 1, 14_000, 15_000),
                {
                    "openinference.span.kind": "TOOL",
                    "tool.name": "retrieve",
                    "input.value": "{}",
                    "output.value": "two docs",
                },
            ),
        ),
    ]


def _langchain() -> list[ReadableSpan]:
    """LangChain/LangGraph through OpenInference: plumbing to collapse, state messages."""
    state_in = json.dumps(
        {"messages": [{"type": "human", "data": {"content": "What is 2+2?"}}], "step": 1}
    )
    state_out = json.dumps(
        {
            "messages": [
                {"type": "human", "data": {"content": "What is 2+2?"}},
                {
                    "type": "ai",
                    "data": {
                        "content": "",
                        "tool_calls": [{"name": "add", "args": {"a": 2, "b": 2}, "id": "lc1"}],
                    },
                },
            ]
        }
    )
    json_io = {"input.mime_type": "application/json", "output.mime_type": "application/json"}
    return _spans(
        (
            ("LangGraph", 1, None, 0, 100_000),
            {
                "openinference.span.kind": "CHAIN",
                "input.value": state_in,
                "output.value": state_out,
                **json_io,
            },
        ),
        (("RunnableSequence", 2, 1, 1_000, 40_000), {"openinference.span.kind": "CHAIN"}),
        (
            ("ChatPromptTemplate", 3, 2, 2_000, 3_000),
            {"openinference.span.kind": "CHAIN", "input.value": "x"},
        ),
        (
            ("agent", 4, 2, 4_000, 30_000),
            {"openinference.span.kind": "CHAIN", "input.value": state_in, **json_io},
        ),
        (
            ("agent", 5, 4, 5_000, 29_000),
            {
                "openinference.span.kind": "LLM",
                "llm.model_name": "gpt-4o",
                "llm.input_messages.0.message.role": "user",
                "llm.input_messages.0.message.content": "What is 2+2?",
                "output.value": state_out,
                "output.mime_type": "application/json",
            },
        ),
        (
            ("add", 6, 1, 41_000, 42_000),
            {
                "openinference.span.kind": "TOOL",
                "tool.name": "add",
                "input.value": '{"a": 2, "b": 2}',
                "output.value": json.dumps(
                    {"type": "tool", "data": {"content": "4", "tool_call_id": "lc1"}}
                ),
                "output.mime_type": "application/json",
            },
        ),
        (
            ("should_continue", 7, 1, 43_000, 43_500),
            {"openinference.span.kind": "CHAIN", "output.value": "end"},
        ),
        (
            ("repr tool", 8, 1, 44_000, 45_000),
            {
                "openinference.span.kind": "TOOL",
                "output.value": "content='4' name='add' tool_call_id='lc1'",
            },
        ),
    )


def _errors() -> list[ReadableSpan]:
    """Failures: ERROR status with an exception, error.type alone, an exception event alone."""
    return [
        make_span(
            "job",
            1,
            end=9_000,
            error="it broke",
            attributes={"http.response.status_code": 503, "enduser.id": "e-1"},
            events=[("exception", {"exception.type": "Boom", "exception.message": "bad"}, 10)],
        ),
        make_span(
            "chat gpt-4o",
            2,
            1,
            start=100,
            end=2_000,
            attributes={**GENAI_LLM, "error.type": "RateLimitError", "http.status_code": 429},
        ),
        make_span(
            "step",
            3,
            1,
            start=2_100,
            end=3_000,
            events=[("exception", {"exception.type": "KeyError"}, 2_500)],
        ),
        make_span(
            "big",
            4,
            1,
            start=3_100,
            end=4_000,
            attributes={
                **{f"attr.{i:03d}": i for i in range(70)},
                "long.value": "x" * 2_500,
                "list.value": ["a", "b"],
            },
        ),
    ]


def _duplicate_llm() -> list[ReadableSpan]:
    """One model call traced twice (two instrumentations): folded into the outer step."""
    return [
        make_span(
            "chat gpt-4o",
            1,
            end=10_000,
            kind=SpanKind.CLIENT,
            attributes={**GENAI_LLM, "gen_ai.input.messages": MSGS_IN},
        ),
        *_spans(
            (
                ("ChatCompletion", 2, 1, 100, 9_000),
                {
                    "openinference.span.kind": "LLM",
                    "llm.model_name": "gpt-4o",
                    "llm.output_messages.0.message.role": "assistant",
                    "llm.output_messages.0.message.content": "Hi there",
                    "llm.token_count.prompt": 50,
                    "tag.tags": ["dup"],
                },
            ),
            (
                ("inner inner", 3, 2, 200, 8_000),
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.request.temperature": 1.0,
                },
            ),
        ),
    ]


def _events_and_legacy() -> list[ReadableSpan]:
    """Messages as events (older GenAI), OpenLLMetry flattened prompts, Pydantic AI runs."""
    return [
        make_span(
            "agent run",
            1,
            end=70_000,
            attributes={
                "pydantic_ai.all_messages": json.dumps(
                    [
                        {"role": "user", "parts": [{"type": "text", "content": "old question"}]},
                        {"role": "assistant", "parts": [{"type": "text", "content": "old"}]},
                        {"role": "user", "parts": [{"type": "text", "content": "new question"}]},
                    ]
                ),
                "pydantic_ai.new_message_index": 2,
                "final_result": "the answer",
                "agent_name": "pyd",
                "gen_ai.aggregated_usage.input_tokens": 100,
                "gen_ai.aggregated_usage.output_tokens": 20,
            },
        ),
        make_span(
            "chat events",
            2,
            1,
            start=1_000,
            end=10_000,
            attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": "m1"},
            events=[
                ("gen_ai.system.message", {"content": "sys"}, 1_001),
                ("gen_ai.user.message", {"content": "hello"}, 1_002),
                (
                    "gen_ai.choice",
                    {"message": json.dumps({"content": "hi!"}), "finish_reason": "stop"},
                    9_000,
                ),
            ],
        ),
        *_spans(
            (
                ("openai.chat", 3, 1, 11_000, 20_000),
                {
                    "gen_ai.system": "openai",
                    "gen_ai.request.model": "gpt-3.5",
                    "gen_ai.prompt.0.role": "user",
                    "gen_ai.prompt.0.content": "flat question",
                    "gen_ai.completion.0.role": "assistant",
                    "gen_ai.completion.0.content": "",
                    "gen_ai.completion.0.tool_calls.0.id": "f1",
                    "gen_ai.completion.0.tool_calls.0.name": "lookup",
                    "gen_ai.completion.0.tool_calls.0.arguments": '{"k": 1}',
                },
            ),
            (
                ("running tool", 4, 1, 21_000, 22_000),
                {
                    "gen_ai.tool.name": "lookup",
                    "tool_arguments": '{"k": 1}',
                    "tool_response": "found",
                    "gen_ai.tool.call.id": "f1",
                },
            ),
            (
                ("handoff to Billing", 5, 1, 23_000, 23_500),
                {
                    "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.name": "handoff to Billing",
                },
            ),
            (
                ("dataset row", 6, 1, 24_000, 25_000),
                {
                    "galileo.dataset.input": "din",
                    "galileo.dataset.output": {"o": 1},
                    "galileo.dataset.metadata": '{"row": 3, "none": null}',
                    "galileo.project.name": "ignored",
                    "output.value": "done",
                },
            ),
            (
                ("invoke_workflow wf", 7, 1, 26_000, 27_000),
                {
                    "gen_ai.operation.name": "invoke_workflow",
                    "gen_ai.input.messages": MSGS_IN,
                    "gen_ai.output.messages": MSGS_OUT_TEXT,
                },
            ),
        ),
    ]


def _odd_tree() -> list[ReadableSpan]:
    """A remote parent, an orphan, a child of an llm step, same-named parent and child."""
    return [
        make_span(
            "server",
            1,
            0x77,
            remote_parent=True,
            end=40_000,
            kind=SpanKind.SERVER,
            attributes={"openinference.span.kind": "AGENT", "input.value": "q", "agent.name": "A"},
        ),
        *_spans(
            (("orphan", 2, 0x99, 500, 900), {"output.value": "o"}),
            (("chat", 3, 1, 1_000, 9_000), {**GENAI_LLM, "galileo.tags": '["t"]'}),
            (("under llm", 4, 3, 2_000, 3_000), {"input.value": "in"}),
            (("work", 5, 1, 10_000, 20_000), {"input.value": "w"}),
            (("work", 6, 5, 11_000, 19_000), {"gen_ai.operation.name": "x"}),
        ),
    ]


# name -> (spans, the root's span id or None, complete, part, spans_cut)
CASES: dict[str, tuple[Callable[[], list[ReadableSpan]], int | None, bool, int, int]] = {
    "genai_agent": (_genai_agent, 1, True, 0, 0),
    "genai_no_messages": (_genai_no_messages, 1, True, 0, 0),
    "openinference": (_openinference, 1, True, 0, 0),
    "langchain": (_langchain, 1, True, 0, 0),
    "errors": (_errors, 1, True, 0, 0),
    "duplicate_llm": (_duplicate_llm, 1, True, 0, 0),
    "events_and_legacy": (_events_and_legacy, 1, True, 0, 0),
    "odd_tree": (_odd_tree, 1, True, 0, 0),
    "rootless_part": (_genai_agent, None, False, 2, 3),
}


def _rebuilt(spans: list[ReadableSpan]) -> list[Any]:
    """The spans as the export worker rebuilds them from their records."""
    span_of = Rebuilder({1: make_resource(dict(spans[0].resource.attributes))}).span_of
    return [span_of(span_record(s, 1)) for s in spans]


def _convert(name: str, rebuilt: bool) -> dict[str, Any]:
    build, root_id, complete, part, cut = CASES[name]
    spans: list[Any] = build()
    if rebuilt:
        spans = _rebuilt(spans)
    if root_id is None:
        spans = [s for s in spans if s.context.span_id != 1]
        root = None
    else:
        root = next(s for s in spans if s.context.span_id == root_id)
    # The assembler's order: the root last.
    ordered = [s for s in spans if s is not root] + ([root] if root is not None else [])
    stats = ConvertStats()
    trace = convert_trace(AssembledTrace(TRACE_ID, root, ordered, complete, part, cut), stats)
    return {"trace": trace, "duplicate_llm_steps": stats.duplicate_llm_steps}


def _text(value: Any) -> str:
    return json.dumps(value, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def _all(rebuilt: bool) -> dict[str, Any]:
    return {name: _convert(name, rebuilt) for name in CASES}


def _differences(old: Any, new: Any, path: str = "") -> Iterator[str]:
    """Where two JSON values differ, as ``path: old -> new`` lines (types matter: 1 != 1.0)."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(old.keys() | new.keys()):
            sub = f"{path}.{key}"
            if key not in new:
                yield f"{sub}: removed (was {old[key]!r:.80})"
            elif key not in old:
                yield f"{sub}: added {new[key]!r:.80}"
            else:
                yield from _differences(old[key], new[key], sub)
    elif isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            yield f"{path}: {len(old)} items -> {len(new)}"
        for i, (a, b) in enumerate(zip(old, new, strict=False)):
            yield from _differences(a, b, f"{path}[{i}]")
    elif type(old) is not type(new) or old != new:
        yield f"{path}: {old!r:.80} -> {new!r:.80}"


def test_conversion_matches_the_golden_file() -> None:
    actual = _text(_all(rebuilt=False))
    if UPDATE:
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(actual, encoding="utf-8")
        pytest.skip(f"{GOLDEN.name} rewritten ({UPDATE_ENV} set): review its diff")
    expected = GOLDEN.read_text(encoding="utf-8")
    if actual != expected:
        lines = list(_differences(json.loads(expected), json.loads(actual)))[:40]
        pytest.fail(
            f"conversion output differs from {GOLDEN.name}:\n"
            + "\n".join(lines or ["(same values, different text)"])
            + f"\nIf the change is intended, rerun with {UPDATE_ENV}=1 and review the diff.",
            pytrace=False,
        )


def test_rebuilt_spans_convert_like_sdk_spans() -> None:
    assert _text(_all(rebuilt=True)) == _text(_all(rebuilt=False))


def test_golden_cases_cover_every_step_type_and_the_tree_passes() -> None:
    """The file stays meaningful: each kind of step and each tree pass shows in it."""
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    types: set[str] = set()
    keys: set[str] = set()

    def walk(steps: list[dict[str, Any]]) -> None:
        for step in steps:
            types.add(step["type"])
            keys.update(step)
            keys.update(step["metrics"])
            walk(step.get("spans", []))

    for case in golden.values():
        walk(case["trace"]["spans"])
    assert types == {"llm", "tool", "retriever", "agent", "workflow"}
    assert {"tool_call_id", "model", "temperature", "finish_reason", "tools"} <= keys
    assert {"dataset_input", "num_cached_input_tokens", "time_to_first_token_ns"} <= keys
    assert golden["duplicate_llm"]["duplicate_llm_steps"] == 2
    assert any(
        "otel.folded_span_id" in s["user_metadata"]
        for s in golden["duplicate_llm"]["trace"]["spans"]
    )
