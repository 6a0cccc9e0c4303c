"""The openai client, instrumented by opentelemetry-instrumentation-openai-v2, into sessions.

    pip install 'galileo-otel[server]' openai opentelemetry-instrumentation-openai-v2 \\
        'opentelemetry-util-genai<1.2'   # openai-v2 2.4b0 does not import with util-genai 1.2+
    python examples/openai_app.py

Talks to OPENAI_BASE_URL (with OPENAI_API_KEY) when set; otherwise to the small
OpenAI-compatible stub server of this repository's tests (tests/openai_stub.py), so it runs
without an OpenAI account or network. The instrumentation makes the ``chat`` spans; we add an
agent span per turn and an ``execute_tool`` span for the tool call.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# Newest GenAI conventions, with message content on the spans (what Galileo shows as input and
# output). Must be set before the instrumentation is imported.
os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental")
os.environ.setdefault("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "span_only")

import openai
from _local import galileo_target, summary
from opentelemetry import trace
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

import galileo_otel

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@contextmanager
def openai_endpoint() -> Iterator[tuple[str, str]]:
    """(base_url, api_key): OPENAI_BASE_URL, or the test suite's local stub server."""
    if os.environ.get("OPENAI_BASE_URL"):
        yield os.environ["OPENAI_BASE_URL"], os.environ.get("OPENAI_API_KEY", "")
        return
    stub_file = Path(__file__).resolve().parent.parent / "tests" / "openai_stub.py"
    if not stub_file.exists():
        raise SystemExit(
            "set OPENAI_BASE_URL and OPENAI_API_KEY (the local stub is in the repository's tests/)"
        )
    spec = importlib.util.spec_from_file_location("openai_stub", stub_file)
    assert spec is not None and spec.loader is not None
    stub_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stub_module)
    with stub_module.start_openai_stub() as stub:
        yield stub.base_url, "stub-key"


def get_weather(city: str) -> str:
    return json.dumps({"city": city, "forecast": "sunny", "celsius": 21})


def turn(client: openai.OpenAI, tracer: trace.Tracer, history: list[Any], question: str) -> str:
    """One user turn of a small tool-using agent."""
    with tracer.start_as_current_span(
        "invoke_agent trip-planner", attributes={"gen_ai.operation.name": "invoke_agent"}
    ):
        history.append({"role": "user", "content": question})
        reply = client.chat.completions.create(
            model="gpt-4o-mini", messages=history, tools=[WEATHER_TOOL]
        )
        message = reply.choices[0].message
        if message.tool_calls:
            history.append(message.model_dump(exclude_none=True))
            for call in message.tool_calls:
                arguments = json.loads(call.function.arguments)
                with tracer.start_as_current_span(
                    f"execute_tool {call.function.name}"
                ) as tool_span:
                    result = get_weather(**arguments)
                    tool_span.set_attributes(
                        {
                            "gen_ai.operation.name": "execute_tool",
                            "gen_ai.tool.name": call.function.name,
                            "gen_ai.tool.call.id": call.id,
                            "gen_ai.tool.call.arguments": call.function.arguments,
                            "gen_ai.tool.call.result": result,
                        }
                    )
                history.append({"role": "tool", "tool_call_id": call.id, "content": result})
            reply = client.chat.completions.create(
                model="gpt-4o-mini", messages=history, tools=[WEATHER_TOOL]
            )
            message = reply.choices[0].message
        answer = message.content or ""
        history.append({"role": "assistant", "content": answer})
        return answer


def main() -> None:
    with galileo_target(project="openai-app"), openai_endpoint() as (base_url, api_key):
        handle = galileo_otel.configure()
        OpenAIInstrumentor().instrument()
        try:
            client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0)
            tracer = trace.get_tracer("openai-app")
            for conversation, user, questions in [
                ("trip-1", "alice", ["What's the weather in Paris?", "Thanks! Pack an umbrella?"]),
                ("trip-2", "bob", ["Weather in Lisbon tomorrow?"]),
            ]:
                history: list[Any] = [{"role": "system", "content": "You plan trips. Be brief."}]
                with galileo_otel.session(conversation, user_id=user):
                    for question in questions:
                        print(f"{user}: {question}\n  -> {turn(client, tracer, history, question)}")
            print(f"delivered: {handle.force_flush()}")
            summary("openai_app")
        finally:
            OpenAIInstrumentor().uninstrument()
            handle.shutdown()


if __name__ == "__main__":
    main()
