"""``galileo-otel demo``: a simulated multi-user LLM chat app, exported to a local server.

The app makes GenAI-convention spans (chat, execute_tool, retrieval under an invoke_agent root)
on a simulated clock: span timestamps are set explicitly and back-dated over the hours before
the run, so an idle gap of 45 minutes costs nothing and rotates a session exactly as in
production. Everything goes through :func:`galileo_otel.configure` and the real export pipeline;
then the demo reads back what the server holds and prints it.

By default the demo writes to the database ``galileo-otel serve`` opens by default
(:func:`~galileo_otel.server.app.default_db_path`), so its sessions are still there afterwards,
and ends by saying how to look at them (the web UI's URL, ``galileo-otel sessions show``).
"""

from __future__ import annotations

import json
import random
import shlex
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from galileo_otel.server.cli import DEFAULT_HOST, DEFAULT_PORT
from galileo_otel.sessions.context import session
from galileo_otel.sessions.resolve import USER_ID

__all__ = ["DemoOptions", "ProgressBar", "SimulatedChatApp", "Turn", "plan_turns", "run_demo"]

DEMO_API_KEY = "demo-key"
DEMO_SERVICE = "galileo-otel-demo"
MODEL = "gpt-4o-mini"
# The idle gap the demo simulates before the last turn of one conversation: longer than the
# default GALILEO_SESSION_IDLE_TIMEOUT (30 min), so that conversation continues in a new,
# chained session.
IDLE_GAP_S = 45 * 60.0
IDLE_TIMEOUT_S = 30 * 60.0
# The simulated traffic is back-dated over this window, ending at the moment the demo runs.
SIMULATED_WINDOW_S = 4 * 3600.0
# Where `galileo-otel serve` listens by default: the demo's closing lines point there.
SERVE_URL = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
FLUSH_TIMEOUT_S = 30.0
_NS = 1_000_000_000

USER_NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy")

# (question, tool or None, retrieved documents): canned support-bot traffic.
TOPICS: tuple[tuple[str, str | None, tuple[str, ...]], ...] = (
    ("Where is my order #{n}?", "lookup_order", ()),
    (
        "Can I get a refund for order #{n}?",
        None,
        ("Refunds are issued within 14 days.", "Items must be unused and in original packaging."),
    ),
    ("How long does shipping to Lisbon take?", None, ("Standard shipping to Portugal: 3-5 days.",)),
    ("Change the delivery address of order #{n} please.", "update_address", ()),
    ("Do you have the blue jacket in size M?", "check_stock", ()),
    ("What is your warranty on headphones?", None, ("Electronics carry a 2-year warranty.",)),
)


@dataclass(frozen=True)
class Turn:
    """One user message and the agent's answer: one trace.

    Attributes:
        user: The user id.
        conversation: The conversation id (the session key), or ``None`` for a one-off question
            that joins the user's automatic session.
        index: The turn's number within its conversation (0-based).
        start_ns: Simulated start time.
    """

    user: str
    conversation: str | None
    index: int
    start_ns: int


def plan_turns(
    *, users: int, conversations: int, turns: int, start_ns: int, rng: random.Random
) -> list[Turn]:
    """The demo's traffic, in start-time order.

    Every user holds ``conversations`` conversations of ``turns`` turns, 30-120 s apart; the
    first conversation waits :data:`IDLE_GAP_S` before its last turn (an idle gap that rotates
    its session); every user also asks one question outside any conversation.
    """
    plan: list[Turn] = []
    for u in range(users):
        user = USER_NAMES[u] if u < len(USER_NAMES) else f"user{u + 1}"
        for c in range(conversations):
            conv = f"{user}-conv-{c + 1}"
            t = start_ns + int(rng.uniform(0, 600) * _NS) + c * 15 * 60 * _NS
            for i in range(turns):
                if u == 0 and c == 0 and i == turns - 1 and turns > 1:
                    t += int(IDLE_GAP_S * _NS)
                plan.append(Turn(user, conv, i, t))
                t += int(rng.uniform(30, 120) * _NS)
        plan.append(Turn(user, None, 0, start_ns + int(rng.uniform(0, 3600) * _NS)))
    plan.sort(key=lambda turn: (turn.start_ns, turn.user))
    return plan


class SimulatedChatApp:
    """A support chat agent that emits GenAI-convention spans with simulated timestamps.

    Each turn is a trace: an ``invoke_agent`` root, a ``retrieval`` step when the topic needs
    documents, a ``chat`` call, and for tool topics an ``execute_tool`` step and a second
    ``chat`` call with the tool's result.
    """

    def __init__(self, tracer: Tracer, rng: random.Random) -> None:
        self._tracer = tracer
        self._rng = rng
        self._history: dict[str, list[dict[str, Any]]] = {}
        self._topic_start: dict[str, int] = {}

    def run(self, turn: Turn) -> None:
        """Emit the trace of one turn, inside the conversation's session if it has one."""
        if turn.conversation is None:
            self._trace(turn)
            return
        with session(
            turn.conversation,
            user_id=turn.user,
            name=f"support chat {turn.conversation}",
            # The spans' times are simulated (back-dated); said on the record, so nobody takes
            # them for real traffic.
            metadata={"channel": "web", "demo.clock": "simulated, back-dated"},
        ):
            self._trace(turn)

    # --- one trace ------------------------------------------------------------------------------
    def _trace(self, turn: Turn) -> None:
        rng = self._rng
        thread = turn.conversation or f"{turn.user}-oneoff"
        if thread not in self._topic_start:
            self._topic_start[thread] = rng.randrange(len(TOPICS))
        question_t, tool, docs = TOPICS[(self._topic_start[thread] + turn.index) % len(TOPICS)]
        order = str(rng.randrange(1000, 9999))
        question = question_t.format(n=order)
        history = self._history.setdefault(thread, [])
        t = turn.start_ns
        root = self._tracer.start_span(
            "invoke_agent support-bot",
            kind=SpanKind.SERVER,
            start_time=t,
            attributes={
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": "support-bot",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": MODEL,
                USER_ID: turn.user,
            },
        )
        ctx = trace.set_span_in_context(root)
        t += self._ms(5, 20)
        context_docs: list[str] = []
        if docs:
            t = self._retrieval(ctx, t, question, docs)
            context_docs = list(docs)
        messages = [
            {"role": "system", "parts": [{"type": "text", "content": _system_prompt(context_docs)}]}
        ]
        messages += history[-4:]
        user_msg = {"role": "user", "parts": [{"type": "text", "content": question}]}
        messages.append(user_msg)
        if tool:
            call_id = f"call_{uuid.UUID(int=rng.getrandbits(128)).hex[:12]}"
            args: dict[str, Any] = (
                {"order_id": order} if "#" in question else {"item": "blue jacket"}
            )
            tool_msg = {
                "role": "assistant",
                "parts": [{"type": "tool_call", "id": call_id, "name": tool, "arguments": args}],
                "finish_reason": "tool_calls",
            }
            t = self._chat(ctx, t, messages, tool_msg, finish="tool_calls")
            result = self._tool_result(tool, args)
            t = self._tool(ctx, t, tool, call_id, args, result)
            messages = [
                *messages,
                tool_msg,
                {
                    "role": "tool",
                    "parts": [{"type": "tool_call_response", "id": call_id, "response": result}],
                },
            ]
        answer = _answer(question, tool, context_docs)
        out = {
            "role": "assistant",
            "parts": [{"type": "text", "content": answer}],
            "finish_reason": "stop",
        }
        t = self._chat(ctx, t, messages, out, finish="stop")
        history.append({"role": "user", "parts": [{"type": "text", "content": question}]})
        history.append({"role": "assistant", "parts": [{"type": "text", "content": answer}]})
        root.set_attribute("gen_ai.input.messages", json.dumps([user_msg]))
        root.set_attribute("gen_ai.output.messages", json.dumps([out]))
        root.set_status(Status(StatusCode.OK))
        root.end(end_time=t + self._ms(1, 5))

    def _ms(self, low: float, high: float) -> int:
        return int(self._rng.uniform(low, high) * 1_000_000)

    def _retrieval(self, ctx: Any, t: int, query: str, docs: Sequence[str]) -> int:
        span = self._tracer.start_span(
            "retrieval knowledge-base",
            context=ctx,
            kind=SpanKind.CLIENT,
            start_time=t,
            attributes={
                "gen_ai.operation.name": "retrieval",
                "gen_ai.data_source.id": "knowledge-base",
                "gen_ai.retrieval.query.text": query,
                "gen_ai.retrieval.documents": json.dumps(
                    [
                        {"id": f"doc-{i}", "content": d, "score": round(0.9 - i * 0.1, 2)}
                        for i, d in enumerate(docs)
                    ]
                ),
            },
        )
        end = t + self._ms(20, 80)
        span.end(end_time=end)
        return end + self._ms(1, 3)

    def _chat(
        self, ctx: Any, t: int, messages: list[dict[str, Any]], out: dict[str, Any], *, finish: str
    ) -> int:
        input_tokens = sum(len(json.dumps(m)) // 4 for m in messages)
        output_tokens = max(1, len(json.dumps(out)) // 4)
        span = self._tracer.start_span(
            f"chat {MODEL}",
            context=ctx,
            kind=SpanKind.CLIENT,
            start_time=t,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": MODEL,
                "gen_ai.response.model": f"{MODEL}-2024-07-18",
                "gen_ai.request.temperature": 0.2,
                "gen_ai.response.finish_reasons": (finish,),
                "gen_ai.usage.input_tokens": input_tokens,
                "gen_ai.usage.output_tokens": output_tokens,
                "gen_ai.input.messages": json.dumps(messages),
                "gen_ai.output.messages": json.dumps([out]),
            },
        )
        end = t + self._ms(300, 1500)
        span.end(end_time=end)
        return end + self._ms(1, 5)

    def _tool(
        self, ctx: Any, t: int, name: str, call_id: str, args: dict[str, Any], result: str
    ) -> int:
        span = self._tracer.start_span(
            f"execute_tool {name}",
            context=ctx,
            kind=SpanKind.INTERNAL,
            start_time=t,
            attributes={
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": name,
                "gen_ai.tool.type": "function",
                "gen_ai.tool.call.id": call_id,
                "gen_ai.tool.call.arguments": json.dumps(args),
                "gen_ai.tool.call.result": result,
            },
        )
        end = t + self._ms(10, 60)
        span.end(end_time=end)
        return end + self._ms(1, 3)

    def _tool_result(self, tool: str, args: dict[str, Any]) -> str:
        if tool == "lookup_order":
            return json.dumps(
                {"order_id": args.get("order_id"), "status": "shipped", "eta_days": 2}
            )
        if tool == "check_stock":
            return json.dumps(
                {"item": args.get("item"), "size": "M", "in_stock": self._rng.random() > 0.3}
            )
        return json.dumps({"ok": True})


def _system_prompt(docs: Sequence[str]) -> str:
    base = "You are a helpful support agent for an online shop."
    return base + ("\nContext:\n" + "\n".join(f"- {d}" for d in docs) if docs else "")


def _answer(question: str, tool: str | None, docs: Sequence[str]) -> str:
    if tool == "lookup_order":
        return "Your order has shipped and should arrive in about 2 days."
    if tool == "check_stock":
        return "Let me check... yes, size M is available right now."
    if tool:
        return "Done: I updated that for you."
    if docs:
        return docs[0]
    return "Happy to help!"


# --- progress bar -------------------------------------------------------------------------------


class ProgressBar:
    """A one-line progress bar on a stream (stderr); silent unless the stream is a terminal.

    Args:
        total: Units of work.
        stream: Where to draw.
        enabled: Draw at all (``None``: only when ``stream`` is a terminal).
        width: Characters of the bar itself.
    """

    def __init__(
        self,
        total: int,
        *,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        width: int = 30,
    ) -> None:
        self.total = max(1, total)
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = enabled if enabled is not None else bool(isatty and isatty())
        self.width = width
        self.label = ""

    def advance(self, n: int = 1, label: str | None = None) -> None:
        """Mark ``n`` more units done and redraw."""
        self.done = min(self.total, self.done + n)
        if label is not None:
            self.label = label
        self.draw()

    def draw(self) -> None:
        """Draw the bar in place (carriage return, no newline)."""
        if not self.enabled:
            return
        filled = self.width * self.done // self.total
        bar = "#" * filled + "-" * (self.width - filled)
        pct = 100 * self.done // self.total
        self.stream.write(f"\r[{bar}] {pct:3d}% {self.done}/{self.total} {self.label[:40]:<40}")
        self.stream.flush()

    def finish(self, label: str = "done") -> None:
        """Fill the bar and end its line."""
        self.done = self.total
        self.label = label
        self.draw()
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


# --- running the demo -----------------------------------------------------------------------------


@dataclass
class DemoOptions:
    """Options of ``galileo-otel demo`` (see ``galileo-otel demo --help``)."""

    api_url: str | None = None
    api_key: str | None = None
    db: str | None = None
    project: str = "galileo-otel-demo"
    users: int = 3
    conversations: int = 2
    turns: int = 3
    seed: int = 7
    progress: bool = True
    json_output: bool = False
    serve: bool = False
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    # How --serve waits for Ctrl-C once the report is out (tests pass one that returns).
    wait: Callable[[], None] = field(default_factory=lambda: _wait_for_interrupt)


def _wait_for_interrupt() -> None:
    """Block until Ctrl-C (the embedded server keeps answering meanwhile)."""
    import threading

    stop = threading.Event()
    try:
        while not stop.wait(3600):
            pass
    except KeyboardInterrupt:
        pass


def _ui_url(server: Any) -> str | None:
    """The web UI's URL with its token (the embedded server serves the UI)."""
    url: str = server.ui_url
    return url


def _db_path(options: DemoOptions) -> Path:
    """The database the embedded server writes: ``--db``, else the one ``serve`` opens."""
    if options.db:
        return Path(options.db).expanduser()
    from galileo_otel.server.app import default_db_path

    return default_db_path()


@contextmanager
def _target(options: DemoOptions, workdir: str) -> Iterator[tuple[str, str, Any]]:
    """(api_url, api_key, server): the embedded local server (``server``), or the one named.

    The embedded server opens the same database and key file as ``galileo-otel serve`` (by
    default), so what the demo sends is there when ``serve`` starts.
    """
    if options.api_url:
        import os

        key = options.api_key or os.environ.get("GALILEO_API_KEY") or ""
        yield options.api_url, key, None
        return
    try:
        from galileo_otel.server import serve_in_thread
    except ImportError as exc:
        from galileo_otel.errors import ConfigError

        raise ConfigError(
            f"the demo's embedded server needs the server extra ({exc.name or exc} is missing): "
            "pip install 'galileo-otel[server]', or pass --api-url"
        ) from None
    from galileo_otel.server.auth import load_or_create_key

    db = _db_path(options)
    try:
        key = load_or_create_key(db)[0]
    except OSError as exc:
        from galileo_otel.errors import ConfigError

        raise ConfigError(f"cannot open the database {db}: {exc} (pass --db)") from None
    with serve_in_thread(db_path=db, api_key=key) as server:
        yield server.url, key, server


def run_demo(options: DemoOptions) -> int:
    """Run the demo; print a report (or JSON) on ``options.out``; return the exit code."""
    from galileo_otel.configure import configure

    started = time.monotonic()
    rng = random.Random(options.seed)
    now_ns = time.time_ns()
    plan = plan_turns(
        users=options.users,
        conversations=options.conversations,
        turns=options.turns,
        start_ns=now_ns - int(SIMULATED_WINDOW_S * _NS),  # a simulated morning ending now
        rng=rng,
    )
    bar = ProgressBar(
        len(plan) + 2, stream=options.err, enabled=None if options.progress else False
    )
    with (
        tempfile.TemporaryDirectory(prefix="galileo-otel-demo-") as workdir,
        _target(options, workdir) as (
            url,
            key,
            server,
        ),
    ):
        embedded = server is not None
        bar.advance(0, "server ready" if embedded else f"using {url}")
        log_stream = f"demo-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        provider = TracerProvider(resource=Resource.create({"service.name": DEMO_SERVICE}))
        handle = configure(
            tracer_provider=provider,
            api_url=url,
            api_key=key,
            project=options.project,
            log_stream=log_stream,
            create_missing=True,
            session_idle_timeout=IDLE_TIMEOUT_S,
            batch_delay=0.05,
            spool_dir=f"{workdir}/spool",
            service_name=DEMO_SERVICE,
            # The report below says where everything went; a start-up line on stderr would
            # only cut through the progress bar.
            startup_message=False,
        )
        app = SimulatedChatApp(provider.get_tracer("galileo-otel.demo"), rng)
        for turn in plan:
            app.run(turn)
            bar.advance(1, f"{turn.user}: {turn.conversation or 'one-off question'}")
        bar.advance(0, "flushing")
        flushed = handle.force_flush(FLUSH_TIMEOUT_S)
        stats = handle.stats()
        handle.shutdown(FLUSH_TIMEOUT_S)
        provider.shutdown()
        bar.advance(1, "reading back")
        report = _read_back(url, key, handle.destination, options.project, log_stream)
        bar.finish()
        report.update(
            {
                "api_url": url if not embedded else "embedded",
                "flushed": flushed,
                "stats": stats,
                "turns_simulated": len(plan),
                "seconds": round(time.monotonic() - started, 2),
                "project": options.project,
                "simulated_window_s": SIMULATED_WINDOW_S,
                "idle_gap_s": IDLE_GAP_S,
                "db": str(_db_path(options)) if embedded else None,
                "default_db": not options.db,
                # The embedded server's own URL while it stays up (--serve); otherwise the URL
                # `galileo-otel serve` will answer on, with this database's UI token.
                "ui_url": (_ui_url(server) if options.serve else _later_ui_url(options))
                if embedded
                else None,
                "serving": url if embedded and options.serve else None,
            }
        )
        if options.json_output:
            json.dump(report, options.out, indent=2, sort_keys=True, default=str)
            options.out.write("\n")
        else:
            _print_report(report, options.out)
        options.out.flush()
        if embedded and options.serve:
            options.wait()
    return 0 if flushed and report["traces"] == len(plan) else 1


def _later_ui_url(options: DemoOptions) -> str:
    """The UI URL of a later ``galileo-otel serve`` on this database (its token is stored)."""
    from galileo_otel.server.auth import UIAccess, load_or_create_ui_token

    return UIAccess(load_or_create_ui_token(_db_path(options))).login_url(SERVE_URL)


# --- reading back what arrived --------------------------------------------------------------------


def _session_traces(client: Any, project_id: str, session_id: str) -> list[dict[str, Any]] | None:
    """The traces of one session through the local server's read extension, else ``None``.

    The Galileo service has no such endpoint: against it the demo shows counts only.
    """
    from galileo_otel.errors import APIError

    try:
        data = client.request_json("GET", f"/v2/projects/{project_id}/sessions/{session_id}/traces")
    except APIError as exc:
        if exc.status_code in (404, 405):
            return None
        raise
    if isinstance(data, dict):
        data = data.get("traces", data.get("records", []))
    return [t for t in data if isinstance(t, dict)] if isinstance(data, list) else []


def _read_back(
    url: str, key: str, destination: Any, project: str, log_stream: str
) -> dict[str, Any]:
    """What the server holds for the demo's log stream: sessions, chains, traces, a count."""
    from galileo_otel.api.client import GalileoClient
    from galileo_otel.api.filters import number

    with GalileoClient(api_url=url, api_key=key) as client:
        if destination is None:
            destination = client.resolve_destination(
                project=project, log_stream=log_stream, create=False
            )
        pid, lsid = destination.project_id, destination.log_stream_id
        records = list(
            client.iter_sessions(
                project_id=pid,
                log_stream_id=lsid,
                sort={"column_id": "created_at", "ascending": True},
            )
        )
        sessions: list[dict[str, Any]] = []
        listable = True
        for rec in records:
            sid = str(rec.get("id"))
            traces = _session_traces(client, pid, sid) if listable else None
            listable = traces is not None
            meta = rec.get("user_metadata") or {}
            sessions.append(
                {
                    "id": sid,
                    "external_id": rec.get("external_id"),
                    "name": rec.get("name"),
                    "user": meta.get("user.id") or meta.get("user_id"),
                    "previous_session_id": rec.get("previous_session_id"),
                    "num_traces": len(traces)
                    if traces is not None
                    else int(rec.get("num_traces") or 0),
                    "traces": [
                        {
                            "id": t.get("id"),
                            "input": _short(t.get("input")),
                            "num_spans": _count_spans(t),
                        }
                        for t in traces or ()
                    ],
                }
            )
        count_filter = "num_traces>=3"
        busy = client.count_sessions(
            project_id=pid, log_stream_id=lsid, filters=[number("num_traces") >= 3]
        )
        total = client.count_sessions(project_id=pid, log_stream_id=lsid)
    by_id = {s["id"]: s for s in sessions}
    users: dict[str, list[dict[str, Any]]] = {}
    for s in sessions:
        previous = by_id.get(s["previous_session_id"] or "")
        # Same conversation key as the session it follows: the conversation went idle and
        # was continued in a new session, chained to the old one.
        s["resumed"] = bool(
            previous and s["external_id"] and previous["external_id"] == s["external_id"]
        )
        users.setdefault(str(s["user"]), []).append(s)
    return {
        "project_id": pid,
        "log_stream_id": lsid,
        "log_stream": log_stream,
        "sessions": total,
        "sessions_listed": len(sessions),
        "traces": sum(s["num_traces"] for s in sessions),
        "spans": sum(t["num_spans"] for s in sessions for t in s["traces"]) if listable else None,
        "chained_sessions": sum(1 for s in sessions if s["previous_session_id"]),
        "resumed_sessions": sum(1 for s in sessions if s["resumed"]),
        "count_filter": {"filter": count_filter, "count": busy},
        "users": dict(sorted(users.items())),
    }


def _count_spans(step: dict[str, Any]) -> int:
    children = step.get("spans") or []
    return sum(1 + _count_spans(c) for c in children if isinstance(c, dict))


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _print_report(report: dict[str, Any], out: TextIO) -> None:
    w = out.write
    where = "the embedded local server" if report["api_url"] == "embedded" else report["api_url"]
    w(
        f"galileo-otel demo: {report['turns_simulated']} chat turns sent to {where} "
        f"in {report['seconds']}s\n"
    )
    w(f"project {report['project_id']}, log stream {report['log_stream']}\n")
    window_h = report.get("simulated_window_s", SIMULATED_WINDOW_S) / 3600
    gap_min = report.get("idle_gap_s", IDLE_GAP_S) / 60
    w(
        f"span times are simulated: the turns are back-dated over the {window_h:g} hours before "
        f"now, including one {gap_min:g}-minute idle gap that never really happened\n\n"
    )
    w("Each user's sessions, oldest first; a session points to the one before it\n")
    w(
        f"(previous_session_id), and a conversation idle for {gap_min:g} simulated minutes "
        "resumes in a new session.\n\n"
    )
    for user, sessions in report["users"].items():
        w(f"user {user}\n")
        for s in sessions:
            label = s["external_id"] or "(automatic session of the user)"
            n = s["num_traces"]
            link = ""
            if s["previous_session_id"]:
                verb = "resumes" if s["resumed"] else "follows"
                link = f"  <- {verb} {s['previous_session_id'][:8]}"
                if s["resumed"]:
                    link += " after an idle gap (simulated)"
            w(f"  * session {s['id'][:8]}  {label}: {n} trace{'s' if n != 1 else ''}{link}\n")
            for t in s["traces"]:
                w(f"      - {t['input']}  [{t['num_spans']} spans]\n")
        w("\n")
    cf = report["count_filter"]
    w(
        f"Count Sessions: {report['sessions']} sessions in total; {cf['count']} match --filter "
        f"'{cf['filter']}'\n"
    )
    spans = report["spans"] if report["spans"] is not None else "n/a (this API lists no traces)"
    w(
        f"traces: {report['traces']}  spans: {spans}  chained sessions: "
        f"{report['chained_sessions']} ({report['resumed_sessions']} resumed after an idle gap)\n"
    )
    stats = report["stats"]
    keys = (
        "spans_queued",
        "traces_sent",
        "traces_confirmed",
        "traces_pending",
        "requests_sent",
        "requests_retried",
        "traces_spooled",
        "spans_dropped",
    )
    w("exporter stats: " + ", ".join(f"{k}={stats.get(k, 0)}" for k in keys) + "\n")
    w("all delivered and confirmed\n" if report["flushed"] else "NOT everything was confirmed\n")
    _print_where_to_look(report, w)


def _print_where_to_look(report: dict[str, Any], w: Callable[[str], Any]) -> None:
    """The last lines: where to look at the sessions next."""
    project = shlex.quote(str(report["project"]))
    sessions = next(iter((report.get("users") or {}).values()), None) or [{}]
    first = shlex.quote(str(sessions[0].get("external_id") or "alice-conv-1"))
    key = f"$(cat {shlex.quote(str(report.get('db')) + '.api-key')})"
    # Each run logs to a log stream of its own; sessions show and tail look in one.
    where = (
        f"GALILEO_PROJECT={project} GALILEO_LOG_STREAM={shlex.quote(str(report.get('log_stream')))}"
    )
    if report.get("serving"):
        env = f"GALILEO_API_URL={report['serving']} GALILEO_API_KEY={key} {where}"
        w(f"\nthe demo's server keeps running at {report['serving']} until Ctrl-C; meanwhile:\n")
        w(f"  web UI: {report['ui_url']}\n")
        w(f"  {env} galileo-otel sessions show {first}\n")
        w(f"  {env} galileo-otel tail\n")
    elif report.get("api_url") == "embedded":
        import os

        db = report["db"]
        db_arg = "" if report.get("default_db", True) else f" --db {shlex.quote(db)}"
        # A later `serve` in this shell accepts GALILEO_API_KEY when it is set, not the key file:
        # then the commands keep the shell's key.
        key_env = "" if os.environ.get("GALILEO_API_KEY") else f"GALILEO_API_KEY={key} "
        env = f"GALILEO_API_URL={SERVE_URL} {key_env}{where}"
        w(f"\nthe sessions are stored in {db}; to look at them, start the local server:\n")
        w(f"  galileo-otel serve{db_arg}\n")
        w(f"then open the web UI: {report['ui_url']}\n")
        w(f"or, in another terminal: {env} galileo-otel sessions show {first}\n")
