"""A tiny OpenAI-compatible HTTP server on 127.0.0.1 with canned answers, for tests and examples.

Usage::

    from tests.openai_stub import start_openai_stub

    stub = start_openai_stub()          # serving in a daemon thread on a free port
    client = openai.OpenAI(base_url=stub.base_url, api_key="stub")
    ...
    stub.stop()

or as a context manager (``with start_openai_stub() as stub: ...``).

Answers (deterministic, no randomness):

- ``POST /v1/chat/completions``: when the request offers ``tools`` and its last message is not a
  ``tool`` message, the answer is one tool call of the first tool (``id`` ``call_stub_1``,
  arguments ``{"city": "Paris"}``, finish reason ``tool_calls``); otherwise the text
  ``"Stub answer to: <last user text>"`` (finish reason ``stop``). ``stream: true`` answers with
  server-sent events (one chunk per word, a final usage chunk when
  ``stream_options.include_usage`` is set, then ``[DONE]``).
- ``POST /v1/embeddings``: one 3-dimensional vector per input.
- Usage: ``prompt_tokens`` = 7 * number of messages, ``completion_tokens`` = number of words of
  the answer (tool calls count 5), so tests can assert exact numbers.

Scripted answers: ``stub.script(reply_text("..."), reply_tool_call("get_weather", {...}), ...)``
queues answers that the next chat completions requests take in order (plain or streamed, the
same content); ``reply_failure(500)`` answers with an HTTP error instead. When the script is
empty the canned answers above apply again.

Every request body is kept in ``stub.requests`` (a list of ``(path, body)``). Loopback only.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

__all__ = [
    "STUB_MODEL",
    "STUB_TOOL_CALL_ARGUMENTS",
    "STUB_TOOL_CALL_ID",
    "OpenAIStub",
    "Reply",
    "answer_text",
    "reply_failure",
    "reply_text",
    "reply_tool_call",
    "start_openai_stub",
]

STUB_MODEL = "stub-model-2026-01-01"
"""The `model` of every answer (the request's model is echoed in nothing else)."""
STUB_TOOL_CALL_ID = "call_stub_1"
STUB_TOOL_CALL_ARGUMENTS = '{"city": "Paris"}'
_CREATED = 1_767_225_600  # 2026-01-01T00:00:00Z: fixed, so answers are byte-identical


def answer_text(messages: list[dict[str, Any]]) -> str:
    """The canned text answer for a conversation: echoes the last user message."""
    last_user = ""
    for message in messages:
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):  # content parts
                content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            last_user = str(content or "")
    return f"Stub answer to: {last_user}"


class Reply(NamedTuple):
    """One scripted answer: a text, tool calls, or an HTTP failure (``status`` >= 400).

    (A NamedTuple, not a dataclass: examples load this file without registering it as a module.)
    """

    text: str | None = None
    tool_calls: tuple[tuple[str, str, str], ...] = ()  # (id, name, arguments)
    status: int = 200


def reply_text(text: str) -> Reply:
    """A scripted assistant text answer."""
    return Reply(text=text)


def reply_tool_call(
    name: str, arguments: Mapping[str, Any] | None = None, call_id: str = STUB_TOOL_CALL_ID
) -> Reply:
    """A scripted answer that calls one tool (arguments as a JSON object)."""
    return Reply(tool_calls=((call_id, name, json.dumps(dict(arguments or {}))),))


def reply_failure(status: int = 500) -> Reply:
    """A scripted HTTP error answer (an OpenAI-shaped error body)."""
    return Reply(status=status)


def _wants_tool_call(body: dict[str, Any]) -> bool:
    messages = body.get("messages") or []
    return bool(body.get("tools")) and not (messages and messages[-1].get("role") == "tool")


def _usage(body: dict[str, Any], completion_tokens: int) -> dict[str, int]:
    prompt_tokens = 7 * len(body.get("messages") or [])
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _chat_completion(body: dict[str, Any], reply: Reply | None = None) -> dict[str, Any]:
    if reply is not None and reply.tool_calls:
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
                for cid, name, args in reply.tool_calls
            ],
        }
        finish, completion_tokens = "tool_calls", 5 * len(reply.tool_calls)
    elif reply is not None:
        text = reply.text or ""
        message = {"role": "assistant", "content": text}
        finish, completion_tokens = "stop", len(text.split())
    elif _wants_tool_call(body):
        tool_name = body["tools"][0]["function"]["name"]
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": STUB_TOOL_CALL_ID,
                    "type": "function",
                    "function": {"name": tool_name, "arguments": STUB_TOOL_CALL_ARGUMENTS},
                }
            ],
        }
        finish, completion_tokens = "tool_calls", 5
    else:
        text = answer_text(body.get("messages") or [])
        message = {"role": "assistant", "content": text}
        finish, completion_tokens = "stop", len(text.split())
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": _CREATED,
        "model": STUB_MODEL,
        "system_fingerprint": "fp_stub",
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": _usage(body, completion_tokens),
    }


def _chunk(delta: dict[str, Any], finish: str | None, usage: Any = None) -> dict[str, Any]:
    chunk: dict[str, Any] = {
        "id": "chatcmpl-stub",
        "object": "chat.completion.chunk",
        "created": _CREATED,
        "model": STUB_MODEL,
        "system_fingerprint": "fp_stub",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }
    if usage is not None:
        chunk["choices"] = []
        chunk["usage"] = usage
    return chunk


def _chat_chunks(body: dict[str, Any], reply: Reply | None = None) -> Iterator[dict[str, Any]]:
    full = _chat_completion(body, reply)
    message = full["choices"][0]["message"]
    yield _chunk({"role": "assistant", "content": ""}, None)
    if message.get("tool_calls"):
        for index, call in enumerate(message["tool_calls"]):
            yield _chunk(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call["id"],
                            "type": "function",
                            "function": {"name": call["function"]["name"], "arguments": ""},
                        }
                    ]
                },
                None,
            )
            yield _chunk(
                {
                    "tool_calls": [
                        {"index": index, "function": {"arguments": call["function"]["arguments"]}}
                    ]
                },
                None,
            )
    else:
        words = message["content"].split(" ")
        for i, word in enumerate(words):
            yield _chunk({"content": word if i == 0 else " " + word}, None)
    yield _chunk({}, full["choices"][0]["finish_reason"])
    if (body.get("stream_options") or {}).get("include_usage"):
        yield _chunk({}, None, usage=full["usage"])


def _embeddings(body: dict[str, Any]) -> dict[str, Any]:
    inputs = body.get("input")
    items = inputs if isinstance(inputs, list) else [inputs]
    return {
        "object": "list",
        "model": STUB_MODEL,
        "data": [
            {"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]}
            for i in range(len(items))
        ],
        "usage": {"prompt_tokens": 3 * len(items), "total_tokens": 3 * len(items)},
    }


class _Handler(BaseHTTPRequestHandler):
    server: _StubHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request stderr lines of http.server."""

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._send_json(400, {"error": {"message": "invalid JSON", "type": "invalid_request"}})
            return
        path = self.path.split("?", 1)[0].rstrip("/")
        self.server.requests.append((path, body))
        if path.endswith("/chat/completions"):
            reply = self.server.next_reply()
            if reply is not None and reply.status >= 400:
                error = {"message": f"scripted failure {reply.status}", "type": "server_error"}
                self._send_json(reply.status, {"error": error})
            elif body.get("stream"):
                self._send_events(_chat_chunks(body, reply))
            else:
                self._send_json(200, _chat_completion(body, reply))
        elif path.endswith("/embeddings"):
            self._send_json(200, _embeddings(body))
        else:
            self._send_json(404, {"error": {"message": f"no route {path}", "type": "not_found"}})

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_events(self, chunks: Iterator[dict[str, Any]]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        # No Content-Length: the stream ends when the connection closes.
        self.send_header("Connection", "close")
        self.end_headers()
        for chunk in chunks:
            self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True


class _StubHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    requests: list[tuple[str, dict[str, Any]]]
    replies: deque[Reply]
    replies_lock: threading.Lock

    def next_reply(self) -> Reply | None:
        with self.replies_lock:
            return self.replies.popleft() if self.replies else None


class OpenAIStub:
    """A running stub server. `base_url` ends in ``/v1``: pass it to ``openai.OpenAI(base_url=...)``."""

    def __init__(self, server: _StubHTTPServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        host, port = server.server_address[:2]
        self.url = f"http://{host}:{port}"
        self.base_url = f"{self.url}/v1"

    @property
    def requests(self) -> list[tuple[str, dict[str, Any]]]:
        """Every request received so far, as ``(path, JSON body)``."""
        return self._server.requests

    def script(self, *replies: Reply) -> None:
        """Queue answers for the next chat completions requests, in order (replacing any left)."""
        with self._server.replies_lock:
            self._server.replies.clear()
            self._server.replies.extend(replies)

    @property
    def unused_replies(self) -> int:
        """How many scripted answers no request has taken yet."""
        with self._server.replies_lock:
            return len(self._server.replies)

    def stop(self) -> None:
        """Stop serving and wait for the server thread (bounded)."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> OpenAIStub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_openai_stub(host: str = "127.0.0.1", port: int = 0) -> OpenAIStub:
    """Start the stub on `host` (loopback by default) and a free port, serving in a daemon thread.

    Returns:
        The running `OpenAIStub`; its ``base_url`` (``http://127.0.0.1:<port>/v1``) is what an
        OpenAI client needs. Call ``stop()`` (or use it as a context manager) when done.
    """
    server = _StubHTTPServer((host, port), _Handler)
    server.requests = []
    server.replies = deque()
    server.replies_lock = threading.Lock()
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        daemon=True,
        name="openai-stub",
    )
    thread.start()
    return OpenAIStub(server, thread)
