"""The conformance harness: run an app end to end, read back what the local server stored,
normalize it, compare it with its golden file, and check the properties that hold for every
instrumentation.

The path is the real one: ``galileo_otel.configure()`` on a private tracer provider, pointed at
the local server (``galileo_otel.server``) on 127.0.0.1; the app's spans go through the
processor, assembly, sessions, conversion and delivery; the traces are read back over the
server's REST API. A second processor on the same provider keeps the raw spans in memory, so a
property can say "when the instrumentation marked a span failed, the session counts an error".

Goldens: ``golden/<instrumentation>/<tier>/<scenario>.json``; ``GALILEO_UPDATE_GOLDENS=1``
rewrites them instead of comparing. The tier (``oldest`` / ``newest``) is the constraints file
(``constraints-oldest.txt`` / ``constraints-newest.txt``) whose pins match the installed
versions of the instrumentation's packages.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

HERE = Path(__file__).resolve().parent
GOLDEN_DIR = HERE / "golden"
CONSTRAINTS = {"oldest": HERE / "constraints-oldest.txt", "newest": HERE / "constraints-newest.txt"}
# Read at import: the autouse fixture of tests/conftest.py clears GALILEO_* before each test.
UPDATE_GOLDENS = os.environ.get("GALILEO_UPDATE_GOLDENS", "") not in ("", "0", "false")
MAX_DIFF_LINES = 120


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require(what: str, reason: str) -> None:
    """Skip (or, under CI, fail) because ``what`` is missing."""
    message = f"{what} is missing: {reason}"
    if under_ci():
        pytest.fail(message + " (CI installs the [conformance] extra)")
    pytest.skip(message)


# ------------------------------------------------------------------------------------------------
# Version tiers
# ------------------------------------------------------------------------------------------------


def _pins(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[_canonical(name.split("[", 1)[0])] = version.split(";", 1)[0].strip()
    return pins


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def tier_of(packages: tuple[str, ...]) -> str | None:
    """``oldest``/``newest`` when every package is installed at that tier's pin, else None."""
    for tier, path in CONSTRAINTS.items():
        pins = _pins(path)
        if all(pins.get(_canonical(p)) == installed(p) for p in packages):
            return tier
    return None


# ------------------------------------------------------------------------------------------------
# One end-to-end run
# ------------------------------------------------------------------------------------------------


@dataclass
class Recorded:
    """What one run left behind: the session records (traces inside) and the raw spans."""

    sessions: list[dict[str, Any]]
    spans: list[ReadableSpan]


@contextmanager
def galileo_pipeline(server: Any, project: str) -> Iterator[tuple[TracerProvider, Any]]:
    """A private tracer provider exporting to the local server through configure()."""
    from galileo_otel import configure

    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    handle = configure(
        tracer_provider=provider,
        api_url=server.url,
        api_key=server.api_key,
        project=project,
        batch_delay=0.05,
        spool_dir="off",
    )
    try:
        yield provider, memory
    finally:
        # force_flush is bounded; the assertion on it is made by read_back.
        handle.force_flush(30)
        handle.shutdown(30)
        provider.shutdown()


def read_back(server: Any, project: str) -> list[dict[str, Any]]:
    """Every session of the project with its traces, as the server's REST API returns them."""
    from galileo_otel import GalileoClient

    assert server.wait_idle(10), "the local server did not finish writing"
    with GalileoClient(api_url=server.url, api_key=server.api_key) as client:
        dest = client.resolve_destination(project=project, log_stream="default", create=False)
        records = list(
            client.iter_sessions(project_id=dest.project_id, log_stream_id=dest.log_stream_id)
        )
    sessions = []
    with httpx.Client(base_url=server.url, headers={"Galileo-API-Key": server.api_key}) as http:
        for record in records:
            answer = http.get(f"/v2/projects/{dest.project_id}/sessions/{record['id']}")
            assert answer.status_code == 200, answer.text
            sessions.append(answer.json())
    return sorted(sessions, key=lambda s: str(s.get("created_at")))


# ------------------------------------------------------------------------------------------------
# Normalization
# ------------------------------------------------------------------------------------------------

# Keys whose values change from run to run (or are the server's bookkeeping).
# Ids are UUIDs (replaced wherever they appear, below); a tool call's id stays: it links steps.
VOLATILE_KEYS = {
    "project_name",
    "created_at",
    "updated_at",
    "last_updated",
    "previous_session_id",
    "duration_ns",
    "time_to_first_token_ns",
}
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_HEX_IDS = re.compile(r"\b(trace|span|group)_[0-9a-f]{16,32}\b")
_PORT = re.compile(r"(127\.0\.0\.1|localhost):\d+")
_ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?")
_OTEL_ID = re.compile(r"[0-9a-f]{16}|[0-9a-f]{32}")
_HEX64 = re.compile(r"\b0x[0-9a-f]{16,32}\b|\b[0-9a-f]{32}\b")
_VERSION_KEY = re.compile(r"(^|[._])version$")
_EPOCH_KEYS = re.compile(r"(timestamp|_time|time_unix|\.start_time|\.end_time)$")
_PORT_KEY = re.compile(r"(^|[._])port$")
# Measured times: time to first chunk/token, durations, latencies (any unit).
_TIMING_KEY = re.compile(r"time_to_first|duration|latency")
# Epoch seconds, milliseconds, microseconds or nanoseconds (2020 to 2033), e.g. a serialized
# response's "created_at" inside a JSON string.
_EPOCH = re.compile(r"\b1[6-9]\d{8}(?:\d{9}|\d{6}|\d{3})?(?:\.\d+)?\b")


# A traceback's frames name files and lines of this machine's checkout and virtualenv.
_FRAME = re.compile(r'File "[^"]+", line \d+')


def _normal_text(text: str) -> str:
    text = _FRAME.sub('File "<file>", line <n>', text)
    text = _UUID.sub("<uuid>", text)
    text = _HEX_IDS.sub(lambda m: f"{m.group(1)}_<id>", text)
    text = _PORT.sub(r"\1:<port>", text)
    text = _ISO_TIME.sub("<time>", text)
    text = _EPOCH.sub("<epoch>", text)
    return _HEX64.sub("<hex>", text)


def normalize(value: Any, key: str = "") -> Any:
    """Ids, timestamps, durations, ports and versions replaced by placeholders; keys sorted."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k in sorted(value):
            v = value[k]
            if k in VOLATILE_KEYS:
                out[k] = None if v is None else f"<{k}>"
            elif k == "external_id" and isinstance(v, str) and _OTEL_ID.fullmatch(v):
                out[k] = "<otel id>"  # a step's span id, a trace's trace id
            elif _VERSION_KEY.search(k) and isinstance(v, str):
                out[k] = "<version>"
            elif _EPOCH_KEYS.search(k) and isinstance(v, (int, float, str)):
                out[k] = "<time>"
            elif _PORT_KEY.search(k) and isinstance(v, (int, str)):
                out[k] = "<port>"
            elif _TIMING_KEY.search(k) and isinstance(v, (int, float, str)):
                out[k] = "<measured>"
            else:
                out[k] = normalize(v, k)
        return out
    if isinstance(value, list):
        return [normalize(v, key) for v in value]
    if isinstance(value, str):
        return _normal_text(value)
    return value


def _short(value: Any, width: int = 70) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):  # messages
        parts = [
            f"{m.get('role', '?')}: {_flat(m.get('content'))}" if isinstance(m, dict) else _flat(m)
            for m in value
        ]
        text = " | ".join(parts)
    elif isinstance(value, dict):
        text = (
            f"{value.get('role', '?')}: {_flat(value.get('content'))}"
            + (f" +{len(value['tool_calls'])} tool call(s)" if value.get("tool_calls") else "")
            if "role" in value
            else json.dumps(value, sort_keys=True)
        )
    else:
        text = str(value)
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def _flat(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(str(p.get("text", p)) if isinstance(p, dict) else str(p) for p in content)
    return "" if content is None else str(content)


def summary(sessions: list[dict[str, Any]]) -> list[str]:
    """A compact, readable tree: one line per session, trace and step."""
    lines = []
    for s in sessions:
        lines.append(
            f"session {s.get('external_id')!r}: {s.get('num_traces')} traces, "
            f"{s.get('num_errors')} errors; input={_short(s.get('input'), 50)}"
        )
        for trace in s.get("traces", []):
            lines.extend(_summary_step(trace, 1))
    return lines


def _summary_step(step: dict[str, Any], depth: int) -> list[str]:
    status = step.get("status_code")
    metrics = step.get("metrics") or {}
    tokens = (
        f" tokens={metrics.get('num_input_tokens')}/{metrics.get('num_output_tokens')}"
        if metrics.get("num_input_tokens") is not None
        else ""
    )
    head = f"{'  ' * depth}{step.get('type')} {step.get('name')!r}"
    head += f" [{status}]" if status not in (None, 200) else ""
    lines = [
        f"{head}{tokens}",
        f"{'  ' * depth}  in:  {_short(step.get('input'))}",
        f"{'  ' * depth}  out: {_short(step.get('output'))}",
    ]
    for child in step.get("spans") or []:
        lines.extend(_summary_step(child, depth + 1))
    return lines


def golden_document(
    instrumentation: str, tier: str, scenario: str, sessions: list[dict[str, Any]]
) -> dict[str, Any]:
    normal = normalize(sessions)
    return {
        "instrumentation": instrumentation,
        "tier": tier,
        "scenario": scenario,
        "summary": summary(normal),
        "sessions": normal,
    }


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def check_golden(document: dict[str, Any]) -> None:
    """Compare with the committed golden (or rewrite it under GALILEO_UPDATE_GOLDENS=1)."""
    path = (
        GOLDEN_DIR
        / document["instrumentation"]
        / document["tier"]
        / (document["scenario"] + ".json")
    )
    text = dumps(document)
    if UPDATE_GOLDENS:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    if not path.exists():
        pytest.fail(
            f"no golden file {path.relative_to(HERE.parents[1])}: review the run and write it "
            "with GALILEO_UPDATE_GOLDENS=1"
        )
    expected = path.read_text()
    if expected == text:
        return
    diff = list(
        difflib.unified_diff(
            expected.splitlines(),
            text.splitlines(),
            fromfile=f"golden {path.name}",
            tofile="this run",
            lineterm="",
            n=2,
        )
    )
    shown = diff[:MAX_DIFF_LINES]
    if len(diff) > MAX_DIFF_LINES:
        shown.append(f"... {len(diff) - MAX_DIFF_LINES} more diff lines")
    pytest.fail(
        f"{path.relative_to(HERE.parents[1])} differs from this run "
        "(if the change is intended, rerun with GALILEO_UPDATE_GOLDENS=1 and review the diff):\n"
        + "\n".join(shown),
        pytrace=False,
    )


# ------------------------------------------------------------------------------------------------
# Property helpers
# ------------------------------------------------------------------------------------------------


def steps(step: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every step under ``step`` (a trace or a step), depth first."""
    for child in step.get("spans") or []:
        yield child
        yield from steps(child)


def span_failed(span: ReadableSpan) -> bool:
    """Whether the instrumentation marked the span failed (status, exception, error.type)."""
    return (
        span.status.status_code is StatusCode.ERROR
        or any(e.name == "exception" for e in span.events)
        or bool((span.attributes or {}).get("error.type"))
    )


TOKEN_ATTRIBUTES = (
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.prompt_tokens",
    "llm.token_count.prompt",
    "llm.usage.total_tokens",
)


def recorded_anywhere(spans: list[ReadableSpan], text: str) -> bool:
    """Whether ``text`` appears in any attribute or event attribute of the raw spans: when it
    does not, the instrumentation never recorded it and no conversion can show it."""

    def values(attributes: Any) -> Iterator[str]:
        for value in (attributes or {}).values():
            if isinstance(value, str):
                yield value
            elif isinstance(value, (list, tuple)):
                yield from (v for v in value if isinstance(v, str))

    for span in spans:
        if any(text in v for v in values(span.attributes)):
            return True
        if any(text in v for e in span.events for v in values(e.attributes)):
            return True
    return False


def recorded_agents(spans: list[ReadableSpan]) -> list[str]:
    """The names of the spans the instrumentation recorded as agents (an OpenInference AGENT
    span, a GenAI ``invoke_agent``, Pydantic AI's older ``agent run``)."""
    return [
        span.name
        for span in spans
        if (span.attributes or {}).get("openinference.span.kind") == "AGENT"
        or (span.attributes or {}).get("gen_ai.operation.name") == "invoke_agent"
        or span.name == "agent run"
    ]


def recorded_tokens(spans: list[ReadableSpan]) -> bool:
    """Whether the instrumentation recorded token usage on any span."""
    return any(key in (span.attributes or {}) for span in spans for key in TOKEN_ATTRIBUTES)


def text_of(value: Any) -> str:
    """A step input/output as plain text (a string, a message, or a message list's last text)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return _flat(value.get("content"))
    if isinstance(value, list) and value:
        return text_of(value[-1])
    return ""


SENT_TRACES: dict[str, dict[str, Any]] = {}
"""Every trace the clients sent to the suite's server, as sent, by id (see conftest.py)."""


def sent_trace(stored: dict[str, Any]) -> dict[str, Any]:
    """The body the client sent for a stored trace (the stored record carries what the server
    adds when it stores: session ids, span lists, totals)."""
    sent = SENT_TRACES.get(str(stored.get("id")))
    assert sent is not None, f"trace {stored.get('id')} was stored but never seen on the wire"
    return sent
