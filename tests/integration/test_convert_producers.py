"""Real producers -> conversion: the openai client, instrumented by opentelemetry-instrumentation-
openai-v2 or openinference-instrumentation-openai, talks to a local OpenAI stub on 127.0.0.1; the
spans they emit are assembled and converted, and the Galileo steps must carry what was said."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from galileo_otel.export.assemble import AssembledTrace, TraceAssembler
from galileo_otel.export.convert import convert_trace
from openai_stub import (
    STUB_MODEL,
    STUB_TOOL_CALL_ARGUMENTS,
    STUB_TOOL_CALL_ID,
    OpenAIStub,
    start_openai_stub,
)
from trace_schema import assert_valid_trace, walk

pytestmark = pytest.mark.integration

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather by city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
QUESTION = "Weather in Paris?"
ANSWER = f"Stub answer to: {QUESTION}"


@pytest.fixture
def stub() -> Iterator[OpenAIStub]:
    with start_openai_stub() as server:
        yield server


@pytest.fixture
def provider() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()  # private: the global provider is left alone
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield tracer_provider, exporter
    tracer_provider.shutdown()


def _instrument(name: str, tracer_provider: TracerProvider) -> Any:
    if name == "openai-v2":
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
    else:
        from openinference.instrumentation.openai import OpenAIInstrumentor
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider)
    return instrumentor


@pytest.fixture(params=["openai-v2", "openai-v2-latest", "openinference"])
def producer(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    provider: tuple[TracerProvider, InMemorySpanExporter],
) -> Iterator[str]:
    # openai-v2 (through opentelemetry-util-genai) reads the content mode when instrumenting:
    # "span_only" puts gen_ai.input/output.messages on the span ("true" is the legacy value and
    # now means no content). OpenInference captures content by default.
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "span_only")
    if request.param == "openai-v2-latest":
        # The opt-in for the newest GenAI conventions; util-genai 1.1b0 is always on that path
        # (its is_experimental_mode() returns True), so both variants must read the same.
        monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental")
    instrumentor = _instrument(request.param.removesuffix("-latest"), provider[0])
    yield request.param
    instrumentor.uninstrument()


def _traces(exporter: InMemorySpanExporter) -> list[AssembledTrace]:
    assembler = TraceAssembler(max_spans_per_trace=100, max_open_traces=10, trace_timeout_ns=10**12)
    ready: list[AssembledTrace] = []
    for span in exporter.get_finished_spans():
        ready.extend(assembler.add(span))
    assert assembler.drain() == []  # every trace completed on its root
    return ready


def _llm_steps(trace: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for step in walk(trace) if step["type"] == "llm"]


def test_a_tool_calling_conversation(
    producer: str, stub: OpenAIStub, provider: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    tracer_provider, exporter = provider
    tracer = tracer_provider.get_tracer("app")
    client = openai.OpenAI(base_url=stub.base_url, api_key="stub-key", max_retries=0)
    messages: list[Any] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": QUESTION},
    ]
    with tracer.start_as_current_span("handle_request") as root:
        root.set_attribute("galileo.tags", ["producer-test"])
        first = client.chat.completions.create(
            model="gpt-x", messages=messages, tools=TOOLS, temperature=0.2
        )
        with tracer.start_as_current_span("execute_tool get_weather") as tool:
            tool.set_attribute("gen_ai.operation.name", "execute_tool")
            tool.set_attribute("gen_ai.tool.name", "get_weather")
            tool.set_attribute("gen_ai.tool.call.id", STUB_TOOL_CALL_ID)
            tool.set_attribute("gen_ai.tool.call.arguments", STUB_TOOL_CALL_ARGUMENTS)
            tool.set_attribute("gen_ai.tool.call.result", "rainy")
        messages.append(first.choices[0].message.model_dump(exclude_none=True))
        messages.append({"role": "tool", "tool_call_id": STUB_TOOL_CALL_ID, "content": "rainy"})
        second = client.chat.completions.create(model="gpt-x", messages=messages, tools=TOOLS)
    assert second.choices[0].message.content == ANSWER

    (assembled,) = _traces(exporter)
    trace = convert_trace(assembled)
    assert_valid_trace(trace)

    assert trace["name"] == "handle_request"
    assert trace["tags"] == ["producer-test"]
    assert trace["input"] == QUESTION and trace["output"] == ANSWER
    assert [s["type"] for s in trace["spans"]] == ["llm", "tool", "llm"]
    call, answer = _llm_steps(trace)

    assert call["input"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": QUESTION},
    ]
    (tool_call,) = call["output"]["tool_calls"]
    assert tool_call["id"] == STUB_TOOL_CALL_ID
    assert tool_call["function"]["name"] == "get_weather"
    assert tool_call["function"]["arguments"].replace(" ", "") == '{"city":"Paris"}'
    assert call["finish_reason"] == "tool_calls"
    assert call["model"] == STUB_MODEL
    assert call["temperature"] == 0.2
    assert call["metrics"]["num_input_tokens"] == 14  # the stub: 7 per message
    assert call["metrics"]["num_output_tokens"] == 5  # the stub: 5 per tool call

    assert [m["role"] for m in answer["input"]] == ["system", "user", "assistant", "tool"]
    assert answer["input"][3] == {
        "role": "tool",
        "content": "rainy",
        "tool_call_id": STUB_TOOL_CALL_ID,
    }
    assert answer["output"] == {"role": "assistant", "content": ANSWER}
    assert answer["finish_reason"] == "stop"
    assert answer["model"] == STUB_MODEL
    assert answer["metrics"]["num_input_tokens"] == 28
    assert answer["metrics"]["num_output_tokens"] == len(ANSWER.split())
    assert answer["metrics"]["num_total_tokens"] == 28 + len(ANSWER.split())


def test_a_streamed_answer(
    producer: str, stub: OpenAIStub, provider: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    _, exporter = provider
    client = openai.OpenAI(base_url=stub.base_url, api_key="stub-key", max_retries=0)
    stream = client.chat.completions.create(
        model="gpt-x",
        messages=[{"role": "user", "content": "hi there"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "Stub answer to: hi there"

    # No app span around it: the llm span is the root, kept as the trace's only step.
    (assembled,) = _traces(exporter)
    trace = convert_trace(assembled)
    assert_valid_trace(trace)
    (step,) = trace["spans"]
    assert step["type"] == "llm"
    assert step["input"] == [{"role": "user", "content": "hi there"}]
    assert step["output"] == {"role": "assistant", "content": text}
    assert step["finish_reason"] == "stop"
    assert step["model"] == STUB_MODEL
    assert step["metrics"]["num_input_tokens"] == 7
    assert step["metrics"]["num_output_tokens"] == len(text.split())
    assert trace["input"] == "hi there" and trace["output"] == text
    if producer == "openinference":  # its "First Token Stream Event" gives the time to it
        assert 0 < step["metrics"]["time_to_first_token_ns"] <= step["metrics"]["duration_ns"]
    else:
        # openai-v2 2.4b0 records no time to first chunk for chat streams (no span attribute,
        # no event; util-genai would set gen_ai.response.time_to_first_chunk, which we read, but
        # openai-v2's stream wrapper does not report chunks to it).
        assert "time_to_first_token_ns" not in step["metrics"]


def test_embeddings(
    producer: str, stub: OpenAIStub, provider: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    _, exporter = provider
    client = openai.OpenAI(base_url=stub.base_url, api_key="stub-key", max_retries=0)
    client.embeddings.create(model="emb-x", input=["a", "b"])
    (assembled,) = _traces(exporter)
    trace = convert_trace(assembled)
    assert_valid_trace(trace)
    (step,) = trace["spans"]
    assert step["type"] == "llm" and step["model"] == STUB_MODEL
    assert step["metrics"]["num_input_tokens"] == 6


def test_openai_v2_without_content_capture_keeps_model_and_tokens(
    stub: OpenAIStub, provider: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    tracer_provider, exporter = provider  # the autouse fixture cleared OTEL_* env vars
    instrumentor = _instrument("openai-v2", tracer_provider)
    try:
        client = openai.OpenAI(base_url=stub.base_url, api_key="stub-key", max_retries=0)
        client.chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": "hi"}])
    finally:
        instrumentor.uninstrument()
    (assembled,) = _traces(exporter)
    trace = convert_trace(assembled)
    assert_valid_trace(trace)
    (step,) = trace["spans"]
    assert step["input"] == [] and step["output"] == {"role": "assistant", "content": ""}
    assert step["model"] == STUB_MODEL and step["finish_reason"] == "stop"
    assert step["metrics"]["num_input_tokens"] == 7
    assert trace["input"] == ""


def test_the_stub_answers_like_openai(stub: OpenAIStub) -> None:
    client = openai.OpenAI(base_url=stub.base_url, api_key="stub-key", max_retries=0)
    tool_answer = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x"}], tools=TOOLS
    )
    assert tool_answer.choices[0].finish_reason == "tool_calls"
    assert tool_answer.usage is not None and tool_answer.usage.total_tokens == 12
    stream = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x"}], tools=TOOLS, stream=True
    )
    chunks = list(stream)
    arguments = "".join(
        c.choices[0].delta.tool_calls[0].function.arguments or ""
        for c in chunks
        if c.choices and c.choices[0].delta.tool_calls
    )
    assert arguments == STUB_TOOL_CALL_ARGUMENTS
    assert [path for path, _ in stub.requests] == ["/v1/chat/completions"] * 2


IMAGE_DATA = "iVBORw0KGgo="
MEDIA_MESSAGE = {
    "role": "user",
    "content": [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{IMAGE_DATA}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
    ],
}


def test_images_in_a_message(
    producer: str, stub: OpenAIStub, provider: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    _, exporter = provider
    client = openai.OpenAI(base_url=stub.base_url, api_key="stub-key", max_retries=0)
    client.chat.completions.create(model="gpt-x", messages=[MEDIA_MESSAGE])  # type: ignore[list-item]
    (assembled,) = _traces(exporter)
    trace = convert_trace(assembled)
    assert_valid_trace(trace)
    (step,) = trace["spans"]
    if producer == "openinference":
        # OpenInference records text and images (not audio); images become data blocks.
        assert step["input"] == [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this"},
                    {
                        "type": "data",
                        "modality": "image",
                        "base64": IMAGE_DATA,
                        "mime_type": "image/png",
                    },
                    {"type": "data", "modality": "image", "url": "https://example.com/cat.png"},
                ],
            }
        ]
        assert trace["input"] == "what is this"
    else:
        # openai-v2 2.4b0 records no part of a message whose content is a list of parts: the
        # user turn is kept, empty.
        assert step["input"] == [{"role": "user", "content": ""}]
    assert step["output"]["content"].startswith("Stub answer to: what is this")


@pytest.mark.parametrize("outer", ["openai-v2", "openinference"])
def test_two_instrumentations_of_one_client_give_one_step_per_call(
    outer: str,
    stub: OpenAIStub,
    provider: tuple[TracerProvider, InMemorySpanExporter],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from galileo_otel.export import convert as convert_module
    from galileo_otel.export.convert import ConvertStats

    monkeypatch.setattr(convert_module, "_warned", set())
    tracer_provider, exporter = provider
    # openai-v2 without content capture (the default), OpenInference with it: the kept step
    # must still carry the messages. The one instrumented last wraps outermost.
    inner_name = "openinference" if outer == "openai-v2" else "openai-v2"
    first = _instrument(inner_name, tracer_provider)
    second = _instrument(outer, tracer_provider)
    try:
        client = openai.OpenAI(base_url=stub.base_url, api_key="stub-key", max_retries=0)
        with tracer_provider.get_tracer("app").start_as_current_span("turn"):
            client.chat.completions.create(
                model="gpt-x", messages=[{"role": "user", "content": "hi there"}]
            )
            stream = client.chat.completions.create(
                model="gpt-x",
                messages=[{"role": "user", "content": "and again"}],
                stream=True,
                stream_options={"include_usage": True},
            )
            list(stream)
    finally:
        second.uninstrument()
        first.uninstrument()
    (assembled,) = _traces(exporter)
    assert len(assembled.spans) == 5  # turn + two spans per call
    stats = ConvertStats()
    with caplog.at_level("WARNING", logger="galileo_otel.export.convert"):
        trace = convert_trace(assembled, stats)
    assert_valid_trace(trace)
    assert stats.duplicate_llm_steps == 2
    steps = walk(trace)
    assert [s["type"] for s in steps] == ["llm", "llm"]
    plain, streamed = steps
    assert plain["input"] == [{"role": "user", "content": "hi there"}]
    assert plain["output"] == {"role": "assistant", "content": "Stub answer to: hi there"}
    assert streamed["output"]["content"] == "Stub answer to: and again"
    for step in steps:  # tokens once, not twice
        assert step["metrics"]["num_input_tokens"] == 7
        assert step["metrics"]["num_output_tokens"] == 5  # the stub: one per word
        assert step["model"] == STUB_MODEL
    # The OpenInference span's first-token event survives the fold.
    assert streamed["metrics"]["time_to_first_token_ns"] > 0
    warnings = [r.getMessage() for r in caplog.records if "traced twice" in r.getMessage()]
    assert len(warnings) == 1 and "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS" in warnings[0]


def test_both_openai_instrumentations_register_the_same_entry_point_name() -> None:
    # Why the warning cannot just say "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=<one of them>":
    # the variable matches entry point names, and both are "openai".
    from importlib.metadata import entry_points

    names = {
        ep.value.split(":")[0]: ep.name for ep in entry_points(group="opentelemetry_instrumentor")
    }
    assert names["opentelemetry.instrumentation.openai_v2"] == "openai"
    assert names["openinference.instrumentation.openai"] == "openai"


def test_the_local_server_takes_and_returns_what_conversion_sends(
    stub: OpenAIStub,
    provider: tuple[TracerProvider, InMemorySpanExporter],
    local_project: Any,
) -> None:
    from conftest_delivery import get

    server, client, project_id = local_project
    tracer_provider, exporter = provider
    instrumentor = _instrument("openinference", tracer_provider)
    try:
        openai_client = openai.OpenAI(base_url=stub.base_url, api_key="stub-key", max_retries=0)
        with tracer_provider.get_tracer("app").start_as_current_span("turn") as root:
            root.set_attribute("galileo.dataset.input", "what is this")
            root.set_attribute("galileo.dataset.metadata", '{"row": 1}')
            openai_client.chat.completions.create(model="gpt-x", messages=[MEDIA_MESSAGE])  # type: ignore[list-item]
            openai_client.chat.completions.create(
                model="gpt-x", messages=[{"role": "user", "content": "weather?"}], tools=TOOLS
            )
    finally:
        instrumentor.uninstrument()
    (assembled,) = _traces(exporter)
    trace = convert_trace(assembled)
    assert_valid_trace(trace)
    session = client.create_session(external_id="convert-round-trip")
    answer = client.log_traces([trace], session_id=str(session.id), reliable=True)
    assert answer.traces_count == 1
    stored = get(server.url, f"/v2/projects/{project_id}/traces/{trace['id']}")
    media, tool = (step for step in walk(stored) if step["type"] == "llm")
    block = media["input"][0]["content"][1]
    assert {k: v for k, v in block.items() if v is not None} == {
        "type": "data",
        "modality": "image",
        "base64": IMAGE_DATA,
        "mime_type": "image/png",
    }
    assert tool["output"]["tool_calls"][0]["id"] == STUB_TOOL_CALL_ID
    assert stored["dataset_input"] == "what is this"
    assert stored["dataset_metadata"] == {"row": "1"}


def test_a_chat_with_history_reads_turn_by_turn(
    producer: str, stub: OpenAIStub, provider: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """A chat app resends its history every turn: each trace reads as its own turn."""
    tracer_provider, exporter = provider
    tracer = tracer_provider.get_tracer("app")
    client = openai.OpenAI(base_url=stub.base_url, api_key="stub-key", max_retries=0)
    history: list[Any] = [{"role": "system", "content": "Be brief."}]
    questions = ["turn 1: hello?", "turn 2: and then?", "turn 3: bye?"]
    for question in questions:
        history.append({"role": "user", "content": question})
        with tracer.start_as_current_span("chat turn", attributes={"user.id": "ana"}):
            answer = client.chat.completions.create(model="gpt-test", messages=history)
        history.append({"role": "assistant", "content": answer.choices[0].message.content})
    traces = [convert_trace(t) for t in _traces(exporter)]
    for trace in traces:
        assert_valid_trace(trace)
        for step in [trace, *walk(trace)]:
            assert not [k for k in step["user_metadata"] if k.startswith("galileo.otel.")]
    assert [t["input"] for t in traces] == questions
    assert [t["output"] for t in traces] == [f"Stub answer to: {q}" for q in questions]
    assert [t["user_metadata"]["user.id"] for t in traces] == ["ana"] * 3
