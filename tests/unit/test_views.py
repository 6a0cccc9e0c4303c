"""The terminal views of sessions and traces, and tail's bounded polling loop (no sockets)."""

from __future__ import annotations

from typing import Any

import pytest

from galileo_otel import cli, views
from galileo_otel.errors import APIError, TransportError


def _llm(**extra: Any) -> dict[str, Any]:
    return {
        "type": "llm",
        "name": "chat gpt-4o",
        "model": "gpt-4o-2024-08-06",
        "status_code": 200,
        "metrics": {"duration_ns": 1_250_000_000, "num_input_tokens": 12, "num_output_tokens": 7},
        "input": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in\n  Paris?"},
        ],
        "output": {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_1",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        **extra,
    }


TRACE: dict[str, Any] = {
    "id": "a532bec2-f5c7-427c-8f9b-109e80bdafb4",
    "type": "trace",
    "name": "turn",
    "created_at": "2025-03-01T10:00:00Z",
    "input": "Weather in Paris?",
    "output": "Sunny.",
    "status_code": 200,
    "metrics": {"duration_ns": 2_000_000_000},
    "spans": [
        {
            "type": "workflow",
            "name": "agent",
            "status_code": 200,
            "metrics": {"duration_ns": 1_900_000_000},
            "input": "Weather in Paris?",
            "output": "Sunny.",
            "spans": [
                _llm(),
                {
                    "type": "tool",
                    "name": "get_weather",
                    "status_code": 500,
                    "input": '{"city": "Paris"}',
                    "output": "upstream timeout",
                    "metrics": {"duration_ns": 5_000_000},
                    "spans": [],
                },
            ],
        }
    ],
}


def test_trace_tree_shows_steps_messages_tool_calls_tokens_and_errors() -> None:
    lines = views.trace_tree_lines(TRACE, width=None)
    assert lines == [
        "└─ workflow agent  1.90s  ok",
        "   │    in: Weather in Paris?",
        "   │    out: Sunny.",
        "   ├─ llm chat gpt-4o  model gpt-4o-2024-08-06  tokens 12 in / 7 out  1.25s  ok",
        "   │       system: Be brief.",
        "   │       user: Weather in Paris?",
        '   │       assistant calls tool: get_weather({"city": "Paris"})',
        "   └─ tool get_weather  5ms  ERROR 500",
        '           in: {"city": "Paris"}',
        "           out: upstream timeout",
    ]
    assert views.trace_tree_lines(TRACE, width=None, details=False) == [
        lines[0],
        lines[3],
        lines[7],
    ]


def test_long_lines_are_cut_to_the_width() -> None:
    lines = views.trace_tree_lines(TRACE, width=30)
    assert all(len(line) <= 30 for line in lines)
    assert lines[3].endswith("…")


def test_a_deep_tree_needs_no_recursion() -> None:
    deep: dict[str, Any] = {"spans": []}
    node = deep
    for i in range(5000):
        child: dict[str, Any] = {"type": "workflow", "name": f"s{i}", "spans": []}
        node["spans"].append(child)
        node = child
    lines = views.trace_tree_lines(deep, width=None, details=False)
    assert len(lines) == 5000 and lines[-1].endswith("workflow s4999  ok")


def test_trace_heading_and_tail_line() -> None:
    heading = views.trace_heading_lines(TRACE, 2, 3, steps=3, width=None)
    assert heading == [
        "trace 2/3  a532bec2-f5c7-427c-8f9b-109e80bdafb4  turn  2025-03-01 10:00:00  3 step(s)  "
        "2.00s  ok",
        "in:  Weather in Paris?",
        "out: Sunny.",
    ]
    summary = {
        **{k: v for k, v in TRACE.items() if k != "spans"},
        "user": "alice",
        "session_external_id": "conv-1",
        "num_spans": 3,
        "num_errors": 1,
    }
    assert views.trace_line(summary, width=None) == (
        "2025-03-01 10:00:00  alice  conv-1  turn  3 spans  2.00s  1 error(s)  "
        "Weather in Paris? → Sunny."
    )


def test_chain_marks_the_current_session_and_idle_gaps() -> None:
    chain = [
        {
            "id": "11111111-aaaa",
            "created_at": "2025-03-01T10:00:00Z",
            "updated_at": "2025-03-01T10:05:00Z",
            "external_id": "conv-1",
            "num_traces": 3,
        },
        {
            "id": "22222222-bbbb",
            "created_at": "2025-03-01T10:50:00Z",
            "updated_at": "2025-03-01T10:51:00Z",
            "external_id": "conv-1",
            "num_traces": 1,
        },
    ]
    assert views.chain_lines(chain, "22222222-bbbb") == [
        "chain: 2 session(s), oldest first",
        "  1. 11111111  2025-03-01 10:00:00  conv-1  3 trace(s)",
        "▶ 2. 22222222  2025-03-01 10:50:00  conv-1  1 trace(s)  (new session after 45m idle)",
    ]


# --- tail's loop ------------------------------------------------------------------------------


class FakeServer:
    """A trace store read the way the tail route reads it: a cursor over arrival order."""

    def __init__(self, existing: int) -> None:
        self.traces = [{"name": f"t{i}"} for i in range(existing)]
        self.calls: list[tuple[int | None, int]] = []
        self.fail_next: Exception | None = None

    def fetch(self, after: int | None, limit: int) -> dict[str, Any]:
        self.calls.append((after, limit))
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        if after is None:
            return {"traces": self.traces[-limit:], "cursor": len(self.traces)}
        page = self.traces[after : after + limit]
        return {"traces": page, "cursor": after + len(page)}


class FakeClock:
    def __init__(self, server: FakeServer, arrivals: dict[int, int]) -> None:
        self.now = 0.0
        self.sleeps = 0
        self.server = server
        self.arrivals = arrivals  # after the Nth sleep, this many traces arrive

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += seconds
        for _ in range(self.arrivals.get(self.sleeps, 0)):
            self.server.traces.append({"name": f"t{len(self.server.traces)}"})


def test_follow_prints_the_last_lines_then_each_new_trace_once() -> None:
    server = FakeServer(existing=5)
    clock = FakeClock(server, {1: 2, 3: 450})  # a burst larger than one page on the 3rd poll
    seen: list[str] = []
    cursor = cli.follow_traces(
        server.fetch,
        lambda t: seen.append(t["name"]),
        lines=2,
        interval=1.0,
        duration=4.0,
        sleep=clock.sleep,
        clock=clock,
    )
    assert seen == [f"t{i}" for i in range(3, 5 + 2 + 450)]
    assert cursor == 457 and clock.sleeps == 4 and clock.now == 4.0


def test_follow_with_no_lines_starts_from_now_and_stops_at_once_for_zero() -> None:
    server = FakeServer(existing=3)
    clock = FakeClock(server, {})
    seen: list[Any] = []
    assert (
        cli.follow_traces(
            server.fetch,
            seen.append,
            lines=0,
            interval=1.0,
            duration=0.0,
            sleep=clock.sleep,
            clock=clock,
        )
        == 3
    )
    assert seen == [] and clock.sleeps == 0


def test_follow_rides_out_a_server_restart_but_not_an_api_error() -> None:
    server = FakeServer(existing=0)
    clock = FakeClock(server, {2: 1})
    errors: list[Exception] = []
    seen: list[Any] = []
    server.fail_next = None

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if clock.sleeps == 1:
            server.fail_next = TransportError("connection refused")

    cli.follow_traces(
        server.fetch,
        seen.append,
        lines=0,
        interval=1.0,
        duration=3.0,
        sleep=sleep,
        clock=clock,
        on_error=errors.append,
    )
    assert len(errors) == 1 and [t["name"] for t in seen] == ["t0"]

    def sleep_then_fail(seconds: float) -> None:
        clock.sleep(seconds)
        server.fail_next = APIError("boom", status_code=500)

    with pytest.raises(APIError, match="boom"):
        cli.follow_traces(
            server.fetch,
            seen.append,
            lines=0,
            interval=1.0,
            duration=10.0,
            sleep=sleep_then_fail,
            clock=clock,
            on_error=errors.append,
        )
    assert len(errors) == 1  # only transport errors are ridden out


def test_media_parts_are_named_not_dumped() -> None:
    from galileo_otel.views import _one_line, content_part_text

    image = {"type": "data", "modality": "image", "mime_type": "image/png", "base64": "A" * 4000}
    assert content_part_text(image) == "[image: image/png 3000 bytes inline]"
    by_url = {"type": "data", "modality": "audio", "url": "https://x/a.wav"}
    assert content_part_text(by_url) == "[audio: https://x/a.wav]"
    line = _one_line([{"type": "text", "text": "what is\nthis?"}, image])
    assert line == "what is this? [image: image/png 3000 bytes inline]"
    assert "AAAA" not in line


def test_ui_names_media_parts() -> None:
    from galileo_otel.server.ui import content_parts

    image = {"type": "data", "modality": "image", "url": "https://x/cat.png"}
    assert content_parts([{"type": "text", "text": "look"}, image]) == [
        "look",
        "[image: https://x/cat.png]",
    ]
