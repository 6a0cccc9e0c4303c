"""Fault rules of the local server: matching, counting, seeded fractions, and their ASGI answers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from galileo_otel.server.faults import DroppedConnection, FaultInjector, FaultRule


def test_routes_match_by_alias_method_glob_or_everything() -> None:
    assert FaultRule("error", "traces").matches("POST", "/v2/projects/p/traces")
    assert not FaultRule("error", "traces").matches("GET", "/v2/projects/p/traces")
    assert not FaultRule("error", "sessions.create").matches(
        "POST", "/v2/projects/p/sessions/count"
    )
    assert FaultRule("error", "sessions.count").matches("POST", "/v2/projects/p/sessions/count")
    assert FaultRule("error", "GET /projects").matches("GET", "/projects")
    assert not FaultRule("error", "GET /projects").matches("POST", "/projects")
    assert FaultRule("error", "*/log_streams").matches("POST", "/v2/projects/p/log_streams")
    assert FaultRule("error", "post /healthcheck").matches("POST", "/healthcheck")
    assert FaultRule("error").matches("DELETE", "/anything/at/all")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"action": "explode"},
        {"action": "error", "fraction": 1.5},
        {"action": "error", "times": -1},
        {"action": "error", "status": 99},
        {"action": "latency", "latency_s": -1},
        {"action": "rate_limit", "retry_after_s": -2},
    ],
)
def test_bad_rules_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        FaultRule.from_dict(kwargs)


def test_from_dict_refuses_unknown_keys_and_round_trips() -> None:
    with pytest.raises(ValueError, match="rout"):
        FaultRule.from_dict({"action": "drop", "rout": "*"})
    rule = FaultRule.from_dict({"action": "rate_limit", "route": "traces", "times": 2})
    assert rule.retry_after_s == 1.0  # a 429 always says when to come back
    data = rule.to_dict()
    assert data["route"] == "traces" and "_glob" not in data and data["fired"] == 0
    data.pop("fired")
    assert FaultRule.from_dict(data) == rule


def test_times_counts_down_and_latency_adds_up() -> None:
    faults = FaultInjector()
    faults.latency("traces", seconds=0.25)
    faults.latency("*", seconds=0.5, times=1)
    faults.fail("traces", status=503, times=2)
    decisions = [faults.decide("POST", "/v2/projects/p/traces") for _ in range(4)]
    assert [d[0] for d in decisions] == [0.75, 0.25, 0.25, 0.25]
    assert [d[1].status if d[1] else None for d in decisions] == [503, 503, None, None]
    assert faults.stats() == {"latency": 5, "error": 2, "rate_limit": 0, "hang": 0, "drop": 0}
    assert faults.decide("GET", "/healthcheck") == (0.0, None)


def test_first_terminal_rule_wins_and_admin_is_never_faulted() -> None:
    faults = FaultInjector([{"action": "drop", "route": "*"}, {"action": "error", "route": "*"}])
    assert faults.decide("GET", "/x")[1].action == "drop"  # type: ignore[union-attr]
    assert faults.decide("POST", "/local/faults") == (0.0, None)
    assert faults.decide("POST", "/local/faults/release") == (0.0, None)
    faults.clear()
    assert faults.rules == [] and faults.decide("GET", "/x") == (0.0, None)


def test_fraction_is_seeded() -> None:
    def draws(seed: int) -> list[bool]:
        faults = FaultInjector(seed=seed)
        faults.fail("*", fraction=0.3)
        return [faults.decide("GET", "/")[1] is not None for _ in range(200)]

    first = draws(4)
    assert first == draws(4)
    assert 30 < sum(first) < 90
    faults = FaultInjector(seed=4)
    faults.fail("*", fraction=0.3)
    faults.reseed(4)
    assert [faults.decide("GET", "/")[1] is not None for _ in range(200)] == first


class _Exchange:
    """A fake ASGI request: a body in two chunks, and the messages sent back."""

    def __init__(self) -> None:
        self.chunks: list[dict[str, Any]] = [
            {"type": "http.request", "body": b"{", "more_body": True},
            {"type": "http.request", "body": b"}", "more_body": False},
        ]
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        return self.chunks.pop(0)

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)


def _handle(
    faults: FaultInjector, exchange: _Exchange, path: str = "/v2/projects/p/traces"
) -> bool:
    scope = {"type": "http", "method": "POST", "path": path}
    return asyncio.run(faults.handle(scope, exchange.receive, exchange.send))


def test_error_and_rate_limit_answers() -> None:
    faults = FaultInjector()
    faults.rate_limit("traces", retry_after_s=0.25, times=1)
    faults.fail("traces", status=503, retry_after_s=3, times=1)
    exchange = _Exchange()
    assert _handle(faults, exchange) is True
    assert exchange.chunks == []  # the body was read before answering
    start, body = exchange.sent
    assert start["status"] == 429 and (b"retry-after", b"0.25") in start["headers"]
    assert body["body"] == b'{"detail": "injected fault: 429"}'
    exchange = _Exchange()
    assert _handle(faults, exchange) is True
    assert (
        exchange.sent[0]["status"] == 503 and (b"retry-after", b"3") in exchange.sent[0]["headers"]
    )
    exchange = _Exchange()
    assert _handle(faults, exchange) is False and exchange.sent == []


def test_drop_without_a_transport_raises() -> None:
    faults = FaultInjector()
    faults.drop("traces")
    with pytest.raises(DroppedConnection):
        _handle(faults, _Exchange())


def test_hang_ends_on_release_or_close_and_is_bounded() -> None:
    faults = FaultInjector()
    faults.hang("traces", max_hang_s=30)

    async def hang_then_release() -> None:
        scope = {"type": "http", "method": "POST", "path": "/v2/projects/p/traces"}
        exchange = _Exchange()
        task = asyncio.ensure_future(faults.handle(scope, exchange.receive, exchange.send))
        for _ in range(100):
            if faults.stats()["hang"]:
                break
            await asyncio.sleep(0)
        faults.release()
        with pytest.raises(DroppedConnection):
            await asyncio.wait_for(task, 5)
        assert exchange.sent == []

    asyncio.run(hang_then_release())
    bounded = FaultInjector()
    bounded.hang("traces", max_hang_s=0.01)
    with pytest.raises(DroppedConnection):
        _handle(bounded, _Exchange())
    closed = FaultInjector()
    closed.hang("traces", max_hang_s=30)
    closed.close()  # a stopped server does not hang
    with pytest.raises(DroppedConnection):
        _handle(closed, _Exchange())
