"""A FastAPI chat service whose requests join the session named by their X-Session-Id header.

    pip install 'galileo-otel[server]'
    GALILEO_API_KEY=... GALILEO_PROJECT=my-app \\
    uvicorn examples.fastapi_chat:app      # serve it for real, or:
    python examples/fastapi_chat.py        # send it a few requests in-process and show the sessions

The app calls galileo_otel.configure() when it starts (its lifespan), so both ways send: under
uvicorn with the GALILEO_* variables of your Galileo (or of `galileo-otel serve`), and shut down
cleanly (Ctrl-C), it delivers what is left before it exits.

GalileoASGIMiddleware opens galileo_otel.session(<X-Session-Id>, user_id=<X-User-Id>) around
each request, so every span the handler makes lands in that conversation's session. With a
server-span instrumentation (FastAPIInstrumentor) around the app, the middleware stamps that
span too. For WSGI apps (Flask, Django) use GalileoWSGIMiddleware the same way.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from opentelemetry import trace
from pydantic import BaseModel

import galileo_otel
from galileo_otel.middleware import GalileoASGIMiddleware


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # configure() reads the GALILEO_* variables; at shutdown, what is queued is delivered.
    app.state.galileo = galileo_otel.configure()
    try:
        yield
    finally:
        app.state.galileo.shutdown()


app = FastAPI(title="chat", lifespan=lifespan)
app.add_middleware(
    GalileoASGIMiddleware, header="X-Session-Id", user_header="X-User-Id", cookie="chat_session"
)
tracer = trace.get_tracer("fastapi-chat")


class ChatIn(BaseModel):
    message: str


@app.post("/chat")
def chat(body: ChatIn) -> dict[str, str]:
    with tracer.start_as_current_span(
        "invoke_agent chat", attributes={"gen_ai.operation.name": "invoke_agent"}
    ):
        reply = f"echo: {body.message}"
        with tracer.start_as_current_span("chat tiny-model") as llm:
            llm.set_attributes(
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.request.model": "tiny-model",
                    "gen_ai.input.messages": json.dumps(
                        [{"role": "user", "parts": [{"type": "text", "content": body.message}]}]
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
                }
            )
    return {"reply": reply}


def main() -> None:
    from _local import galileo_target, summary
    from fastapi.testclient import TestClient

    with galileo_target(project="fastapi-chat"):
        with TestClient(app) as http:  # runs the lifespan: configure() ... shutdown()
            handle = app.state.galileo
            for session_id, user, message in [
                ("web-1", "alice", "hello"),
                ("web-1", "alice", "how are you?"),
                ("web-2", "bob", "hi there"),
            ]:
                answer = http.post(
                    "/chat",
                    json={"message": message},
                    headers={"X-Session-Id": session_id, "X-User-Id": user},
                ).json()
                print(f"{session_id} {user}: {message} -> {answer['reply']}")
            http.cookies.set("chat_session", "web-3")  # the cookie works too
            http.post("/chat", json={"message": "from a browser"})
            print(f"delivered: {handle.force_flush()}")
        summary("fastapi_chat")


if __name__ == "__main__":
    main()
