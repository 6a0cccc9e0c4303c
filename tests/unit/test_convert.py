"""convert_trace / convert_span: each convention's span shapes -> Galileo steps, the tree, the ids."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from conftest_convert import T0, TRACE_ID, make_span
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import ReadableSpan

from galileo_otel.export import convert as convert_module
from galileo_otel.export.assemble import AssembledTrace
from galileo_otel.export.convert import (
    MAX_METADATA_ENTRIES,
    MAX_METADATA_VALUE_CHARS,
    ConvertStats,
    convert_span,
    convert_trace,
    span_uuid,
    trace_uuid,
)
from trace_schema import assert_valid_trace, walk

TID = trace_uuid(TRACE_ID)


def convert(*spans: ReadableSpan, root: int | None = 1, complete: bool = True) -> dict[str, Any]:
    """Convert spans of TRACE_ID; `root` names the root's span id (None: rootless)."""
    root_span = next((s for s in spans if s.context.span_id == root), None)
    trace = convert_trace(AssembledTrace(TRACE_ID, root_span, list(spans), complete))
    assert_valid_trace(trace)
    return trace


def only_step(*spans: ReadableSpan) -> dict[str, Any]:
    """Convert spans under a plain workflow root and return the single top-level step."""
    trace = convert(make_span("root", 1, start=0, end=10_000), *spans)
    (step,) = trace["spans"]
    return step


# --- ids ------------------------------------------------------------------------------------------
def test_ids_are_deterministic_uuid4() -> None:
    for value in (trace_uuid(TRACE_ID), span_uuid(TRACE_ID, 0x00F067AA0BA902B7)):
        parsed = uuid.UUID(value)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
    assert trace_uuid(TRACE_ID) == trace_uuid(TRACE_ID)
    assert trace_uuid(TRACE_ID) == "4bf92f35-77b3-4da6-a3ce-929d0e0e4736"
    assert span_uuid(TRACE_ID, 1) != span_uuid(TRACE_ID, 2)
    assert span_uuid(TRACE_ID, 1) != span_uuid(TRACE_ID + 1, 1)
    assert trace_uuid(1) != trace_uuid(2)


def test_trace_and_step_ids_link_up() -> None:
    trace = convert(make_span("root", 1), make_span("child", 2, 1, start=1))
    (child,) = trace["spans"]
    assert trace["id"] == TID
    assert trace["external_id"] == f"{TRACE_ID:032x}"
    assert child["id"] == span_uuid(TRACE_ID, 2)
    assert child["trace_id"] == TID and child["parent_id"] == TID
    assert "session_id" not in trace


# --- OTel GenAI -----------------------------------------------------------------------------------
GENAI_CHAT = {
    "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.temperature": 0.2,
    "gen_ai.response.finish_reasons": ("tool_calls",),
    "gen_ai.response.model": "gpt-4o-2024-08-06",
    "gen_ai.response.id": "chatcmpl-1",
    "gen_ai.usage.input_tokens": 14,
    "gen_ai.usage.output_tokens": 5,
    "gen_ai.system_instructions": '[{"type":"text","content":"Be brief."}]',
    "gen_ai.input.messages": json.dumps(
        [
            {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]},
            {
                "role": "assistant",
                "parts": [
                    {
                        "type": "tool_call",
                        "id": "call_0",
                        "name": "get_weather",
                        "arguments": {"city": "Paris"},
                    }
                ],
            },
            {
                "role": "tool",
                "parts": [{"type": "tool_call_response", "id": "call_0", "response": "rainy"}],
            },
        ]
    ),
    "gen_ai.output.messages": json.dumps(
        [
            {
                "role": "assistant",
                "parts": [
                    {"type": "text", "content": "Take an umbrella."},
                    {"type": "tool_call", "id": "call_1", "name": "book", "arguments": "{}"},
                ],
                "finish_reason": "tool_calls",
            }
        ]
    ),
    "gen_ai.tool.definitions": json.dumps([{"type": "function", "name": "get_weather"}]),
    "gen_ai.response.time_to_first_chunk": 0.25,
    "server.address": "api.openai.com",
}


def test_genai_chat_becomes_an_llm_step() -> None:
    step = only_step(make_span("chat gpt-4o", 2, 1, start=100, end=2_100, attributes=GENAI_CHAT))
    assert step["type"] == "llm"
    assert step["input"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_0",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "content": "rainy", "tool_call_id": "call_0"},
    ]
    assert step["output"] == {
        "role": "assistant",
        "content": "Take an umbrella.",
        "tool_calls": [{"id": "call_1", "function": {"name": "book", "arguments": "{}"}}],
    }
    assert step["model"] == "gpt-4o-2024-08-06"
    assert step["temperature"] == 0.2
    assert step["finish_reason"] == "tool_calls"
    # Flat GenAI definitions go out in the nested OpenAI shape the official SDK sends.
    assert step["tools"] == [{"type": "function", "function": {"name": "get_weather"}}]
    assert step["metrics"] == {
        "duration_ns": 2_000,
        "num_input_tokens": 14,
        "num_output_tokens": 5,
        "num_total_tokens": 19,
        "time_to_first_token_ns": 250_000_000,
    }
    # Mapped attributes are not repeated in metadata; the rest are, as strings.
    assert step["user_metadata"] == {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.provider.name": "openai",
        "gen_ai.response.id": "chatcmpl-1",
        "server.address": "api.openai.com",
    }


@pytest.mark.parametrize("operation", ["chat", "text_completion", "generate_content", "embeddings"])
def test_genai_model_operations_are_llm_steps(operation: str) -> None:
    attrs = {
        "gen_ai.operation.name": operation,
        "gen_ai.request.model": "m",
        "gen_ai.usage.input_tokens": 3,
    }
    step = only_step(make_span(operation, 2, 1, attributes=attrs))
    assert step["type"] == "llm" and step["model"] == "m"
    assert step["metrics"]["num_input_tokens"] == 3
    # No content captured: the output is an empty answer, never null.
    assert step["input"] == [] and step["output"] == {"role": "assistant", "content": ""}


def test_genai_finish_reason_falls_back_to_the_output_message() -> None:
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.output.messages": json.dumps(
            [
                {
                    "role": "assistant",
                    "parts": [{"type": "text", "content": "hi"}],
                    "finish_reason": "stop",
                }
            ]
        ),
    }
    step = only_step(make_span("chat", 2, 1, attributes=attrs))
    assert step["finish_reason"] == "stop"
    assert step["output"] == {"role": "assistant", "content": "hi"}


def test_genai_system_instructions_as_plain_text() -> None:
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.system_instructions": "Answer in French.",
        "gen_ai.input.messages": '[{"role": "user", "parts": [{"type": "text", "content": "Hi"}]}]',
    }
    step = only_step(make_span("chat", 2, 1, attributes=attrs))
    assert step["input"] == [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Hi"},
    ]


def test_genai_media_parts_become_data_blocks_next_to_text_blocks() -> None:
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.input.messages": json.dumps(
            [
                {
                    "role": "user",
                    "parts": [
                        {"type": "text", "content": "What is this?"},
                        {"type": "uri", "modality": "image", "uri": "https://x/cat.png"},
                        {
                            "type": "blob",
                            "modality": "audio",
                            "mime_type": "audio/wav",
                            "content": "UklGRg==",
                        },
                        {"type": "uri", "uri": "data:application/pdf;base64,JVBERi0="},
                        {"type": "file", "modality": "image", "file_id": "file-abc"},
                        {"type": "reasoning", "content": "hidden"},
                    ],
                }
            ]
        ),
        "gen_ai.output.messages": json.dumps(
            [{"role": "assistant", "parts": [{"type": "text", "content": "A cat."}]}]
        ),
    }
    trace = convert(make_span("chat", 1, attributes=attrs))
    (step,) = trace["spans"]
    assert step["input"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "data", "modality": "image", "url": "https://x/cat.png"},
                {
                    "type": "data",
                    "modality": "audio",
                    "base64": "UklGRg==",
                    "mime_type": "audio/wav",
                },
                {
                    "type": "data",
                    "modality": "document",
                    "base64": "JVBERi0=",
                    "mime_type": "application/pdf",
                },
                # A provider file id is neither a URL nor data: a short text keeps its place.
                {"type": "text", "text": "[image: file-abc]"},
            ],
        }
    ]
    # The trace's input is the text of the first user message.
    assert trace["input"] == "What is this?\n[image: file-abc]"
    assert trace["output"] == "A cat."


def test_openai_shaped_content_parts_in_events_become_blocks() -> None:
    events = [
        (
            "gen_ai.user.message",
            {
                "gen_ai.event.content": json.dumps(
                    {
                        "content": [
                            {"type": "text", "text": "Describe"},
                            {
                                "type": "image_url",
                                "image_url": {"url": "data:image/png;base64,iVBO"},
                            },
                            {
                                "type": "input_audio",
                                "input_audio": {"data": "UklG", "format": "wav"},
                            },
                        ]
                    }
                )
            },
        )
    ]
    step = only_step(
        make_span("chat", 2, 1, attributes={"gen_ai.operation.name": "chat"}, events=events)
    )
    assert step["input"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Describe"},
                {"type": "data", "modality": "image", "base64": "iVBO", "mime_type": "image/png"},
                {"type": "data", "modality": "audio", "base64": "UklG", "mime_type": "audio/wav"},
            ],
        }
    ]


def test_genai_legacy_message_events() -> None:
    events = [
        ("gen_ai.system.message", {"gen_ai.system": "openai", "content": "Be brief."}),
        ("gen_ai.user.message", {"gen_ai.system": "openai", "content": "Weather?"}),
        (
            "gen_ai.assistant.message",
            {
                "gen_ai.system": "openai",
                "tool_calls": json.dumps(
                    [
                        {
                            "id": "call_0",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                        }
                    ]
                ),
            },
        ),
        ("gen_ai.tool.message", {"gen_ai.system": "openai", "content": "rainy", "id": "call_0"}),
        (
            "gen_ai.choice",
            {
                "gen_ai.system": "openai",
                "index": 0,
                "finish_reason": "stop",
                "message": json.dumps({"role": "assistant", "content": "Umbrella."}),
            },
        ),
    ]
    attrs = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"}
    step = only_step(make_span("chat gpt-4o", 2, 1, attributes=attrs, events=events))
    assert step["input"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_0",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "content": "rainy", "tool_call_id": "call_0"},
    ]
    assert step["output"] == {"role": "assistant", "content": "Umbrella."}
    assert step["finish_reason"] == "stop"


def test_genai_events_with_a_json_body_attribute() -> None:
    # Azure AI SDKs put the event body, JSON-encoded, in gen_ai.event.content.
    events = [
        ("gen_ai.user.message", {"gen_ai.event.content": '{"role": "user", "content": "Hi"}'}),
        (
            "gen_ai.choice",
            {
                "gen_ai.event.content": json.dumps(
                    {
                        "finish_reason": "stop",
                        "index": 0,
                        "message": {"content": "Hello!"},
                    }
                )
            },
        ),
    ]
    step = only_step(
        make_span("chat", 2, 1, attributes={"gen_ai.operation.name": "chat"}, events=events)
    )
    assert step["input"] == [{"role": "user", "content": "Hi"}]
    assert step["output"] == {"role": "assistant", "content": "Hello!"}
    assert step["finish_reason"] == "stop"


def test_genai_inference_details_event() -> None:
    details = {
        "gen_ai.operation.name": "chat",
        "gen_ai.system_instructions": '[{"type": "text", "content": "Be kind."}]',
        "gen_ai.input.messages": '[{"role": "user", "parts": [{"type": "text", "content": "Hi"}]}]',
        "gen_ai.output.messages": json.dumps(
            [
                {
                    "role": "assistant",
                    "parts": [{"type": "text", "content": "Hey"}],
                    "finish_reason": "stop",
                }
            ]
        ),
    }
    span = make_span(
        "chat",
        2,
        1,
        attributes={"gen_ai.operation.name": "chat"},
        events=[("gen_ai.client.inference.operation.details", details)],
    )
    step = only_step(span)
    assert step["input"] == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "Hi"},
    ]
    assert step["output"] == {"role": "assistant", "content": "Hey"}
    assert step["finish_reason"] == "stop"


def test_genai_execute_tool_becomes_a_tool_step() -> None:
    attrs = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "get_weather",
        "gen_ai.tool.call.id": "call_0",
        "gen_ai.tool.type": "function",
        "gen_ai.tool.call.arguments": '{"city": "Paris"}',
        "gen_ai.tool.call.result": '{"forecast": "rainy"}',
    }
    step = only_step(make_span("execute_tool get_weather", 2, 1, attributes=attrs))
    assert step["type"] == "tool"
    assert step["name"] == "get_weather"
    assert step["input"] == '{"city": "Paris"}'
    assert step["output"] == '{"forecast": "rainy"}'
    assert step["tool_call_id"] == "call_0"
    assert step["user_metadata"] == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "get_weather",
        "gen_ai.tool.type": "function",
    }


@pytest.mark.parametrize("operation", ["invoke_agent", "create_agent"])
def test_genai_agent_operations_become_agent_steps(operation: str) -> None:
    attrs = {
        "gen_ai.operation.name": operation,
        "gen_ai.agent.name": "Weather agent",
        "gen_ai.agent.id": "agent-1",
        "gen_ai.input.messages": '[{"role": "user", "parts": [{"type": "text", "content": "Hi"}]}]',
        "gen_ai.output.messages": '[{"role": "assistant", "parts": [{"type": "text", "content": "Yo"}]}]',
        "gen_ai.usage.input_tokens": 30,
        "gen_ai.usage.output_tokens": 7,
    }
    step = only_step(make_span(f"{operation} Weather agent", 2, 1, attributes=attrs))
    assert step["type"] == "agent" and step["agent_type"] == "default"
    assert step["name"] == "Weather agent"
    assert step["input"] == [{"role": "user", "content": "Hi"}]
    assert step["output"] == {"role": "assistant", "content": "Yo"}
    assert step["metrics"]["num_total_tokens"] == 37
    assert step["spans"] == []


def test_genai_retrieval_becomes_a_retriever_step() -> None:
    attrs = {
        "gen_ai.operation.name": "retrieval",
        "gen_ai.data_source.id": "kb-1",
        "gen_ai.retrieval.query.text": "umbrella policy",
        "gen_ai.retrieval.documents": json.dumps(
            [{"id": "doc-1", "score": 0.9, "content": "Bring one."}, {"id": "doc-2"}]
        ),
    }
    step = only_step(make_span("retrieval kb-1", 2, 1, attributes=attrs))
    assert step["type"] == "retriever"
    assert step["input"] == "umbrella policy"
    assert step["output"] == [
        {"content": "Bring one.", "metadata": {"id": "doc-1", "score": 0.9}},
        {"content": "", "metadata": {"id": "doc-2"}},
    ]


def test_an_unknown_genai_operation_is_a_workflow_step() -> None:
    attrs = {"gen_ai.operation.name": "invoke_workflow", "input.value": "go"}
    step = only_step(make_span("invoke_workflow plan", 2, 1, attributes=attrs))
    assert step["type"] == "workflow" and step["input"] == "go"


def test_a_model_call_without_operation_name_is_still_an_llm_step() -> None:
    attrs = {
        "gen_ai.system": "openai",
        "gen_ai.request.model": "gpt-3.5-turbo",
        "gen_ai.usage.prompt_tokens": 9,
        "gen_ai.usage.completion_tokens": 2,
        "gen_ai.prompt.0.role": "user",
        "gen_ai.prompt.0.content": "Hi",
        "gen_ai.completion.0.role": "assistant",
        "gen_ai.completion.0.content": "Hello",
    }
    step = only_step(make_span("openai.chat", 2, 1, attributes=attrs))
    assert step["type"] == "llm" and step["model"] == "gpt-3.5-turbo"
    assert step["input"] == [{"role": "user", "content": "Hi"}]
    assert step["output"] == {"role": "assistant", "content": "Hello"}
    assert step["metrics"]["num_total_tokens"] == 11


# --- OpenInference --------------------------------------------------------------------------------
OI_LLM = {
    "openinference.span.kind": "LLM",
    "llm.system": "openai",
    "input.value": '{"model": "gpt-x", "messages": []}',
    "input.mime_type": "application/json",
    "output.value": '{"id": "chatcmpl-stub"}',
    "output.mime_type": "application/json",
    "llm.tools.0.tool.json_schema": '{"type": "function", "function": {"name": "get_weather"}}',
    "llm.invocation_parameters": '{"model": "gpt-x", "temperature": 0.7}',
    "llm.input_messages.0.message.role": "system",
    "llm.input_messages.0.message.content": "Be brief.",
    "llm.input_messages.1.message.role": "user",
    "llm.input_messages.1.message.contents.0.message_content.type": "text",
    "llm.input_messages.1.message.contents.0.message_content.text": "Weather",
    "llm.input_messages.1.message.contents.1.message_content.type": "text",
    "llm.input_messages.1.message.contents.1.message_content.text": "in Paris?",
    "llm.input_messages.2.message.role": "assistant",
    "llm.input_messages.2.message.tool_calls.0.tool_call.id": "call_0",
    "llm.input_messages.2.message.tool_calls.0.tool_call.function.name": "get_weather",
    "llm.input_messages.2.message.tool_calls.0.tool_call.function.arguments": '{"city": "Paris"}',
    "llm.input_messages.3.message.role": "tool",
    "llm.input_messages.3.message.tool_call_id": "call_0",
    "llm.input_messages.3.message.content": "rainy",
    "llm.model_name": "gpt-x-2026",
    "llm.token_count.total": 34,
    "llm.token_count.prompt": 28,
    "llm.token_count.completion": 6,
    "llm.output_messages.0.message.role": "assistant",
    "llm.output_messages.0.message.content": "Take an umbrella.",
    "llm.finish_reason": "stop",
}


def test_openinference_llm_becomes_an_llm_step() -> None:
    step = only_step(make_span("ChatCompletion", 2, 1, attributes=OI_LLM))
    assert step["type"] == "llm"
    assert step["input"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather\nin Paris?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_0",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "content": "rainy", "tool_call_id": "call_0"},
    ]
    assert step["output"] == {"role": "assistant", "content": "Take an umbrella."}
    assert step["model"] == "gpt-x-2026"
    assert step["temperature"] == 0.7
    assert step["finish_reason"] == "stop"
    assert step["tools"] == [{"type": "function", "function": {"name": "get_weather"}}]
    assert step["metrics"]["num_input_tokens"] == 28
    assert step["metrics"]["num_output_tokens"] == 6
    assert step["metrics"]["num_total_tokens"] == 34
    assert step["user_metadata"] == {
        "llm.system": "openai",
        "llm.invocation_parameters": '{"model": "gpt-x", "temperature": 0.7}',
    }


def test_openinference_message_indexes_sort_numerically() -> None:
    attrs: dict[str, Any] = {"openinference.span.kind": "LLM"}
    for i in range(12):
        attrs[f"llm.input_messages.{i}.message.role"] = "user"
        attrs[f"llm.input_messages.{i}.message.content"] = f"m{i}"
    step = only_step(make_span("llm", 2, 1, attributes=attrs))
    assert [m["content"] for m in step["input"]] == [f"m{i}" for i in range(12)]


def test_openinference_llm_without_messages_uses_input_and_output_values() -> None:
    attrs = {"openinference.span.kind": "LLM", "input.value": "Hi", "output.value": "Hello"}
    step = only_step(make_span("llm", 2, 1, attributes=attrs))
    assert step["input"] == [{"role": "user", "content": "Hi"}]
    assert step["output"] == {"role": "assistant", "content": "Hello"}


def test_openinference_first_token_event_gives_time_to_first_token() -> None:
    span = make_span(
        "ChatCompletion",
        2,
        1,
        start=1_000,
        end=9_000,
        attributes={"openinference.span.kind": "LLM"},
        events=[("First Token Stream Event", {}, 3_500)],
    )
    assert only_step(span)["metrics"]["time_to_first_token_ns"] == 2_500


def test_openinference_embedding_becomes_an_llm_step() -> None:
    attrs = {
        "openinference.span.kind": "EMBEDDING",
        "embedding.model_name": "text-embedding-3-small",
        "embedding.embeddings.0.embedding.text": "a",
        "embedding.embeddings.1.embedding.text": "b",
        "embedding.embeddings.0.embedding.vector": (0.1, 0.2),
        "embedding.embeddings.1.embedding.vector": (0.3, 0.4),
        "llm.token_count.prompt": 6,
        "llm.token_count.total": 6,
    }
    step = only_step(make_span("CreateEmbeddings", 2, 1, attributes=attrs))
    assert step["type"] == "llm" and step["model"] == "text-embedding-3-small"
    assert step["input"] == [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    assert step["output"] == {"role": "assistant", "content": ""}
    assert step["metrics"]["num_input_tokens"] == 6
    assert step["user_metadata"] == {}  # vectors are not copied


def test_openinference_retriever_documents() -> None:
    attrs = {
        "openinference.span.kind": "RETRIEVER",
        "input.value": "umbrella policy",
        "retrieval.documents.0.document.id": "d1",
        "retrieval.documents.0.document.score": 0.9,
        "retrieval.documents.0.document.content": "Bring one.",
        "retrieval.documents.0.document.metadata": '{"source": "kb", "page": 3, "tags": ["a"]}',
        "retrieval.documents.1.document.content": "Or a hat.",
    }
    step = only_step(make_span("retrieve", 2, 1, attributes=attrs))
    assert step["type"] == "retriever"
    assert step["input"] == "umbrella policy"
    assert step["output"] == [
        {
            "content": "Bring one.",
            "metadata": {"source": "kb", "page": 3, "tags": '["a"]', "id": "d1", "score": 0.9},
        },
        {"content": "Or a hat.", "metadata": {}},
    ]


def test_openinference_reranker_is_a_retriever_over_its_output_documents() -> None:
    attrs = {
        "openinference.span.kind": "RERANKER",
        "reranker.query": "q",
        "reranker.model_name": "rr-1",
        "reranker.input_documents.0.document.content": "x",
        "reranker.input_documents.1.document.content": "y",
        "reranker.output_documents.0.document.content": "y",
    }
    step = only_step(make_span("rerank", 2, 1, attributes=attrs))
    assert step["type"] == "retriever" and step["input"] == "q"
    assert step["output"] == [{"content": "y", "metadata": {}}]
    assert step["user_metadata"] == {"reranker.model_name": "rr-1"}


def test_openinference_tool() -> None:
    attrs = {
        "openinference.span.kind": "TOOL",
        "tool.name": "get_weather",
        "tool.description": "Weather by city",
        "input.value": '{"city": "Paris"}',
        "output.value": "rainy",
    }
    step = only_step(make_span("tool", 2, 1, attributes=attrs))
    assert step["type"] == "tool" and step["name"] == "get_weather"
    assert (step["input"], step["output"]) == ('{"city": "Paris"}', "rainy")
    assert step["user_metadata"] == {
        "tool.name": "get_weather",
        "tool.description": "Weather by city",
    }


def test_openinference_agent_and_chain() -> None:
    agent = make_span(
        "agent",
        2,
        1,
        start=1,
        attributes={
            "openinference.span.kind": "AGENT",
            "agent.name": "planner",
            "input.value": "plan a trip",
            "output.value": "done",
        },
    )
    chain = make_span(
        "chain",
        3,
        2,
        start=2,
        attributes={"openinference.span.kind": "CHAIN", "input.value": "{}", "output.value": "ok"},
    )
    trace = convert(make_span("root", 1, end=10_000), agent, chain)
    (agent_step,) = trace["spans"]
    assert agent_step["type"] == "agent" and agent_step["name"] == "planner"
    assert (agent_step["input"], agent_step["output"]) == ("plan a trip", "done")
    (chain_step,) = agent_step["spans"]
    assert chain_step["type"] == "workflow"
    assert (chain_step["input"], chain_step["output"]) == ("{}", "ok")


@pytest.mark.parametrize("kind", ["CHAIN", "GUARDRAIL", "EVALUATOR", "PROMPT", "UNKNOWN", "chain"])
def test_other_openinference_kinds_are_workflow_steps(kind: str) -> None:
    step = only_step(make_span("x", 2, 1, attributes={"openinference.span.kind": kind}))
    assert step["type"] == "workflow"


# --- generic spans, status, metadata -------------------------------------------------------------
def test_a_plain_span_is_a_workflow_step() -> None:
    step = only_step(
        make_span("db.query", 2, 1, start=500, end=1_500, attributes={"db.system": "sqlite"})
    )
    assert step["type"] == "workflow"
    assert step["name"] == "db.query"
    assert step["input"] == "" and "output" not in step
    assert step["created_at"] == "2026-01-01T00:00:00.000000Z"
    assert step["metrics"] == {"duration_ns": 1_000}
    assert step["status_code"] == 200
    assert step["user_metadata"] == {"db.system": "sqlite"}


def test_created_at_is_iso_utc_with_microseconds() -> None:
    span = make_span("x", 2, 1, start=1_234_567_000 + 3_600 * 10**9)
    assert only_step(span)["created_at"] == "2026-01-01T01:00:01.234567Z"


def test_error_status_maps_to_500_or_the_http_status() -> None:
    plain = make_span("a", 2, 1, start=1, error="boom")
    http = make_span(
        "b", 3, 1, start=2, error="rate", attributes={"http.response.status_code": 429}
    )
    old_http = make_span("c", 4, 1, start=3, error="gone", attributes={"http.status_code": 404})
    ok_404 = make_span("d", 5, 1, start=4, attributes={"http.response.status_code": 404})
    trace = convert(make_span("root", 1, end=10), plain, http, old_http, ok_404)
    assert [s["status_code"] for s in trace["spans"]] == [500, 429, 404, 200]
    assert trace["spans"][0]["user_metadata"]["otel.status_description"] == "boom"


def test_an_exception_event_lands_in_metadata() -> None:
    span = make_span(
        "tool",
        2,
        1,
        error="ValueError: bad",
        events=[("exception", {"exception.type": "ValueError", "exception.message": "bad"})],
    )
    meta = only_step(span)["user_metadata"]
    assert meta["exception.type"] == "ValueError" and meta["exception.message"] == "bad"


def test_metadata_values_are_strings_and_bounded() -> None:
    attrs: dict[str, Any] = {
        "flag": True,
        "count": 3,
        "ratio": 0.5,
        "names": ("a", "b"),
        "long": "x" * (MAX_METADATA_VALUE_CHARS + 50),
    }
    meta = only_step(make_span("x", 2, 1, attributes=attrs))["user_metadata"]
    assert meta["flag"] == "true" and meta["count"] == "3" and meta["ratio"] == "0.5"
    assert meta["names"] == '["a", "b"]'
    assert len(meta["long"]) == MAX_METADATA_VALUE_CHARS and meta["long"].endswith("…")


def test_metadata_entries_are_capped_and_the_rest_counted() -> None:
    attrs = {f"k{i:03d}": i for i in range(MAX_METADATA_ENTRIES + 10)}
    meta = only_step(make_span("x", 2, 1, attributes=attrs))["user_metadata"]
    assert len(meta) == MAX_METADATA_ENTRIES + 1
    assert meta["otel.dropped_attributes"] == "10"


def test_session_attributes_are_not_copied_and_tags_are_lifted() -> None:
    attrs = {
        "session.id": "conv-1",
        "session.previous_id": "conv-0",
        "galileo.session.name": "Support",
        "galileo.session.metadata": '{"plan": "pro"}',
        "user.id": "u-1",
        "galileo.tags": ("beta", "eu"),
        "tag.tags": ("oi",),
    }
    trace = convert(make_span("root", 1, end=10_000), make_span("x", 2, 1, attributes=attrs))
    (step,) = trace["spans"]
    # The user belongs to the trace (and its session), not to every step.
    assert step["user_metadata"] == {}
    assert trace["user_metadata"]["user.id"] == "u-1"
    assert step["tags"] == ["beta", "eu", "oi"]


@pytest.mark.parametrize(
    ("value", "tags"), [("a, b", ["a", "b"]), ('["x", "y"]', ["x", "y"]), ("solo", ["solo"])]
)
def test_galileo_tags_as_a_string(value: str, tags: list[str]) -> None:
    assert only_step(make_span("x", 2, 1, attributes={"galileo.tags": value}))["tags"] == tags


# --- the tree -------------------------------------------------------------------------------------
def test_steps_nest_under_their_parents_and_are_numbered_in_start_order() -> None:
    spans = [
        make_span("root", 1, start=0, end=100),
        make_span("b", 3, 1, start=30, end=40),
        make_span("a", 2, 1, start=10, end=20),
        make_span("a.1", 4, 2, start=12, end=13),
        make_span("a.2", 5, 2, start=11, end=19),
    ]
    trace = convert(*spans)
    assert [s["name"] for s in trace["spans"]] == ["a", "b"]
    a = trace["spans"][0]
    assert [s["name"] for s in a["spans"]] == ["a.2", "a.1"]
    assert [(s["name"], s["step_number"]) for s in walk(trace)] == [
        ("a", 1),
        ("a.2", 2),
        ("a.1", 3),
        ("b", 4),
    ]
    assert a["spans"][0]["parent_id"] == a["id"] == span_uuid(TRACE_ID, 2)


def test_a_span_whose_parent_is_missing_goes_under_the_root() -> None:
    trace = convert(make_span("root", 1, end=100), make_span("orphan", 7, 6, start=5))
    (orphan,) = trace["spans"]
    assert orphan["name"] == "orphan" and orphan["parent_id"] == TID


def test_children_of_an_llm_step_go_to_its_nearest_ancestor_that_holds_children() -> None:
    llm = make_span("chat", 2, 1, start=1, attributes={"gen_ai.operation.name": "chat"})
    inner = make_span("http POST", 3, 2, start=2)
    trace = convert(make_span("root", 1, end=100), llm, inner)
    assert [s["name"] for s in trace["spans"]] == ["chat", "http POST"]
    assert trace["spans"][1]["parent_id"] == TID


def test_a_workflow_root_is_the_trace_and_not_a_step() -> None:
    root = make_span(
        "handle_request",
        1,
        start=0,
        end=5_000,
        attributes={"input.value": "What's up?", "output.value": "All good.", "route": "/chat"},
    )
    trace = convert(root, make_span("child", 2, 1, start=10))
    assert trace["name"] == "handle_request"
    assert trace["input"] == "What's up?" and trace["output"] == "All good."
    assert trace["created_at"] == "2026-01-01T00:00:00.000000Z"
    assert trace["metrics"] == {"duration_ns": 5_000}
    assert trace["user_metadata"] == {"route": "/chat", "service.name": "test-service"}
    assert [s["name"] for s in trace["spans"]] == ["child"]


def test_trace_io_falls_back_to_the_first_user_message_and_last_answer() -> None:
    def chat(span_id: int, start: int, question: str, answer: str) -> ReadableSpan:
        attrs = {
            "gen_ai.operation.name": "chat",
            "gen_ai.input.messages": json.dumps(
                [
                    {"role": "system", "parts": [{"type": "text", "content": "sys"}]},
                    {"role": "user", "parts": [{"type": "text", "content": question}]},
                ]
            ),
            "gen_ai.output.messages": json.dumps(
                [{"role": "assistant", "parts": [{"type": "text", "content": answer}]}]
            ),
        }
        return make_span("chat", span_id, 1, start=start, end=start + 5, attributes=attrs)

    trace = convert(
        make_span("agent loop", 1, end=100), chat(3, 50, "q2", "final"), chat(2, 10, "q1", "a1")
    )
    assert trace["input"] == "q1" and trace["output"] == "final"


def test_an_llm_root_is_kept_as_a_step_too() -> None:
    root = make_span("chat gpt-4o", 1, start=0, end=2_000, attributes=GENAI_CHAT)
    trace = convert(root)
    (step,) = trace["spans"]
    assert step["type"] == "llm" and step["model"] == "gpt-4o-2024-08-06"
    assert step["parent_id"] == TID and step["step_number"] == 1
    assert step["id"] == span_uuid(TRACE_ID, 1)
    assert trace["input"] == "Weather in Paris?" and trace["output"] == "Take an umbrella."
    assert trace["name"] == "chat gpt-4o"


def test_an_agent_root_keeps_its_children_and_takes_the_orphans() -> None:
    root = make_span(
        "invoke_agent helper",
        1,
        end=100,
        attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "helper"},
    )
    tool = make_span("tool", 2, 1, start=5, attributes={"gen_ai.operation.name": "execute_tool"})
    orphan = make_span("orphan", 9, 8, start=6)
    trace = convert(root, tool, orphan)
    (agent,) = trace["spans"]
    assert agent["type"] == "agent"
    assert [s["name"] for s in agent["spans"]] == ["tool", "orphan"]
    assert all(s["parent_id"] == agent["id"] for s in agent["spans"])
    assert [s["step_number"] for s in walk(trace)] == [1, 2, 3]


def test_a_rootless_incomplete_trace() -> None:
    a = make_span("a", 2, 1, start=10, end=20, error="x")
    b = make_span("b", 3, 1, start=5, end=50)
    trace = convert(a, b, root=None, complete=False)
    assert trace["name"] == "b"
    assert trace["created_at"] == "2026-01-01T00:00:00.000000Z"
    assert trace["metrics"] == {"duration_ns": 45}
    assert trace["status_code"] == 500
    assert trace["user_metadata"]["otel.incomplete"] == "true"
    assert [s["name"] for s in trace["spans"]] == ["b", "a"]
    assert all(s["parent_id"] == TID for s in trace["spans"])


def test_a_root_not_listed_among_the_spans_is_still_converted() -> None:
    root = make_span("root", 1, end=10, attributes={"input.value": "in"})
    trace = convert_trace(AssembledTrace(TRACE_ID, root, [make_span("c", 2, 1)], True))
    assert_valid_trace(trace)
    assert trace["input"] == "in" and [s["name"] for s in trace["spans"]] == ["c"]


def test_convert_span_alone() -> None:
    step = convert_span(make_span("x", 2, 1), TID)
    assert step["trace_id"] == TID and "parent_id" not in step and step["type"] == "workflow"


def test_iso_cache_stays_bounded() -> None:
    for i in range(5_000):
        convert_module._iso(T0 + i * 1_000_000_000)
    assert len(convert_module._iso_seconds_cache) <= 4_097


# --- whatever the attributes, the worker gets a valid trace and no exception ---------------------
_KEYS = sorted(
    {
        *GENAI_CHAT,
        *OI_LLM,
        "gen_ai.operation.name",
        "openinference.span.kind",
        "gen_ai.tool.call.arguments",
        "gen_ai.tool.call.result",
        "gen_ai.retrieval.documents",
        "retrieval.documents.0.document.content",
        "retrieval.documents.0.document.metadata",
        "retrieval.documents.0.document.score",
        "llm.input_messages.x.message.role",
        "input.value",
        "output.value",
        "galileo.tags",
        "http.response.status_code",
        "gen_ai.agent.name",
        "tool.name",
        "embedding.embeddings.0.embedding.text",
        "galileo.dataset.input",
        "galileo.dataset.metadata",
        "llm.input_messages.0.message.contents.0.message_content.image.image.url",
        "llm.output_messages.0.message.tool_calls.0.tool_call.function.name",
        "galileo.otel.conversation_key",
        "user.id",
        "error.type",
        "metadata",
        "input.mime_type",
        "output.mime_type",
        "pydantic_ai.all_messages",
        "pydantic_ai.new_message_index",
        "final_result",
        "logfire.msg",
        "gen_ai.aggregated_usage.input_tokens",
        "llm.token_count.prompt_details.cache_read",
        "gen_ai.tool.name",
    }
)
# GenAI message parts of every kind, with and without ids, media inline and by URL.
_parts = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "content": st.text(max_size=8)}),
    st.fixed_dictionaries(
        {"type": st.just("tool_call"), "name": st.text(max_size=5)},
        optional={"id": st.text(max_size=5), "arguments": st.text(max_size=5)},
    ),
    st.fixed_dictionaries(
        {"type": st.just("tool_call_response"), "response": st.text(max_size=5)},
        optional={"id": st.text(max_size=5)},
    ),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["blob", "uri", "file"])},
        optional={
            "modality": st.sampled_from(["image", "audio", "video", "x"]),
            "mime_type": st.sampled_from(["image/png", "application/pdf", ""]),
            "content": st.text(max_size=8),
            "uri": st.sampled_from(["https://x/a.png", "data:image/png;base64,AA==", "data:,x"]),
            "file_id": st.text(max_size=5),
        },
    ),
    st.fixed_dictionaries({"type": st.sampled_from(["reasoning", "image_url", "input_audio"])}),
)
_messages = st.lists(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["user", "assistant", "tool", "system", "model", "?"]),
            "parts": st.lists(_parts, max_size=4),
        }
    ),
    max_size=3,
).map(json.dumps)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
_values = (
    st.text(max_size=20)
    | st.integers()
    | st.floats()
    | st.booleans()
    | st.lists(st.text(max_size=5), max_size=3).map(tuple)
    | st.binary(max_size=8)
    | _json_values.map(lambda v: json.dumps(v))
    | st.sampled_from(
        [
            "chat",
            "execute_tool",
            "invoke_agent",
            "retrieval",
            "LLM",
            "TOOL",
            "RETRIEVER",
            "application/json",
        ]
    )
)
_attributes = st.dictionaries(
    st.sampled_from(_KEYS) | st.text(max_size=10), _values, max_size=12
) | st.builds(
    lambda base, op, inputs, outputs: {
        **base,
        "gen_ai.operation.name": op,
        "gen_ai.input.messages": inputs,
        "gen_ai.output.messages": outputs,
    },
    st.dictionaries(st.sampled_from(_KEYS), _values, max_size=4),
    st.sampled_from(["chat", "invoke_agent", "execute_tool"]),
    _messages,
    _messages,
)
_events = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "gen_ai.user.message",
                "gen_ai.choice",
                "gen_ai.tool.message",
                "gen_ai.client.inference.operation.details",
                "exception",
                "First Token Stream Event",
            ]
        ),
        st.dictionaries(
            st.sampled_from(
                [
                    "content",
                    "message",
                    "tool_calls",
                    "gen_ai.event.content",
                    "gen_ai.input.messages",
                ]
            ),
            _values,
            max_size=3,
        ),
    ),
    max_size=2,
)


@st.composite
def _traces(draw: st.DrawFn) -> AssembledTrace:
    count = draw(st.integers(1, 6))
    spans = []
    for span_id in range(1, count + 1):
        parent = None if span_id == 1 else draw(st.sampled_from([*range(1, span_id), 99]))
        start = draw(st.integers(0, 1_000))
        spans.append(
            make_span(
                f"s{span_id}",
                span_id,
                parent,
                start=start,
                end=start + draw(st.integers(0, 1_000)),
                attributes=draw(_attributes),
                events=draw(_events),
                error=draw(st.none() | st.text(max_size=5)),
            )
        )
    has_root = draw(st.booleans())
    return AssembledTrace(
        TRACE_ID,
        spans[0] if has_root else None,
        spans if has_root else spans[1:] or spans,
        has_root,
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_traces())
def test_any_span_shapes_convert_to_a_valid_trace(trace: AssembledTrace) -> None:
    stats = ConvertStats()
    converted = convert_trace(trace, stats)
    assert_valid_trace(converted)
    json.dumps(converted, allow_nan=False)  # the wire has no NaN
    steps = walk(converted)
    root_dropped = (
        trace.root is not None
        and converted["spans"] is not None
        and all(s["id"] != span_uuid(TRACE_ID, 1) for s in steps)
    )
    # Our own attributes and Logfire's never reach Galileo; the user sits on the trace only.
    for step in [converted, *steps]:
        assert not [k for k in step["user_metadata"] if k.startswith(("galileo.otel.", "logfire."))]
    assert not [s for s in steps if "user.id" in s["user_metadata"]]
    # Every span is a step, except a plain root (the trace) and folded duplicate llm spans.
    assert len(steps) == len(trace.spans) - (1 if root_dropped else 0) - stats.duplicate_llm_steps
    assert sorted(s["step_number"] for s in steps) == list(range(1, len(steps) + 1))


# --- JSON attributes: the direct scanner call decodes exactly as json.loads ---------------------
@pytest.mark.parametrize(
    "text",
    [
        '[{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]',
        " [1, 2] ",  # leading and trailing whitespace
        "[1]\n",
        "NaN",
        "[1e400]",
        '"\\ud800"',  # a lone surrogate escape
        "123456789012345678901234567890",  # beyond 64 bits: stays an int
        '{"a": 1, "a": 2}',
    ],
)
def test_json_attributes_decode_as_json_loads_does(text: str) -> None:
    got = convert_module._json(text)
    want = json.loads(text)
    assert json.dumps(got) == json.dumps(want)
    assert type(got) is type(want)


@pytest.mark.parametrize("text", ["[1] x", "[1,]", "\ufeff[1]", "", "{", "[1] [2]"])
def test_json_attributes_that_json_loads_refuses_are_none(text: str) -> None:
    with pytest.raises(ValueError):
        json.loads(text)
    assert convert_module._json(text) is None


def test_token_tag_dataset_and_tool_attributes_are_read_wherever_they_sit() -> None:
    # Their reading is skipped for spans without them: a span with many other attributes
    # before them must still have them read.
    attrs: dict[str, Any] = {f"app.attr{i}": i for i in range(20)}
    attrs.update(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.usage.input_tokens": 3,
            "galileo.tags": ["a", "b"],
            "galileo.dataset.input": "q",
            "gen_ai.tool.definitions": json.dumps([{"type": "function", "name": "f"}]),
        }
    )
    step = only_step(make_span("chat", 2, 1, attributes=attrs))
    assert step["metrics"]["num_input_tokens"] == 3
    assert step["tags"] == ["a", "b"]
    assert step["dataset_input"] == "q"
    assert step["tools"][0]["function"]["name"] == "f"


def test_a_span_without_a_start_time_sorts_first_as_before() -> None:
    root = make_span("root", 1, start=0, end=100)
    late = make_span("late", 2, 1, start=50, end=60)
    unstarted = ReadableSpan(
        name="unstarted",
        context=late.context.__class__(
            trace_id=TRACE_ID, span_id=3, is_remote=False, trace_flags=late.context.trace_flags
        ),
        parent=root.context,
        resource=root.resource,
        start_time=None,
        end_time=None,
    )
    trace = convert_trace(AssembledTrace(TRACE_ID, root, [late, unstarted, root], True))
    assert [s["name"] for s in trace["spans"]] == ["unstarted", "late"]
    assert [s["step_number"] for s in trace["spans"]] == [1, 2]


@given(st.integers(min_value=0, max_value=(1 << 128) - 1))
def test_the_trace_ids_made_from_one_formatting_match_trace_uuid(trace_id: int) -> None:
    external, galileo_id, tail = convert_module._trace_ids(trace_id)
    assert external == f"{trace_id:032x}"
    assert galileo_id == trace_uuid(trace_id)
    assert span_uuid(trace_id, 0xABC).endswith("-" + tail)
    assert uuid.UUID(galileo_id).version == 4


@pytest.mark.parametrize(
    ("attribute", "value", "field"),
    [
        ("gen_ai.response.finish_reasons", ["stop"], ("finish_reason", "stop")),
        ("llm.finish_reason", "length", ("finish_reason", "length")),
        ("gen_ai.request.temperature", 0.5, ("temperature", 0.5)),
        ("llm.invocation_parameters", '{"temperature": 0.25}', ("temperature", 0.25)),
        ("gen_ai.response.time_to_first_chunk", 0.5, ("time_to_first_token_ns", 500_000_000)),
    ],
)
def test_llm_extras_are_read_from_a_span_that_has_only_that_one(
    attribute: str, value: Any, field: tuple[str, Any]
) -> None:
    """The llm fields read only when the span has one of their attributes: each alone counts."""
    attrs = {"gen_ai.operation.name": "chat", attribute: value}
    step = convert_span(make_span("chat", 2, 1, attributes=attrs), TID)
    name, expected = field
    got = step["metrics"].get(name) if name.endswith("_ns") else step.get(name)
    assert got == expected


# --- shortcuts: each must give what the general path gives ----------------------------------------
def test_spans_with_the_same_attribute_names_keep_their_own_values() -> None:
    # The names' flags and metadata names are looked up once per tuple of names; the values
    # are always the span's own, and another order of the same names is another tuple.
    first = only_step(make_span("x", 2, 1, attributes={"a": "1", "gen_ai.request.model": "m"}))
    again = only_step(make_span("x", 2, 1, attributes={"a": "2", "gen_ai.request.model": "n"}))
    swapped = only_step(make_span("x", 2, 1, attributes={"gen_ai.request.model": "o", "a": "3"}))
    assert first["user_metadata"]["a"] == "1"
    assert again["user_metadata"]["a"] == "2"
    assert swapped["user_metadata"]["a"] == "3"


def test_many_attributes_of_which_few_are_metadata_are_not_cut() -> None:
    # Over MAX_METADATA_ENTRIES attributes, but the instrumentation's own (read, not copied):
    # nothing is cut or counted.
    attrs: dict[str, Any] = {
        f"llm.input_messages.{i}.message.content": f"m{i}" for i in range(MAX_METADATA_ENTRIES)
    }
    attrs["openinference.span.kind"] = "LLM"
    attrs["team"] = "blue"
    step = only_step(make_span("x", 2, 1, attributes=attrs))
    assert step["user_metadata"] == {"team": "blue"}


def test_the_shape_table_is_bounded_and_past_its_bound_still_converts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(convert_module, "_SHAPES", {})
    monkeypatch.setattr(convert_module, "_SHAPES_MAX", 2)
    for i in range(5):
        step = only_step(make_span("x", 2, 1, attributes={f"name{i}": i, "gen_ai.tool.name": "t"}))
        assert step["user_metadata"] == {f"name{i}": str(i), "gen_ai.tool.name": "t"}
    assert len(convert_module._SHAPES) == 2


@pytest.mark.parametrize(
    ("attrs", "metrics"),
    [
        # The GenAI pair as ints: the total is their sum.
        (
            {"gen_ai.usage.input_tokens": 7, "gen_ai.usage.output_tokens": 5},
            {"num_input_tokens": 7, "num_output_tokens": 5, "num_total_tokens": 12},
        ),
        # A total of its own is kept, not recomputed.
        (
            {
                "gen_ai.usage.input_tokens": 7,
                "gen_ai.usage.output_tokens": 5,
                "llm.token_count.total": 20,
            },
            {"num_input_tokens": 7, "num_output_tokens": 5, "num_total_tokens": 20},
        ),
        # Not both ints: read the general way (a bool is no count, a numeric string is).
        (
            {"gen_ai.usage.input_tokens": 7, "gen_ai.usage.output_tokens": "5"},
            {"num_input_tokens": 7, "num_output_tokens": 5, "num_total_tokens": 12},
        ),
        (
            {"gen_ai.usage.input_tokens": 7, "gen_ai.usage.output_tokens": True},
            {"num_input_tokens": 7, "num_total_tokens": 7},
        ),
        (
            {"gen_ai.usage.input_tokens": 7},
            {"num_input_tokens": 7, "num_total_tokens": 7},
        ),
        # Cache and reasoning counts ride along.
        (
            {
                "gen_ai.usage.input_tokens": 7,
                "gen_ai.usage.output_tokens": 5,
                "gen_ai.usage.cache_read.input_tokens": 3,
            },
            {
                "num_input_tokens": 7,
                "num_output_tokens": 5,
                "num_total_tokens": 12,
                "num_cached_input_tokens": 3,
            },
        ),
    ],
)
def test_token_counts(attrs: dict[str, Any], metrics: dict[str, int]) -> None:
    step = only_step(make_span("chat", 2, 1, attributes={"gen_ai.operation.name": "chat", **attrs}))
    got = {k: v for k, v in step["metrics"].items() if k != "duration_ns"}
    assert got == metrics


@pytest.mark.parametrize("child_first", [False, True])
def test_an_agent_root_without_an_answer_reads_as_what_its_last_step_yields(
    child_first: bool,
) -> None:
    # The root agent's llm call only asks for a tool: the agent's output is the tool's result.
    # A child whose clock starts before its root's must not change that.
    agent = {"gen_ai.operation.name": "invoke_agent"}
    chat = {"gen_ai.operation.name": "chat"}
    tool = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "search",
        "gen_ai.tool.call.result": "found it",
    }
    trace = convert(
        make_span("invoke_agent a", 1, start=10, end=10_000, attributes=agent),
        make_span("chat", 2, 1, start=0 if child_first else 20, end=30, attributes=chat),
        make_span("execute_tool search", 3, 1, start=40, end=50, attributes=tool),
    )
    (root,) = trace["spans"]
    assert root["type"] == "agent" and root["output"] == "found it"
    assert trace["output"] == "found it"


@pytest.mark.parametrize("messages", [False, True], ids=["no-messages", "messages"])
@pytest.mark.parametrize(
    ("models", "expected"),
    [
        ({"gen_ai.response.model": "r", "gen_ai.request.model": "q"}, "r"),
        ({"gen_ai.response.model": "", "gen_ai.request.model": "q"}, "q"),
        ({"llm.model_name": "l", "embedding.model_name": "e"}, "l"),
        ({"gen_ai.request.model": "", "embedding.model_name": "e"}, "e"),
        # As `a or b or c or d`: nothing truthy leaves the last name's value, else none.
        ({"gen_ai.request.model": "", "embedding.model_name": ""}, ""),
        ({"gen_ai.request.model": "", "llm.model_name": 0}, None),
        ({"embedding.model_name": 7}, "7"),
        ({}, None),
    ],
)
def test_an_llm_steps_model_is_the_first_name_with_a_value(
    models: dict[str, Any], expected: str | None, messages: bool
) -> None:
    attrs: dict[str, Any] = {"gen_ai.operation.name": "chat", **models}
    if messages:  # through _llm_fields rather than the path for spans without messages
        attrs["gen_ai.input.messages"] = json.dumps([{"role": "user", "parts": []}])
    step = convert_span(make_span("chat", 2, attributes=attrs), TID)
    assert step.get("model") == expected
