"""The ``galileo-otel`` command: ``serve``, ``demo``, ``sessions count|search|show``, ``tail``, ``doctor``.

Each subcommand reads the same ``GALILEO_*`` variables as :func:`galileo_otel.configure`;
``--api-url``, ``--project``... override them. ``--json`` prints machine-readable output.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from galileo_otel._version import __version__
from galileo_otel.errors import (
    APIError,
    AuthError,
    ConfigError,
    GalileoError,
    NotFoundError,
    TransportError,
)

if TYPE_CHECKING:
    from galileo_otel.api.client import Destination, GalileoClient
    from galileo_otel.api.filters import Condition
    from galileo_otel.settings import GalileoSettings

__all__ = [
    "UsageError",
    "build_parser",
    "follow_traces",
    "main",
    "not_the_api",
    "parse_filter",
    "spool_backlog",
]

EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_USAGE = 2


class UsageError(ConfigError):
    """A command-line argument is wrong (exit code 2), as opposed to a problem found (1)."""


# Columns whose type --filter infers (the session columns of Count/Query Sessions); any other
# column, e.g. user_metadata.<key>, is text. "type:column" overrides.
NUMBER_COLUMNS = frozenset(
    {
        "num_traces",
        "num_spans",
        "num_errors",
        # The local server's totals (galileo_otel.server.store.TOTALS).
        "input_tokens",
        "output_tokens",
        "total_tokens",
        "duration_ns",
        "num_llm_calls",
        "num_failed_steps",
    }
)
DATE_COLUMNS = frozenset({"created_at", "updated_at"})
ID_COLUMNS = frozenset(
    {"id", "previous_session_id", "log_stream_id", "experiment_id", "project_id"}
)
BOOLEAN_COLUMNS = frozenset({"has_children", "has_error"})
COLLECTION_COLUMNS = frozenset({"tags"})
_TYPES = ("text", "number", "date", "id", "boolean", "collection")

_FILTER_RE = re.compile(
    r"""^\s*(?:(?P<type>[a-z]+):)?(?P<column>[A-Za-z_][\w.]*)\s*
        (?P<op>!=|>=|<=|=|>|<|~|\s(?:not\s+in|in)\s)\s*(?P<value>.*?)\s*$""",
    re.VERBOSE,
)


# --- filters ----------------------------------------------------------------------------------


def _split_list(value: str) -> list[str]:
    inner = value.strip()
    if inner.startswith("[") and inner.endswith("]"):
        inner = inner[1:-1]
    return [part.strip().strip("'\"") for part in inner.split(",") if part.strip()]


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _column_type(column: str, explicit: str | None) -> str:
    if explicit:
        if explicit not in _TYPES:
            raise ConfigError(f"unknown column type {explicit!r}: use one of {', '.join(_TYPES)}")
        return explicit
    if column in NUMBER_COLUMNS:
        return "number"
    if column in DATE_COLUMNS:
        return "date"
    if column in ID_COLUMNS:
        return "id"
    if column in BOOLEAN_COLUMNS:
        return "boolean"
    if column in COLLECTION_COLUMNS:
        return "collection"
    return "text"


def _number(value: str, spec: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"--filter {spec!r}: {value!r} is not a number") from None
    return int(number) if number.is_integer() else number


def _date(value: str, spec: str) -> datetime:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"--filter {spec!r}: {value!r} is not an ISO date, e.g. 2025-01-31 or 2025-01-31T12:00Z"
        ) from None


def parse_filter(spec: str) -> Condition:
    """Parse one ``--filter`` expression into a filter condition.

    Forms: ``column OP value`` with OP one of ``= != > >= < <= ~`` (``~`` = contains, case
    insensitive), or ``column in a,b,c`` / ``column not in a,b,c``. The column's type is
    inferred (``num_traces``... are numbers, ``created_at``... dates, ``id`` and
    ``previous_session_id``... ids, anything else text) or given as ``number:column``.

    Raises:
        ConfigError: The expression cannot be parsed or does not fit the column type.
    """
    from galileo_otel.api import filters as f

    match = _FILTER_RE.match(spec)
    if not match:
        raise ConfigError(
            f"--filter {spec!r}: expected 'column OP value' with OP one of = != > >= < <= ~, "
            "or 'column in a,b', e.g. --filter 'external_id=conv-1' --filter 'num_traces>2'"
        )
    column, op, raw = match["column"], " ".join(match["op"].split()), match["value"]
    kind = _column_type(column, match["type"])
    value = _unquote(raw)
    ordering = {">": "__gt__", ">=": "__ge__", "<": "__lt__", "<=": "__le__"}

    if kind == "number":
        num = f.number(column)
        if op in ("in", "not in"):
            conds = [num == _number(v, spec) for v in _split_list(raw)]
            if op == "not in":
                raise ConfigError(f"--filter {spec!r}: 'not in' does not apply to a number column")
            if len(conds) != 1:
                raise ConfigError(f"--filter {spec!r}: use two filters (>=, <=) for a number range")
            return conds[0]
        if op == "~":
            raise ConfigError(
                f"--filter {spec!r}: '~' (contains) does not apply to a number column"
            )
        number_value = _number(value, spec)
        if op == "=":
            return num == number_value
        if op == "!=":
            return num != number_value
        result: Condition = getattr(num, ordering[op])(number_value)
        return result
    if kind == "date":
        col = f.date(column)
        if op in ("in", "not in", "~"):
            raise ConfigError(f"--filter {spec!r}: a date column takes = != > >= < <=")
        when = _date(value, spec)
        if op == "=":
            return col == when
        if op == "!=":
            return col != when
        result = getattr(col, ordering[op])(when)
        return result
    if kind == "id":
        idc = f.id_(column)
        if op == "=":
            return idc == value
        if op == "!=":
            return idc != value
        if op == "~":
            return idc.contains(value)
        if op == "in":
            return idc.one_of(_split_list(raw))
        if op == "not in":
            return idc.not_in(_split_list(raw))
        raise ConfigError(f"--filter {spec!r}: an id column takes = != ~ in, not {op}")
    if kind == "boolean":
        if op not in ("=", "!=") or value.lower() not in ("true", "false"):
            raise ConfigError(f"--filter {spec!r}: a boolean column takes = or != with true/false")
        bcol = f.boolean(column)
        flag = value.lower() == "true"
        return bcol == flag if op == "=" else bcol != flag
    if kind == "collection":
        ccol = f.collection(column)
        if op in ("=", "~"):
            return ccol.contains(value) if op == "~" else ccol.eq(_split_list(raw))
        if op == "in":
            return ccol.one_of(_split_list(raw))
        if op == "not in":
            return ccol.not_in(_split_list(raw))
        raise ConfigError(f"--filter {spec!r}: a collection column takes = ~ in, not {op}")
    tcol = f.text(column)
    if op == "=":
        return tcol == value
    if op == "!=":
        return tcol != value
    if op == "~":
        return tcol.contains(value, case_sensitive=False)
    if op == "in":
        return tcol.one_of(_split_list(raw))
    if op == "not in":
        return tcol.not_in(_split_list(raw))
    raise ConfigError(f"--filter {spec!r}: a text column takes = != ~ in, not {op}")


# --- shared options ---------------------------------------------------------------------------


def _add_connection_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("where (default: the GALILEO_* environment variables)")
    group.add_argument("--api-url", help="API base URL (GALILEO_API_URL)")
    group.add_argument("--api-key", help="API key (GALILEO_API_KEY; prefer the variable)")
    group.add_argument("--project", help="project name (GALILEO_PROJECT)")
    group.add_argument("--project-id", help="project id (GALILEO_PROJECT_ID)")
    group.add_argument("--log-stream", help="log stream name (GALILEO_LOG_STREAM)")
    group.add_argument("--log-stream-id", help="log stream id (GALILEO_LOG_STREAM_ID)")


def _settings_from(args: argparse.Namespace, **extra: Any) -> GalileoSettings:
    from galileo_otel.settings import GalileoSettings

    overrides: dict[str, Any] = {}
    for name in ("api_url", "api_key", "project", "project_id", "log_stream", "log_stream_id"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    overrides.update(extra)
    return GalileoSettings(**overrides)


def _open_client(settings: GalileoSettings) -> tuple[GalileoClient, Destination]:
    """A client and the existing destination (never created by a read command)."""
    from galileo_otel.api.client import GalileoClient

    if settings.api_key is None:
        raise ConfigError("no Galileo API key: set GALILEO_API_KEY (or pass --api-key)")
    if not settings.project and not settings.project_id:
        raise ConfigError(
            "no Galileo project: set GALILEO_PROJECT or GALILEO_PROJECT_ID (or --project)"
        )
    client = GalileoClient(settings=settings)
    try:
        dest = client.resolve_destination(
            project=settings.project,
            project_id=settings.project_id,
            log_stream=settings.log_stream,
            log_stream_id=settings.log_stream_id,
            experiment_id=settings.experiment_id,
            create=False,
        )
    except NotFoundError as exc:
        client.close()
        # Read-only commands never create a project or log stream; say so plainly.
        raise NotFoundError(
            exc.message.replace(
                "creation is off (create=False)", "sessions and tail only look up, never create"
            ),
            status_code=exc.status_code,
        ) from None
    except BaseException:
        client.close()
        raise
    return client, dest


# --- serve ------------------------------------------------------------------------------------


def _add_serve(subparsers: Any) -> None:
    try:
        from galileo_otel.server.cli import add_serve_parser
    except ImportError as exc:
        missing = getattr(exc, "name", None) or str(exc)
        parser = subparsers.add_parser(
            "serve",
            help="run the local Galileo-compatible server (needs the [server] extra)",
            description="Run the local Galileo-compatible server.",
        )
        parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

        def run_missing(args: argparse.Namespace) -> int:
            print(
                f"galileo-otel serve needs the server extra ({missing} is not installed): "
                "pip install 'galileo-otel[server]'",
                file=sys.stderr,
            )
            return EXIT_USAGE

        parser.set_defaults(func=run_missing)
        return
    add_serve_parser(subparsers)


# --- gateway ----------------------------------------------------------------------------------


def _add_gateway(subparsers: Any) -> None:
    # The parser imports nothing of the [gateway] extra; running without it says what to install.
    from galileo_otel.gateway.cli import add_gateway_parser

    add_gateway_parser(subparsers)


# --- sessions ---------------------------------------------------------------------------------


def _add_sessions(subparsers: Any) -> None:
    sessions = subparsers.add_parser(
        "sessions",
        help="count, search or show the sessions of a log stream",
        description="Count or search sessions with Count/Query Sessions filters, or show one.",
    )
    actions = sessions.add_subparsers(dest="sessions_command", metavar="{count,search,show}")
    actions.required = True
    filter_help = (
        "a filter, repeatable (and-ed): 'external_id=conv-1', 'num_traces>2', 'name~refund', "
        "'external_id in a,b'; OP: = != > >= < <= ~ (contains) in, 'not in'; prefix "
        "'number:' / 'date:' / 'id:' / 'text:' to force a column type"
    )
    for name, helptext in (
        ("count", "print how many sessions match"),
        ("search", "list matching sessions"),
    ):
        sub = actions.add_parser(name, help=helptext, description=helptext.capitalize() + ".")
        _add_connection_options(sub)
        sub.add_argument(
            "--filter", "-f", action="append", default=[], metavar="EXPR", help=filter_help
        )
        sub.add_argument("--json", action="store_true", help="print JSON")
        if name == "search":
            sub.add_argument("--limit", type=int, default=20, help="rows to print (default 20)")
            sub.add_argument(
                "--sort", metavar="COLUMN[:asc|desc]", help="sort column, e.g. created_at:desc"
            )
        sub.set_defaults(func=_run_sessions_count if name == "count" else _run_sessions_search)
    show = actions.add_parser(
        "show",
        help="show one session: its place in the user's chain and each trace's step tree",
        description=(
            "Show a session (by id, or by external id: the newest session with it), the chain "
            "of sessions it belongs to, and every trace with its steps, messages, tool calls, "
            "tokens, durations and errors. The traces come from the local server's session "
            "route (galileo-otel serve)."
        ),
    )
    _add_connection_options(show)
    show.add_argument("session", metavar="ID|EXTERNAL_ID", help="a session id or external id")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.add_argument(
        "--brief", action="store_true", help="step headings only, without their messages"
    )
    show.add_argument(
        "--width",
        type=int,
        default=None,
        help="cut long lines at N columns (default: the terminal's width; 0: never cut)",
    )
    show.set_defaults(func=_run_sessions_show)


def _conditions(specs: Sequence[str]) -> list[Condition]:
    try:
        return [parse_filter(spec) for spec in specs]
    except UsageError:
        raise
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def _run_sessions_count(args: argparse.Namespace) -> int:
    conditions = _conditions(args.filter)
    settings = _settings_from(args)
    client, dest = _open_client(settings)
    with client:
        total = client.count_sessions(
            project_id=dest.project_id,
            log_stream_id=dest.log_stream_id,
            experiment_id=dest.experiment_id,
            filters=conditions or None,
        )
    if args.json:
        _print_json({"total_count": total, "filters": args.filter, "project_id": dest.project_id})
    else:
        print(total)
    return EXIT_OK


def _parse_sort(value: str | None) -> dict[str, Any] | None:
    if not value:
        return None
    column, _, direction = value.partition(":")
    direction = direction.lower() or "desc"
    if not column:
        raise UsageError(f"--sort {value!r}: name a column, e.g. created_at:desc")
    if direction not in ("asc", "desc"):
        raise UsageError(f"--sort {value!r}: the direction is 'asc' or 'desc'")
    return {"column_id": column, "ascending": direction == "asc"}


def _run_sessions_search(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise UsageError(f"--limit {args.limit}: must be at least 1")
    conditions = _conditions(args.filter)
    sort = _parse_sort(args.sort)
    settings = _settings_from(args)
    client, dest = _open_client(settings)
    with client:
        page = client.search_sessions(
            project_id=dest.project_id,
            log_stream_id=dest.log_stream_id,
            experiment_id=dest.experiment_id,
            filters=conditions or None,
            limit=args.limit,
            sort=sort,
        )
    records = list(page.records)
    if args.json:
        _print_json({"records": records, "next_starting_token": page.next_starting_token})
        return EXIT_OK
    if not records:
        print(
            "no sessions match these filters"
            if conditions
            else "no sessions in this log stream yet: send some traces (or run `galileo-otel demo`)"
        )
        return EXIT_OK
    _print_table(
        [_search_row(r) for r in records],
        [
            ("id", "id"),
            ("external_id", "external id"),
            ("name", "name"),
            ("user", "user"),
            ("num_traces", "traces"),
            ("num_errors", "errors"),
            ("previous_session_id", "previous"),
            ("created_at", "created"),
        ],
    )
    if page.next_starting_token is not None:
        print(f"... more (showing {len(records)}; raise --limit)")
    return EXIT_OK


_NAME_COLUMN_CHARS = 32


def _search_row(record: dict[str, Any]) -> dict[str, Any]:
    """A Query Sessions record with the columns the table shows: its user, a short name."""
    meta = record.get("user_metadata")
    name = " ".join(str(record.get("name") or "").split())
    if len(name) > _NAME_COLUMN_CHARS:
        name = name[: _NAME_COLUMN_CHARS - 1] + "…"
    return {
        **record,
        "name": name,
        "user": meta.get("user.id") if isinstance(meta, dict) else None,
        "num_errors": record.get("num_errors", 0),
    }


def _print_table(records: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> None:
    if not records:
        print("no sessions match")
        return
    rows = [
        [("" if r.get(key) is None else str(r.get(key))) for key, _ in columns] for r in records
    ]
    widths = [
        max(len(title), *(len(row[i]) for row in rows)) for i, (_, title) in enumerate(columns)
    ]
    print("  ".join(title.ljust(w) for (_, title), w in zip(columns, widths, strict=True)).rstrip())
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _print_json(value: Any, out: TextIO | None = None) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, default=str), file=out or sys.stdout)


# --- sessions show ----------------------------------------------------------------------------

# Bounds of the walks along a chain: a chain longer than this is cut, never looped forever.
_MAX_CHAIN = 100


def _terminal_width(asked: int | None) -> int | None:
    if asked is not None:
        if asked < 0:
            raise UsageError(f"--width {asked}: must be 0 (never cut) or more")
        return asked or None
    import shutil

    return shutil.get_terminal_size((100, 24)).columns


def _local_route(client: GalileoClient, path: str, **params: str) -> Any:
    """GET a local-server extension route; a 404 for the route itself says which server is needed."""
    try:
        return client.request_json("GET", path, params=params or None)
    except NotFoundError as exc:
        if "not found in project" in exc.message:
            raise
        raise NotFoundError(
            f"{path}: this API has no such route; it is a local-server extension: point "
            "GALILEO_API_URL at `galileo-otel serve`",
            status_code=404,
        ) from None


def _find_session(
    client: GalileoClient, dest: Destination, wanted: str
) -> tuple[dict[str, Any], str | None]:
    """The session with this id, else the newest with this external id; and a note if several."""
    import uuid

    from galileo_otel.api.filters import text

    pid = dest.project_id
    try:
        session_id = str(uuid.UUID(wanted))
    except ValueError:
        session_id = None
    if session_id is not None:
        try:
            found = _local_route(client, f"/v2/projects/{pid}/sessions/{session_id}")
            return dict(found), None
        except NotFoundError:
            pass  # maybe an external id that looks like a UUID
    page = client.search_sessions(
        project_id=pid,
        log_stream_id=dest.log_stream_id,
        experiment_id=dest.experiment_id,
        filters=[text("external_id") == wanted],
        limit=_MAX_CHAIN,
        sort={"column_id": "created_at", "ascending": False},
    )
    if not page.records:
        where = dest.log_stream_name or dest.log_stream_id or dest.experiment_id
        raise NotFoundError(
            f"no session with id or external id {wanted!r} in project {pid} ({where}); "
            "list them with `galileo-otel sessions search`",
            status_code=404,
        )
    newest = page.records[0]
    note = None
    if len(page.records) > 1:
        note = (
            f"{len(page.records)} sessions have external id {wanted!r}; showing the newest "
            "(the others are in its chain, or: galileo-otel sessions search "
            f"-f 'external_id={wanted}')"
        )
    found = _local_route(client, f"/v2/projects/{pid}/sessions/{newest['id']}")
    return dict(found), note


def _session_chain(
    client: GalileoClient, dest: Destination, session: dict[str, Any]
) -> list[dict[str, Any]]:
    """The chain through ``session``: previous_session_id links back, then forward; oldest first."""
    from galileo_otel.api.filters import id_

    def one(column: str, value: str) -> dict[str, Any] | None:
        page = client.search_sessions(
            project_id=dest.project_id,
            log_stream_id=dest.log_stream_id,
            experiment_id=dest.experiment_id,
            filters=[id_(column) == value],
            limit=1,
            sort={"column_id": "created_at", "ascending": True},
        )
        return dict(page.records[0]) if page.records else None

    record = {k: v for k, v in session.items() if k != "traces"}
    back: list[dict[str, Any]] = []
    current = record
    seen = {str(record["id"])}
    for _ in range(_MAX_CHAIN):
        previous_id = current.get("previous_session_id")
        if not previous_id or str(previous_id) in seen:
            break
        found = one("id", str(previous_id))
        if found is None:
            break
        seen.add(str(found["id"]))
        back.append(found)
        current = found
    forward: list[dict[str, Any]] = []
    current = record
    for _ in range(_MAX_CHAIN):
        found = one("previous_session_id", str(current["id"]))
        if found is None or str(found["id"]) in seen:
            break
        seen.add(str(found["id"]))
        forward.append(found)
        current = found
    return [*reversed(back), record, *forward]


def _run_sessions_show(args: argparse.Namespace) -> int:
    from galileo_otel import views

    width = _terminal_width(args.width)
    settings = _settings_from(args)
    client, dest = _open_client(settings)
    with client:
        session, note = _find_session(client, dest, args.session)
        chain = _session_chain(client, dest, session)
    traces = session.pop("traces", None) or []
    if args.json:
        _print_json({"session": session, "chain": chain, "traces": traces})
        return EXIT_OK
    if note:
        print(note)
    for line in views.session_lines(session):
        print(line)
    print()
    for line in views.chain_lines(chain, str(session["id"])):
        print(line)
    for number, trace in enumerate(traces, 1):
        print()
        for line in views.trace_heading_lines(
            trace, number, len(traces), steps=_count_steps(trace), width=width
        ):
            print(line)
        for line in views.trace_tree_lines(trace, width=width, details=not args.brief):
            print(line)
    if not traces:
        print()
        print("no traces in this session yet")
    return EXIT_OK


def _count_steps(trace: dict[str, Any]) -> int:
    count, stack = 0, list(trace.get("spans") or ())
    while stack:
        step = stack.pop()
        count += 1
        if isinstance(step, dict):
            stack.extend(step.get("spans") or ())
    return count


# --- tail -------------------------------------------------------------------------------------

_TAIL_PAGE = 200


def _add_tail(subparsers: Any) -> None:
    tail = subparsers.add_parser(
        "tail",
        help="follow new traces as they arrive at a local server, one line per trace",
        description=(
            "Print the last traces of the log stream, then each new one as it arrives, one line "
            "per trace (time, user, session, name, spans, duration, status, input -> output). "
            "Needs the local server (galileo-otel serve). Stop with Ctrl-C or --for."
        ),
    )
    _add_connection_options(tail)
    tail.add_argument("--session", help="only this session (its id or external id)")
    tail.add_argument("--user", help="only sessions of this user (user_metadata user.id)")
    tail.add_argument(
        "-n", "--lines", type=int, default=10, help="print the last N traces first (default 10)"
    )
    tail.add_argument(
        "--interval", type=float, default=1.0, help="seconds between polls (default 1)"
    )
    tail.add_argument(
        "--for",
        dest="duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop after this long (default: follow until Ctrl-C)",
    )
    tail.add_argument("--json", action="store_true", help="one JSON object per trace and line")
    tail.set_defaults(func=_run_tail)


def follow_traces(
    fetch: Callable[[int | None, int], dict[str, Any]],
    emit: Callable[[dict[str, Any]], None],
    *,
    lines: int,
    interval: float,
    duration: float | None,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
    on_error: Callable[[GalileoError], None] | None = None,
    on_empty: Callable[[], None] | None = None,
) -> int:
    """Emit the last ``lines`` traces, then every new one until ``duration`` has passed.

    Args:
        fetch: ``fetch(after, limit)`` -> ``{"traces": [...], "cursor": N}`` (the server route).
        emit: Called with each trace, oldest first.
        lines: How many of the existing traces to emit first.
        interval: Seconds between polls.
        duration: Stop after this many seconds of ``clock``; ``None`` follows until interrupted.
        sleep: Waits between polls (injected by tests).
        clock: A monotonic clock (injected by tests).
        on_error: Called with a transport error instead of raising it (the next poll retries).
        on_empty: Called once when the log stream holds no matching trace yet.

    Returns:
        The cursor of the last trace seen.
    """
    first = fetch(None, max(lines, 1))
    for trace in first["traces"][-lines:] if lines > 0 else []:
        emit(trace)
    if not first["traces"] and on_empty is not None:
        on_empty()
    cursor = int(first["cursor"])
    deadline = None if duration is None else clock() + duration
    while True:
        now = clock()
        if deadline is not None and now >= deadline:
            return cursor
        sleep(interval if deadline is None else min(interval, deadline - now))
        # A burst larger than one page is drained page by page; each page moves the cursor.
        while True:
            try:
                page = fetch(cursor, _TAIL_PAGE)
            except GalileoError as exc:
                if on_error is None or not isinstance(exc, TransportError):
                    raise
                on_error(exc)
                break
            for trace in page["traces"]:
                emit(trace)
            cursor = max(cursor, int(page["cursor"]))
            if len(page["traces"]) < _TAIL_PAGE:
                break


# How tail waits and tells time; tests replace them (the server's threads keep the real ones).
_tail_sleep: Callable[[float], None] = time.sleep
_tail_clock: Callable[[], float] = time.monotonic


def _run_tail(args: argparse.Namespace) -> int:
    from galileo_otel import views

    if args.lines < 0:
        raise UsageError(f"--lines {args.lines}: must be 0 or more")
    if args.interval <= 0:
        raise UsageError(f"--interval {args.interval}: must be more than 0 seconds")
    if args.duration is not None and args.duration < 0:
        raise UsageError(f"--for {args.duration}: must be 0 or more seconds")
    settings = _settings_from(args)
    client, dest = _open_client(settings)
    path = f"/local/projects/{dest.project_id}/traces"
    said_down = False

    def fetch(after: int | None, limit: int) -> dict[str, Any]:
        nonlocal said_down
        params = {"limit": str(limit)}
        if after is not None:
            params["after"] = str(after)
        if dest.log_stream_id:
            params["log_stream_id"] = dest.log_stream_id
        if args.session:
            params["session"] = args.session
        if args.user:
            params["user"] = args.user
        answer: dict[str, Any] = _local_route(client, path, **params)
        if said_down:
            print("galileo-otel tail: the server answers again", file=sys.stderr)
            said_down = False
        return answer

    def emit(trace: dict[str, Any]) -> None:
        if args.json:
            print(json.dumps(trace, sort_keys=True, default=str), flush=True)
        else:
            print(views.trace_line(trace, width=None), flush=True)

    def on_error(exc: GalileoError) -> None:
        nonlocal said_down
        if not said_down:
            print(f"galileo-otel tail: {exc}; still trying", file=sys.stderr)
            said_down = True

    with client:
        try:
            follow_traces(
                fetch,
                emit,
                lines=args.lines,
                interval=args.interval,
                duration=args.duration,
                sleep=_tail_sleep,
                clock=_tail_clock,
                on_error=on_error,
                on_empty=lambda: print(
                    "galileo-otel tail: no traces yet"
                    + (" for this session or user" if args.session or args.user else "")
                    + (
                        "; waiting for new ones (Ctrl-C to stop)"
                        if args.duration is None or args.duration > 0
                        else ""
                    ),
                    file=sys.stderr,
                ),
            )
        except KeyboardInterrupt:
            pass  # Ctrl-C is how one stops following
    return EXIT_OK


# --- doctor -----------------------------------------------------------------------------------


def _add_doctor(subparsers: Any) -> None:
    doctor = subparsers.add_parser(
        "doctor",
        help=(
            "check the configuration, the API URL, the key, the project, the log stream, "
            "the session store and the spool"
        ),
        description="Show the effective configuration and check it against the API.",
    )
    _add_connection_options(doctor)
    doctor.add_argument("--json", action="store_true", help="print JSON")
    doctor.add_argument(
        "--clear-dead",
        action="store_true",
        help="remove the spool's dead-lettered batches (after fixing why they were rejected)",
    )
    doctor.add_argument("--timeout", type=float, default=5.0, help="seconds per check (default 5)")
    doctor.set_defaults(func=_run_doctor)


def _mask(secret: str) -> str:
    from galileo_otel.settings import mask_secret

    return mask_secret(secret)


class _Report:
    """The doctor's findings, printed as they come (or collected for --json)."""

    def __init__(self, *, as_json: bool) -> None:
        self.as_json = as_json
        self.checks: list[dict[str, str]] = []
        self.config: dict[str, Any] = {}

    def add(self, name: str, status: str, message: str) -> None:
        """Record one finding; ``status`` is ``ok``, ``WARN``, ``FAIL`` or ``skip``."""
        self.checks.append({"check": name, "status": status, "message": message})
        if not self.as_json:
            print(f"  [{status:^4}] {name}: {message}")

    @property
    def failed(self) -> bool:
        return any(c["status"] == "FAIL" for c in self.checks)


def _effective_config(settings: GalileoSettings) -> dict[str, Any]:
    import os

    key = settings.api_key.get_secret_value() if settings.api_key is not None else None
    url_source = (
        "GALILEO_API_URL"
        if os.environ.get("GALILEO_API_URL")
        and settings.api_url == os.environ["GALILEO_API_URL"].rstrip("/")
        else (
            "--api-url" if settings.api_url else f"derived from console URL {settings.console_url}"
        )
    )
    return {
        "api_url": settings.resolved_api_url(),
        "api_url_source": url_source,
        "api_key": _mask(key) if key else None,
        "project": settings.project,
        "project_id": settings.project_id,
        "log_stream": settings.log_stream,
        "log_stream_id": settings.log_stream_id,
        "experiment_id": settings.experiment_id,
        "create_missing": settings.create_missing,
        "reliable": settings.reliable,
        "logging_disabled": settings.logging_disabled,
        "extra_headers": sorted(settings.extra_headers),
        "session_idle_timeout_s": settings.session_idle_timeout,
        "session_store": settings.session_store,
        "spool_dir": str(settings.spool_path()) if settings.spool_path() else None,
    }


def _run_doctor(args: argparse.Namespace) -> int:
    from galileo_otel import settings as settings_module

    report = _Report(as_json=args.json)
    if not args.json:
        print("galileo-otel doctor")
    misspelt = settings_module.unknown_env_vars()
    typos = [
        f"{name} is not a galileo-otel setting (ignored): did you mean {suggestion}?"
        for name, suggestion in misspelt
    ]
    # The report says it; the settings' own once-per-process warning would say it twice.
    with settings_module._warned_lock:
        settings_module._warned_env.update(name for name, _ in misspelt)
    try:
        settings = _settings_from(args)
    except ConfigError as exc:
        report.add("configuration", "FAIL", str(exc))
        for typo in typos:
            report.add("environment", "WARN", typo)
        return _doctor_done(report)
    report.config = _effective_config(settings)
    if not args.json:
        print("configuration:")
        for name, value in report.config.items():
            print(f"  {name:<24} {value if value not in (None, []) else '-'}")
        print("checks:")
    # Every check that needs nothing else runs first, so one run lists every problem.
    for typo in typos:
        report.add("environment", "WARN", typo)
    if settings.logging_disabled:
        report.add(
            "export", "WARN", "logging is disabled (GALILEO_LOGGING_DISABLED / OTEL_SDK_DISABLED)"
        )
    has_key = settings.api_key is not None and bool(settings.api_key.get_secret_value().strip())
    if not has_key:
        report.add(
            "API key",
            "FAIL",
            "no API key: set GALILEO_API_KEY (`galileo-otel serve` prints the local server's key)",
        )
    has_project = bool(settings.project or settings.project_id)
    if not has_project:
        report.add(
            "project", "FAIL", "no project: set GALILEO_PROJECT (a name) or GALILEO_PROJECT_ID"
        )
    _doctor_session_store(settings, report, args.timeout)
    _doctor_spool(settings, report, clear_dead=args.clear_dead)
    answers = _doctor_url(settings, report, args.timeout)
    if not answers:
        if has_key:
            report.add(
                "destination", "skip", "key, project and log stream not checked: see API URL"
            )
        return _doctor_done(report)
    if not has_key:
        return _doctor_done(report)
    from galileo_otel.api.client import GalileoClient, RetryPolicy

    with GalileoClient(settings=settings, timeout=args.timeout, retry=RetryPolicy.none()) as client:
        if has_project:
            _doctor_destination(client, settings, report)
        else:
            _doctor_key_only(client, report)
    return _doctor_done(report)


def _doctor_key_only(client: GalileoClient, report: _Report) -> None:
    """Check the key with a harmless read when there is no project to check it with."""
    try:
        client.get_project("galileo-otel-doctor")
    except AuthError as exc:
        report.add(
            "API key",
            "FAIL",
            f"rejected by the API (HTTP {exc.status_code}): check GALILEO_API_KEY",
        )
    except APIError as exc:
        report.add("API key", "WARN", f"not checked: the API answered {exc.message}")
    else:
        report.add("API key", "ok", "accepted")


def _doctor_url(settings: GalileoSettings, report: _Report, timeout: float) -> bool:
    """Check that the API URL answers as the Galileo API; ``True`` when it does."""
    from galileo_otel.api.client import GalileoClient, RetryPolicy

    url = settings.resolved_api_url()
    with GalileoClient(settings=settings, timeout=timeout, retry=RetryPolicy.none()) as client:
        try:
            client.request_json("GET", "/healthcheck", retry=RetryPolicy.none(), require_key=False)
        except APIError as exc:
            if exc.status_code is None:
                hint = "is the server running, and is GALILEO_API_URL right?"
                report.add("API URL", "FAIL", f"cannot reach {url}: {exc.message}; {hint}")
            else:
                report.add("API URL", "FAIL", not_the_api(url, exc))
            return False
    report.add("API URL", "ok", f"{url} answers its healthcheck")
    return True


def not_the_api(url: str, exc: APIError) -> str:
    """One line for a URL that answers, but not as the Galileo API does."""
    page = ", an HTML page" if "HTML page" in exc.message else ""
    return (
        f"{url} answers, but not as the Galileo API (GET /healthcheck: HTTP "
        f"{exc.status_code}{page}): is GALILEO_API_URL the API URL, e.g. https://api.galileo.ai, "
        "not the console URL?"
    )


def spool_backlog(spool_dir: Path, *, clear_dead: bool = False) -> tuple[int, int, str | None]:
    """Batches waiting in a spool, batches dead-lettered there, and why the oldest dead one died.

    The one place the CLI reads the spool (through :class:`~galileo_otel.export.spool.Spool`);
    a spool that does not exist yet is empty and is not created. ``clear_dead`` removes the
    dead letters after reading them (``doctor --clear-dead``).
    """
    pending, errors = _read_spool(spool_dir, clear_dead=clear_dead)
    reason = None
    if errors and isinstance(errors[0], dict):
        reason = f"HTTP {errors[0].get('status_code')}: {errors[0].get('message')}"
    return len(pending), len(errors), reason


def _read_spool(spool_dir: Path, *, clear_dead: bool) -> tuple[list[Any], list[Any]]:
    """The spool's pending batch names and dead-letter notes; nothing is created."""
    from galileo_otel.export.spool import DB_NAME, Spool

    if not (spool_dir / DB_NAME).is_file():
        return [], []
    with Spool(spool_dir) as spool:
        pending, errors = spool.pending_names(), spool.dead_errors()
        if clear_dead and errors:
            spool.clear_dead()
    return list(pending), list(errors)


def _is_stale_session(note: Any) -> bool:
    """A dead letter refused because its session is unknown to the server (a stale store)."""
    message = str(note.get("message") or "") if isinstance(note, dict) else ""
    return "session" in message and "does not exist" in message


def _doctor_session_store(settings: GalileoSettings, report: _Report, timeout: float) -> None:
    """Check that the session store can be used: the SQLite file writable, Redis answering."""
    import os

    url = settings.session_store_url()
    path = settings.session_store_path()
    if url is not None:
        from galileo_otel.sessions.redis_store import redact_url

        shown = redact_url(url)
        try:
            import redis
        except ImportError:
            report.add(
                "session store",
                "FAIL",
                f"{shown} is a Redis URL but the 'redis' package is not installed: "
                "pip install 'galileo-otel[redis]'",
            )
            return
        try:
            client = redis.Redis.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
            try:
                # redis-py 5 types info() as Awaitable | Any (sync and async clients share it).
                info: Any = client.info("server")
            finally:
                client.close()
        except (redis.RedisError, OSError, ValueError) as exc:
            report.add(
                "session store",
                "FAIL",
                f"cannot reach Redis at {shown}: {type(exc).__name__}: "
                f"{redact_url(str(exc)).rstrip('.')}; "
                "traces would still ship, but each process would keep its own sessions",
            )
            return
        name, version = (
            ("Valkey", info["valkey_version"])
            if "valkey_version" in info
            else ("Redis", info.get("redis_version", "?"))
        )
        report.add("session store", "ok", f"{shown} answers: {name} {version}")
        return
    if path is None:
        report.add("session store", "ok", "memory: sessions are kept per process")
        return
    # The nearest existing directory must let us create the file (or the file be writable).
    target = path if path.exists() else path.parent
    while not target.exists() and target != target.parent:
        target = target.parent
    if path.exists() and not path.is_file():
        report.add("session store", "FAIL", f"{path} exists and is not a file")
    elif not path.exists() and not target.is_dir():
        report.add(
            "session store",
            "FAIL",
            f"cannot create {path}: {target} is not a directory; set GALILEO_SESSION_STORE to "
            "sqlite:///<a writable path>",
        )
    elif not os.access(target, os.W_OK):
        report.add(
            "session store",
            "FAIL",
            f"cannot write {path} ({target} is not writable): set GALILEO_SESSION_STORE to "
            "sqlite:///<a writable path>",
        )
    else:
        state = "exists" if path.exists() else "will be created on first use"
        report.add("session store", "ok", f"SQLite {path}: writable, {state}")


def _stale_store_hint(settings: GalileoSettings) -> str:
    url = settings.session_store_url()
    if url is not None:
        from galileo_otel.sessions.redis_store import redact_url

        return (
            f"the session store {redact_url(url)} remembers sessions this server does not have "
            "(a wiped database, another deployment): delete its galileo-otel:v1:* keys"
        )
    path = settings.session_store_path()
    if path is not None:
        return (
            f"the session store {path} remembers sessions this server does not have "
            "(a wiped database, another deployment): delete that file"
        )
    return "the server lost sessions it had created (a wiped database?)"


def _doctor_spool(settings: GalileoSettings, report: _Report, *, clear_dead: bool = False) -> None:
    path = settings.spool_path()
    if path is None:
        return
    try:
        pending_names, notes = _read_spool(path, clear_dead=clear_dead)
    except OSError as exc:
        report.add("spool", "WARN", f"cannot read {path}: {exc}")
        return
    pending, dead = len(pending_names), len(notes)
    reason = None
    if notes and isinstance(notes[0], dict):
        reason = f"HTTP {notes[0].get('status_code')}: {notes[0].get('message')}"
    stale = sum(1 for note in notes if _is_stale_session(note))
    if stale and not clear_dead:
        report.add(
            "session store",
            "FAIL",
            f"{stale} batch(es) were refused because their session does not exist: "
            f"{_stale_store_hint(settings)}, then `galileo-otel doctor --clear-dead`",
        )
    if pending:
        report.add(
            "spool",
            "WARN",
            f"{pending} batch(es) wait in {path} to be sent: they go out when an app using "
            "this spool runs configure() and the API answers; fix any FAIL line above first",
        )
    if dead and clear_dead:
        report.add("spool", "ok", f"removed {dead} dead-lettered batch(es) from {path}")
    elif dead:
        why = f"; the oldest: {reason}" if reason else ""
        report.add(
            "spool",
            "WARN",
            f"{dead} batch(es) were rejected for good and set aside in {path}{why}. "
            "They are never resent: fix the cause, then remove them with "
            "`galileo-otel doctor --clear-dead`",
        )
    if not pending and not dead:
        report.add("spool", "ok", f"{path}: nothing waiting, nothing rejected")


def _doctor_destination(client: GalileoClient, settings: GalileoSettings, report: _Report) -> None:
    project_id = settings.project_id
    try:
        if project_id is None:
            project = client.get_project(settings.project or "")
            report.add("API key", "ok", "accepted")
            if project is None:
                verdict = (
                    "will be created on first use"
                    if settings.create_missing
                    else ("and GALILEO_CREATE_MISSING is off, so configure() will fail")
                )
                status = "WARN" if settings.create_missing else "FAIL"
                report.add(
                    "project", status, f"no project named {settings.project!r}; it {verdict}"
                )
                return
            project_id = str(project.id)
            report.add("project", "ok", f"{settings.project!r} is {project_id}")
        streams = client.list_log_streams(project_id)
        if settings.project_id is not None:
            report.add("API key", "ok", "accepted")
            report.add("project", "ok", f"project {project_id} exists")
    except AuthError as exc:
        report.add(
            "API key",
            "FAIL",
            f"rejected by the API (HTTP {exc.status_code}): check GALILEO_API_KEY",
        )
        return
    except NotFoundError:
        report.add("project", "FAIL", f"no project with id {project_id} (GALILEO_PROJECT_ID)")
        return
    except APIError as exc:
        report.add("project", "FAIL", f"the API answered an error: {exc.message}")
        return
    if settings.experiment_id:
        report.add("log stream", "ok", f"logging to experiment {settings.experiment_id}")
        return
    if settings.log_stream_id:
        found = any(str(s.id) == settings.log_stream_id for s in streams)
        if found:
            report.add("log stream", "ok", f"log stream {settings.log_stream_id} exists")
        else:
            report.add(
                "log stream",
                "FAIL",
                f"no log stream with id {settings.log_stream_id} in this project",
            )
        return
    from galileo_otel.api.client import DEFAULT_LOG_STREAM

    name = settings.log_stream or DEFAULT_LOG_STREAM
    match = [s for s in streams if s.name == name]
    if match:
        report.add("log stream", "ok", f"{name!r} is {match[0].id}")
    elif settings.create_missing:
        report.add(
            "log stream", "WARN", f"no log stream named {name!r}; it will be created on first use"
        )
    else:
        report.add(
            "log stream", "FAIL", f"no log stream named {name!r} and GALILEO_CREATE_MISSING is off"
        )


def _doctor_done(report: _Report) -> int:
    if report.as_json:
        _print_json({"ok": not report.failed, "config": report.config, "checks": report.checks})
    elif report.failed:
        print("problems found: fix the FAIL lines above")
    elif any(c["status"] == "WARN" for c in report.checks):
        print("no problems; see the WARN lines above")
    else:
        print("all good")
    return EXIT_PROBLEM if report.failed else EXIT_OK


# --- demo -------------------------------------------------------------------------------------


def _add_demo(subparsers: Any) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="run a simulated multi-user chat app against a local server and show its sessions",
        description=(
            "Start the local server in-process on the database 'galileo-otel serve' opens (or "
            "use --api-url), run a simulated multi-user LLM chat app through the real export "
            "pipeline, print what arrived and how to look at it afterwards."
        ),
    )
    demo.add_argument("--api-url", help="send to this API instead of an embedded local server")
    demo.add_argument(
        "--db",
        help=(
            "SQLite file of the embedded server (default: the one 'galileo-otel serve' opens, "
            "$XDG_DATA_HOME/galileo-otel/galileo.db)"
        ),
    )
    demo.add_argument("--api-key", help="API key for --api-url (default GALILEO_API_KEY)")
    demo.add_argument("--project", default="galileo-otel-demo", help="project name")
    demo.add_argument("--users", type=int, default=3, help="simulated users (default 3)")
    demo.add_argument(
        "--conversations", type=int, default=2, help="conversations per user (default 2)"
    )
    demo.add_argument("--turns", type=int, default=3, help="turns per conversation (default 3)")
    demo.add_argument("--seed", type=int, default=7, help="random seed of the simulation")
    demo.add_argument("--json", action="store_true", help="print machine-readable counts")
    demo.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    demo.add_argument(
        "--serve",
        action="store_true",
        help="keep the embedded server running after the report, until Ctrl-C, to look around",
    )
    demo.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from galileo_otel.demo import DemoOptions, run_demo

    if args.serve and args.api_url:
        raise UsageError("--serve keeps the embedded server running; it does not go with --api-url")
    if args.db and args.api_url:
        raise UsageError("--db is the embedded server's database; it does not go with --api-url")
    if not args.api_url:
        from galileo_otel.server.cli import missing_server_extra

        missing = missing_server_extra("demo")
        if missing:
            # Not a UsageError: its "error:" prefix would read as a mistake in the arguments.
            print(f"{missing}, or pass --api-url", file=sys.stderr)
            return EXIT_USAGE
    for name in ("users", "conversations", "turns"):
        if not 1 <= getattr(args, name) <= 50:
            raise UsageError(f"--{name} {getattr(args, name)}: must be between 1 and 50")
    options = DemoOptions(
        api_url=args.api_url,
        api_key=args.api_key,
        db=args.db,
        project=args.project,
        users=args.users,
        conversations=args.conversations,
        turns=args.turns,
        seed=args.seed,
        progress=not args.no_progress,
        json_output=args.json,
        serve=args.serve,
    )
    return run_demo(options)


# --- main -------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``galileo-otel`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="galileo-otel",
        description=(
            "OpenTelemetry for Galileo: a local server, a demo, session queries and views, checks."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details to stderr")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    _add_demo(subparsers)
    _add_serve(subparsers)
    _add_gateway(subparsers)
    _add_sessions(subparsers)
    _add_tail(subparsers)
    _add_doctor(subparsers)
    _name_usage_parsers(parser)
    return parser


def _describe_error(exc: GalileoError) -> str:
    if isinstance(exc, AuthError):
        return f"the API rejected the key (HTTP {exc.status_code}): check GALILEO_API_KEY"
    if isinstance(exc, NotFoundError):
        return f"not found: {exc.message}"
    if isinstance(exc, APIError):
        return exc.message
    return str(exc)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``galileo-otel`` command; returns the exit code.

    Exit codes: 0 success, 1 a problem was found (bad configuration, API error, doctor
    findings), 2 usage error.
    """
    try:
        return _main(argv)
    except BrokenPipeError:
        # The reader went away (`galileo-otel tail --json | head`): stop quietly. Python would
        # report the pipe again while flushing stdout at exit, so point stdout at devnull.
        _silence_stdout()
        return EXIT_PROBLEM


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # argparse reports these with the top-level usage; the subcommand's is the useful one.
        usage_parser: argparse.ArgumentParser = getattr(args, "usage_parser", parser)
        usage_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.verbose:
        import logging

        logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s")
    func: Callable[[argparse.Namespace], int] = args.func
    if func is None:  # pragma: no cover - argparse enforces a subcommand
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(func(args))
    except UsageError as exc:
        # argparse's own wording for its usage errors (also exit 2).
        print(f"galileo-otel {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except GalileoError as exc:
        print(f"galileo-otel {args.command}: {_describe_error(exc)}", file=sys.stderr)
        return EXIT_PROBLEM
    except KeyboardInterrupt:
        return 130


def _silence_stdout() -> None:
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # pragma: no cover - stdout is not a real file
        pass


def _name_usage_parsers(parser: argparse.ArgumentParser) -> None:
    """Let every subcommand's parser know itself, so an unknown option prints its usage."""
    parser.set_defaults(usage_parser=parser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _name_usage_parsers(sub)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
