"""Conversion fidelity (issue 10): what the official SDK would send, and nothing it would coerce.

Every trace here goes through ``assert_valid_trace``, which refuses any trace the official
``galileo`` request models would change while parsing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from conftest_convert import TRACE_ID, make_span
from opentelemetry.sdk.trace import ReadableSpan

from galileo_otel.export import convert as convert_module
from galileo_otel.export.assemble import AssembledTrace
from galileo_otel.export.convert import ConvertStats, convert_trace, span_uuid
from trace_schema import OfficialModelMismatch, assert_official_trace, assert_valid_trace, walk


def convert(*spans: ReadableSpan, stats: ConvertStats | None = None) -> dict[str, Any]:
    root = next(s for s in spans if s.parent is None)
    trace = convert_trace(AssembledTrace(TRACE_ID, root, list(spans), True), stats)
    assert_valid_trace(trace)
    return trace


def only_step(*spans: ReadableSpan) -> dict[str, Any]:
    (step,) = convert(make_span("root", 1, start=0, end=10_000), *spans)["spans"]
    return step


@pytest.fixture(autouse=True)
def _fresh_warnings() -> Iterator[None]:
    """Warnings are once per process; each test starts as a fresh process would."""
    saved = set(convert_module._warned)
    convert_module._warned.clear()
    yield
    convert_module._warned.clear()
    convert_module._warned.update(saved)


# --- the referee itself ---------------------------------------------------------------------------
def test_the_official_referee_refuses_what_the_official_models_would_coerce() -> None:
    base: dict[str, Any] = {"type": "trace", "input": "q", "name": "t", "spans": []}
    llm: dict[str, Any] = {"type": "llm", "name": "chat", "input": [], "output": None}
    with pytest.raises(OfficialModelMismatch, match="output"):
        assert_official_trace({**base, "spans": [llm]})  # null output -> empty message
    call = {"function": {"name": "f", "arguments": "{}"}}  # no id
    msg = {"role": "assistant", "content": "", "tool_calls": [call]}
    with pytest.raises(OfficialModelMismatch, match="input"):
        assert_official_trace({**base, "spans": [{**llm, "input": [msg], "output": msg}]})
    with pytest.raises(OfficialModelMismatch, match="dropped"):
        assert_official_trace({**base, "surprise": 1})
    with pytest.raises(OfficialModelMismatch):  # a llm step cannot hold child steps
        assert_official_trace(
            {
                **base,
                "spans": [
                    {
                        **llm,
                        "output": msg | {"tool_calls": [{**call, "id": "c"}]},
                        "spans": [{"type": "tool", "name": "x"}],
                    }
                ],
            }
        )


# --- tool calls -----------------------------------------------------------------------------------
def test_tool_calls_without_an_id_get_a_deterministic_one() -> None:
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.input.messages": json.dumps(
            [
                {"role": "user", "parts": [{"type": "text", "content": "go"}]},
                {
                    "role": "assistant",
                    "parts": [{"type": "tool_call", "name": "a", "arguments": {"x": 1}}],
                },
            ]
        ),
        "gen_ai.output.messages": json.dumps(
            [
                {
                    "role": "assistant",
                    "parts": [
                        {"type": "tool_call", "name": "b", "arguments": "{}"},
                        {"type": "tool_call", "id": "given", "name": "c", "arguments": "{}"},
                    ],
                }
            ]
        ),
    }
    step = only_step(make_span("chat", 0xABC, 1, attributes=attrs))
    assert step["input"][1]["tool_calls"][0]["id"] == "call_0000000000000abc_0"
    ids = [c["id"] for c in step["output"]["tool_calls"]]
    assert ids == ["call_0000000000000abc_1", "given"]
    assert only_step(make_span("chat", 0xABC, 1, attributes=attrs)) == step  # deterministic


def test_openinference_tool_calls_without_an_id_get_one() -> None:
    attrs = {
        "openinference.span.kind": "LLM",
        "llm.output_messages.0.message.role": "assistant",
        "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "get_weather",
        "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": "{}",
    }
    step = only_step(make_span("llm", 7, 1, attributes=attrs))
    (call,) = step["output"]["tool_calls"]
    assert call == {
        "id": "call_0000000000000007_0",
        "function": {"name": "get_weather", "arguments": "{}"},
    }
    # The assistant message stays an assistant message with its call (the official model would
    # have turned a call without id into a JSON string from "user").
    assert step["output"]["role"] == "assistant"


def test_tool_definitions_go_out_in_the_nested_openai_shape() -> None:
    flat = {
        "type": "function",
        "name": "get_weather",
        "description": "Weather by city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
    nested = {"type": "function", "function": {"name": "get_weather"}}
    attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.tool.definitions": json.dumps([flat, nested]),
    }
    step = only_step(make_span("chat", 2, 1, attributes=attrs))
    assert step["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather by city",
                "parameters": flat["parameters"],
            },
        },
        nested,
    ]
    oi = {
        "openinference.span.kind": "LLM",
        "llm.tools.0.tool.json_schema": json.dumps({"name": "lookup", "parameters": {}}),
    }
    step = only_step(make_span("llm", 2, 1, attributes=oi))
    assert step["tools"] == [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]


# --- media --------------------------------------------------------------------------------------
def test_openinference_images_become_data_blocks() -> None:
    prefix = "llm.input_messages.0.message.contents"
    attrs = {
        "openinference.span.kind": "LLM",
        "llm.input_messages.0.message.role": "user",
        f"{prefix}.0.message_content.type": "text",
        f"{prefix}.0.message_content.text": "what is this",
        f"{prefix}.1.message_content.type": "image",
        f"{prefix}.1.message_content.image.image.url": "data:image/png;base64,iVBORw0KGgo=",
        f"{prefix}.2.message_content.type": "image",
        f"{prefix}.2.message_content.image.image.url": "https://example.com/cat.png",
    }
    step = only_step(make_span("llm", 2, 1, attributes=attrs))
    assert step["input"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this"},
                {
                    "type": "data",
                    "modality": "image",
                    "base64": "iVBORw0KGgo=",
                    "mime_type": "image/png",
                },
                {"type": "data", "modality": "image", "url": "https://example.com/cat.png"},
            ],
        }
    ]


def test_bytes_blob_content_is_base64_encoded() -> None:
    # util-genai serialises bytes as base64 itself; a hand-made event body may hold raw bytes.
    events = [
        (
            "gen_ai.client.inference.operation.details",
            {
                "gen_ai.input.messages": json.dumps(
                    [
                        {
                            "role": "user",
                            "parts": [{"type": "blob", "modality": "image", "content": "AAE="}],
                        }
                    ]
                )
            },
        )
    ]
    step = only_step(
        make_span("chat", 2, 1, attributes={"gen_ai.operation.name": "chat"}, events=events)
    )
    assert step["input"][0]["content"] == [{"type": "data", "modality": "image", "base64": "AAE="}]
    assert convert_module._data_block("image", "image/png", data=b"\x00\x01") == {
        "type": "data",
        "modality": "image",
        "base64": "AAE=",
        "mime_type": "image/png",
    }


# --- outputs, bytes, dataset ---------------------------------------------------------------------
def test_an_llm_root_without_output_sends_an_empty_answer_not_null() -> None:
    trace = convert(make_span("chat", 1, attributes={"gen_ai.operation.name": "chat"}))
    (step,) = trace["spans"]
    assert step["output"] == {"role": "assistant", "content": ""}
    assert "output" not in trace  # the trace's output is optional text: left out, not ""


def test_bytes_attributes_decode_as_utf8_with_replacement() -> None:
    attrs = {
        "blob": b"\xff\xfe\x00bad",
        "text": "caf\xe9".encode("latin-1"),
        "good": "café".encode(),
        "input.value": b"in\xffput",
    }
    step = only_step(make_span("x", 2, 1, attributes=attrs))
    assert step["user_metadata"]["blob"] == "\ufffd\ufffd\x00bad"
    assert step["user_metadata"]["text"] == "caf\ufffd"
    assert step["user_metadata"]["good"] == "café"
    assert step["input"] == "in\ufffdput"


def test_galileo_dataset_attributes_fill_the_dataset_fields() -> None:
    attrs = {
        "galileo.dataset.input": "What is 2+2?",
        "galileo.dataset.output": "4",
        "galileo.dataset.metadata": json.dumps({"row": 7, "split": "test", "none": None}),
    }
    root = make_span("root", 1, end=10_000, attributes=attrs)
    chat = make_span("chat", 2, 1, attributes={"gen_ai.operation.name": "chat", **attrs})
    trace = convert(root, chat)
    for record in (trace, trace["spans"][0]):
        assert record["dataset_input"] == "What is 2+2?"
        assert record["dataset_output"] == "4"
        assert record["dataset_metadata"] == {"row": "7", "split": "test"}
        assert not any(k.startswith("galileo.dataset") for k in record["user_metadata"])


def test_dataset_metadata_that_is_not_an_object_is_kept_as_value() -> None:
    step = only_step(make_span("x", 2, 1, attributes={"galileo.dataset.metadata": "plain"}))
    assert step["dataset_metadata"] == {"value": "plain"}


def test_routing_attributes_are_warned_about_once_and_kept_visible(
    caplog: pytest.LogCaptureFixture,
) -> None:
    convert_module._METADATA_KEY.clear()  # the warning rides on the first look at a name
    attrs = {"galileo.project.name": "other", "galileo.logstream.name": "ls"}
    with caplog.at_level(logging.WARNING, logger="galileo_otel.export.convert"):
        for _ in range(3):
            step = only_step(make_span("x", 2, 1, attributes=attrs))
    assert step["user_metadata"]["galileo.project.name"] == "other"
    warnings = [r for r in caplog.records if "not used for routing" in r.getMessage()]
    assert len(warnings) == 1
    assert "GALILEO_PROJECT" in warnings[0].getMessage()


# --- two instrumentations of one call ---------------------------------------------------------------
OUTER_V2 = {  # openai-v2 without content capture
    "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "gpt-x",
    "gen_ai.response.model": "gpt-x-1",
    "gen_ai.usage.input_tokens": 7,
    "gen_ai.usage.output_tokens": 5,
    "gen_ai.response.finish_reasons": ("stop",),
}
INNER_OI = {
    "openinference.span.kind": "LLM",
    "llm.model_name": "gpt-x-1",
    "llm.input_messages.0.message.role": "user",
    "llm.input_messages.0.message.content": "hi",
    "llm.output_messages.0.message.role": "assistant",
    "llm.output_messages.0.message.content": "hello",
    "llm.token_count.prompt": 7,
    "llm.token_count.completion": 5,
    "llm.invocation_parameters": '{"temperature": 0.3}',
}


def test_an_llm_span_inside_an_llm_span_is_one_step(caplog: pytest.LogCaptureFixture) -> None:
    stats = ConvertStats()
    with caplog.at_level(logging.WARNING, logger="galileo_otel.export.convert"):
        for _ in range(2):
            trace = convert(
                make_span("handler", 1, end=10_000),
                make_span("chat gpt-x", 2, 1, start=10, end=900, attributes=OUTER_V2),
                make_span("ChatCompletion", 3, 2, start=20, end=800, attributes=INNER_OI),
                make_span("after", 4, 1, start=950, end=990),
                stats=stats,
            )
    steps = walk(trace)
    assert [s["name"] for s in steps] == ["chat gpt-x", "after"]
    assert [s["step_number"] for s in steps] == [1, 2]
    (llm, _) = steps
    # The outer span is kept (its id, its place, its tokens: counted once) and filled in from
    # the inner one where it had nothing.
    assert llm["id"] == span_uuid(TRACE_ID, 2)
    assert llm["input"] == [{"role": "user", "content": "hi"}]
    assert llm["output"] == {"role": "assistant", "content": "hello"}
    assert llm["temperature"] == 0.3 and llm["finish_reason"] == "stop"
    assert llm["metrics"]["num_input_tokens"] == 7 and llm["metrics"]["num_total_tokens"] == 12
    assert llm["user_metadata"]["otel.folded_span_id"] == f"{3:016x}"
    assert trace["input"] == "hi" and trace["output"] == "hello"
    assert stats.duplicate_llm_steps == 2
    warnings = [r.getMessage() for r in caplog.records if "traced twice" in r.getMessage()]
    assert len(warnings) == 1
    assert "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS" in warnings[0]


def test_a_duplicate_under_an_llm_root_and_a_third_level_fold_into_the_root() -> None:
    stats = ConvertStats()
    trace = convert(
        make_span("chat", 1, end=1_000, attributes=OUTER_V2),
        make_span("ChatCompletion", 2, 1, start=10, end=900, attributes=INNER_OI),
        make_span("llm", 3, 2, start=20, end=800, attributes={"openinference.span.kind": "LLM"}),
        make_span(
            "tool inside",
            4,
            3,
            start=30,
            end=40,
            attributes={"gen_ai.operation.name": "execute_tool"},
        ),
        stats=stats,
    )
    (llm, tool) = trace["spans"]
    assert llm["id"] == span_uuid(TRACE_ID, 1) and llm["output"]["content"] == "hello"
    assert tool["type"] == "tool" and tool["parent_id"] == trace["id"]
    assert stats.duplicate_llm_steps == 2


def test_sibling_llm_calls_are_not_duplicates() -> None:
    stats = ConvertStats()
    trace = convert(
        make_span("agent", 1, end=1_000),
        make_span("chat 1", 2, 1, start=10, end=100, attributes=OUTER_V2),
        make_span("chat 2", 3, 1, start=200, end=300, attributes=OUTER_V2),
        stats=stats,
    )
    assert len(trace["spans"]) == 2 and stats.duplicate_llm_steps == 0


def test_unicode_digits_that_int_refuses_are_not_indexes() -> None:
    """'¹'.isdigit() is True but int('¹') fails: such keys and values are ignored, not fatal."""
    from galileo_otel.export.convert import _int

    assert _int("¹") is None and _int("12") == 12
