"""Conversion of assembled OTel traces into Galileo trace trees (plain JSON-able dicts).

Reads the OpenTelemetry GenAI conventions (attributes and the older message events) and
OpenInference; any other span becomes a workflow step. Runs on the background worker: plain
dicts only, no pydantic, no logging per span.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import logging
import math
import operator
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from galileo_otel.export.assemble import AssembledTrace
from galileo_otel.export.sdk_span import span_attributes, span_events

__all__ = [
    "MAX_METADATA_ENTRIES",
    "MAX_METADATA_VALUE_CHARS",
    "PLUMBING_STEP_NAMES",
    "ConvertStats",
    "convert_span",
    "convert_trace",
    "span_uuid",
    "trace_uuid",
]

_log = logging.getLogger(__name__)

# The stdlib decoder's C scanner, called directly: json.loads wraps it in two regex matches
# and three Python calls, which cost as much as decoding a short message list. Anything the
# direct call does not take whole (leading or trailing whitespace, bad JSON) goes through
# json.loads, so the result is always json.loads's. (orjson would be faster still, but turns
# integers beyond 64 bits into floats.)
_scan_once: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]

MAX_METADATA_VALUE_CHARS = 2_000
"""A `user_metadata` value longer than this is cut (and ends with an ellipsis)."""
MAX_METADATA_ENTRIES = 64
"""At most this many attributes per step go to `user_metadata`; the number left out is recorded
under ``otel.dropped_attributes``."""


class ConvertStats:
    """What conversion changed or left out, for ``exporter.stats()``.

    One instance per pipeline, written only by the thread that converts (the pipeline's worker),
    so the counters need no lock; a reader on another thread sees each int whole.

    Attributes:
        duplicate_llm_steps: llm spans folded into the llm span around them (the same model call
            traced by two instrumentations).
        traces_cut: Traces that did not fit ``batch_max_bytes`` as converted and were cut.
        texts_cut: Text values shortened (or media blocks replaced) to make a trace fit.
        chars_cut: Characters removed by those cuts (a media block counts its payload).
        spans_cut: Steps removed from traces that still did not fit once every text was cut.
    """

    __slots__ = ("chars_cut", "duplicate_llm_steps", "spans_cut", "texts_cut", "traces_cut")

    def __init__(self) -> None:
        self.duplicate_llm_steps = 0
        self.traces_cut = 0
        self.texts_cut = 0
        self.chars_cut = 0
        self.spans_cut = 0

    def as_dict(self) -> dict[str, int]:
        """The counters by name (what ``stats()`` shows under ``convert``)."""
        return {name: getattr(self, name) for name in sorted(self.__slots__)}


# Things worth one warning per process (never one per span): the key is what was noticed.
_warned: set[str] = set()


def _warn_once(key: str, msg: str, *args: Any) -> None:
    if key not in _warned:
        _warned.add(key)
        _log.warning(msg, *args)


# --- ids ------------------------------------------------------------------------------------------
_MASK64 = (1 << 64) - 1
_MASK128 = (1 << 128) - 1
# RFC 4122 version 4 and variant bits: the API validates ids as uuid4.
_V4_CLEAR = ~((0xF << 76) | (0x3 << 62)) & ((1 << 128) - 1)
_V4_SET = (0x4 << 76) | (0x2 << 62)


def _uuid4_shape(value: int) -> str:
    h = f"{(value & _V4_CLEAR) | _V4_SET:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def trace_uuid(trace_id: int) -> str:
    """The Galileo id of an OTel trace: its 128 bits with the uuid4 version/variant bits set.

    Deterministic (a resent trace keeps its id) and readable: most hex digits match the OTel id.
    """
    return _uuid4_shape(trace_id)


def span_uuid(trace_id: int, span_id: int) -> str:
    """The Galileo id of an OTel span: span id (high 64 bits) + low half of the trace id."""
    return _uuid4_shape((span_id << 64) | (trace_id & _MASK64))


def _part_uuid(trace_id: int, part: int) -> str:
    # Later parts of a trace (spans that ended after it shipped) must not reuse its id.
    digest = hashlib.blake2b(f"{trace_id:032x}/{part}".encode(), digest_size=16).digest()
    return _uuid4_shape(int.from_bytes(digest, "big"))


# --- timestamps -----------------------------------------------------------------------------------
_iso_seconds_cache: dict[int, str] = {}
# "000".."999": the microseconds as two table lookups (a ``:06d`` format costs twice as much).
_D3 = tuple(f"{i:03d}" for i in range(1000))


def _iso(ns: int) -> str:
    """ISO 8601 UTC with microseconds; the seconds part is cached (spans cluster in time)."""
    seconds, rest = divmod(ns, 1_000_000_000)
    prefix = _iso_seconds_cache.get(seconds)
    if prefix is None:
        if len(_iso_seconds_cache) > 4096:
            _iso_seconds_cache.clear()
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _iso_seconds_cache[seconds] = prefix
    micros = rest // 1000
    return f"{prefix}.{_D3[micros // 1000]}{_D3[micros % 1000]}Z"


# --- attribute names (local constants: several GenAI names are moving between packages) ---------
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"
GEN_AI_SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_REQUEST_TEMPERATURE = "gen_ai.request.temperature"
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_PROMPT_TOKENS = "gen_ai.usage.prompt_tokens"  # before semconv 1.27
GEN_AI_USAGE_COMPLETION_TOKENS = "gen_ai.usage.completion_tokens"  # before semconv 1.27
GEN_AI_RESPONSE_TTFC = "gen_ai.response.time_to_first_chunk"
GEN_AI_TOOL_NAME = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ID = "gen_ai.tool.call.id"
GEN_AI_TOOL_CALL_ARGUMENTS = "gen_ai.tool.call.arguments"
GEN_AI_TOOL_CALL_RESULT = "gen_ai.tool.call.result"
GEN_AI_TOOL_DEFINITIONS = "gen_ai.tool.definitions"
GEN_AI_AGENT_NAME = "gen_ai.agent.name"
GEN_AI_RETRIEVAL_QUERY = "gen_ai.retrieval.query.text"
GEN_AI_RETRIEVAL_DOCUMENTS = "gen_ai.retrieval.documents"
GEN_AI_PROMPT = "gen_ai.prompt"  # legacy JSON list (event gen_ai.content.prompt)
GEN_AI_COMPLETION = "gen_ai.completion"  # legacy JSON list (event gen_ai.content.completion)
GEN_AI_EVENT_CONTENT = "gen_ai.event.content"  # JSON body of a message event (Azure SDKs)
OI_SPAN_KIND = "openinference.span.kind"
INPUT_VALUE = "input.value"
OUTPUT_VALUE = "output.value"
LLM_MODEL_NAME = "llm.model_name"
LLM_INVOCATION_PARAMETERS = "llm.invocation_parameters"
LLM_TOKEN_PROMPT = "llm.token_count.prompt"
LLM_TOKEN_COMPLETION = "llm.token_count.completion"
LLM_TOKEN_TOTAL = "llm.token_count.total"
LLM_FINISH_REASON = "llm.finish_reason"
EMBEDDING_MODEL_NAME = "embedding.model_name"
TOOL_NAME = "tool.name"
TOOL_CALL_ID = "tool_call.id"
AGENT_NAME = "agent.name"
RERANKER_QUERY = "reranker.query"
GALILEO_TAGS = "galileo.tags"
OI_TAGS = "tag.tags"
ERROR_TYPE = "error.type"
USER_ID = "user.id"
ENDUSER_ID = "enduser.id"
INPUT_MIME_TYPE = "input.mime_type"
OUTPUT_MIME_TYPE = "output.mime_type"
# Token details (GenAI registry names, then OpenInference's).
GEN_AI_USAGE_CACHE_READ = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_CACHE_CREATION = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_USAGE_REASONING = "gen_ai.usage.reasoning.output_tokens"
LLM_TOKEN_CACHE_READ = "llm.token_count.prompt_details.cache_read"
LLM_TOKEN_CACHE_WRITE = "llm.token_count.prompt_details.cache_write"
LLM_TOKEN_REASONING = "llm.token_count.completion_details.reasoning"
# Pydantic AI's agent run span.
GEN_AI_AGG_INPUT_TOKENS = "gen_ai.aggregated_usage.input_tokens"
GEN_AI_AGG_OUTPUT_TOKENS = "gen_ai.aggregated_usage.output_tokens"
PYDANTIC_ALL_MESSAGES = "pydantic_ai.all_messages"
PYDANTIC_NEW_MESSAGE_INDEX = "pydantic_ai.new_message_index"
PYDANTIC_FINAL_RESULT = "final_result"
PYDANTIC_AGENT_NAME = "agent_name"
PYDANTIC_TOOL_ARGUMENTS = "tool_arguments"  # before pydantic-ai's instrumentation version 3
PYDANTIC_TOOL_RESPONSE = "tool_response"
PYDANTIC_EVENTS = "events"  # Pydantic AI's first format: a model request's message events
PYDANTIC_ALL_MESSAGES_EVENTS = "all_messages_events"  # ... and an agent run's
OI_METADATA = "metadata"  # OpenInference / Pydantic AI: the framework's metadata as JSON
HTTP_RESPONSE_STATUS_CODE = "http.response.status_code"
HTTP_STATUS_CODE = "http.status_code"  # before semconv 1.21
# What the official SDK's span processor sets (galileo.otel): dataset fields and routing.
GALILEO_DATASET_INPUT = "galileo.dataset.input"
GALILEO_DATASET_OUTPUT = "galileo.dataset.output"
GALILEO_DATASET_METADATA = "galileo.dataset.metadata"
GALILEO_PROJECT_NAME = "galileo.project.name"
GALILEO_LOGSTREAM_NAME = "galileo.logstream.name"
GALILEO_EXPERIMENT_ID = "galileo.experiment.id"

_LLM_OPERATIONS = frozenset({"chat", "text_completion", "generate_content", "embeddings"})
_AGENT_OPERATIONS = frozenset({"invoke_agent", "create_agent"})
_OI_KINDS = {
    "LLM": "llm",
    "EMBEDDING": "llm",
    "TOOL": "tool",
    "RETRIEVER": "retriever",
    "RERANKER": "retriever",
    "AGENT": "agent",
}

# Attributes that become first-class fields (or are session plumbing) and so are not copied
# into user_metadata.
_CONSUMED = frozenset(
    {
        GEN_AI_INPUT_MESSAGES,
        GEN_AI_OUTPUT_MESSAGES,
        GEN_AI_SYSTEM_INSTRUCTIONS,
        GEN_AI_RESPONSE_MODEL,
        GEN_AI_REQUEST_TEMPERATURE,
        GEN_AI_RESPONSE_FINISH_REASONS,
        GEN_AI_USAGE_INPUT_TOKENS,
        GEN_AI_USAGE_OUTPUT_TOKENS,
        GEN_AI_USAGE_PROMPT_TOKENS,
        GEN_AI_USAGE_COMPLETION_TOKENS,
        GEN_AI_RESPONSE_TTFC,
        GEN_AI_TOOL_CALL_ARGUMENTS,
        GEN_AI_TOOL_CALL_RESULT,
        GEN_AI_TOOL_CALL_ID,
        GEN_AI_TOOL_DEFINITIONS,
        GEN_AI_RETRIEVAL_QUERY,
        GEN_AI_RETRIEVAL_DOCUMENTS,
        GEN_AI_PROMPT,
        GEN_AI_COMPLETION,
        OI_SPAN_KIND,
        INPUT_VALUE,
        OUTPUT_VALUE,
        "input.mime_type",
        "output.mime_type",
        LLM_MODEL_NAME,
        LLM_TOKEN_PROMPT,
        LLM_TOKEN_COMPLETION,
        LLM_TOKEN_TOTAL,
        LLM_FINISH_REASON,
        EMBEDDING_MODEL_NAME,
        RERANKER_QUERY,
        TOOL_CALL_ID,
        GALILEO_TAGS,
        OI_TAGS,
        GALILEO_DATASET_INPUT,
        GALILEO_DATASET_OUTPUT,
        GALILEO_DATASET_METADATA,
        "gen_ai.conversation.id",  # a session key, like session.id
        GEN_AI_USAGE_CACHE_READ,
        GEN_AI_USAGE_CACHE_CREATION,
        GEN_AI_USAGE_REASONING,
        LLM_TOKEN_CACHE_READ,
        LLM_TOKEN_CACHE_WRITE,
        LLM_TOKEN_REASONING,
        GEN_AI_AGG_INPUT_TOKENS,
        GEN_AI_AGG_OUTPUT_TOKENS,
        PYDANTIC_ALL_MESSAGES,
        PYDANTIC_NEW_MESSAGE_INDEX,
        PYDANTIC_FINAL_RESULT,
        PYDANTIC_TOOL_ARGUMENTS,
        PYDANTIC_TOOL_RESPONSE,
        PYDANTIC_EVENTS,
        PYDANTIC_ALL_MESSAGES_EVENTS,
        # Pydantic AI's serialized request parameters: the tool definitions again (read from
        # gen_ai.tool.definitions) and output settings.
        "model_request_parameters",
        # The user belongs to the trace and its session, not to every step (see _trace_user).
        USER_ID,
        ENDUSER_ID,
    }
)
# Routing attributes of the official SDK: not honoured per trace (the pipeline sends every trace
# to the configured project and log stream), so they stay visible in user_metadata and the
# first one seen is warned about.
_ROUTING = frozenset({GALILEO_PROJECT_NAME, GALILEO_LOGSTREAM_NAME, GALILEO_EXPERIMENT_ID})
_CONSUMED_PREFIXES = (
    "llm.input_messages.",
    "llm.output_messages.",
    "llm.tools.",
    "embedding.embeddings.",
    "retrieval.documents.",
    "reranker.input_documents.",
    "reranker.output_documents.",
    "gen_ai.prompt.",  # OpenLLMetry's flattened prompts
    "gen_ai.completion.",
    "session.",
    "galileo.session.",
    # Our own bookkeeping (e.g. galileo.otel.conversation_key, the scrub-proof copy of the
    # session key): never sent to Galileo.
    "galileo.otel.",
    # Logfire's rendering hints (logfire.msg, logfire.json_schema, logfire.span_type...).
    "logfire.",
)

_ROLES = frozenset({"system", "user", "assistant", "tool", "developer", "function", "agent"})
_ROLE_ALIASES = {
    "model": "assistant",
    "ai": "assistant",
    "bot": "assistant",
    "human": "user",
    "ipython": "tool",
}
_EVENT_ROLES = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}
_INFERENCE_DETAILS_EVENT = "gen_ai.client.inference.operation.details"
_OI_FIRST_TOKEN_EVENT = "First Token Stream Event"


# --- small helpers ----------------------------------------------------------------------------------
def _role(value: Any, default: str = "user") -> str:
    if isinstance(value, str):
        role = value.lower()
        if role in _ROLES:
            return role
        return _ROLE_ALIASES.get(role, default)
    return default


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    return str(value)


def _text(value: Any) -> str:
    """Any attribute or JSON value as text: strings as they are, bytes decoded, the rest JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    try:
        return json.dumps(value, ensure_ascii=False, default=_json_default)
    except (TypeError, ValueError):
        return str(value)


def _json(value: Any) -> Any:
    """Decode a JSON attribute; structured values (event bodies) pass through; bad JSON -> None."""
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        try:
            decoded, end = _scan_once(value, 0)
            if end == len(value):
                return decoded
        except (StopIteration, ValueError):
            pass
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _int(value: Any) -> int | None:
    if type(value) is int:  # the common case, first (a bool is not exactly an int)
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) else None
    if isinstance(value, str) and value.isdecimal():
        return int(value)
    return None


def _meta_value(value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (int, float)):
        text = str(value)
    elif isinstance(value, (bytes, bytearray)):
        text = value.decode("utf-8", "replace")
    else:
        text = _text(list(value) if isinstance(value, tuple) else value)
    if len(text) > MAX_METADATA_VALUE_CHARS:
        text = text[: MAX_METADATA_VALUE_CHARS - 1] + "…"
    return text


def _tags(attrs: Mapping[str, Any]) -> list[str]:
    tags: list[str] = []
    for key in (GALILEO_TAGS, OI_TAGS):
        value = attrs.get(key)
        if value is None:
            continue
        if isinstance(value, str):
            decoded = _json(value) if value.startswith("[") else None
            if isinstance(decoded, list):
                tags.extend(str(t) for t in decoded)
            else:
                tags.extend(t.strip() for t in value.split(",") if t.strip())
        elif isinstance(value, Sequence):
            tags.extend(str(t) for t in value)
    return tags


# --- messages -------------------------------------------------------------------------------------
def _tool_call(call_id: Any, name: Any, arguments: Any) -> dict[str, Any]:
    """A Galileo tool call. A call without an id gets one later (``_fill_call_ids``)."""
    call: dict[str, Any] = {"function": {"name": _text(name), "arguments": _text(arguments)}}
    if call_id is not None and call_id != "":
        call["id"] = _text(call_id)
    return call


def _fill_call_ids(messages: list[dict[str, Any]], span_hex: str | None, n: int = 0) -> int:
    """Give every tool call without an id a deterministic one: ``call_<span id>_<n>``.

    The official ``ToolCall.id`` is required; a message with a call missing it would be turned
    into a JSON string by the official models. ``n`` counts the span's calls in message order,
    inputs then outputs (pass the returned count on), so two calls never share an id.
    """
    for msg in messages:
        if "tool_calls" not in msg:  # (most messages: no call to look up)
            continue
        calls = msg["tool_calls"]
        if not calls:
            continue
        for call in calls:
            if "id" not in call:
                call["id"] = f"call_{span_hex or '0'}_{n}"
            n += 1
    return n


def _openai_tool_calls(value: Any) -> list[dict[str, Any]]:
    """OpenAI-shaped tool calls (``[{id, function: {name, arguments}}]``), JSON or decoded."""
    calls = _json(value)
    out: list[dict[str, Any]] = []
    if isinstance(calls, list):
        for call in calls:
            if isinstance(call, dict):
                fn = call["function"] if isinstance(call.get("function"), dict) else call
                out.append(_tool_call(call.get("id"), fn.get("name"), fn.get("arguments")))
    return out


def _message(role: str, content: str | list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": role, "content": content}
    for key, value in extra.items():
        if value:
            msg[key] = value
    return msg


# The official ingest models' media kinds (galileo_core ContentModality without "text").
_MODALITIES = frozenset({"image", "audio", "video", "document"})
_MIME_MODALITY = {"image": "image", "audio": "audio", "video": "video"}


def _modality(value: Any, mime: str | None) -> str:
    if isinstance(value, str) and value.lower() in _MODALITIES:
        return value.lower()
    if mime:
        return _MIME_MODALITY.get(mime.split("/", 1)[0].lower(), "document")
    return "document"


def _data_block(
    modality: Any, mime: Any, *, url: Any = None, data: Any = None
) -> dict[str, Any] | None:
    """An official ``DataContentBlock``: exactly one of ``url`` / ``base64``, plus the mime type.

    A ``data:`` URI is split into its base64 payload and mime type, like the official SDK does.
    """
    mime_type = mime if isinstance(mime, str) and mime else None
    if isinstance(data, (bytes, bytearray)):
        data = base64.b64encode(data).decode("ascii")
    if isinstance(data, str) and data:
        source = {"base64": data}
    elif isinstance(url, str) and url:
        source = {"url": url}
        if url.startswith("data:"):
            header, sep, payload = url.partition(",")
            if sep and header.endswith(";base64"):
                mime_type = header[5:-7] or mime_type
                source = {"base64": payload}
    else:
        return None
    block: dict[str, Any] = {"type": "data", "modality": _modality(modality, mime_type)}
    block.update(source)
    if mime_type:
        block["mime_type"] = mime_type
    return block


def _media_block(part: dict[str, Any]) -> dict[str, Any] | None:
    """A media part (GenAI ``blob``/``uri``; OpenAI ``image_url``/``input_audio``/``file``)."""
    kind = part.get("type")
    if kind == "blob":
        return _data_block(part.get("modality"), part.get("mime_type"), data=part.get("content"))
    if kind == "uri":
        return _data_block(part.get("modality"), part.get("mime_type"), url=part.get("uri"))
    if kind == "image_url":
        inner = part.get("image_url")
        return _data_block(
            "image", None, url=inner.get("url") if isinstance(inner, dict) else inner
        )
    if kind == "input_audio":
        inner = part.get("input_audio")
        if isinstance(inner, dict):
            fmt = inner.get("format")
            return _data_block("audio", f"audio/{fmt}" if fmt else None, data=inner.get("data"))
        return None
    if kind == "file":
        inner = part.get("file")
        if isinstance(inner, dict):
            return _data_block(None, None, url=inner.get("file_data"))
    return None


_MEDIA_KINDS = frozenset({"blob", "uri", "file", "image_url", "input_audio"})


def _content(parts: Sequence[Any]) -> str | list[dict[str, Any]]:
    """Content parts -> a string (text only, joined by newlines) or official content blocks.

    Text parts become text blocks and media parts data blocks when any media is present; a
    media part that names neither a URL nor data (a provider file id) leaves a short text.
    Reasoning and unknown parts are not conversation content. Text only (nearly every message)
    takes the first loop alone.
    """
    texts: list[str] = []
    for part in parts:
        if isinstance(part, dict):
            kind = part.get("type")
            if kind == "text" or kind is None:
                value = part["content"] if "content" in part else part.get("text")
                if value is not None:
                    texts.append(value if type(value) is str else _text(value))
            elif kind in _MEDIA_KINDS:
                return _content_blocks(parts)
        elif isinstance(part, str):
            texts.append(part)
    return "\n".join(texts)


def _content_blocks(parts: Sequence[Any]) -> str | list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    media = False
    for part in parts:
        if isinstance(part, str):
            blocks.append({"type": "text", "text": part})
            continue
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text" or kind is None:
            value = part["content"] if "content" in part else part.get("text")
            if value is None:
                continue
            text = _text(value)
        else:
            block = _media_block(part)
            if block is not None:
                blocks.append(block)
                media = True
                continue
            if kind not in _MEDIA_KINDS:
                continue
            label = part.get("modality") or part.get("mime_type") or kind
            ref = part.get("file_id") or part.get("uri") or ""
            text = f"[{label}{': ' + str(ref) if ref else ''}]"
        blocks.append({"type": "text", "text": text})
    if media:
        return blocks
    return "\n".join(b["text"] for b in blocks)


def _content_text(content: Any) -> str:
    """The text of a message's content (text blocks joined), for the trace's input/output."""
    if isinstance(content, list):
        return "\n".join(b["text"] for b in content if b.get("type") == "text" and b.get("text"))
    return str(content or "")


# Part types that are not a message's content (see _genai_messages).
# A tuple, not a set: a part's type may be any JSON value (a list is not hashable).
_NOT_CONTENT_PARTS = ("tool_call", "reasoning", "tool_call_response")


def _genai_messages(value: Any, default_role: str = "user") -> list[dict[str, Any]]:
    """GenAI structured messages (``[{role, parts: [...]}]``) -> Galileo messages."""
    items: Any = None
    if type(value) is str:  # _json's first try, inline (a JSON attribute, nearly always)
        try:
            items, end = _scan_once(value, 0)
            if end != len(value):
                items = _json(value)
        except (StopIteration, ValueError):
            items = _json(value)
    else:
        items = _json(value)
    out: list[dict[str, Any]] = []
    if not isinstance(items, list):
        return out
    for item in items:
        if not isinstance(item, dict):
            continue
        role = item.get("role")
        if type(role) is not str or role not in _ROLES:
            role = _role(role, default_role)
        parts = item.get("parts")
        if parts is None:  # OpenAI-shaped message ({role, content, tool_calls})
            content = item.get("content")
            out.append(
                _message(
                    role,
                    _content(content) if isinstance(content, list) else _text(content),
                    tool_calls=_openai_tool_calls(item.get("tool_calls")),
                    tool_call_id=(item.get("tool_call_id") or item.get("id"))
                    if role == "tool"
                    else None,
                )
            )
            continue
        if type(parts) is list and len(parts) == 1:
            # One text part (nearly every message): its text is the content.
            part = parts[0]
            if type(part) is dict:
                kind = part.get("type")
                if kind == "text" or kind is None:
                    value = part["content"] if "content" in part else part.get("text")
                    if value is None:
                        content = ""
                    else:
                        content = value if type(value) is str else _text(value)
                    out.append({"role": role, "content": content})  # _message(), no call
                    finish = item.get("finish_reason")
                    if finish:
                        out[-1]["_finish_reason"] = str(finish)
                    continue
        texts: list[str] = []
        media = False
        calls: list[dict[str, Any]] | None = None  # made when the first part needs one
        reasoning: list[str] | None = None
        responses = 0
        for part in parts if isinstance(parts, list) else ():
            if not isinstance(part, dict):
                continue
            kind = part.get("type")
            if kind == "text" or kind is None:  # nearly every part: no detour via _content
                value = part["content"] if "content" in part else part.get("text")
                if value is not None:
                    texts.append(value if type(value) is str else _text(value))
            elif kind == "tool_call":
                call = _tool_call(part.get("id"), part.get("name"), part.get("arguments"))
                if calls is None:
                    calls = [call]
                else:
                    calls.append(call)
            elif kind == "reasoning":  # the model's thinking: an llm step's event, not content
                value = part["content"] if "content" in part else part.get("text")
                if value:
                    if reasoning is None:
                        reasoning = []
                    reasoning.append(_text(value))
            elif kind == "tool_call_response":
                # One Galileo message per response: a message carries one tool_call_id.
                responses += 1
                # "response" in the conventions; Pydantic AI writes "result".
                response = part.get("response", part.get("result"))
                out.append(_message("tool", _text(response), tool_call_id=_text(part.get("id"))))
            elif not media and kind in _MEDIA_KINDS:
                media = True
        if media:
            # The content parts in order: every part but calls, thoughts and tool responses.
            content = _content_blocks(
                [
                    part
                    for part in parts
                    if isinstance(part, dict) and part.get("type") not in _NOT_CONTENT_PARTS
                ]
            )
        else:
            content = "\n".join(texts)
        # A message with nothing readable is kept (its turn happened: openai-v2 records an
        # image-only message with no parts), unless its tool responses already stand for it.
        if content or calls or not responses:
            msg: dict[str, Any] = {"role": role, "content": content}  # _message(), no call
            if calls:
                msg["tool_calls"] = calls
            if reasoning:
                msg["_reasoning"] = reasoning
            out.append(msg)
        finish = item.get("finish_reason")
        if finish and out:
            out[-1]["_finish_reason"] = str(finish)
    return out


def _system_message(value: Any) -> dict[str, Any] | None:
    parts = _json(value)
    if parts is None and isinstance(value, str) and value:
        parts = value  # plain text rather than the JSON list of parts
    if isinstance(parts, str):
        return _message("system", parts)
    if isinstance(parts, list):
        content = _content(parts)
        if content:
            return _message("system", content)
    return None


_OI_IN = "llm.input_messages."
_OI_OUT = "llm.output_messages."


def _oi_messages(attrs: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """OpenInference flattened messages (``llm.input_messages.N.message.role`` and friends).

    One pass over the attributes for both directions: an LLM span has dozens of them.
    """
    found: tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]]] = ({}, {})
    for key, value in attrs.items():
        if key.startswith(_OI_IN):
            by_index = found[0]
            tail = key[19:]
        elif key.startswith(_OI_OUT):
            by_index = found[1]
            tail = key[20:]
        else:
            continue
        index, _, rest = tail.partition(".message.")
        if not index.isdecimal():
            continue
        msg = by_index.setdefault(int(index), {})
        if rest in ("role", "content", "name", "tool_call_id"):
            msg[rest] = value
        elif rest.startswith("tool_calls."):
            k, _, field = rest[11:].partition(".tool_call.")
            if k.isdecimal():
                msg.setdefault("calls", {}).setdefault(int(k), {})[field] = value
        elif rest.startswith("contents."):
            j, _, field = rest[9:].partition(".message_content.")
            if j.isdecimal():
                if field == "text":
                    msg.setdefault("parts", {})[int(j)] = {"type": "text", "text": _text(value)}
                elif field == "image.image.url":
                    msg.setdefault("parts", {})[int(j)] = {"type": "image_url", "image_url": value}
        elif rest == "function_call_name":
            msg.setdefault("calls", {}).setdefault(0, {})["function.name"] = value
        elif rest == "function_call_arguments_json":
            msg.setdefault("calls", {}).setdefault(0, {})["function.arguments"] = value
    return _oi_build(found[0], "user"), _oi_build(found[1], "assistant")


def _oi_build(by_index: dict[int, dict[str, Any]], default_role: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in sorted(by_index):
        msg = by_index[i]
        content: Any = msg.get("content")
        if content is None and "parts" in msg:
            content = _content([msg["parts"][j] for j in sorted(msg["parts"])])
        calls = [
            _tool_call(c.get("id"), c.get("function.name"), c.get("function.arguments"))
            for _, c in sorted(msg.get("calls", {}).items())
        ]
        out.append(
            _message(
                _role(msg.get("role"), default_role),
                content if isinstance(content, list) else _text(content),
                tool_calls=calls,
                tool_call_id=_text(msg["tool_call_id"]) if "tool_call_id" in msg else None,
            )
        )
    return out


def _flat_messages(
    attrs: Mapping[str, Any], prefix: str, default_role: str
) -> list[dict[str, Any]]:
    """OpenLLMetry flattened messages: ``gen_ai.prompt.N.role`` / ``.content`` / ``.tool_calls``."""
    by_index: dict[int, dict[str, Any]] = {}
    n = len(prefix)
    for key, value in attrs.items():
        if key.startswith(prefix):
            index, _, field = key[n:].partition(".")
            if index.isdecimal():
                by_index.setdefault(int(index), {})[field] = value
    out = []
    for i in sorted(by_index):
        m = by_index[i]
        calls: dict[int, dict[str, Any]] = {}
        for field, value in m.items():
            if field.startswith("tool_calls."):  # tool_calls.N.id / .name / .arguments
                k, _, name = field[11:].partition(".")
                if k.isdecimal():
                    calls.setdefault(int(k), {})[name] = value
        out.append(
            _message(
                _role(m.get("role"), default_role),
                _text(m.get("content")),
                tool_calls=[
                    _tool_call(c.get("id"), c.get("name"), c.get("arguments"))
                    for _, c in sorted(calls.items())
                ],
                tool_call_id=m.get("tool_call_id"),
            )
        )
    return out


def _event_messages(span: ReadableSpan) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Messages carried by span events: the older GenAI message events and the details event."""
    return _messages_of_events((event.name, event.attributes or {}) for event in span_events(span))


def _event_dicts(value: Any) -> Iterable[tuple[Any, Mapping[str, Any]]]:
    """Message events written as one JSON attribute, each a dict with its ``event.name``.

    Pydantic AI's first instrumentation format: ``events`` on a model request,
    ``all_messages_events`` on an agent run.
    """
    items = _json(value)
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict):
                yield item.get("event.name"), item


def _messages_of_events(
    events: Iterable[tuple[Any, Mapping[str, Any]]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    inputs: list[dict[str, Any]] = []
    outputs: list[dict[str, Any]] = []
    for name, attrs in events:
        role = _EVENT_ROLES.get(name)
        if role is not None or name == "gen_ai.choice":
            body = _json(attrs.get(GEN_AI_EVENT_CONTENT))
            fields: Mapping[str, Any] = body if isinstance(body, dict) else attrs
            if name == "gen_ai.choice":
                message = _json(fields.get("message"))
                if not isinstance(message, dict):
                    message = {
                        "role": fields.get("message.role"),
                        "content": fields.get("message.content"),
                        "tool_calls": fields.get("message.tool_calls") or fields.get("tool_calls"),
                    }
                content = message.get("content")
                msg = _message(
                    _role(message.get("role"), "assistant"),
                    _content(content) if isinstance(content, list) else _text(content),
                    tool_calls=_openai_tool_calls(message.get("tool_calls")),
                )
                if fields.get("finish_reason"):
                    msg["_finish_reason"] = str(fields["finish_reason"])
                outputs.append(msg)
            else:
                assert role is not None
                content = fields.get("content")
                inputs.append(
                    _message(
                        _role(fields.get("role"), role),
                        _content(content) if isinstance(content, list) else _text(content),
                        tool_calls=_openai_tool_calls(fields.get("tool_calls")),
                        tool_call_id=(fields.get("id") or fields.get("tool_call_id"))
                        if role == "tool"
                        else None,
                    )
                )
        elif name == _INFERENCE_DETAILS_EVENT:
            system = _system_message(attrs.get(GEN_AI_SYSTEM_INSTRUCTIONS))
            if system is not None:
                inputs.append(system)
            inputs.extend(_genai_messages(attrs.get(GEN_AI_INPUT_MESSAGES)))
            outputs.extend(_genai_messages(attrs.get(GEN_AI_OUTPUT_MESSAGES), "assistant"))
        elif name == "gen_ai.content.prompt":
            inputs.extend(_genai_messages(attrs.get(GEN_AI_PROMPT)))
        elif name == "gen_ai.content.completion":
            outputs.extend(_genai_messages(attrs.get(GEN_AI_COMPLETION), "assistant"))
    return inputs, outputs


# --- steps ----------------------------------------------------------------------------------------
def _kind(attrs: Mapping[str, Any]) -> str:
    op = attrs.get(GEN_AI_OPERATION_NAME)
    if op is not None:
        if op in _LLM_OPERATIONS:
            return "llm"
        if op == "execute_tool":
            return "tool"
        if op in _AGENT_OPERATIONS:
            return "agent"
        if op == "retrieval":
            return "retriever"
        return "workflow"
    oi = attrs.get(OI_SPAN_KIND)
    if oi is not None:
        return _OI_KINDS.get(str(oi).upper(), "workflow")
    # Older GenAI instrumentations (and OpenLLMetry) name the model but not the operation.
    if GEN_AI_REQUEST_MODEL in attrs and (
        "gen_ai.system" in attrs or "gen_ai.provider.name" in attrs
    ):
        return "llm"
    # Pydantic AI before its instrumentation version 3: "agent run" and "running tool" spans.
    if (
        PYDANTIC_ALL_MESSAGES in attrs
        or PYDANTIC_ALL_MESSAGES_EVENTS in attrs
        or PYDANTIC_FINAL_RESULT in attrs
    ):
        return "agent"
    if GEN_AI_TOOL_NAME in attrs:
        return "tool"
    return "workflow"


def _status_code(attrs: Mapping[str, Any], error: bool) -> int:
    if not error:
        return 200
    http = _int(attrs.get(HTTP_RESPONSE_STATUS_CODE, attrs.get(HTTP_STATUS_CODE)))
    return http if http is not None and 400 <= http <= 599 else 500


# What an attribute name is, as bit flags: copied to user_metadata, or read by one of the
# steps that are skipped for a span without any such name (most spans carry no tokens, tags
# or dataset fields). The metadata loop sees every name anyway, so it collects the flags.
_K_META = 1
_K_TOKENS = 2
_K_TAGS = 4
_K_DATASET = 8
_K_TOOLS = 16
_K_MESSAGES = 32  # a source of llm messages other than events
_K_ERROR = 64  # error.type: the span failed even without an ERROR status
_K_FRAMEWORK_META = 128  # a framework's serialized metadata, cut by _framework_metadata
_K_AGENT_RUN = 256  # Pydantic AI's agent run attributes
_K_TOKEN_DETAILS = 512  # cache and reasoning token counts
_K_USER = 1024  # user.id / enduser.id: the trace's user
_K_OLD_TOOL = 2048  # Pydantic AI's tool_arguments / tool_response
_K_EVENTS_ATTR = 4096  # Pydantic AI's first format: message events as one JSON attribute
_K_LLM_EXTRA = 8192  # an llm step's finish reason, temperature or time to first token
_K_IO = 16384  # input.value / output.value
_K_TOOL_CALL = 32768  # a tool call's arguments, id or result
_K_AGENT_NAME = 65536  # an agent's name
_K_ALL = -1
_FLAGGED = {
    GEN_AI_USAGE_INPUT_TOKENS: _K_TOKENS,
    GEN_AI_USAGE_OUTPUT_TOKENS: _K_TOKENS,
    GEN_AI_USAGE_PROMPT_TOKENS: _K_TOKENS,
    GEN_AI_USAGE_COMPLETION_TOKENS: _K_TOKENS,
    LLM_TOKEN_PROMPT: _K_TOKENS,
    LLM_TOKEN_COMPLETION: _K_TOKENS,
    LLM_TOKEN_TOTAL: _K_TOKENS,
    GEN_AI_USAGE_CACHE_READ: _K_TOKENS | _K_TOKEN_DETAILS,
    GEN_AI_USAGE_CACHE_CREATION: _K_TOKENS | _K_TOKEN_DETAILS,
    GEN_AI_USAGE_REASONING: _K_TOKENS | _K_TOKEN_DETAILS,
    LLM_TOKEN_CACHE_READ: _K_TOKENS | _K_TOKEN_DETAILS,
    LLM_TOKEN_CACHE_WRITE: _K_TOKENS | _K_TOKEN_DETAILS,
    LLM_TOKEN_REASONING: _K_TOKENS | _K_TOKEN_DETAILS,
    GEN_AI_AGG_INPUT_TOKENS: _K_TOKENS,
    GEN_AI_AGG_OUTPUT_TOKENS: _K_TOKENS,
    ERROR_TYPE: _K_ERROR | _K_META,
    USER_ID: _K_USER,
    ENDUSER_ID: _K_USER,
    PYDANTIC_TOOL_ARGUMENTS: _K_OLD_TOOL,
    PYDANTIC_TOOL_RESPONSE: _K_OLD_TOOL,
    OI_METADATA: _K_FRAMEWORK_META,
    PYDANTIC_ALL_MESSAGES: _K_AGENT_RUN,
    PYDANTIC_ALL_MESSAGES_EVENTS: _K_AGENT_RUN,
    PYDANTIC_EVENTS: _K_EVENTS_ATTR | _K_MESSAGES,
    PYDANTIC_FINAL_RESULT: _K_AGENT_RUN,
    GALILEO_TAGS: _K_TAGS,
    OI_TAGS: _K_TAGS,
    GALILEO_DATASET_INPUT: _K_DATASET,
    GALILEO_DATASET_OUTPUT: _K_DATASET,
    GALILEO_DATASET_METADATA: _K_DATASET,
    GEN_AI_INPUT_MESSAGES: _K_MESSAGES,
    GEN_AI_OUTPUT_MESSAGES: _K_MESSAGES,
    GEN_AI_SYSTEM_INSTRUCTIONS: _K_MESSAGES,
    GEN_AI_RESPONSE_FINISH_REASONS: _K_LLM_EXTRA,
    LLM_FINISH_REASON: _K_LLM_EXTRA,
    GEN_AI_REQUEST_TEMPERATURE: _K_LLM_EXTRA,
    LLM_INVOCATION_PARAMETERS: _K_LLM_EXTRA,
    GEN_AI_RESPONSE_TTFC: _K_LLM_EXTRA,
    OI_SPAN_KIND: _K_MESSAGES,
    "gen_ai.prompt.0.content": _K_MESSAGES,
    "gen_ai.completion.0.content": _K_MESSAGES,
    INPUT_VALUE: _K_IO,
    OUTPUT_VALUE: _K_IO,
    GEN_AI_TOOL_CALL_ARGUMENTS: _K_TOOL_CALL,
    GEN_AI_TOOL_CALL_ID: _K_TOOL_CALL,
    TOOL_CALL_ID: _K_TOOL_CALL,
    GEN_AI_TOOL_CALL_RESULT: _K_TOOL_CALL,
    GEN_AI_AGENT_NAME: _K_AGENT_NAME,
    AGENT_NAME: _K_AGENT_NAME,
    PYDANTIC_AGENT_NAME: _K_AGENT_NAME,
}

# key -> its flags; attribute names repeat span after span, so the prefix tests run once per
# name (bounded: a flood of unique names just stops being cached).
_METADATA_KEY: dict[str, int] = {}
_METADATA_KEY_CACHE_MAX = 8192


def _key_flags(key: str) -> int:
    copied = not (key in _CONSUMED or key == OI_METADATA or key.startswith(_CONSUMED_PREFIXES))
    if key in _ROUTING:
        # Runs once per attribute name (the answer is cached), so this is not per span.
        _warn_once(
            "routing",
            "galileo-otel: span attribute %s is not used for routing; every trace goes to the "
            "configured project and log stream (GALILEO_PROJECT, GALILEO_LOG_STREAM). The value "
            "is kept in user_metadata.",
            key,
        )
    flags = (_K_META if copied else 0) | _FLAGGED.get(key, 0)
    if key == GEN_AI_TOOL_DEFINITIONS or key.startswith("llm.tools."):
        flags |= _K_TOOLS
    if len(_METADATA_KEY) < _METADATA_KEY_CACHE_MAX:
        _METADATA_KEY[key] = flags
    return flags


# The names an llm step's model is read from, first found first (see _model).
_MODEL_KEYS = (GEN_AI_RESPONSE_MODEL, GEN_AI_REQUEST_MODEL, LLM_MODEL_NAME, EMBEDDING_MODEL_NAME)

# Attribute names (in the span's order) -> (their flags, the names copied to user_metadata, or
# None when there are more of them than MAX_METADATA_ENTRIES, the _MODEL_KEYS among them).
# Bounded like _METADATA_KEY: past the bound each new shape is worked out and not kept.
_Shape = tuple[int, tuple[str, ...] | None, tuple[str, ...]]
_SHAPES: dict[tuple[str, ...], _Shape] = {}
_SHAPES_MAX = 4096


def _shape(names: tuple[str, ...]) -> _Shape:
    """The flags (``_K_*``), metadata names and model names of one tuple of attribute names."""
    flags = 0
    copied: list[str] = []
    known = _METADATA_KEY
    for key in names:
        key_flags = known.get(key)
        if key_flags is None:
            key_flags = _key_flags(key)
        flags |= key_flags
        if key_flags & _K_META:
            copied.append(key)
    shape = (
        flags,
        tuple(copied) if len(copied) <= MAX_METADATA_ENTRIES else None,
        tuple(key for key in _MODEL_KEYS if key in names),
    )
    if len(_SHAPES) < _SHAPES_MAX:
        _SHAPES[names] = shape
    return shape


def _metadata(span: ReadableSpan, attrs: Mapping[str, Any]) -> tuple[dict[str, str], int]:
    """The step's ``user_metadata``, and the flags of every attribute name (``_K_*``)."""
    meta: dict[str, str] = {}
    dropped = 0
    every = 0
    known = _METADATA_KEY
    for key, value in attrs.items():
        flags = known.get(key)
        if flags is None:
            flags = _key_flags(key)
        every |= flags
        if not flags & _K_META:
            continue
        if len(meta) >= MAX_METADATA_ENTRIES:
            dropped += 1
            continue
        if type(value) is str and len(value) <= MAX_METADATA_VALUE_CHARS:
            meta[key] = value
        else:
            meta[key] = _meta_value(value)
    if dropped:
        meta["otel.dropped_attributes"] = str(dropped)
    return meta, every


def _exception_event(events: Sequence[Any]) -> Any:
    """The first ``exception`` event, or None (most spans have no events at all)."""
    for event in events:
        if event.name == "exception":
            return event
    return None


def _error_metadata(span: ReadableSpan, meta: dict[str, str]) -> None:
    """The error text of a failed span: its status description, its exception's type and message.

    (``error.type`` is an attribute, copied like any other.)
    """
    if span.status.description:
        meta["otel.status_description"] = _meta_value(span.status.description)
    event = _exception_event(span_events(span))
    if event is not None:
        ev = event.attributes or {}
        for key in ("exception.type", "exception.message"):
            if key in ev:
                meta[key] = _meta_value(ev[key])


# Keys of a framework's serialized metadata (OpenInference's ``metadata`` attribute: LangChain
# and LangGraph run metadata; Pydantic AI's run metadata) that are the framework's own wiring.
_FRAMEWORK_META_DROP_PREFIXES = ("langgraph_", "checkpoint_", "__pregel", "__")
_FRAMEWORK_META_MAX_KEYS = 16


def _framework_metadata(value: Any, meta: dict[str, str]) -> None:
    """Cut a framework's serialized metadata into ``metadata.<key>`` entries.

    A JSON object gives one entry per key, without LangGraph's wiring (``langgraph_*``,
    ``checkpoint_*``, ``__pregel*`` and other ``__`` keys) and at most 16 of them; anything
    else is kept whole as ``metadata`` (cut like every value).
    """
    decoded = _json(value)
    if not isinstance(decoded, dict):
        if value is not None and value != "":
            meta[OI_METADATA] = _meta_value(value)
        return
    kept = 0
    for key, item in decoded.items():
        key = str(key)
        if key.startswith(_FRAMEWORK_META_DROP_PREFIXES) or item is None:
            continue
        if kept >= _FRAMEWORK_META_MAX_KEYS:
            break
        meta[f"metadata.{key}"] = _meta_value(item)
        kept += 1


def _documents(value: Any) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    items = _json(value)
    if not isinstance(items, list):
        return docs
    for item in items:
        if isinstance(item, dict):
            meta = _doc_metadata(item.get("metadata"))
            for key in ("id", "score"):
                if item.get(key) is not None:
                    meta[key] = _scalar(item[key])
            docs.append({"content": _text(item.get("content", item.get("text"))), "metadata": meta})
        else:
            docs.append({"content": _text(item), "metadata": {}})
    return docs


def _finite(value: Any) -> float | None:
    """A real, finite number as float (JSON has no NaN or Infinity), else None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
        if math.isfinite(number):
            return number
    return None


def _scalar(value: Any) -> str | int | float | bool:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value if isinstance(value, (str, int, float, bool)) else _text(value)


def _doc_metadata(value: Any) -> dict[str, Any]:
    meta = _json(value)
    if not isinstance(meta, dict):
        return {}
    return {str(k): _scalar(v) for k, v in meta.items() if v is not None}


def _oi_documents(attrs: Mapping[str, Any], prefix: str) -> list[dict[str, Any]]:
    """OpenInference flattened documents: ``retrieval.documents.N.document.content`` etc."""
    by_index: dict[int, dict[str, Any]] = {}
    n = len(prefix)
    for key, value in attrs.items():
        if key.startswith(prefix):
            index, _, field = key[n:].partition(".document.")
            if index.isdecimal():
                by_index.setdefault(int(index), {})[field] = value
    docs = []
    for i in sorted(by_index):
        d = by_index[i]
        meta = _doc_metadata(d.get("metadata"))
        for key in ("id", "score"):
            if d.get(key) is not None:
                meta[key] = _scalar(d[key])
        docs.append({"content": _text(d.get("content")), "metadata": meta})
    return docs


def _model(attrs: Mapping[str, Any], keys: tuple[str, ...] = _MODEL_KEYS) -> Any:
    """An llm step's model: the first of ``_MODEL_KEYS`` with a value, else None.

    ``keys``: those of ``_MODEL_KEYS`` the span has, in order (its shape's), so absent names
    are not looked up. As ``a or b or c or d``: with none truthy, the last name's value.
    """
    for key in keys:
        value = attrs.get(key)
        if value:
            return value
    return attrs.get(EMBEDDING_MODEL_NAME) if keys else None


def _strip_private(
    inputs: list[dict[str, Any]], outputs: list[dict[str, Any]], *, keep_outputs: bool
) -> bool:
    """Drop the message readers' private keys; True when any message has tool calls.

    The readers leave ``_finish_reason`` and ``_reasoning`` on a message for the step's own
    fields; no message is sent with them. ``keep_outputs`` leaves them on the outputs, for a
    caller that reads them into the step and drops them itself (the llm step). The answer says
    whether ``_fill_call_ids`` has anything to do (most spans: no tool call).
    """
    calls = False
    for msg in inputs:
        if "_finish_reason" in msg:
            del msg["_finish_reason"]
        if "_reasoning" in msg:
            del msg["_reasoning"]
        if "tool_calls" in msg:
            calls = True
    for msg in outputs:
        if "tool_calls" in msg:
            calls = True
        if keep_outputs:
            continue
        if "_finish_reason" in msg:
            del msg["_finish_reason"]
        if "_reasoning" in msg:
            del msg["_reasoning"]
    return calls


def _llm_fields(
    span: ReadableSpan,
    attrs: Mapping[str, Any],
    step: dict[str, Any],
    flags: int = _K_ALL,
    events: Sequence[Any] | None = None,
    model_keys: tuple[str, ...] = _MODEL_KEYS,
) -> None:
    # Input messages: structured GenAI attributes, then OpenInference, then OpenLLMetry, then
    # message events; the first source that has any wins.
    inputs: list[dict[str, Any]] = []
    outputs: list[dict[str, Any]] = []
    if not flags & _K_MESSAGES:
        pass  # none of the attribute sources below: only events may carry messages
    elif GEN_AI_INPUT_MESSAGES in attrs or GEN_AI_OUTPUT_MESSAGES in attrs:
        instructions = attrs.get(GEN_AI_SYSTEM_INSTRUCTIONS)
        if instructions is not None:  # (_system_message(None) is None)
            system = _system_message(instructions)
            if system is not None:
                inputs.append(system)
        inputs.extend(_genai_messages(attrs.get(GEN_AI_INPUT_MESSAGES)))
        outputs = _genai_messages(attrs.get(GEN_AI_OUTPUT_MESSAGES), "assistant")
    elif OI_SPAN_KIND in attrs:
        if str(attrs[OI_SPAN_KIND]).upper() == "EMBEDDING":
            texts = _indexed(attrs, "embedding.embeddings.", ".embedding.text")
            inputs = [_message("user", _text(text)) for text in texts]
        else:
            inputs, outputs = _oi_messages(attrs)
        if not inputs and INPUT_VALUE in attrs:
            inputs = [_message("user", _text(attrs[INPUT_VALUE]))]
        if not outputs and OUTPUT_VALUE in attrs and str(attrs[OI_SPAN_KIND]).upper() == "LLM":
            # JSON read by its mime type: an OpenAI Responses object (what the Agents SDK
            # records for a streamed generation), a message or messages; else the text.
            answer = _io_value(
                attrs[OUTPUT_VALUE], attrs.get(OUTPUT_MIME_TYPE), True, step["external_id"]
            )
            outputs = [answer if isinstance(answer, dict) else _message("assistant", _text(answer))]
    elif "gen_ai.prompt.0.content" in attrs or "gen_ai.completion.0.content" in attrs:
        inputs = _flat_messages(attrs, "gen_ai.prompt.", "user")
        outputs = _flat_messages(attrs, "gen_ai.completion.", "assistant")
    if events is None:
        events = span_events(span)
    if not inputs and not outputs and flags & _K_EVENTS_ATTR and PYDANTIC_EVENTS in attrs:
        inputs, outputs = _messages_of_events(_event_dicts(attrs[PYDANTIC_EVENTS]))
    if not inputs and not outputs and events:
        inputs, outputs = _event_messages(span)
    elif flags & _K_MESSAGES and GEN_AI_SYSTEM_INSTRUCTIONS in attrs and not inputs:
        system = _system_message(attrs[GEN_AI_SYSTEM_INSTRUCTIONS])
        inputs = [system] if system else []

    # The attributes read below only when the span has one of them (most spans have none).
    extra = flags & _K_LLM_EXTRA
    finish = None
    reasons = attrs.get(GEN_AI_RESPONSE_FINISH_REASONS) if extra else None
    if isinstance(reasons, str):
        finish = reasons
    elif reasons is not None and isinstance(reasons, Sequence) and reasons:
        finish = str(reasons[0])
    output = outputs[0] if outputs else None
    # The outputs keep their private keys for the finish reason and reasoning read here.
    calls = _strip_private(inputs, outputs, keep_outputs=True)
    for msg in outputs:
        reason = msg.pop("_finish_reason", None)
        if finish is None and reason:
            finish = reason
        thoughts = msg.pop("_reasoning", None)
        if thoughts:
            step.setdefault("events", []).extend(
                {"type": "reasoning", "content": text} for text in thoughts
            )
    if finish is None and extra and attrs.get(LLM_FINISH_REASON) is not None:
        finish = str(attrs[LLM_FINISH_REASON])

    if calls:
        _fill_call_ids(outputs, step["external_id"], _fill_call_ids(inputs, step["external_id"]))
    step["input"] = inputs
    # The schema's llm output is a message, never null: an empty answer reads as one.
    step["output"] = output if output is not None else {"role": "assistant", "content": ""}
    model = _model(attrs, model_keys)
    if model is not None:
        step["model"] = str(model)
    if extra:
        temperature = attrs.get(GEN_AI_REQUEST_TEMPERATURE)
        if temperature is None and LLM_INVOCATION_PARAMETERS in attrs:
            params = _json(attrs[LLM_INVOCATION_PARAMETERS])
            if isinstance(params, dict):
                temperature = params.get("temperature")
        if temperature is not None:
            temperature = _finite(temperature)
            if temperature is not None:
                step["temperature"] = temperature
    if finish is not None:
        step["finish_reason"] = finish
    if flags & _K_TOOLS:
        tools = _tools(attrs)
        if tools:
            step["tools"] = tools

    metrics = step["metrics"]
    ttfc = attrs.get(GEN_AI_RESPONSE_TTFC) if extra else None
    if ttfc is not None:
        ttfc = _finite(ttfc)
    if ttfc is not None:
        metrics["time_to_first_token_ns"] = int(ttfc * 1e9)
    elif events and span.start_time is not None:
        for event in events:
            if event.name == _OI_FIRST_TOKEN_EVENT:
                metrics["time_to_first_token_ns"] = event.timestamp - span.start_time
                break


def _indexed(attrs: Mapping[str, Any], prefix: str, suffix: str) -> list[Any]:
    """Values of ``<prefix>N<suffix>`` attributes in N order."""
    found: list[tuple[int, Any]] = []
    n = len(prefix)
    for key, value in attrs.items():
        if key.startswith(prefix) and key.endswith(suffix):
            index = key[n : len(key) - len(suffix)]
            if index.isdecimal():
                found.append((int(index), value))
    found.sort(key=lambda pair: pair[0])
    return [value for _, value in found]


_TOOL_FUNCTION_FIELDS = ("name", "description", "parameters", "strict")


def _tool_definition(tool: dict[str, Any]) -> dict[str, Any]:
    """A tool definition in the nested OpenAI shape the official SDK sends.

    GenAI's ``gen_ai.tool.definitions`` are flat (``{type, name, description, parameters}``);
    ``{type: "function", function: {name, description, parameters}}`` is what Galileo reads.
    """
    if isinstance(tool.get("function"), dict) or "name" not in tool:
        return tool
    nested: dict[str, Any] = {"type": tool.get("type") or "function"}
    nested["function"] = {k: tool[k] for k in _TOOL_FUNCTION_FIELDS if k in tool}
    for key, value in tool.items():  # anything else rides along at the top
        if key not in _TOOL_FUNCTION_FIELDS and key != "type":
            nested[key] = value
    return nested


def _tools(attrs: Mapping[str, Any]) -> list[dict[str, Any]]:
    definitions = attrs.get(GEN_AI_TOOL_DEFINITIONS)
    if definitions is not None:
        decoded = _json(definitions)
        if isinstance(decoded, list):
            return [_tool_definition(t) for t in decoded if isinstance(t, dict)]
    tools = []
    index = 0
    while True:  # llm.tools.N.tool.json_schema, dense from 0
        schema = attrs.get(f"llm.tools.{index}.tool.json_schema")
        if schema is None:
            break
        decoded = _json(schema)
        if isinstance(decoded, dict):
            tools.append(_tool_definition(decoded))
        index += 1
    return tools


def _token_metrics(
    attrs: Mapping[str, Any], metrics: dict[str, Any], details: int = _K_TOKEN_DETAILS
) -> None:
    tokens_in = attrs.get(GEN_AI_USAGE_INPUT_TOKENS)
    if not details and type(tokens_in) is int and LLM_TOKEN_TOTAL not in attrs:
        # The GenAI conventions' pair, as ints (most llm spans): what the general path below
        # makes of them, without its lookups of the other conventions' names.
        tokens_out = attrs.get(GEN_AI_USAGE_OUTPUT_TOKENS)
        if type(tokens_out) is int:
            metrics["num_input_tokens"] = tokens_in
            metrics["num_output_tokens"] = tokens_out
            metrics["num_total_tokens"] = tokens_in + tokens_out
            return
    if tokens_in is None:
        tokens_in = attrs.get(LLM_TOKEN_PROMPT, attrs.get(GEN_AI_USAGE_PROMPT_TOKENS))
        if tokens_in is None:  # Pydantic AI's agent run: the run's total
            tokens_in = attrs.get(GEN_AI_AGG_INPUT_TOKENS)
    tokens_out = attrs.get(GEN_AI_USAGE_OUTPUT_TOKENS)
    if tokens_out is None:
        tokens_out = attrs.get(LLM_TOKEN_COMPLETION, attrs.get(GEN_AI_USAGE_COMPLETION_TOKENS))
        if tokens_out is None:
            tokens_out = attrs.get(GEN_AI_AGG_OUTPUT_TOKENS)
    total = attrs.get(LLM_TOKEN_TOTAL)
    for name, first, second in _TOKEN_DETAILS if details else ():
        value = attrs.get(first)
        if value is None:
            value = attrs.get(second)
        if value is not None:
            value = _int(value)
            if value is not None:
                metrics[name] = value
    if tokens_in is None and tokens_out is None and total is None:
        return
    tokens_in, tokens_out, total = _int(tokens_in), _int(tokens_out), _int(total)
    if tokens_in is not None:
        metrics["num_input_tokens"] = tokens_in
    if tokens_out is not None:
        metrics["num_output_tokens"] = tokens_out
    if total is None and tokens_in is not None:
        total = tokens_in + (tokens_out or 0)
    if total is not None:
        metrics["num_total_tokens"] = total


# Token details as extra metrics (the official metrics models take extra fields): the metric,
# then the GenAI attribute and the OpenInference one it is read from.
_TOKEN_DETAILS = (
    ("num_cached_input_tokens", GEN_AI_USAGE_CACHE_READ, LLM_TOKEN_CACHE_READ),
    ("num_cache_write_input_tokens", GEN_AI_USAGE_CACHE_CREATION, LLM_TOKEN_CACHE_WRITE),
    ("num_reasoning_tokens", GEN_AI_USAGE_REASONING, LLM_TOKEN_REASONING),
)


def _first_text(messages: Iterable[dict[str, Any]], role: str) -> str | None:
    for msg in messages:
        if msg.get("role") == role and msg.get("content"):
            content = msg["content"]
            return content if type(content) is str else (_content_text(content) or None)
    return None


def _last_text(messages: Sequence[dict[str, Any]], role: str) -> str | None:
    """The text of the last message of ``role`` that has any.

    For a turn's own question: a chat app resends its history every turn, so the first user
    message is the first turn's.
    """
    for index in range(len(messages) - 1, -1, -1):
        msg = messages[index]
        if msg.get("role") == role and msg.get("content"):
            content = msg["content"]
            text = content if type(content) is str else _content_text(content)
            if text:
                return text
    return None


def _dataset_fields(attrs: Mapping[str, Any], step: dict[str, Any]) -> None:
    """``galileo.dataset.*`` (set by the official SDK's span processor) -> the dataset fields."""
    value = attrs.get(GALILEO_DATASET_INPUT)
    if value is not None:
        step["dataset_input"] = _text(value)
    value = attrs.get(GALILEO_DATASET_OUTPUT)
    if value is not None:
        step["dataset_output"] = _text(value)
    value = attrs.get(GALILEO_DATASET_METADATA)
    if value is not None:
        decoded = _json(value)  # the official processor writes a JSON object
        if isinstance(decoded, dict):
            step["dataset_metadata"] = {
                str(k): _meta_value(v) for k, v in decoded.items() if v is not None
            }
        else:
            step["dataset_metadata"] = {"value": _meta_value(value)}


def convert_span(span: ReadableSpan, trace_id: str) -> dict[str, Any]:
    """One OTel span -> one Galileo step dict (no children, ``parent_id`` and ``step_number``).

    Args:
        span: An ended span.
        trace_id: The Galileo id of the trace the step belongs to (set as the step's ``trace_id``).

    Returns:
        A plain dict shaped like LlmSpan, ToolSpan, RetrieverSpan, AgentSpan or WorkflowSpan.
    """
    ctx = span.context
    step = _convert_span(span, trace_id, _id_tail(ctx.trace_id) if ctx is not None else "", ctx)
    step.pop("_user", None)  # the trace's, not the step's
    return step


def _trace_ids(trace_id: int) -> tuple[str, str, str]:
    """``(external_id, trace_uuid, _id_tail)`` of a trace, from one formatting of its id."""
    if type(trace_id) is not int or not 0 <= trace_id <= _MASK128:
        return f"{trace_id:032x}", trace_uuid(trace_id), _id_tail(trace_id)
    h = trace_id.to_bytes(16, "big").hex()  # f"{trace_id:032x}", without a format spec
    # The uuid4 bits: version 4 in hex digit 12, variant 0b10 in the top of digit 16.
    low = f"{'89ab'[int(h[16], 16) & 0x3]}{h[17:20]}-{h[20:]}"
    return h, f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{low}", low


def _id_tail(trace_id: int) -> str:
    """The last two groups of every step id of a trace: ``span_uuid``'s low half, as text."""
    low = f"{((trace_id & _MASK64) & ~(0x3 << 62)) | (0x2 << 62):016x}"
    return f"{low[:4]}-{low[4:]}"


_ERROR = StatusCode.ERROR
_OP_KINDS = {
    **dict.fromkeys(_LLM_OPERATIONS, "llm"),
    **dict.fromkeys(_AGENT_OPERATIONS, "agent"),
    "execute_tool": "tool",
    "retrieval": "retriever",
}


def _convert_span(span: ReadableSpan, trace_id: str, tail: str, ctx: Any) -> dict[str, Any]:
    """``convert_span`` with what the trace's loop already has: the id tail and the context.

    ``tail`` is ``_id_tail`` of the span's trace (made once a trace); ``ctx`` the span's context.
    """
    attrs = span_attributes(span)
    op = attrs.get(GEN_AI_OPERATION_NAME)
    if op is not None and type(op) is str:
        kind = _OP_KINDS.get(op, "workflow")
    else:
        kind = _kind(attrs)
    start = span.start_time or 0
    end = span.end_time or start
    error = span.status.status_code is _ERROR
    external_id: str | None = None
    step_id: str | None = None
    if ctx is not None:
        span_id = ctx.span_id
        if type(span_id) is int and 0 <= span_id <= _MASK64:
            # f"{span_id:016x}" without the format spec's cost (a third of it).
            external_id = span_id.to_bytes(8, "big").hex()
            # span_uuid without the big-int work: the version nibble is hex digit 12.
            step_id = f"{external_id[:8]}-{external_id[8:12]}-4{external_id[13:]}-{tail}"
        else:
            external_id = f"{span_id:016x}"
            step_id = span_uuid(ctx.trace_id, span_id)
    # The flags and metadata names of this span's attribute names, looked up by the names
    # (an instrumentation sets the same names span after span), else worked out (_shape).
    names = tuple(attrs)
    shape = _SHAPES.get(names)
    if shape is None:
        shape = _shape(names)
    flags, meta_names, model_keys = shape
    if meta_names is None:  # more names than metadata holds: cut and counted
        meta, flags = _metadata(span, attrs)
    else:
        meta = {}
        for key in meta_names:
            value = attrs[key]
            if type(value) is str and len(value) <= MAX_METADATA_VALUE_CHARS:
                meta[key] = value
            else:
                meta[key] = _meta_value(value)
    if flags & _K_FRAMEWORK_META:
        _framework_metadata(attrs[OI_METADATA], meta)
    # A failed step: ERROR status, an exception event, or error.type (the GenAI conventions'
    # error signal, set by instrumentations that leave the status alone).
    # A rebuilt span (record.py) has no SDK container (``_events`` None): its events as they are.
    events = span.events if getattr(span, "_events", None) is None else span_events(span)
    if not error:
        if flags & _K_ERROR and attrs.get(ERROR_TYPE):
            error = True
        elif events and _exception_event(events) is not None:
            error = True
    if error:
        _error_metadata(span, meta)
    # _iso, inline when the second is known (the spans of a trace share a few).
    seconds, rest = divmod(start, 1_000_000_000)
    prefix = _iso_seconds_cache.get(seconds)
    if prefix is None:
        created_at = _iso(start)
    else:
        micros = rest // 1000
        created_at = f"{prefix}.{_D3[micros // 1000]}{_D3[micros % 1000]}Z"
    metrics: dict[str, Any] = {"duration_ns": end - start}
    step: dict[str, Any] = {
        "type": kind,
        "name": span.name,
        "created_at": created_at,
        "user_metadata": meta,
        "tags": _tags(attrs) if flags & _K_TAGS else [],
        "status_code": _status_code(attrs, error) if error else 200,
        "metrics": metrics,
        "external_id": external_id,
        "id": step_id,
        "trace_id": trace_id,
    }
    if flags & _K_TOKENS:
        tokens_in = attrs.get(GEN_AI_USAGE_INPUT_TOKENS)
        tokens_out = attrs.get(GEN_AI_USAGE_OUTPUT_TOKENS)
        if (
            type(tokens_in) is int
            and type(tokens_out) is int
            and not flags & _K_TOKEN_DETAILS
            and LLM_TOKEN_TOTAL not in attrs
        ):  # the GenAI pair as ints (most llm spans): _token_metrics' first case, inline
            metrics["num_input_tokens"] = tokens_in
            metrics["num_output_tokens"] = tokens_out
            metrics["num_total_tokens"] = tokens_in + tokens_out
        else:
            _token_metrics(attrs, metrics, flags & _K_TOKEN_DETAILS)
    if flags & _K_USER:
        # Handed to convert_trace, which puts it on the trace (and pops it from the step).
        step["_user"] = attrs.get(USER_ID) or attrs.get(ENDUSER_ID)
    if flags & _K_DATASET:
        _dataset_fields(attrs, step)
    if kind == "llm":
        if flags & (_K_MESSAGES | _K_LLM_EXTRA | _K_TOOLS) or events:
            _llm_fields(span, attrs, step, flags, events, model_keys)
        else:  # no messages, tools or extras to read: what _llm_fields makes of such a span
            step["input"] = []
            step["output"] = {"role": "assistant", "content": ""}
            model = _model(attrs, model_keys)
            if model is not None:
                step["model"] = str(model)
        return step
    if flags & _K_IO:
        input_value = attrs.get(INPUT_VALUE)
        output_value = attrs.get(OUTPUT_VALUE)
    else:
        input_value = output_value = None
    if kind == "tool":
        _tool_fields(span, attrs, step, input_value, output_value, flags)
    elif kind == "retriever":
        query = attrs.get(GEN_AI_RETRIEVAL_QUERY, attrs.get(RERANKER_QUERY, input_value))
        step["input"] = _text(query)
        if GEN_AI_RETRIEVAL_DOCUMENTS in attrs:
            step["output"] = _documents(attrs[GEN_AI_RETRIEVAL_DOCUMENTS])
        else:
            prefix = (
                "reranker.output_documents."
                if str(attrs.get(OI_SPAN_KIND, "")).upper() == "RERANKER"
                else "retrieval.documents."
            )
            step["output"] = _oi_documents(attrs, prefix)
        step["spans"] = []
    else:
        if kind == "agent":
            step["agent_type"] = "default"
            if flags & _K_AGENT_NAME:
                name = (
                    attrs.get(GEN_AI_AGENT_NAME)
                    or attrs.get(AGENT_NAME)
                    or attrs.get(PYDANTIC_AGENT_NAME)
                )
                if name:
                    step["name"] = _text(name)
        if flags & _K_AGENT_RUN:
            _agent_run_fields(attrs, step)
        elif flags & _K_MESSAGES and (
            GEN_AI_INPUT_MESSAGES in attrs or GEN_AI_OUTPUT_MESSAGES in attrs
        ):
            # Agents (invoke_agent) and workflows (invoke_workflow) carry the conversation like
            # llm spans do.
            inputs = _genai_messages(attrs.get(GEN_AI_INPUT_MESSAGES))
            outputs = _genai_messages(attrs.get(GEN_AI_OUTPUT_MESSAGES), "assistant")
            if _strip_private(inputs, outputs, keep_outputs=False):
                _fill_call_ids(outputs, external_id, _fill_call_ids(inputs, external_id))
            step["input"] = inputs if inputs else _text(input_value)
            if outputs:
                step["output"] = outputs[-1]
            elif output_value is not None:
                step["output"] = _text(output_value)
        else:
            step["input"] = (
                ""
                if input_value is None
                else _io_value(input_value, attrs.get(INPUT_MIME_TYPE), False, external_id)
            )
            if output_value is not None:
                step["output"] = _io_value(
                    output_value, attrs.get(OUTPUT_MIME_TYPE), True, external_id
                )
        step["spans"] = []
    return step


_HANDOFF_PREFIX = "handoff to "


def _tool_fields(
    span: ReadableSpan,
    attrs: Mapping[str, Any],
    step: dict[str, Any],
    input_value: Any,
    output_value: Any,
    flags: int = _K_ALL,
) -> None:
    """A tool step: its name, arguments, result and the id of the call it answers."""
    name = attrs.get(GEN_AI_TOOL_NAME) or attrs.get(TOOL_NAME) or step["name"]
    if type(name) is not str:
        name = _text(name)
    step["name"] = name
    if flags & _K_TOOL_CALL:
        arguments = attrs.get(GEN_AI_TOOL_CALL_ARGUMENTS)
        call_id = attrs.get(GEN_AI_TOOL_CALL_ID, attrs.get(TOOL_CALL_ID))
        result = attrs.get(GEN_AI_TOOL_CALL_RESULT)
    else:  # none of those names (the shape's flags say so)
        arguments = call_id = result = None
    if arguments is None:
        arguments = (
            attrs.get(PYDANTIC_TOOL_ARGUMENTS, input_value) if flags & _K_OLD_TOOL else input_value
        )
    if result is None and flags & _K_OLD_TOOL:
        result = attrs.get(PYDANTIC_TOOL_RESPONSE)
    if result is None and output_value is not None:
        # LangChain records the ToolMessage it made: its content is the result, and it names
        # the call it answers.
        result = _io_value(output_value, attrs.get(OUTPUT_MIME_TYPE), True, None)
        if isinstance(result, str) and result.startswith("content="):
            # ... as its repr, at openinference-instrumentation-langchain 0.1.29.
            result = _lc_repr_message(result) or result
        if isinstance(result, dict):
            if call_id is None and result.get("tool_call_id"):
                call_id = result["tool_call_id"]
            result = _content_text(result.get("content"))
    if result is None and name.startswith(_HANDOFF_PREFIX):
        # The OpenAI Agents SDK's handoff: what it yields is the next agent.
        result = name[len(_HANDOFF_PREFIX) :]
    if type(arguments) is str:
        step["input"] = arguments
    else:  # (_text(None) is "": a tool without recorded arguments, no call)
        step["input"] = "" if arguments is None else _text(arguments)
    step["output"] = result if result is None or type(result) is str else _text(result)
    if call_id is not None:
        step["tool_call_id"] = _text(call_id)
    step["spans"] = []


# LangChain's message types (``type`` of a message dict, the last element of a serialized
# message's ``id``) as Galileo roles.
_LC_ROLES = {
    "human": "user",
    "user": "user",
    "ai": "assistant",
    "assistant": "assistant",
    "system": "system",
    "developer": "developer",
    "tool": "tool",
    "function": "function",
    "HumanMessage": "user",
    "HumanMessageChunk": "user",
    "AIMessage": "assistant",
    "AIMessageChunk": "assistant",
    "SystemMessage": "system",
    "SystemMessageChunk": "system",
    "ToolMessage": "tool",
    "ToolMessageChunk": "tool",
    "FunctionMessage": "function",
}


def _lc_tool_calls(value: Any) -> list[dict[str, Any]]:
    """LangChain's ``[{name, args, id}]`` or OpenAI's ``[{id, function: {...}}]`` tool calls."""
    out: list[dict[str, Any]] = []
    if not isinstance(value, list):
        return out
    for call in value:
        if not isinstance(call, dict):
            continue
        fn = call.get("function")
        if isinstance(fn, dict):
            out.append(_tool_call(call.get("id"), fn.get("name"), fn.get("arguments")))
        else:
            args = call.get("args", call.get("arguments"))
            out.append(
                _tool_call(
                    call.get("id"),
                    call.get("name"),
                    args if isinstance(args, str) else json.dumps(args, ensure_ascii=False),
                )
            )
    return out


def _lc_message(item: Any) -> dict[str, Any] | None:
    """A LangChain or OpenAI message as a Galileo message; None for anything else.

    LangChain's shapes: serialized ``{lc, id, kwargs}``, ``messages_to_dict``'s
    ``{type, data}``, plain ``{type, content}``; OpenAI's ``{role, content}``.
    """
    if not isinstance(item, dict):
        # LangChain's shorthands: ("user", "hi") pairs; a string in a messages list is a
        # human message (see _lc_messages).
        if isinstance(item, list) and len(item) == 2 and isinstance(item[0], str):
            role = _LC_ROLES.get(item[0])
            if role is not None:
                content = item[1]
                return _message(
                    role, _content(content) if isinstance(content, list) else _text(content)
                )
        return None
    fields: Mapping[str, Any] = item
    kind: Any = None
    kwargs = item.get("kwargs")
    if "lc" in item and isinstance(kwargs, dict):
        ident = item.get("id")
        kind = ident[-1] if isinstance(ident, list) and ident else kwargs.get("type")
        fields = kwargs
    elif "type" in item and isinstance(item.get("data"), dict):
        kind = item["type"]
        fields = item["data"]
    elif "role" in item and "content" in item:
        kind = item["role"]
    elif "type" in item and "content" in item:
        kind = item["type"]
    role = _LC_ROLES.get(kind) if isinstance(kind, str) else None
    if role is None:
        return None
    content = fields.get("content")
    calls = _lc_tool_calls(fields.get("tool_calls"))
    if not calls:
        extra = fields.get("additional_kwargs")
        if isinstance(extra, dict):
            calls = _lc_tool_calls(extra.get("tool_calls"))
    return _message(
        role,
        _content(content) if isinstance(content, list) else _text(content),
        tool_calls=calls,
        tool_call_id=_text(fields.get("tool_call_id")) if fields.get("tool_call_id") else None,
    )


# A LangChain message as ``str(message)`` (pydantic's field repr, no class name): what
# openinference-instrumentation-langchain records for a LangGraph state at its oldest
# supported version, 0.1.29 (0.1.80 records {"type", "data"} dicts).
_LC_REPR_CONTENT = re.compile(r"""content=('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""")
_LC_REPR_CALL_ID = re.compile(r"""tool_call_id='([^'\\]*)'""")


def _lc_repr_message(text: str) -> dict[str, Any] | None:
    """A state message recorded as its repr (0.1.29), as a message; None for other text.

    The repr has no class name: the role comes from its fields (``tool_call_id`` -> tool,
    ``usage_metadata``/``tool_calls`` -> assistant, else user).
    """
    match = _LC_REPR_CONTENT.match(text)
    if match is None:
        return None
    try:
        content = ast.literal_eval(match.group(1))
    except (ValueError, SyntaxError):
        return None
    if not isinstance(content, str):
        return None
    rest = text[match.end() :]
    call_id = _LC_REPR_CALL_ID.search(rest)
    if call_id is not None:
        return _message("tool", content, tool_call_id=call_id.group(1))
    if " usage_metadata=" in rest or " tool_calls=[" in rest:
        return _message("assistant", content)
    return _message("user", content)


def _lc_messages(value: Any) -> list[dict[str, Any]]:
    """Messages of a decoded JSON input/output; empty unless every item is a message.

    A list of messages, or an object (a LangGraph state, a chain's input) whose ``messages``
    is one.
    """
    state = isinstance(value, dict)
    items = value.get("messages") if state else value
    if not isinstance(items, list) or not items:
        return []
    out = []
    for item in items:
        # In a state's messages, a plain string is a human message (as LangGraph reads it),
        # unless it is a message's repr.
        msg: dict[str, Any] | None
        if state and isinstance(item, str):
            msg = _lc_repr_message(item) or _message("user", item)
        else:
            msg = _lc_message(item)
        if msg is None:
            return []
        out.append(msg)
    return out


def _responses_message(value: Any) -> dict[str, Any] | None:
    """An OpenAI Responses object (or a list of them: the last) as the message it produced.

    Its ``output_text`` parts are the text, its ``function_call`` items the tool calls; None
    for anything that is not a Responses object.
    """
    if isinstance(value, list) and value:
        value = value[-1]
    if not isinstance(value, dict) or value.get("object") != "response":
        return None
    items = value.get("output")
    if not isinstance(items, list):
        return None
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "message" and isinstance(item.get("content"), list):
            texts.extend(
                part["text"]
                for part in item["content"]
                if isinstance(part, dict)
                and part.get("type") == "output_text"
                and isinstance(part.get("text"), str)
            )
        elif item.get("type") == "function_call":
            calls.append(_tool_call(item.get("call_id"), item.get("name"), item.get("arguments")))
    return _message("assistant", "".join(texts), tool_calls=calls)


def _io_value(value: Any, mime: Any, output: bool, span_hex: str | None) -> Any:
    """An ``input.value`` / ``output.value`` as a step's input or output.

    Text as it is; JSON (by its mime type) is read: messages (LangChain's shapes or OpenAI's)
    become Galileo messages (an input the list, an output the last one), a single LangChain
    message its text (a tool's output: the message, for its ``tool_call_id``), an object with
    one string field (or an ``input``/``output`` field) that string; anything else stays the
    JSON text.
    """
    if type(mime) is not str or "json" not in mime:
        return _text(value)
    decoded = _json(value)
    if isinstance(decoded, (dict, list)):
        answer = _responses_message(decoded)
        if answer is not None:
            _fill_call_ids([answer], span_hex)
            return answer if output else _content_text(answer["content"])
        messages = _lc_messages(decoded)
        if messages:
            _fill_call_ids(messages, span_hex)
            return messages[-1] if output else messages
        single = _lc_message(decoded)
        if single is not None:
            _fill_call_ids([single], span_hex)
            return single if output else _content_text(single["content"])
        if isinstance(decoded, dict):
            strings = [v for v in decoded.values() if isinstance(v, str)]
            if len(decoded) == 1 and strings:
                return strings[0]
            field = decoded.get("output" if output else "input")
            if isinstance(field, str):
                return field
    elif isinstance(decoded, str):
        return decoded
    return _text(value)


def _agent_run_fields(attrs: Mapping[str, Any], step: dict[str, Any]) -> None:
    """Pydantic AI's agent run: the run's own question and final answer.

    ``pydantic_ai.all_messages`` is the whole conversation (the history passed in first);
    ``pydantic_ai.new_message_index`` is where this run's messages begin. The input is the
    text of this run's user messages (else the last user message), the output
    ``final_result`` (else the last answer).
    """
    items = _json(attrs.get(PYDANTIC_ALL_MESSAGES))
    if not isinstance(items, list):
        items = []
    index = _int(attrs.get(PYDANTIC_NEW_MESSAGE_INDEX)) or 0
    if not items and PYDANTIC_ALL_MESSAGES_EVENTS in attrs:  # the first format: events
        inputs, outputs = _messages_of_events(_event_dicts(attrs[PYDANTIC_ALL_MESSAGES_EVENTS]))
        new: list[dict[str, Any]] = [*inputs, *outputs]
        for msg in new:
            msg.pop("_finish_reason", None)
        items = []
        text = _last_text(new, "user")
        step["input"] = text or ""
        result = attrs.get(PYDANTIC_FINAL_RESULT)
        answer = _text(result) if result is not None else _last_text(new, "assistant")
        if answer is not None:
            step["output"] = answer
        return
    new = _genai_messages(items[index:] if 0 <= index < len(items) else items)
    question = [
        _content_text(m["content"]) for m in new if m["role"] == "user" and m.get("content")
    ]
    text_in = "\n".join(t for t in question if t)
    if not text_in:
        text_in = _last_text(_genai_messages(items), "user") or ""
    step["input"] = text_in
    result = attrs.get(PYDANTIC_FINAL_RESULT)
    if result is not None:
        step["output"] = _text(result)
    else:
        answer = _last_text(new, "assistant")
        if answer is not None:
            step["output"] = answer


# --- the tree -------------------------------------------------------------------------------------
def _trace_io_from_step(step: dict[str, Any]) -> tuple[str | None, str | None]:
    """What a root step says about the trace's input and output, as text."""
    value_in = step.get("input")
    value_out = step.get("output")
    if isinstance(value_in, list):
        text_in = _last_text(value_in, "user")
    else:
        text_in = value_in or None
    if isinstance(value_out, dict):
        text_out = _content_text(value_out.get("content")) or None
    elif isinstance(value_out, list):  # retriever documents
        text_out = None
    else:
        text_out = value_out or None
    return text_in, text_out


# (resource, its service.name): one resource serves every span of a process.
_last_service: tuple[Any, Any] = (None, None)


def _service_name(resource: Any) -> Any:
    global _last_service
    cached, service = _last_service
    if resource is not cached:
        service = resource.attributes.get("service.name")
        _last_service = (resource, service)
    return service


def _start_key(span: ReadableSpan) -> int:
    return span.start_time or 0


_START_TIME = operator.attrgetter("start_time")


_FOLD_FIELDS = ("model", "temperature", "finish_reason", "tools")


def _fold_llm(keep: dict[str, Any], dup: dict[str, Any]) -> None:
    """Fold a duplicate llm step into the one kept: fill what the kept one lacks, add nothing twice.

    Tokens and timings stay the kept step's when it has them, so nothing is counted twice.
    """
    if not keep["input"] and dup["input"]:
        keep["input"] = dup["input"]
    out = keep["output"]
    if not out.get("content") and not out.get("tool_calls"):
        keep["output"] = dup["output"]
    for key in _FOLD_FIELDS:
        if key not in keep and key in dup:
            keep[key] = dup[key]
    metrics = keep["metrics"]
    for key, value in dup["metrics"].items():
        metrics.setdefault(key, value)
    if dup["tags"]:
        keep["tags"] = list(dict.fromkeys([*keep["tags"], *dup["tags"]]))
    if dup["external_id"]:
        keep["user_metadata"]["otel.folded_span_id"] = dup["external_id"]


_HAS_PLUMBING = 1
_HAS_TOOL = 2
_HAS_AGENT = 4
_HAS_CALLS = 8  # an llm step that asked for tools
_KIND_BITS = {
    "workflow": 0,
    "tool": _HAS_TOOL,
    "agent": _HAS_AGENT,
    "llm": 0,
    "retriever": 0,
}


# Plumbing: framework steps that only wire other steps together (LangChain's runnables and
# prompt templates, LangGraph's channels and routing functions). Matched on the name before
# any ``<...>`` (``RunnableParallel<a,b>``).
PLUMBING_STEP_NAMES = frozenset(
    {
        "RunnableSequence",
        "RunnableParallel",
        "RunnableLambda",
        "RunnableAssign",
        "RunnablePassthrough",
        "RunnableBranch",
        "Prompt",
        "PromptTemplate",
        "ChatPromptTemplate",
        "ChannelWrite",
        "ChannelRead",
        "Branch",
        "should_continue",
        "tools_condition",
        "route",
        "__start__",
        "_write",
    }
)
"""Workflow steps of these names are collapsed: their children take their place."""


def _wraps_only(step: dict[str, Any], other: dict[str, Any] | None) -> bool:
    """True when ``step`` says nothing ``other`` (its parent or its only child) does not."""
    if other is None:
        return not step.get("input") and step.get("output") in (None, "")
    return step.get("input") in ("", None, other.get("input")) and step.get("output") in (
        None,
        "",
        other.get("output"),
    )


def _is_plumbing(step: dict[str, Any], owner: dict[str, Any] | None, owner_name: str) -> bool:
    if step["type"] != "workflow" or step["status_code"] >= 400:
        return False  # a failed step is never plumbing: the failure is what a reader looks for
    name = step["name"]
    if name.partition("<")[0] in PLUMBING_STEP_NAMES:
        return True
    kids = step["spans"]
    if owner_name and name == owner_name and _wraps_only(step, owner):
        return True  # e.g. the Agents SDK's "Agent workflow" CHAIN inside its AGENT
    return len(kids) == 1 and kids[0]["name"] == name and _wraps_only(step, kids[0])


def _collapse(top: list[dict[str, Any]], trace_name: str, trace_id: str) -> bool:
    """Replace every plumbing step by its children, in place; True if any was."""
    changed = False
    stack: list[tuple[dict[str, Any] | None, list[dict[str, Any]]]] = [(None, top)]
    while stack:
        owner, spans = stack.pop()
        owner_name = owner["name"] if owner is not None else trace_name
        owner_id = owner["id"] if owner is not None else trace_id
        kept: list[dict[str, Any]] = []
        pending = list(reversed(spans))
        hoisted = False
        while pending:
            step = pending.pop()
            if "spans" in step and _is_plumbing(step, owner, owner_name):
                hoisted = True
                for child in step["spans"]:
                    child["parent_id"] = owner_id
                pending.extend(reversed(step["spans"]))
                continue
            kept.append(step)
        if hoisted:
            changed = True
            spans[:] = kept
        for step in kept:
            if step.get("spans"):
                stack.append((step, step["spans"]))
    return changed


def _walk(top: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every step of a tree, in ``step_number`` order (start order)."""
    found: list[dict[str, Any]] = []
    stack = list(top)
    while stack:
        step = stack.pop()
        found.append(step)
        children = step.get("spans")
        if children:
            stack.extend(children)
    try:
        found.sort(key=_STEP_NUMBER)
    except (KeyError, TypeError):  # a step without a number (only a hand-built tree)
        found.sort(key=_step_number)
    return found


_STEP_NUMBER = operator.itemgetter("step_number")


def _step_number(step: dict[str, Any]) -> int:
    return int(step.get("step_number") or 0)


def _renumber(top: list[dict[str, Any]]) -> None:
    for number, step in enumerate(_walk(top), 1):
        step["step_number"] = number


def _same_arguments(a: Any, b: Any) -> bool:
    if a == b:
        return True
    return _json(a) == _json(b) if isinstance(a, str) and isinstance(b, str) else False


def _link_tools(ordered: list[dict[str, Any]]) -> None:
    """Link each tool step to the llm tool call it answers.

    By the call's id when the step has one; else the first unanswered call of the same name
    with the same arguments, else the first of the same name (calls in the order the model
    made them). A linked step takes the call's id, and the call's arguments when its own input
    is not a JSON object or list (LangChain records the tool's input, e.g. ``Paris``).
    """
    pending: list[dict[str, Any]] = []
    for step in ordered:
        kind = step["type"]
        if kind == "llm":
            output = step.get("output")
            if isinstance(output, dict) and output.get("tool_calls"):
                pending.extend(output["tool_calls"])
            continue
        if kind != "tool" or not pending:
            continue
        match: dict[str, Any] | None = None
        call_id = step.get("tool_call_id")
        if call_id is not None:
            for index, call in enumerate(pending):
                if call.get("id") == call_id:
                    match = pending.pop(index)
                    break
        else:
            name = step["name"]
            same_name = [i for i, c in enumerate(pending) if c["function"]["name"] == name]
            if same_name:
                pick = next(
                    (
                        i
                        for i in same_name
                        if _same_arguments(pending[i]["function"]["arguments"], step["input"])
                    ),
                    same_name[0],
                )
                match = pending.pop(pick)
                if match.get("id"):
                    step["tool_call_id"] = match["id"]
        if match is not None:
            arguments = match["function"]["arguments"]
            if arguments and not isinstance(_json(step["input"]), (dict, list)):
                step["input"] = arguments


def _fill_agents(
    ordered: list[dict[str, Any]],
    root_id: str | None,
    collapsed: bool = True,
    llms: list[dict[str, Any]] | None = None,
) -> None:
    """Agent steps without their own input, output or tokens take them from their children.

    The input is the last user message of the first llm call under the agent, the output the
    last llm answer with text (else the last text another step under it yields: a handoff's
    next agent, a graph router's next node), the tokens the sum over its llm calls.
    ``collapsed``: False when no plumbing step was collapsed from the tree, so ``ordered`` is
    exactly the tree's steps in step order. ``llms``: the llm steps of ``ordered``, if known.
    """
    agents = [step for step in ordered if step["type"] == "agent"]
    if len(agents) == 1 and agents[0]["id"] == root_id:
        # The common case: the root is the agent, and every other step is under it.
        agent = agents[0]
        if llms is None:
            llms = [step for step in ordered if step["type"] == "llm"]
        if collapsed or not ordered or ordered[0] is not agent:
            _fill_agent(agent, llms)
        else:  # the steps under it, in step order, are the rest of `ordered`
            _fill_agent(agent, llms, ordered[1:])
        return
    # Each agent's llm steps, in start order: walk up from every llm step once.
    llms_of: dict[str, list[dict[str, Any]]] = {agent["id"]: [] for agent in agents}
    containers = {step["id"]: step for step in ordered if "spans" in step}
    for step in ordered:
        if step["type"] != "llm":
            continue
        parent_id = step.get("parent_id")
        for _ in range(len(ordered)):  # bounded: no cycles
            if parent_id in llms_of:
                llms_of[parent_id].append(step)
            parent = containers.get(parent_id)
            if parent is None:
                break
            parent_id = parent.get("parent_id")
    for agent in reversed(agents):  # inner agents first: an outer one may read their output
        _fill_agent(agent, llms_of[agent["id"]])


def _value_text(value: Any) -> str:
    """The text of a step's input or output: a string, a message's, a message list's last."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return _content_text(value.get("content"))
    if isinstance(value, list) and value:
        return _value_text(value[-1])
    return ""


def _fill_agent(
    agent: dict[str, Any],
    llms: list[dict[str, Any]],
    under: list[dict[str, Any]] | None = None,
) -> None:
    """Fill one agent step (see ``_fill_agents``); ``under``: its steps in step order, if known."""
    if not agent.get("input"):
        for step in llms:
            messages = step["input"]
            if not messages:  # _last_text finds nothing in no messages
                continue
            text = _last_text(messages, "user")
            if text is not None:
                agent["input"] = text
                break
    output = agent.get("output")
    if output is None or output == "" or not _value_text(output):
        # An output without text (none, or an llm message that only calls tools) reads as
        # the last answer under the agent, else as where it handed over or routed to: the
        # last text a step kept under it yields (collapsed plumbing is not read).
        for index in range(len(llms) - 1, -1, -1):
            content = llms[index]["output"].get("content")
            text = _content_text(content) if content else ""
            if text:
                agent["output"] = text
                break
        else:
            kept = under if under is not None else _walk(agent.get("spans") or [])
            for index in range(len(kept) - 1, -1, -1):
                step = kept[index]
                if step["type"] == "llm":
                    continue
                output = step.get("output")
                if output is None:  # (most tool steps: no result recorded) no text
                    continue
                text = output if type(output) is str else _value_text(output)
                if text:
                    agent["output"] = text
                    break
    if not llms:
        return
    metrics = agent["metrics"]
    if "num_input_tokens" in metrics or "num_output_tokens" in metrics:
        return
    tokens_in = tokens_out = tokens_total = None
    for step in llms:
        llm_metrics = step["metrics"]
        value = llm_metrics.get("num_input_tokens")
        if value is not None:
            tokens_in = value + (tokens_in or 0)
        value = llm_metrics.get("num_output_tokens")
        if value is not None:
            tokens_out = value + (tokens_out or 0)
        value = llm_metrics.get("num_total_tokens")
        if value is not None:
            tokens_total = value + (tokens_total or 0)
    if tokens_in is not None:
        metrics["num_input_tokens"] = tokens_in
    if tokens_out is not None:
        metrics["num_output_tokens"] = tokens_out
    if tokens_total is not None:
        metrics["num_total_tokens"] = tokens_total


def convert_trace(trace: AssembledTrace, stats: ConvertStats | None = None) -> dict[str, Any]:
    """One assembled trace -> one Galileo Trace dict with its steps nested under ``spans``.

    The root span becomes the Trace (name, times, status, metadata, tags); a root that is an
    llm, tool, retriever or agent span is kept as the trace's single top-level step as well, so
    its model, tokens and messages are not lost. Steps nest under their parents (a step whose
    parent is not in the trace goes under the root; children of an llm step, which cannot hold
    any, go under its nearest ancestor that can) and are numbered in start order. The trace's
    input/output come from the root's own attributes, else from the first user message and the
    last model answer of the trace. ``session_id`` is left for the pipeline to set.

    An llm span directly under another llm span is the same model call traced twice (two
    instrumentations of one client): it is folded into the outer one (see ``_fold_llm``),
    counted in ``stats.duplicate_llm_steps`` and warned about once per process.

    Args:
        trace: The assembled trace.
        stats: Counters of what conversion folded (the pipeline's, shown in ``stats()``).
    """
    tid = trace.trace_id
    external_hex, galileo_id, tail = _trace_ids(tid)
    if trace.part:
        galileo_id = _part_uuid(tid, trace.part)
    root = trace.root
    root_sid = root.context.span_id if root is not None and root.context is not None else None
    spans = trace.spans  # not changed here: sorted() below makes the list this reads
    # The assembler lists the root last; only a hand-built trace needs the scan.
    if (
        root is not None
        and (not spans or spans[-1] is not root)
        and not any(s is root for s in spans)
    ):
        spans = [*spans, root]  # a hand-built AssembledTrace may name a root it does not list
    try:
        spans = sorted(spans, key=_START_TIME)
    except TypeError:  # a span without a start time (never an ended SDK span); spans untouched
        spans = sorted(spans, key=_start_key)

    # (span id, local parent id, step) in start order; spans without a context cannot be placed.
    nodes: list[tuple[int, int | None, dict[str, Any]]] = []
    kinds = 0  # _HAS_* bits: which kinds of step the trace holds
    user: Any = None  # the root's user.id, else the first span's
    steps: dict[int, dict[str, Any]] = {}
    parent_of: dict[int, int | None] = {}
    for span in spans:
        ctx = span.context
        if ctx is None:
            continue
        sid = ctx.span_id
        parent = span.parent
        pid = parent.span_id if parent is not None and not parent.is_remote else None
        step = _convert_span(span, galileo_id, tail, ctx)
        steps[sid] = step
        parent_of[sid] = pid
        nodes.append((sid, pid, step))
        stype = step["type"]
        if stype == "llm":
            if "tool_calls" in step["output"]:
                kinds |= _HAS_CALLS
        elif sid != root_sid or stype != "workflow":  # a plain root is the trace
            kinds |= _KIND_BITS[stype]
        if sid != root_sid:
            # Plumbing to collapse (see _is_plumbing): a workflow step of a plumbing name, or
            # a step named like its parent where one of the two is a workflow step.
            name = step["name"]
            parent_step = steps.get(pid) if pid is not None else None
            if (
                stype == "workflow"
                and (name in PLUMBING_STEP_NAMES or name.partition("<")[0] in PLUMBING_STEP_NAMES)
            ) or (
                parent_step is not None
                and parent_step["name"] == name
                and (stype == "workflow" or parent_step["type"] == "workflow")
            ):
                kinds |= _HAS_PLUMBING
        if "_user" in step:
            found_user = step.pop("_user")
            if user is None or sid == root_sid:
                user = found_user

    # The root is the Trace; it is kept as a step too unless it is a plain workflow.
    root_step = steps.get(root_sid) if root_sid is not None else None
    root_is_step = root_step is not None and root_step["type"] != "workflow"
    # Where the root's children and the orphans go: under the root step when it can hold
    # children, else at the top of the trace.
    root_container = root_step if root_is_step and root_step and "spans" in root_step else None
    top: list[dict[str, Any]] = []
    number = 0
    folded: set[int] = set()
    # The steps not folded, in start order (= step_number order), and their llm steps: what
    # the passes below and the trace's input/output read.
    ordered: list[dict[str, Any]] = []
    llms: list[dict[str, Any]] = []
    for sid, pid, step in nodes:
        stype = step["type"]
        if sid == root_sid:
            ordered.append(step)
            if stype == "llm":
                llms.append(step)
            if not root_is_step:
                continue
            number += 1
            step["step_number"] = number
            step["parent_id"] = galileo_id
            top.append(step)
            continue
        outer = steps.get(pid) if pid is not None and stype == "llm" else None
        if outer is not None and outer["type"] == "llm" and pid != sid:
            target = pid
            for _ in range(len(nodes)):  # past llm steps already folded into their own parent
                if target not in folded:
                    break
                up = parent_of.get(target)
                if up is None or up not in steps:
                    break
                target = up
                outer = steps[up]
            if outer["type"] == "llm":
                _fold_llm(outer, step)
                folded.add(sid)
                if stats is not None:
                    stats.duplicate_llm_steps += 1
                _warn_once(
                    "duplicate-llm",
                    "galileo-otel: one model call was traced twice (llm span %r inside llm "
                    "span %r): two instrumentations of the same client are active, e.g. "
                    "opentelemetry-instrumentation-openai-v2 and "
                    "openinference-instrumentation-openai. One step is kept (the outer span, "
                    "filled in from the inner one). Turn one instrumentation off: "
                    "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS names entry points, and both OpenAI "
                    "instrumentations register as 'openai' (setting it turns both off), so "
                    "uninstall one or instrument one by hand.",
                    step["name"],
                    outer["name"],
                )
                continue
        ordered.append(step)
        if stype == "llm":
            llms.append(step)
        number += 1
        step["step_number"] = number
        # Walk up to the nearest ancestor step that can hold children (bounded: no cycles).
        container = root_container
        if pid is not None and pid != sid and pid != root_sid:  # (a root's child: no walk)
            for _ in range(len(nodes)):
                if pid is None or pid == sid or pid == root_sid:
                    break
                candidate = steps.get(pid)
                if candidate is None:
                    break  # the parent is not in this trace: the step goes under the root
                if "spans" in candidate:
                    container = candidate
                    break
                pid = parent_of[pid]
        if container is None:
            step["parent_id"] = galileo_id
            top.append(step)
        else:
            step["parent_id"] = container["id"]
            container["spans"].append(step)

    # The tree as a reader wants it: plumbing collapsed, tool steps linked to the calls they
    # answer, agent steps filled in from their children. Each pass runs only when the trace
    # has a step it applies to.
    collapsed = False
    if kinds & _HAS_PLUMBING:
        trace_name = root.name if root is not None and not root_is_step else ""
        if _collapse(top, trace_name, galileo_id):
            _renumber(top)
            collapsed = True
    if folded:  # (a step id seen twice may have been listed before its twin was folded)
        ordered = [step for sid, _, step in nodes if sid not in folded]
        llms = [step for step in ordered if step["type"] == "llm"]
    if kinds & (_HAS_TOOL | _HAS_CALLS) == _HAS_TOOL | _HAS_CALLS:
        _link_tools(ordered)
    if kinds & _HAS_AGENT:
        _fill_agents(
            ordered, root_step["id"] if root_is_step and root_step else None, collapsed, llms
        )

    # Trace-level fields.
    head: ReadableSpan | None
    if root is not None and root_step is not None:
        head = root
        name = root.name
        start = root.start_time or 0
        end = root.end_time or start
        created_at = root_step["created_at"]  # the root's start, formatted once
        status = root_step["status_code"]
        metadata = dict(root_step["user_metadata"])
        tags = list(root_step["tags"])
        text_in, text_out = _trace_io_from_step(root_step)
    else:
        head = spans[0] if spans else None
        name = head.name if head is not None else ""
        start = min((s.start_time or 0 for s in spans), default=0)
        end = max((s.end_time or 0 for s in spans), default=start)
        created_at = _iso(start)
        status = max((s["status_code"] for s in top), default=200)
        metadata = {}
        tags = []
        text_in = text_out = None
    if text_in is None or text_out is None:
        # The turn's own question: the last user message of the first llm call that has one
        # (a chat app resends the whole history every turn); its answer: the last llm answer.
        if text_in is None:
            for step in llms:
                messages = step["input"]
                if not messages:  # _last_text finds nothing in no messages
                    continue
                text_in = _last_text(messages, "user")
                if text_in is not None:
                    break
        if text_out is None:
            for step in reversed(llms):
                out = step.get("output")
                if out and out.get("content"):
                    text_out = _content_text(out["content"]) or None
                    if text_out is not None:
                        break
    if user is not None and user != "":
        metadata[USER_ID] = _meta_value(user)
    if head is not None:
        service = _service_name(head.resource)
        if service is not None:
            metadata.setdefault("service.name", str(service))
    if not trace.complete:
        metadata["otel.incomplete"] = "true"
    if trace.part:
        metadata["otel.trace_part"] = str(trace.part)
    if trace.spans_cut:
        metadata["otel.spans_cut"] = str(trace.spans_cut)

    result: dict[str, Any] = {
        "type": "trace",
        "input": text_in or "",
        "name": name,
        "created_at": created_at,
        "user_metadata": metadata,
        "tags": tags,
        "status_code": status,
        "metrics": {"duration_ns": max(end - start, 0)},
        "external_id": external_hex,
        "id": galileo_id,
        "spans": top,
    }
    if text_out is not None:
        result["output"] = text_out
    if root_step is not None:
        for key in ("dataset_input", "dataset_output", "dataset_metadata"):
            if key in root_step:
                result[key] = root_step[key]
    return result
