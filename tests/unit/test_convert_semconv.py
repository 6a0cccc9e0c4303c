"""Every generation of the GenAI semantic conventions and OpenInference, one reading per test.

Attribute dicts are written as the instrumentations record them (names and value shapes from
their sources: opentelemetry-instrumentation-openai-v2 / opentelemetry-util-genai, OpenLLMetry's
opentelemetry-instrumentation-openai, openinference-instrumentation-openai and -openai-agents,
Pydantic AI); the readings that are also driven by the real instrumentations are in
tests/integration/test_convert_producers.py and test_convert_pydantic_ai.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest_convert import TRACE_ID, make_span
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from galileo_otel.export.assemble import AssembledTrace
from galileo_otel.export.convert import convert_trace
from trace_schema import assert_valid_trace


def convert(*spans: ReadableSpan) -> dict[str, Any]:
    root = next(s for s in spans if s.parent is None)
    trace = convert_trace(AssembledTrace(TRACE_ID, root, list(spans), True))
    assert_valid_trace(trace)
    return trace


def one_step(
    attributes: dict[str, Any],
    events: list[Any] | None = None,
    kind: SpanKind = SpanKind.CLIENT,
    name: str = "chat gpt-4o",
) -> dict[str, Any]:
    span = make_span(
        name, 2, 1, start=100, end=900, attributes=attributes, events=events or [], kind=kind
    )
    (step,) = convert(make_span("turn", 1, end=1_000), span)["spans"]
    return step


def text(role: str, content: str) -> dict[str, Any]:
    return {"role": role, "parts": [{"type": "text", "content": content}]}


# --- messages: every generation ------------------------------------------------------------------
def test_openllmetry_flattened_prompts_and_completions_with_tool_calls() -> None:
    step = one_step(
        {
            "gen_ai.system": "openai",
            "llm.request.type": "chat",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.prompt.0.role": "user",
            "gen_ai.prompt.0.content": "weather in Paris?",
            "gen_ai.completion.0.role": "assistant",
            "gen_ai.completion.0.finish_reason": "tool_calls",
            "gen_ai.completion.0.tool_calls.0.id": "call_1",
            "gen_ai.completion.0.tool_calls.0.name": "weather",
            "gen_ai.completion.0.tool_calls.0.arguments": '{"city": "Paris"}',
            "gen_ai.usage.prompt_tokens": 11,
            "gen_ai.usage.completion_tokens": 5,
        }
    )
    assert step["type"] == "llm"
    assert step["input"] == [{"role": "user", "content": "weather in Paris?"}]
    assert step["output"]["tool_calls"] == [
        {"id": "call_1", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}
    ]
    assert (step["metrics"]["num_input_tokens"], step["metrics"]["num_output_tokens"]) == (11, 5)


def test_per_message_events_of_the_first_genai_generation() -> None:
    step = one_step(
        {"gen_ai.system": "openai", "gen_ai.operation.name": "chat"},
        events=[
            ("gen_ai.system.message", {"gen_ai.system": "openai", "content": "Be brief."}),
            ("gen_ai.user.message", {"gen_ai.system": "openai", "content": "hi"}),
            (
                "gen_ai.choice",
                {
                    "gen_ai.system": "openai",
                    "index": 0,
                    "finish_reason": "stop",
                    "message": json.dumps({"role": "assistant", "content": "hello"}),
                },
            ),
        ],
    )
    assert [m["role"] for m in step["input"]] == ["system", "user"]
    assert step["output"] == {"role": "assistant", "content": "hello"}
    assert step["finish_reason"] == "stop"


def test_the_inference_operation_details_event() -> None:
    step = one_step(
        {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai"},
        events=[
            (
                "gen_ai.client.inference.operation.details",
                {
                    "gen_ai.system_instructions": json.dumps(
                        [{"type": "text", "content": "Be brief."}]
                    ),
                    "gen_ai.input.messages": json.dumps([text("user", "hi")]),
                    "gen_ai.output.messages": json.dumps([text("assistant", "hello")]),
                },
            )
        ],
    )
    assert step["input"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ]
    assert step["output"]["content"] == "hello"


@pytest.mark.parametrize("encode", [json.dumps, lambda value: value], ids=["json", "structured"])
def test_input_and_output_messages_as_json_strings_or_structured_values(encode: Any) -> None:
    step = one_step(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.system_instructions": encode([{"type": "text", "content": "Be brief."}]),
            "gen_ai.input.messages": encode([text("user", "hi")]),
            "gen_ai.output.messages": encode(
                [{**text("assistant", "hello"), "finish_reason": "stop"}]
            ),
            "gen_ai.tool.definitions": encode(
                [{"type": "function", "name": "weather", "parameters": {"type": "object"}}]
            ),
        }
    )
    assert step["input"][0] == {"role": "system", "content": "Be brief."}
    assert step["output"] == {"role": "assistant", "content": "hello"}
    assert step["finish_reason"] == "stop"
    assert step["tools"][0]["function"]["name"] == "weather"


def test_reasoning_parts_become_reasoning_events_of_the_llm_step() -> None:
    step = one_step(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.input.messages": json.dumps([text("user", "2+2?")]),
            "gen_ai.output.messages": json.dumps(
                [
                    {
                        "role": "assistant",
                        "parts": [
                            {"type": "reasoning", "content": "add two and two"},
                            {"type": "text", "content": "4"},
                        ],
                    }
                ]
            ),
            "gen_ai.usage.reasoning.output_tokens": 12,
        }
    )
    assert step["output"] == {"role": "assistant", "content": "4"}
    assert step["events"] == [{"type": "reasoning", "content": "add two and two"}]
    assert step["metrics"]["num_reasoning_tokens"] == 12


def test_uri_file_and_blob_parts_become_data_blocks() -> None:
    step = one_step(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.input.messages": json.dumps(
                [
                    {
                        "role": "user",
                        "parts": [
                            {"type": "text", "content": "what is this?"},
                            {
                                "type": "uri",
                                "modality": "image",
                                "mime_type": "image/png",
                                "uri": "https://example.com/a.png",
                            },
                            {
                                "type": "blob",
                                "modality": "audio",
                                "mime_type": "audio/wav",
                                "content": "UklGRg==",
                            },
                            {"type": "file", "modality": "document", "file_id": "file-abc"},
                        ],
                    }
                ]
            ),
        }
    )
    blocks = step["input"][0]["content"]
    assert [b["type"] for b in blocks] == ["text", "data", "data", "text"]
    assert blocks[1]["url"] == "https://example.com/a.png"
    assert blocks[2]["base64"] == "UklGRg=="
    assert blocks[3]["text"] == "[document: file-abc]"


def test_content_stored_elsewhere_keeps_its_ref_pointers_as_links() -> None:
    refs = {
        "gen_ai.input.messages_ref": "gs://bucket/trace/in.json",
        "gen_ai.output.messages_ref": "gs://bucket/trace/out.json",
        "gen_ai.system_instructions_ref": "gs://bucket/trace/sys.json",
    }
    step = one_step({"gen_ai.operation.name": "chat", **refs})
    assert {k: step["user_metadata"][k] for k in refs} == refs


def test_tool_call_arguments_and_result() -> None:
    step = one_step(
        {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": "weather",
            "gen_ai.tool.call.id": "call_1",
            "gen_ai.tool.call.arguments": '{"city": "Paris"}',
            "gen_ai.tool.call.result": "rain",
            "gen_ai.tool.description": "Weather of a city",
        },
        kind=SpanKind.INTERNAL,
        name="execute_tool weather",
    )
    assert (step["type"], step["input"], step["output"]) == ("tool", '{"city": "Paris"}', "rain")
    assert step["tool_call_id"] == "call_1"
    assert step["user_metadata"]["gen_ai.tool.description"] == "Weather of a city"


# --- providers, operations -----------------------------------------------------------------------
@pytest.mark.parametrize("provider_key", ["gen_ai.provider.name", "gen_ai.system"])
def test_a_model_call_is_an_llm_step_by_provider_name_or_the_older_system(
    provider_key: str,
) -> None:
    step = one_step({provider_key: "openai", "gen_ai.request.model": "gpt-4o"})
    assert step["type"] == "llm" and step["model"] == "gpt-4o"
    assert step["user_metadata"][provider_key] == "openai"


@pytest.mark.parametrize("span_kind", [SpanKind.CLIENT, SpanKind.INTERNAL])
def test_invoke_agent_remote_or_in_process_is_an_agent_step(span_kind: SpanKind) -> None:
    step = one_step(
        {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "helper",
            "gen_ai.agent.id": "asst_1",
            "gen_ai.input.messages": json.dumps([text("user", "hi")]),
            "gen_ai.output.messages": json.dumps([text("assistant", "hello")]),
            "gen_ai.usage.input_tokens": 9,
        },
        kind=span_kind,
        name="invoke_agent helper",
    )
    assert (step["type"], step["name"]) == ("agent", "helper")
    assert step["input"] == [{"role": "user", "content": "hi"}]
    assert step["output"] == {"role": "assistant", "content": "hello"}
    assert step["metrics"]["num_input_tokens"] == 9


def test_invoke_workflow_is_a_workflow_step_with_its_messages() -> None:
    step = one_step(
        {
            "gen_ai.operation.name": "invoke_workflow",
            "gen_ai.input.messages": json.dumps([text("user", "plan a trip")]),
            "gen_ai.output.messages": json.dumps([text("assistant", "done")]),
        },
        kind=SpanKind.INTERNAL,
        name="invoke_workflow trip",
    )
    assert step["type"] == "workflow"
    assert step["input"] == [{"role": "user", "content": "plan a trip"}]
    assert step["output"] == {"role": "assistant", "content": "done"}


def test_agent_and_call_ids_on_child_spans_are_kept() -> None:
    step = one_step(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.agent.name": "helper",
            "gen_ai.agent.call.id": "run-7",
            "gen_ai.response.id": "chatcmpl-1",
        }
    )
    meta = step["user_metadata"]
    assert (meta["gen_ai.agent.name"], meta["gen_ai.agent.call.id"]) == ("helper", "run-7")
    assert meta["gen_ai.response.id"] == "chatcmpl-1"


# --- timing and tokens ---------------------------------------------------------------------------
def test_time_to_first_chunk_and_openinferences_first_token_event() -> None:
    genai = one_step({"gen_ai.operation.name": "chat", "gen_ai.response.time_to_first_chunk": 0.25})
    assert genai["metrics"]["time_to_first_token_ns"] == 250_000_000
    oi = one_step(
        {"openinference.span.kind": "LLM"},
        events=[("First Token Stream Event", {}, 400)],
    )
    assert oi["metrics"]["time_to_first_token_ns"] == 300  # the event at 400, the span at 100


@pytest.mark.parametrize(
    "attributes",
    [
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.usage.input_tokens": 100,
            "gen_ai.usage.output_tokens": 20,
            "gen_ai.usage.cache_read.input_tokens": 80,
            "gen_ai.usage.cache_creation.input_tokens": 10,
            "gen_ai.usage.reasoning.output_tokens": 15,
        },
        {
            "openinference.span.kind": "LLM",
            "llm.token_count.prompt": 100,
            "llm.token_count.completion": 20,
            "llm.token_count.total": 120,
            "llm.token_count.prompt_details.cache_read": 80,
            "llm.token_count.prompt_details.cache_write": 10,
            "llm.token_count.completion_details.reasoning": 15,
        },
    ],
    ids=["genai", "openinference"],
)
def test_cache_read_and_write_and_reasoning_tokens(attributes: dict[str, Any]) -> None:
    metrics = one_step(attributes)["metrics"]
    assert {k: v for k, v in metrics.items() if k != "duration_ns"} == {
        "num_input_tokens": 100,
        "num_output_tokens": 20,
        "num_total_tokens": 120,
        "num_cached_input_tokens": 80,
        "num_cache_write_input_tokens": 10,
        "num_reasoning_tokens": 15,
    }


# --- embeddings and retrieval ----------------------------------------------------------------------
def test_genai_embeddings_and_retrieval() -> None:
    embeddings = one_step(
        {
            "gen_ai.operation.name": "embeddings",
            "gen_ai.request.model": "text-embedding-3-small",
            "gen_ai.usage.input_tokens": 4,
        },
        name="embeddings text-embedding-3-small",
    )
    assert embeddings["type"] == "llm" and embeddings["model"] == "text-embedding-3-small"
    retrieval = one_step(
        {
            "gen_ai.operation.name": "retrieval",
            "gen_ai.retrieval.query.text": "warranty",
            "gen_ai.retrieval.documents": json.dumps(
                [{"id": "d1", "score": 0.9, "content": "two years"}]
            ),
        },
        name="retrieval kb",
    )
    assert retrieval["type"] == "retriever" and retrieval["input"] == "warranty"
    assert retrieval["output"] == [{"content": "two years", "metadata": {"id": "d1", "score": 0.9}}]


def test_openinference_embeddings_and_retrieval() -> None:
    embedding = one_step(
        {
            "openinference.span.kind": "EMBEDDING",
            "embedding.model_name": "text-embedding-3-small",
            "embedding.embeddings.0.embedding.text": "hello",
        }
    )
    assert embedding["input"] == [{"role": "user", "content": "hello"}]
    retriever = one_step(
        {
            "openinference.span.kind": "RETRIEVER",
            "input.value": "warranty",
            "retrieval.documents.0.document.content": "two years",
            "retrieval.documents.0.document.score": 0.5,
        }
    )
    assert retriever["output"] == [{"content": "two years", "metadata": {"score": 0.5}}]
