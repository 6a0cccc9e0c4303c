"""Plain-text views of sessions and traces for a terminal: ``sessions show`` and ``tail``.

Pure functions from the server's JSON records to lines of text; no I/O, no colours, so they read
the same in a terminal, a log file or a CI job. Long texts are cut to ``width`` columns unless
``width`` is ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

__all__ = ["chain_lines", "session_lines", "trace_heading_lines", "trace_line", "trace_tree_lines"]

_ELLIPSIS = "…"
# A gap longer than this between one session's last activity and the next session's start is
# called out in the chain: it is what made the session rotate.
_GAP_WORTH_SAYING_S = 60.0


def content_part_text(part: Mapping[str, Any]) -> str | None:
    """One part of a multi-part message as text: its text, or a label for a file or media part.

    Media (``{"type": "data", ...}``) is named, never printed: its base64 can be megabytes.
    """
    kind = part.get("type")
    if kind == "file":
        return f"[file {part.get('file_id') or ''}]"
    if kind == "data":
        inline = part.get("base64")
        where = part.get("url") or (f"{len(inline) * 3 // 4} bytes inline" if inline else "")
        label = " ".join(str(x) for x in (part.get("mime_type"), where) if x)
        return f"[{part.get('modality') or 'data'}: {label}]" if label else f"[{kind}]"
    if "text" in part:
        return str(part["text"])
    return None


def _one_line(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list) and value and all(isinstance(p, Mapping) for p in value):
        texts = [content_part_text(p) for p in value]
        if all(t is not None for t in texts):
            return " ".join(" ".join(str(t).split()) for t in texts)
    return " ".join(str(value).split())


def _cut(text: str, width: int | None) -> str:
    if width is None or len(text) <= width:
        return text
    return text[: max(width - 1, 0)] + _ELLIPSIS


def _short_id(value: Any) -> str:
    text = str(value or "")
    return text[:8] if len(text) > 8 else text or "-"


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _clock(value: Any) -> str:
    when = _when(value)
    return when.strftime("%Y-%m-%d %H:%M:%S") if when else "-"


def _seconds(ns: Any) -> str:
    if not isinstance(ns, (int, float)) or isinstance(ns, bool):
        return ""
    seconds = ns / 1e9
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.2f}s"
    return f"{seconds / 60:.1f}m"


def _span_of(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _status(record: Mapping[str, Any]) -> str:
    code = record.get("status_code")
    if isinstance(code, int) and code >= 400:
        return f"ERROR {code}"
    return "ok"


def _trace_status(trace: Mapping[str, Any]) -> str:
    """A trace's status, and "failed steps" when a step failed though the trace did not."""
    status = _status(trace)
    if status == "ok" and (trace.get("has_error") or _int(trace.get("num_failed_steps"))):
        return "ERROR (failed steps)"
    return status


def _user(record: Mapping[str, Any]) -> str:
    meta = record.get("user_metadata")
    if isinstance(meta, Mapping) and meta.get("user.id"):
        return str(meta["user.id"])
    return str(record.get("user") or "-")


def _text_of(value: Any) -> str:
    """Message content, a list of messages, documents or plain text, as one line."""
    if isinstance(value, Mapping):
        if "content" in value:
            return _one_line(value.get("content"))
        return _one_line(value)
    if isinstance(value, list):
        if all(isinstance(v, Mapping) and "content" in v and "role" not in v for v in value):
            first = _one_line(value[0].get("content")) if value else ""
            return f"{len(value)} document(s): {first}" if value else "no documents"
        return " | ".join(_text_of(v) for v in value)
    return _one_line(value)


def _messages(value: Any) -> list[tuple[str, str]]:
    """``(role, text)`` pairs of an llm step's input or output, tool calls included."""
    items = value if isinstance(value, list) else [value]
    out: list[tuple[str, str]] = []
    for item in items:
        if not isinstance(item, Mapping):
            if item not in (None, ""):
                out.append(("text", _one_line(item)))
            continue
        role = str(item.get("role") or "text")
        content = _one_line(item.get("content"))
        if item.get("tool_call_id"):
            role = f"{role} (result of {item['tool_call_id']})"
        if content:
            out.append((role, content))
        for call in item.get("tool_calls") or ():
            if isinstance(call, Mapping):
                function = call.get("function") if isinstance(call.get("function"), Mapping) else {}
                name = function.get("name") if function else call.get("name")
                arguments = _one_line(function.get("arguments") if function else "")
                out.append((f"{role} calls tool", f"{name}({arguments})"))
    return out


def _step_heading(step: Mapping[str, Any]) -> str:
    kind = str(step.get("type") or "step")
    parts = [f"{kind} {_one_line(step.get('name')) or '-'}"]
    if kind == "llm" and step.get("model"):
        parts.append(f"model {step['model']}")
    metrics = step.get("metrics") if isinstance(step.get("metrics"), Mapping) else {}
    if metrics:
        tokens_in, tokens_out = metrics.get("num_input_tokens"), metrics.get("num_output_tokens")
        if tokens_in is not None or tokens_out is not None:
            parts.append(f"tokens {tokens_in or 0} in / {tokens_out or 0} out")
        duration = _seconds(metrics.get("duration_ns"))
        if duration:
            parts.append(duration)
    parts.append(_status(step))
    return "  ".join(parts)


def _step_details(step: Mapping[str, Any]) -> list[str]:
    kind = step.get("type")
    if kind == "llm":
        lines = [f"{role}: {text}" for role, text in _messages(step.get("input"))]
        lines += [f"{role}: {text}" for role, text in _messages(step.get("output"))]
        return lines
    lines = []
    for label, key in (("in", "input"), ("out", "output")):
        text = _text_of(step.get(key))
        if text:
            lines.append(f"{label}: {text}")
    return lines


def trace_tree_lines(
    trace: Mapping[str, Any], *, width: int | None = 100, details: bool = True
) -> list[str]:
    """A trace's step tree, one line per step (plus its messages when ``details``).

    Example::

        └─ agent support-bot  420ms  ok
           ├─ retriever retrieval knowledge-base  44ms  ok
           │    in: What is your warranty on headphones?
           └─ llm chat gpt-4o-mini  model gpt-4o-mini  tokens 64 in / 31 out  356ms  ok
                user: What is your warranty on headphones?
    """
    lines: list[str] = []
    # An explicit stack, not recursion: a deep span tree must not hit the recursion limit.
    stack: list[tuple[Mapping[str, Any], str, bool]] = []
    children = [s for s in trace.get("spans") or () if isinstance(s, Mapping)]
    for index in range(len(children) - 1, -1, -1):
        stack.append((children[index], "", index == len(children) - 1))
    while stack:
        step, prefix, last = stack.pop()
        branch = "└─ " if last else "├─ "
        lines.append(_cut(prefix + branch + _step_heading(step), width))
        inner = prefix + ("   " if last else "│  ")
        kids = [s for s in step.get("spans") or () if isinstance(s, Mapping)]
        if details:
            pad = inner + ("│  " if kids else "   ") + "  "
            lines.extend(_cut(pad + text, width) for text in _step_details(step))
        for index in range(len(kids) - 1, -1, -1):
            stack.append((kids[index], inner, index == len(kids) - 1))
    return lines


def trace_heading_lines(
    trace: Mapping[str, Any], number: int, total: int, *, steps: int, width: int | None = 100
) -> list[str]:
    """A trace's heading in ``sessions show``: number, id, name, time, steps, duration, status."""
    metrics = trace.get("metrics") if isinstance(trace.get("metrics"), Mapping) else {}
    parts = [
        f"trace {number}/{total}",
        str(trace.get("id") or "-"),
        _one_line(trace.get("name")) or "-",
        _clock(trace.get("created_at")),
        f"{steps} step(s)",
    ]
    duration = _seconds(metrics.get("duration_ns")) if metrics else ""
    if duration:
        parts.append(duration)
    totals = _totals(trace)
    if totals:
        parts.append(totals)
    parts.append(_trace_status(trace))
    lines = ["  ".join(parts)]
    for label, key in (("in: ", "input"), ("out:", "output")):
        text = _text_of(trace.get(key))
        if text:
            lines.append(_cut(f"{label} {text}", width))
    return lines


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _totals(record: Mapping[str, Any]) -> str:
    """Tokens, llm calls and failed steps of a trace or session record ("" when it has none)."""
    if not any(key in record for key in ("input_tokens", "num_llm_calls", "num_failed_steps")):
        return ""  # a record stored before the server kept totals
    parts = [
        f"tokens {_int(record.get('input_tokens'))} in / {_int(record.get('output_tokens'))} out",
        f"{_int(record.get('num_llm_calls'))} llm call(s)",
    ]
    failed = _int(record.get("num_failed_steps"))
    if failed:
        parts.append(f"{failed} failed step(s)")
    return "  ".join(parts)


def session_lines(session: Mapping[str, Any]) -> list[str]:
    """The session record: name, ids, user, counts, totals, times.

    ``errors`` counts erroneous traces: a trace whose own status, or any of whose steps'
    status, is an error.
    """
    lines = [
        f"session {session.get('id')}  {_one_line(session.get('name')) or '(no name)'}",
        f"  external id  {session.get('external_id') or '-'}",
        f"  user         {_user(session)}",
        f"  traces       {session.get('num_traces', 0)}   spans {session.get('num_spans', 0)}"
        f"   errors {session.get('num_errors', 0)}",
    ]
    if any(key in session for key in ("input_tokens", "num_llm_calls", "num_failed_steps")):
        duration = _seconds(session.get("duration_ns")) or "-"
        lines.append(
            f"  totals       tokens {_int(session.get('input_tokens'))} in / "
            f"{_int(session.get('output_tokens'))} out / {_int(session.get('total_tokens'))} "
            f"total   llm calls {_int(session.get('num_llm_calls'))}   "
            f"failed steps {_int(session.get('num_failed_steps'))}   time {duration}"
        )
    lines += [
        f"  created      {_clock(session.get('created_at'))}   "
        f"updated {_clock(session.get('updated_at'))}",
        f"  previous     {session.get('previous_session_id') or '-'}",
    ]
    return lines


def chain_lines(chain: Sequence[Mapping[str, Any]], current_id: str) -> list[str]:
    """The user's chain of sessions (oldest first), the current one marked, idle gaps named."""
    lines = [f"chain: {len(chain)} session(s), oldest first"]
    previous: Mapping[str, Any] | None = None
    for index, item in enumerate(chain, 1):
        mark = "▶" if str(item.get("id")) == current_id else " "
        traces = item.get("num_traces", 0)
        line = (
            f"{mark} {index}. {_short_id(item.get('id'))}  {_clock(item.get('created_at'))}  "
            f"{item.get('external_id') or '-'}  {traces} trace(s)"
        )
        if previous is not None:
            ended, started = _when(previous.get("updated_at")), _when(item.get("created_at"))
            if ended and started and (started - ended).total_seconds() > _GAP_WORTH_SAYING_S:
                gap = _span_of((started - ended).total_seconds())
                line += f"  (new session after {gap} idle)"
        lines.append(line)
        previous = item
    return lines


def trace_line(trace: Mapping[str, Any], *, width: int | None = 160) -> str:
    """One line per trace for ``tail``: time, user, session, name, spans, duration, status, I/O."""
    session = trace.get("session_external_id") or _short_id(trace.get("session_id"))
    metrics = trace.get("metrics") if isinstance(trace.get("metrics"), Mapping) else {}
    duration = _seconds(metrics.get("duration_ns")) if metrics else ""
    errors = trace.get("num_errors") or _int(trace.get("num_failed_steps"))
    status = _status(trace)
    if errors and status == "ok":
        status = f"{errors} error(s)"
    parts = [
        _clock(trace.get("created_at")),
        str(trace.get("user") or _user(trace)),
        session,
        _one_line(trace.get("name")) or "-",
        f"{trace.get('num_spans', 0)} spans",
        duration or "-",
    ]
    if "input_tokens" in trace:
        parts.append(f"{_int(trace.get('input_tokens'))}/{_int(trace.get('output_tokens'))} tok")
    parts.append(status)
    head = "  ".join(parts)
    said = _text_of(trace.get("input"))
    answer = _text_of(trace.get("output"))
    if said or answer:
        head += f"  {said} → {answer}"
    return _cut(head, width)
