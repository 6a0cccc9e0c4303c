"""Quick start: one configure() call, then ordinary OpenTelemetry spans in GenAI conventions.

    pip install 'galileo-otel[server]'
    python examples/quickstart.py            # against an embedded local server
    GALILEO_API_KEY=... GALILEO_PROJECT=my-app python examples/quickstart.py   # against Galileo

Each conversation is a galileo_otel.session(); every trace started inside it lands in that
session, with the user id attached.
"""

from __future__ import annotations

import json

from _local import galileo_target, summary
from opentelemetry import trace

import galileo_otel


def answer(tracer: trace.Tracer, question: str) -> str:
    """One chat turn: an agent span around an LLM call (here a canned answer)."""
    with tracer.start_as_current_span(
        "invoke_agent helper", attributes={"gen_ai.operation.name": "invoke_agent"}
    ):
        reply = f"You asked: {question}"
        with tracer.start_as_current_span("chat gpt-4o-mini") as llm:
            llm.set_attributes(
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o-mini",
                    "gen_ai.input.messages": json.dumps(
                        [{"role": "user", "parts": [{"type": "text", "content": question}]}]
                    ),
                    "gen_ai.output.messages": json.dumps(
                        [
                            {
                                "role": "assistant",
                                "parts": [{"type": "text", "content": reply}],
                                "finish_reason": "stop",
                            }
                        ]
                    ),
                    "gen_ai.usage.input_tokens": len(question.split()),
                    "gen_ai.usage.output_tokens": len(reply.split()),
                }
            )
        return reply


def main() -> None:
    with galileo_target(project="quickstart"):
        handle = galileo_otel.configure()  # reads GALILEO_* (key, URL, project, log stream)
        tracer = trace.get_tracer("quickstart")
        for conversation, user, questions in [
            ("conv-1", "alice", ["Hi!", "What is OpenTelemetry?"]),
            ("conv-2", "bob", ["How do I reset my password?"]),
        ]:
            with galileo_otel.session(conversation, user_id=user):
                for question in questions:
                    print(f"{user}: {question} -> {answer(tracer, question)}")
        delivered = handle.force_flush()  # True once the server confirmed every trace
        print(
            f"delivered: {delivered}; exporter stats: {handle.stats()['traces_confirmed']} traces confirmed"
        )
        summary("quickstart")
        handle.shutdown()


if __name__ == "__main__":
    main()
