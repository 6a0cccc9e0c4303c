"""The local server's web UI: sessions, each user's chain, a session's traces and a trace's steps.

Server-rendered Jinja2 pages and two static files (CSS, a small polling script): no CDN, no build
step, nothing fetched from the network. Every value shown comes from untrusted apps (prompts can
hold HTML), so templates autoescape everything and pages carry a Content-Security-Policy that
allows only this server's own script and styles.

Access follows the Jupyter convention: the server keeps a token next to its database and prints
the URL that carries it (``RunningServer.ui_url``, ``galileo-otel serve``). ``?token=`` on ANY
page's URL sets an expiring HttpOnly cookie and redirects to the same URL without the token;
without the cookie a page shows nothing but how to get in (:class:`~galileo_otel.server.auth.UIAccess`).
The REST API keeps its own rule (the ``Galileo-API-Key`` header) and ignores the cookie.

The sessions list runs the same filter compiler as Count/Query Sessions
(:func:`galileo_otel.server.query.compile_session_filter`); sorting, search over inputs and
outputs and the totals come from :mod:`galileo_otel.server.reads`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from starlette.responses import Response

from galileo_otel.api.filters import Condition, boolean, date, id_, text
from galileo_otel.server.auth import UI_COOKIE_PREFIX as COOKIE_PREFIX
from galileo_otel.server.auth import UI_TOKEN_PARAM as TOKEN_PARAM
from galileo_otel.server.auth import UIAccess, load_or_create_ui_token
from galileo_otel.server.query import FilterError, compile_session_filter
from galileo_otel.server.reads import SESSION_SORTS, TOTAL_KEYS, TRACE_SORTS, Reads
from galileo_otel.sessions.resolve import USER_ID
from galileo_otel.views import content_part_text

if TYPE_CHECKING:
    import jinja2

    from galileo_otel.server.app import ServerState

__all__ = [
    "COOKIE_PREFIX",
    "TOKEN_PARAM",
    "UIAccess",
    "mount_ui",
    "ui_access",
]

PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
MAX_CHAIN_SESSIONS = 200
MAX_NEXT_SESSIONS = 50
POLL_INTERVAL_MS = 2000

_DATETIME = TypeAdapter(datetime)
_HERE = Path(__file__).parent
_TEMPLATES = _HERE / "templates"
_STATIC = _HERE / "static"

# Nothing but this server's own files runs or styles the pages, so markup smuggled into a prompt
# that escaped escaping would still be inert.
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def ui_access(app: FastAPI) -> UIAccess:
    """The :class:`UIAccess` of an app built by :func:`~galileo_otel.server.app.create_app`."""
    access: UIAccess = app.state.galileo_ui
    return access


def mount_ui(app: FastAPI) -> UIAccess:
    """Add the web UI's routes and static files to the server app (``app.state.galileo``).

    Returns:
        The UI's access token holder, also kept as ``app.state.galileo_ui``.
    """
    state: ServerState = app.state.galileo
    # Stored next to the database, so a URL printed once (by the demo, by an earlier serve)
    # keeps opening this database's UI.
    access = UIAccess(load_or_create_ui_token(state.store.path))
    app.state.galileo_ui = access
    try:
        env = _environment()
    except ImportError:
        env = None
    app.include_router(_router(state, access, env, Reads(state.store.path)))
    app.mount("/ui/static", StaticFiles(directory=_STATIC), name="ui-static")
    return access


def _environment() -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=True,
        # A field an older or foreign client left out renders empty instead of failing the page.
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=format_time,
        duration=format_duration,
        short_id=short_id,
        short=shorten,
        pretty=pretty_json,
        count=format_count,
        when_us=format_us,
    )
    return env


# --- formatting ---------------------------------------------------------------------------------


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time as an aware UTC datetime (naive is UTC), or None."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and value:
        # pydantic, not datetime.fromisoformat: Python 3.10's takes only isoformat()'s own forms.
        try:
            parsed = _DATETIME.validate_python(value)
        except PydanticValidationError:
            return None
    else:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def format_time(value: Any) -> str:
    """``2026-11-27 14:05:09`` (UTC), or an empty string."""
    parsed = parse_time(value)
    return parsed.strftime("%Y-%m-%d %H:%M:%S") if parsed else ""


def format_duration(ns: Any) -> str:
    """A duration in nanoseconds for people: ``850 µs``, ``412 ms``, ``3.2 s``, ``45 min``."""
    if not isinstance(ns, (int, float)) or isinstance(ns, bool) or ns < 0:
        return ""
    if ns < 1_000_000:
        return f"{ns / 1000:.0f} µs"
    if ns < 1_000_000_000:
        return f"{ns / 1_000_000:.0f} ms"
    seconds = ns / 1_000_000_000
    if seconds < 90:
        return f"{seconds:.1f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def format_us(value: Any) -> str:
    """Microseconds since the epoch as ``2026-11-27 14:05:09`` (UTC), or an em dash."""
    if not isinstance(value, int) or isinstance(value, bool):
        return "—"
    instant = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=value)
    return instant.strftime("%Y-%m-%d %H:%M:%S")


def format_count(value: Any) -> str:
    """A count for a totals column: ``1,234``, or an em dash when it is unknown."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "—"
    return f"{int(value):,}"


def short_id(value: Any) -> str:
    """The first 8 characters of an id."""
    return str(value)[:8] if value else ""


def shorten(value: Any, limit: int = 80) -> str:
    """One line of at most ``limit`` characters of a value (JSON for non-strings)."""
    if value is None:
        return ""
    raw = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    one_line = " ".join(raw.split())
    return one_line if len(one_line) <= limit else one_line[: limit - 1] + "…"


def pretty_json(value: Any) -> str:
    """A value as indented JSON; a string that holds JSON is shown parsed."""
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        if isinstance(parsed, str) or not isinstance(parsed, (dict, list)):
            return value
        value = parsed
    return json.dumps(value, ensure_ascii=False, indent=2, default=str)


# --- sessions list: the filter form to Count/Query Sessions filters -----------------------------


@dataclass
class SessionFilters:
    """The sessions list's filter form, as typed (strings) and as Count/Query Sessions filters."""

    user: str = ""
    external_id: str = ""
    errors: str = ""
    since: str = ""
    until: str = ""
    log_stream: str = ""
    q: str = ""
    problems: list[str] = field(default_factory=list)

    def conditions(self) -> list[Condition]:
        """The typed filters; a value that cannot be a filter is noted in ``problems``."""
        found: list[Condition] = []
        if self.user:
            found.append(text(f"user_metadata.{USER_ID}") == self.user)
        if self.external_id:
            found.append(text("external_id").contains(self.external_id, case_sensitive=False))
        if self.errors == "yes":
            found.append(boolean("has_error").is_true())
        elif self.errors == "no":
            found.append(boolean("has_error").is_false())
        elif self.errors:
            self.problems.append(f"errors: expected yes, no or empty, got {self.errors!r}")
        for label, raw, column in (("from", self.since, "ge"), ("to", self.until, "le")):
            if not raw:
                continue
            instant = parse_time(raw)
            if instant is None:
                self.problems.append(f"{label}: not a date and time (YYYY-MM-DDTHH:MM): {raw!r}")
            elif column == "ge":
                found.append(date("created_at") >= instant)
            else:
                found.append(date("created_at") <= instant)
        return found

    def scope(self) -> dict[str, Any]:
        """The Count/Query Sessions scope (log stream)."""
        if not self.log_stream:
            return {}
        try:
            return {"log_stream_id": str(uuid.UUID(self.log_stream))}
        except ValueError:
            self.problems.append(f"log stream: not an id: {self.log_stream!r}")
            return {}

    def query(self) -> dict[str, str]:
        """The non-empty fields, for links that keep the filters."""
        fields = {
            "user": self.user,
            "external_id": self.external_id,
            "errors": self.errors,
            "since": self.since,
            "until": self.until,
            "log_stream": self.log_stream,
            "q": self.q,
        }
        return {k: v for k, v in fields.items() if v}


def _wire(conditions: Sequence[Condition]) -> list[dict[str, Any]]:
    return [c.to_filter_dict() for c in conditions]


# --- step trees ---------------------------------------------------------------------------------


@dataclass
class TreeEvent:
    """One event of a flattened step tree: ``open`` a step (then its children), or ``close`` it."""

    kind: str
    step: Mapping[str, Any] = field(default_factory=dict)
    depth: int = 0


def walk_steps(root: Mapping[str, Any]) -> Iterator[TreeEvent]:
    """The steps under ``root`` as open/close events, depth first, without recursion.

    Templates render nesting from these events, so a tree thousands of levels deep cannot hit
    Python's (or Jinja's) recursion limit.
    """
    stack: list[tuple[Mapping[str, Any], int, bool]] = [
        (child, 0, False) for child in reversed(_children(root))
    ]
    while stack:
        step, depth, closing = stack.pop()
        if closing:
            yield TreeEvent("close", step, depth)
            continue
        yield TreeEvent("open", step, depth)
        stack.append((step, depth, True))
        stack.extend((child, depth + 1, False) for child in reversed(_children(step)))


def _children(step: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    spans = step.get("spans") or []
    return [s for s in spans if isinstance(s, Mapping)]


def count_steps(root: Mapping[str, Any]) -> int:
    """How many steps are under ``root``."""
    return sum(1 for event in walk_steps(root) if event.kind == "open")


def is_error(step: Mapping[str, Any]) -> bool:
    """Whether a step's ``status_code`` says it failed."""
    code = step.get("status_code")
    return isinstance(code, int) and code >= 400


_ERROR_KEYS = ("otel.status_description", "exception.type", "exception.message")


def error_details(step: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What the converter kept of a failed step's error (status description, exception)."""
    meta = step.get("user_metadata") or {}
    return [(key, str(meta[key])) for key in _ERROR_KEYS if key in meta]


def messages_of(value: Any) -> list[Mapping[str, Any]] | None:
    """A step input/output as a list of chat messages, or None when it is not messages."""
    if isinstance(value, Mapping) and "role" in value:
        return [value]
    if isinstance(value, list) and value and all(isinstance(m, Mapping) for m in value):
        if all("role" in m for m in value):
            return list(value)
    return None


def documents_of(value: Any) -> list[Mapping[str, Any]] | None:
    """A retriever output as documents, or None."""
    if isinstance(value, list) and all(isinstance(d, Mapping) and "content" in d for d in value):
        return list(value)
    return None


def content_parts(content: Any) -> list[str]:
    """A message's content as text blocks (file and media parts named, not dumped)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, Mapping):
                text = content_part_text(part)
                parts.append(pretty_json(part) if text is None else text)
            else:
                parts.append(str(part))
        return parts
    return [pretty_json(content)]


# --- chains -------------------------------------------------------------------------------------


@dataclass
class ChainSession:
    """One session of a user's chain, with when its traces ran (span time, not arrival time)."""

    record: dict[str, Any]
    start: datetime | None
    end: datetime | None
    trace_starts: list[datetime]
    previous: ChainSession | None = None
    rotation: bool = False
    gap_ns: int | None = None
    lane: int = 0

    @property
    def id(self) -> str:
        """The session id."""
        return str(self.record["id"])


def _trace_span(trace: Mapping[str, Any]) -> tuple[datetime | None, datetime | None]:
    start = parse_time(trace.get("created_at"))
    if start is None:
        return None, None
    duration = (trace.get("metrics") or {}).get("duration_ns")
    if isinstance(duration, int) and duration > 0:
        return start, start + timedelta(microseconds=duration // 1000)
    return start, start


def build_chain(
    records: Sequence[dict[str, Any]], traces: Mapping[str, Sequence[Mapping[str, Any]]]
) -> list[ChainSession]:
    """A user's sessions with their time spans, links and rotations, oldest first.

    A session is a rotation when it continues the session before it after the idle timeout (or
    max age): the previous session has the same conversation key (``external_id``), or both are
    automatic sessions (no key) of the user. ``gap_ns`` is the time between the previous
    session's last trace and this one's first.
    """
    chain: list[ChainSession] = []
    by_id: dict[str, ChainSession] = {}
    for lane, record in enumerate(records):
        starts: list[datetime] = []
        ends: list[datetime] = []
        for trace in traces.get(str(record["id"]), ()):
            start, end = _trace_span(trace)
            if start is not None and end is not None:
                starts.append(start)
                ends.append(end)
        item = ChainSession(
            record=record,
            start=min(starts) if starts else parse_time(record.get("created_at")),
            end=max(ends) if ends else parse_time(record.get("updated_at")),
            trace_starts=sorted(starts),
            lane=lane,
        )
        chain.append(item)
        by_id[item.id] = item
    for item in chain:
        previous = by_id.get(str(item.record.get("previous_session_id") or ""))
        if previous is None:
            continue
        item.previous = previous
        item.rotation = previous.record.get("external_id") == item.record.get("external_id")
        if previous.end is not None and item.start is not None:
            item.gap_ns = int((item.start - previous.end).total_seconds() * 1e9)
    return chain


@dataclass
class Timeline:
    """Coordinates of a chain's SVG timeline (computed here so the template only draws)."""

    width: int
    height: int
    left: int
    bars: list[dict[str, Any]]
    links: list[dict[str, Any]]
    ticks: list[dict[str, Any]]
    breaks: list[dict[str, Any]] = field(default_factory=list)


_LANE_H = 30
_LEFT = 230
_WIDTH = 1000
_TOP = 28
_BREAK_W = 56.0
_MAX_BREAKS = 7
_PAD = 6.0


class TimeAxis:
    """Time to x, with the longest quiet stretches cut out of the axis.

    Sessions of one user can be minutes long and hours apart; on a linear axis they would be
    specks. The largest gaps (up to :data:`_MAX_BREAKS`, each longer than 8% of the whole span
    and 2 minutes) become fixed-width breaks labelled with their length; the busy stretches
    between them share the rest of the width, each at least a fair share.
    """

    def __init__(
        self, intervals: Sequence[tuple[datetime, datetime]], left: float, width: float
    ) -> None:
        ivs = sorted(intervals)
        first, last = ivs[0][0], max(e for _, e in ivs)
        total_s = max((last - first).total_seconds(), 1e-6)
        merged: list[list[datetime]] = []
        for s, e in ivs:
            if merged and s <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        gaps = [(merged[i + 1][0] - merged[i][1]).total_seconds() for i in range(len(merged) - 1)]
        cut_at = max(total_s * 0.08, 120.0)
        chosen = sorted(
            (i for i, g in enumerate(gaps) if g > cut_at), key=lambda i: gaps[i], reverse=True
        )[:_MAX_BREAKS]
        cut = set(chosen)
        # Busy stretches: runs of merged intervals not separated by a cut gap.
        stretches: list[list[datetime]] = [list(merged[0])]
        for i in range(1, len(merged)):
            if i - 1 in cut:
                stretches.append(list(merged[i]))
            else:
                stretches[-1][1] = merged[i][1]
        usable = width - _BREAK_W * (len(stretches) - 1)
        durations = [(e - s).total_seconds() for s, e in stretches]
        # A short stretch is widened in time (not just in pixels) to a fair share, so a
        # 2-second session stays a narrow bar instead of filling its stretch; never into the
        # neighbouring gaps' middle.
        floor_s = max(sum(durations) / (2 * len(stretches)), 60.0)
        for i, (s, e) in enumerate(stretches):
            grow = (floor_s - durations[i]) / 2
            if grow <= 0:
                continue
            room_before = (s - stretches[i - 1][1]).total_seconds() / 2 if i else grow
            room_after = (
                (stretches[i + 1][0] - e).total_seconds() / 2 if i + 1 < len(stretches) else grow
            )
            stretches[i] = [
                s - timedelta(seconds=min(grow, room_before)),
                e + timedelta(seconds=min(grow, room_after)),
            ]
        weights = [max((e - s).total_seconds(), 1e-6) for s, e in stretches]
        scale = usable / sum(weights)
        self.segments: list[tuple[datetime, datetime, float, float]] = []
        self.breaks: list[dict[str, Any]] = []
        x = left
        for index, ((s, e), weight) in enumerate(zip(stretches, weights, strict=True)):
            w = weight * scale
            self.segments.append((s, e, x, w))
            x += w
            if index < len(stretches) - 1:
                gap_ns = int((stretches[index + 1][0] - e).total_seconds() * 1e9)
                self.breaks.append(
                    {"x": round(x, 1), "w": _BREAK_W, "label": f"+{format_duration(gap_ns)}"}
                )
                x += _BREAK_W

    def x(self, t: datetime | None) -> float:
        """The x of an instant (the start of the axis for None)."""
        if t is None:
            return self.segments[0][2]
        previous_end: tuple[datetime, float] | None = None
        for s, e, x0, w in self.segments:
            if t < s and previous_end is not None:
                # Inside a break: spread linearly over the break's width.
                pe, px = previous_end
                frac = (t - pe).total_seconds() / max((s - pe).total_seconds(), 1e-6)
                return px + _BREAK_W * frac
            if t <= e or (s, e, x0, w) == self.segments[-1]:
                inner = max(w - 2 * _PAD, 1.0)
                span = (e - s).total_seconds()
                frac = (t - s).total_seconds() / span if span > 0 else 0.5
                return x0 + _PAD + inner * min(max(frac, 0.0), 1.0)
            previous_end = (e, x0 + w)
        return self.segments[-1][2] + self.segments[-1][3]

    def ticks(self) -> list[dict[str, Any]]:
        """A time label at the start of each busy stretch (and the end of a wide one)."""
        ticks = []
        for s, e, _x0, w in self.segments:
            ticks.append({"x": round(self.x(s), 1), "label": s.strftime("%H:%M")})
            if w > 160 and (e - s).total_seconds() >= 60:
                ticks.append({"x": round(self.x(e), 1), "label": e.strftime("%H:%M")})
        return ticks


SIMULATED_CLOCK_KEY = "demo.clock"
"""Session metadata that marks span times as simulated (``galileo-otel demo`` sets it)."""


def simulated_mark(record: Mapping[str, Any]) -> str:
    """`` (simulated)`` for a session whose span times are simulated, else nothing."""
    return " (simulated)" if (record.get("user_metadata") or {}).get(SIMULATED_CLOCK_KEY) else ""


def layout_timeline(chain: Sequence[ChainSession]) -> Timeline:
    """Lay a chain out: one lane per session, x is time, arrows from each previous session."""
    height = _TOP + _LANE_H * max(len(chain), 1) + 22
    intervals = [(s.start, s.end) for s in chain if s.start is not None and s.end is not None]
    if not intervals:
        return Timeline(_WIDTH, height, _LEFT, [], [], [])
    axis = TimeAxis(intervals, _LEFT, _WIDTH - _LEFT - 14)
    x = axis.x
    bars = []
    for s in chain:
        x0, x1 = x(s.start), x(s.end)
        y = _TOP + s.lane * _LANE_H
        bars.append(
            {
                "session": s,
                "x": round(x0 - 3, 1),
                "y": y + 6,
                "w": round(max(x1 - x0 + 6, 8.0), 1),
                "h": _LANE_H - 12,
                "label_y": y + _LANE_H / 2 + 4,
                "dots": [round(x(t), 1) for t in s.trace_starts],
                "error": bool(s.record.get("num_errors")),
            }
        )
    links = []
    for s in chain:
        if s.previous is None:
            continue
        px = x(s.previous.end) + 3
        py = _TOP + s.previous.lane * _LANE_H + _LANE_H / 2
        cx, cy = x(s.start) - 4, _TOP + s.lane * _LANE_H + _LANE_H / 2
        mid = (px + cx) / 2
        links.append(
            {
                "d": f"M{px:.1f},{py:.1f} C{mid:.1f},{py:.1f} {mid:.1f},{cy:.1f} {cx:.1f},{cy:.1f}",
                "rotation": s.rotation,
                "label": f"idle {format_duration(s.gap_ns)}{simulated_mark(s.record)}"
                if s.rotation and s.gap_ns and s.gap_ns > 0
                else "",
                "label_x": round(mid, 1),
                "label_y": round((py + cy) / 2 - 3, 1),
            }
        )
    return Timeline(_WIDTH, height, _LEFT, bars, links, axis.ticks(), axis.breaks)


# --- trace waterfall ----------------------------------------------------------------------------

WATERFALL_WIDTH = 1000


def _step_span(step: Mapping[str, Any]) -> tuple[datetime | None, int | None]:
    duration = (step.get("metrics") or {}).get("duration_ns")
    ok = isinstance(duration, int) and not isinstance(duration, bool) and duration >= 0
    return parse_time(step.get("created_at")), duration if ok else None


def waterfall(trace: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """Each step's bar on the trace's time axis: ``{step id: {"x", "w"}}`` in 0..1000 units.

    The axis runs from the trace's start to the latest end of the trace or any step; a step
    without a start time or duration gets no bar.
    """
    start, duration = _step_span(trace)
    steps = [e.step for e in walk_steps(trace) if e.kind == "open"]
    spans: list[tuple[str, datetime, int]] = []
    for step in steps:
        s_start, s_dur = _step_span(step)
        if step.get("id") and s_start is not None and s_dur is not None:
            spans.append((str(step["id"]), s_start, s_dur))
    if start is None:
        if not spans:
            return {}
        start = min(s for _, s, _ in spans)
    ends = [(s - start).total_seconds() * 1e9 + d for _, s, d in spans]
    total_ns = max([float(duration or 0), *ends, 1.0])
    bars: dict[str, dict[str, float]] = {}
    for step_id, s_start, s_dur in spans:
        offset = max((s_start - start).total_seconds() * 1e9, 0.0)
        x = WATERFALL_WIDTH * offset / total_ns
        w = max(WATERFALL_WIDTH * s_dur / total_ns, 2.0)
        bars[step_id] = {"x": round(min(x, WATERFALL_WIDTH - 2), 1), "w": round(w, 1)}
    return bars


def with_totals(record: Mapping[str, Any], computed: Mapping[str, Any] | None) -> dict[str, Any]:
    """A record's totals: its own stored keys where present, else the computed ones."""
    totals = dict(computed or {})
    for key in TOTAL_KEYS:
        if record.get(key) is not None:
            totals[key] = record[key]
    return totals


def _total(key: str) -> Callable[[Mapping[str, Any]], Any]:
    return lambda t: (t.get("totals") or {}).get(key)


SESSION_TRACE_SORTS: Mapping[str, Callable[[Mapping[str, Any]], Any]] = {
    "turn": lambda t: t["turn"],
    "started": lambda t: t.get("created_at"),
    "steps": count_steps,
    "total_tokens": _total("total_tokens"),
    "num_llm_calls": _total("num_llm_calls"),
    "duration_ns": _total("duration_ns"),
    "status": lambda t: t.get("status_code"),
}
"""A session page's sortable trace columns (the ``?sort=`` values) and the value each reads."""


def sort_session_traces(traces: list[dict[str, Any]], sorting: Sorting) -> list[dict[str, Any]]:
    """A session's traces, each with its ``turn`` (arrival number), as ``sorting`` says.

    Traces without the value go last either way; ties keep arrival order.
    """
    read = SESSION_TRACE_SORTS[sorting.column]
    ordered = sorted(traces, key=lambda t: t["turn"])
    present = [t for t in ordered if read(t) is not None]
    present.sort(key=read, reverse=sorting.descending)  # stable both ways
    return present + [t for t in ordered if read(t) is None]


@dataclass
class Sorting:
    """A list's sort: the column (a ``?sort=`` value) and the direction."""

    column: str
    descending: bool
    known: Mapping[str, Any]  # the sortable columns, by ``?sort=`` value
    default: str
    default_descending: bool = True

    @classmethod
    def parse(
        cls,
        sort: str,
        order: str,
        known: Mapping[str, Any],
        default: str,
        default_descending: bool = True,
    ) -> Sorting:
        """``?sort=&dir=``; an unknown column falls back to the default.

        The default runs newest first unless ``default_descending`` is false.
        """
        if sort not in known:
            return cls(default, default_descending, known, default, default_descending)
        return cls(sort, order != "asc", known, default, default_descending)

    def link(self, column: str, keep: Mapping[str, str], path: str) -> str:
        """The URL that sorts by ``column`` (toggling the direction when it is already sorted)."""
        descending = not self.descending if column == self.column else column != "name"
        query = {**keep, "sort": column, "dir": "desc" if descending else "asc"}
        return f"{path}?{urlencode(query)}"

    def mark(self, column: str) -> str:
        """An arrow on the sorted column's header."""
        if column != self.column:
            return ""
        return " ↓" if self.descending else " ↑"

    def query(self) -> dict[str, str]:
        """The sort as URL parameters (empty for the default)."""
        if self.column == self.default and self.descending == self.default_descending:
            return {}
        return {"sort": self.column, "dir": "desc" if self.descending else "asc"}


# --- the router ---------------------------------------------------------------------------------


def _router(
    state: ServerState, access: UIAccess, env: jinja2.Environment | None, reads: Reads
) -> APIRouter:
    store = state.store
    router = APIRouter(include_in_schema=False)

    def page(template: str, status: int = 200, *, live: bool = True, **context: Any) -> Response:
        if env is None:
            return PlainTextResponse(
                "The web UI needs jinja2: pip install 'galileo-otel[server]'", status_code=503
            )
        if live:
            # Only pages behind the cookie poll: the version counts rows, which is data too.
            context.update(poll_ms=POLL_INTERVAL_MS, version=_version())
        html = env.get_template(template).render(**context)
        return HTMLResponse(html, status_code=status, headers=_SECURITY_HEADERS)

    def cookie_name(request: Request) -> str:
        return access.cookie_name(request.url.port)

    def gate(request: Request) -> Response | None:
        """Jupyter's rule on every page: ``?token=`` logs in and redirects to the clean URL.

        Returns None when the request may see the page, else the response to send instead.
        """
        token = request.query_params.get(TOKEN_PARAM)
        if token is not None:
            if not access.token_matches(token):
                return locked("That token is not this server's.", 403)
            clean = request.url.remove_query_params(TOKEN_PARAM)
            response = RedirectResponse(
                str(clean.path) + (f"?{clean.query}" if clean.query else ""), 303
            )
            # Persistent (Max-Age), so it outlives a browser restart; Lax, so a link to a page
            # from elsewhere (a chat message, a terminal) opens it with the cookie.
            response.set_cookie(
                cookie_name(request),
                access.issue_cookie(),
                max_age=access.cookie_max_age_s,
                httponly=True,
                samesite="lax",
                path="/",
            )
            response.headers["Referrer-Policy"] = "no-referrer"
            response.headers["Cache-Control"] = "no-store"
            return response
        if not access.cookie_matches(request.cookies.get(cookie_name(request))):
            return locked("Open the URL with the token that the server printed when it started.")
        return None

    def locked(reason: str, status: int = 401) -> Response:
        return page("locked.html", status, live=False, reason=reason)

    def _version() -> str:
        stats = store.stats()
        return f"{stats['sessions']}:{stats['traces']}:{stats['spans']}"

    def default_project() -> dict[str, Any] | None:
        projects = store.find_projects()
        # The newest project that holds sessions, else the newest project.
        candidate: dict[str, Any]
        for candidate in reversed(projects):
            if store.count_sessions(candidate["id"], {}, compile_session_filter()):
                return candidate
        return projects[-1] if projects else None

    def unknown_project(project_id: str) -> Response:
        return page(
            "missing.html",
            404,
            what=f"project {project_id}",
            hint="That project does not exist on this server (was it sent to another one?).",
            projects=store.find_projects(),
        )

    def sessions_with_totals(
        project_id: str, records: Sequence[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        totals = reads.session_totals(project_id, [str(r["id"]) for r in records])
        return [{**r, "totals": with_totals(r, totals.get(str(r["id"])))} for r in records]

    @router.get("/")
    def sessions_page(
        request: Request,
        project: str | None = Query(None),
        user: str = Query(""),
        external_id: str = Query(""),
        errors: str = Query(""),
        since: str = Query(""),
        until: str = Query(""),
        log_stream: str = Query(""),
        q: str = Query("", max_length=500),
        sort: str = Query(""),
        dir: str = Query(""),
        start: int = Query(0, ge=0, le=2**53),
        limit: int = Query(PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE),
    ) -> Response:
        """The sessions list; ``?token=`` logs in (sets the cookie) and redirects here."""
        refused = gate(request)
        if refused is not None:
            return refused
        projects = store.find_projects()
        if project:
            current = store.get_project(project)
            if current is None:
                return unknown_project(project)
        else:
            current = default_project()
        form = SessionFilters(user, external_id, errors, since, until, log_stream, q=q.strip())
        sorting = Sorting.parse(sort, dir, SESSION_SORTS, "created")
        records: list[dict[str, Any]] = []
        total = 0
        more = False
        streams: list[dict[str, Any]] = []
        in_project = 0
        if current is not None:
            streams = store.list_log_streams(current["id"])
            conditions = form.conditions()
            scope = form.scope()
            in_project = store.count_sessions(current["id"], {}, compile_session_filter())
            if not form.problems:
                try:
                    compiled = compile_session_filter(_wire(conditions))
                    ids, more, total = reads.search_sessions(
                        current["id"],
                        scope,
                        compiled,
                        text=form.q,
                        sort=sorting.column,
                        descending=sorting.descending,
                        offset=start,
                        limit=limit,
                    )
                    found = [store.get_session(current["id"], sid) for sid in ids]
                    records = sessions_with_totals(current["id"], [r for r in found if r])
                except FilterError as exc:
                    form.problems.append(exc.msg)
        base = {"project": current["id"]} if current else {}
        keep = {**base, **form.query()}
        if limit != PAGE_SIZE:
            keep["limit"] = str(limit)
        paged = {**keep, **sorting.query()}
        return page(
            "sessions.html",
            422 if form.problems else 200,
            projects=projects,
            project=current,
            streams=streams,
            form=form,
            records=records,
            total=total,
            in_project=in_project,
            start=start,
            limit=limit,
            sorting=sorting,
            sort_url=lambda column: sorting.link(column, keep, "/"),
            prev_url="/?" + urlencode({**paged, "start": max(start - limit, 0)}) if start else None,
            next_url="/?" + urlencode({**paged, "start": start + limit}) if more else None,
            chain_url=lambda u: "/ui/projects/{}/chain?{}".format(
                current["id"] if current else "", urlencode({"user": u})
            ),
            user_key=USER_ID,
            base_url=str(request.base_url).rstrip("/"),
        )

    @router.get("/ui/projects/{project_id}/traces")
    def traces_page(
        request: Request,
        project_id: str,
        q: str = Query("", max_length=500),
        session: str = Query(""),
        errors: str = Query(""),
        sort: str = Query(""),
        dir: str = Query(""),
        start: int = Query(0, ge=0, le=2**53),
        limit: int = Query(PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE),
    ) -> Response:
        """Every trace of a project: search over inputs and outputs, sortable totals."""
        refused = gate(request)
        if refused is not None:
            return refused
        project = store.get_project(project_id)
        if project is None:
            return unknown_project(project_id)
        sorting = Sorting.parse(sort, dir, TRACE_SORTS, "started")
        problems = []
        if errors not in ("", "yes", "no"):
            problems.append(f"errors: expected yes, no or empty, got {errors!r}")
        records, more, total = reads.search_traces(
            project_id,
            text=q.strip(),
            session_id=session or None,
            errors={"yes": True, "no": False}.get(errors),
            sort=sorting.column,
            descending=sorting.descending,
            offset=start,
            limit=limit,
        )
        in_project = reads.search_traces(project_id, limit=1)[2] if not total else total
        for record in records:
            record["totals"] = with_totals(record, record.get("totals"))
        keep = {
            k: v for k, v in {"q": q.strip(), "session": session, "errors": errors}.items() if v
        }
        if limit != PAGE_SIZE:
            keep["limit"] = str(limit)
        paged = {**keep, **sorting.query()}
        path = f"/ui/projects/{project_id}/traces"
        return page(
            "traces.html",
            422 if problems else 200,
            project=project,
            projects=store.find_projects(),
            records=records,
            total=total,
            in_project=in_project,
            start=start,
            q=q.strip(),
            session_filter=session,
            errors=errors,
            problems=problems,
            sorting=sorting,
            sort_url=lambda column: sorting.link(column, keep, path),
            prev_url=f"{path}?" + urlencode({**paged, "start": max(start - limit, 0)})
            if start
            else None,
            next_url=f"{path}?" + urlencode({**paged, "start": start + limit}) if more else None,
        )

    @router.get("/ui/projects/{project_id}/chain")
    def chain_page(request: Request, project_id: str, user: str = Query(...)) -> Response:
        """A user's sessions as a timeline, linked by ``previous_session_id``."""
        refused = gate(request)
        if refused is not None:
            return refused
        project = store.get_project(project_id)
        if project is None:
            return unknown_project(project_id)
        compiled = compile_session_filter(_wire([text(f"user_metadata.{USER_ID}") == user]))
        total = store.count_sessions(project_id, {}, compiled)
        records, _ = store.search_sessions(
            project_id,
            {},
            compiled,
            {"column_id": "created_at", "ascending": True},
            0,
            MAX_CHAIN_SESSIONS,
        )
        traces = {str(r["id"]): store.session_traces(project_id, str(r["id"])) for r in records}
        chain = build_chain(sessions_with_totals(project_id, records), traces)
        return page(
            "chain.html",
            project=project,
            user=user,
            chain=chain,
            simulated_mark=simulated_mark,
            total=total,
            timeline=layout_timeline(chain),
        )

    @router.get("/ui/projects/{project_id}/sessions/{session_id}")
    def session_page(
        request: Request,
        project_id: str,
        session_id: str,
        sort: str = Query(""),
        dir: str = Query(""),
    ) -> Response:
        """One session: its fields, totals, its place in the chain and its traces.

        The traces are in arrival order unless a column header sorts them.
        """
        refused = gate(request)
        if refused is not None:
            return refused
        project = store.get_project(project_id)
        if project is None:
            return unknown_project(project_id)
        record = store.get_session(project_id, session_id)
        if record is None:
            return page("missing.html", 404, what=f"session {session_id}", project=project)
        (record,) = sessions_with_totals(project_id, [record])
        traces = store.session_traces(project_id, session_id)
        trace_totals = reads.trace_totals(project_id, [str(t["id"]) for t in traces])
        for turn, t in enumerate(traces, 1):
            t["totals"] = with_totals(t, trace_totals.get(str(t["id"])))
            t["turn"] = turn
        sorting = Sorting.parse(sort, dir, SESSION_TRACE_SORTS, "turn", default_descending=False)
        traces = sort_session_traces(traces, sorting)
        path = f"/ui/projects/{project_id}/sessions/{session_id}"
        previous = None
        if record.get("previous_session_id"):
            previous = store.get_session(project_id, str(record["previous_session_id"]))
        followers, _ = store.search_sessions(
            project_id,
            {},
            compile_session_filter(_wire([id_("previous_session_id") == session_id])),
            {"column_id": "created_at", "ascending": True},
            0,
            MAX_NEXT_SESSIONS,
        )
        return page(
            "session.html",
            project=project,
            session=record,
            user=(record.get("user_metadata") or {}).get(USER_ID),
            previous=previous,
            followers=followers,
            traces=traces,
            sorting=sorting,
            sort_url=lambda column: sorting.link(column, {}, path) + "#traces",
            count_steps=count_steps,
            is_error=is_error,
            chain_url="/ui/projects/{}/chain?{}".format(
                project_id,
                urlencode({"user": (record.get("user_metadata") or {}).get(USER_ID) or ""}),
            ),
        )

    @router.get("/ui/projects/{project_id}/traces/{trace_id}")
    def trace_page(request: Request, project_id: str, trace_id: str) -> Response:
        """One trace: totals, input and output, and its steps as a collapsible waterfall."""
        refused = gate(request)
        if refused is not None:
            return refused
        project = store.get_project(project_id)
        if project is None:
            return unknown_project(project_id)
        trace = store.get_trace(project_id, trace_id)
        if trace is None:
            return page("missing.html", 404, what=f"trace {trace_id}", project=project)
        session = None
        if trace.get("session_id"):
            session = store.get_session(project_id, str(trace["session_id"]))
        totals = with_totals(trace, reads.trace_totals(project_id, [trace_id]).get(trace_id))
        return page(
            "trace.html",
            project=project,
            trace=trace,
            session=session,
            totals=totals,
            bars=waterfall(trace),
            waterfall_width=WATERFALL_WIDTH,
            events=list(walk_steps(trace)),
            steps=count_steps(trace),
            is_error=is_error,
            error_details=error_details,
            messages_of=messages_of,
            documents_of=documents_of,
            content_parts=content_parts,
        )

    @router.get("/ui/poll")
    def poll(request: Request) -> Response:
        """What the pages poll: a version that changes when sessions, traces or spans arrive."""
        if not access.cookie_matches(request.cookies.get(cookie_name(request))):
            return JSONResponse({"detail": "not logged in to the UI"}, status_code=401)
        return JSONResponse({"version": _version()}, headers={"Cache-Control": "no-store"})

    return router
