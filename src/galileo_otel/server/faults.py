"""Fault injection for the local server: make a route slow, failing, rate-limited, hanging or mute.

A :class:`FaultInjector` holds an ordered list of :class:`FaultRule`. For each request the rules
whose route matches are tried in order; a rule *fires* when it still has ``times`` left (``None``
= unlimited) and a seeded random draw falls under its ``fraction``. ``latency`` rules add their
delay and let the request go on; the first firing rule of any other action decides the answer:

==============  =================================================================================
``error``       answer ``status`` (default 500) with ``{"detail": "injected fault"}``
``rate_limit``  answer 429 with ``Retry-After: retry_after_s``
``hang``        never answer; after ``max_hang_s`` or :meth:`FaultInjector.release` or server
                stop, close the connection
``drop``        close the connection without an answer
==============  =================================================================================

The request body is read first, so the client always finishes sending. Routes: an alias
(``traces``, ``sessions.create``, ``sessions.count``, ``sessions.search``, ``projects``,
``log_streams``, ``healthcheck``), ``"METHOD /glob"`` or ``"/glob"`` (``*`` matches any text,
``/`` included), or ``"*"`` for everything. The admin endpoints ``/local/faults...`` are never
faulted. Example::

    faults = FaultInjector(seed=7)
    faults.fail("traces", status=503, times=2)          # the next two Log Traces answer 503
    faults.rate_limit("sessions.create", retry_after_s=0.1, fraction=0.5)
    app = create_app(faults=faults)
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import logging
import math
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

__all__ = ["MAX_DELAY_S", "MAX_TIMES", "ROUTE_ALIASES", "FaultAction", "FaultInjector", "FaultRule"]

logger = logging.getLogger(__name__)

FaultAction = Literal["latency", "error", "rate_limit", "hang", "drop"]
_ACTIONS: tuple[str, ...] = ("latency", "error", "rate_limit", "hang", "drop")

ROUTE_ALIASES: Mapping[str, tuple[str | None, str]] = {
    "traces": ("POST", "/v2/projects/*/traces"),
    "sessions.create": ("POST", "/v2/projects/*/sessions"),
    "sessions.count": ("POST", "/v2/projects/*/sessions/count"),
    "sessions.search": ("POST", "/v2/projects/*/sessions/search"),
    "projects": (None, "/projects"),
    "log_streams": (None, "/v2/projects/*/log_streams"),
    "healthcheck": ("GET", "/healthcheck"),
}
"""Short names of the API's routes, usable as a rule's ``route``."""

MAX_DELAY_S = 3600.0
"""Longest ``latency_s``, ``max_hang_s`` or ``retry_after_s`` a rule may have."""
MAX_TIMES = 1_000_000
"""Largest ``times`` a rule may have (``None`` means unlimited)."""

_ADMIN_PREFIX = "/local/faults"
_POLL_S = 0.02

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@dataclass
class FaultRule:
    """One fault: what happens to which requests, how often.

    Attributes:
        action: ``latency``, ``error``, ``rate_limit``, ``hang`` or ``drop``.
        route: Alias, ``"METHOD /glob"``, ``"/glob"`` or ``"*"``.
        times: Fire for the next N matching requests only (``None``: no limit).
        fraction: Probability of firing for a matching request (seeded, so repeatable).
        status: HTTP status of an ``error`` answer.
        retry_after_s: ``Retry-After`` of a ``rate_limit`` (or ``error``) answer, in seconds.
        latency_s: Delay of a ``latency`` rule.
        max_hang_s: Bound of a ``hang``.
        fired: How many times the rule fired so far.
    """

    action: FaultAction
    route: str = "*"
    times: int | None = None
    fraction: float = 1.0
    status: int = 500
    retry_after_s: float | None = None
    latency_s: float = 0.0
    max_hang_s: float = 30.0
    fired: int = field(default=0, compare=False)
    _method: str | None = field(default=None, init=False, repr=False, compare=False)
    _glob: str = field(default="*", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.action not in _ACTIONS:
            raise ValueError(f"unknown fault action {self.action!r}; use one of {_ACTIONS}")
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError("fraction must be between 0 and 1")
        if self.times is not None and self.times < 0:
            raise ValueError("times must be >= 0")
        if not 100 <= self.status <= 599:
            raise ValueError("status must be an HTTP status code")
        if self.times is not None and self.times > MAX_TIMES:
            raise ValueError(f"times must be <= {MAX_TIMES}")
        for name in ("latency_s", "max_hang_s", "retry_after_s"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= MAX_DELAY_S:
                # A fault must end: a bounded delay keeps a forgotten rule from pinning a server.
                raise ValueError(f"{name} must be between 0 and {MAX_DELAY_S:g} seconds")
        if self.action == "rate_limit" and self.retry_after_s is None:
            self.retry_after_s = 1.0
        self._method, self._glob = self._parse_route(self.route)

    @staticmethod
    def _parse_route(route: str) -> tuple[str | None, str]:
        if route in ROUTE_ALIASES:
            return ROUTE_ALIASES[route]
        method, sep, path = route.partition(" ")
        if sep and path.startswith(("/", "*")):
            return method.upper(), path
        return None, route

    def matches(self, method: str, path: str) -> bool:
        """Whether this rule applies to a request (before ``times`` and ``fraction``)."""
        if self._method is not None and self._method != method:
            return False
        return fnmatch.fnmatchcase(path, self._glob)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FaultRule:
        """Build a rule from JSON (unknown keys are an error, to catch typos).

        Raises:
            ValueError: An unknown key or a bad value.
        """
        known = {f.name for f in fields(cls) if f.init} - {"fired"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault rule keys: {sorted(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """The rule as JSON."""
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}


class FaultInjector:
    """The live set of fault rules of a server; thread-safe, so tests can change it at any time.

    Args:
        rules: Initial rules (``FaultRule`` or their JSON dicts).
        seed: Seed of the random draws for ``fraction``.
    """

    def __init__(
        self, rules: Iterable[FaultRule | Mapping[str, Any]] = (), *, seed: int = 0
    ) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._random = random.Random(seed)
        self._release_gen = 0
        self._closed = False
        self._counts: dict[str, int] = dict.fromkeys(_ACTIONS, 0)
        for rule in rules:
            self.add(rule)

    # --- configuration ------------------------------------------------------------------------

    def add(self, rule: FaultRule | Mapping[str, Any]) -> FaultRule:
        """Append a rule (tried after the existing ones) and return it."""
        if not isinstance(rule, FaultRule):
            rule = FaultRule.from_dict(rule)
        with self._lock:
            self._rules.append(rule)
        return rule

    def latency(self, route: str = "*", seconds: float = 0.1, **kw: Any) -> FaultRule:
        """Delay matching requests by ``seconds`` (they are then answered normally)."""
        return self.add(FaultRule("latency", route, latency_s=seconds, **kw))

    def fail(self, route: str = "*", *, status: int = 500, **kw: Any) -> FaultRule:
        """Answer matching requests with ``status`` (500, 503, ...)."""
        return self.add(FaultRule("error", route, status=status, **kw))

    def rate_limit(self, route: str = "*", *, retry_after_s: float = 1.0, **kw: Any) -> FaultRule:
        """Answer matching requests 429 with ``Retry-After``."""
        return self.add(
            FaultRule("rate_limit", route, status=429, retry_after_s=retry_after_s, **kw)
        )

    def hang(self, route: str = "*", *, max_hang_s: float = 30.0, **kw: Any) -> FaultRule:
        """Never answer matching requests (until released, stopped or ``max_hang_s``)."""
        return self.add(FaultRule("hang", route, max_hang_s=max_hang_s, **kw))

    def drop(self, route: str = "*", **kw: Any) -> FaultRule:
        """Close the connection of matching requests without an answer."""
        return self.add(FaultRule("drop", route, **kw))

    def clear(self) -> None:
        """Remove every rule and release current hangs."""
        with self._lock:
            self._rules.clear()
        self.release()

    def reseed(self, seed: int) -> None:
        """Restart the random draws from ``seed``."""
        with self._lock:
            self._random.seed(seed)

    def release(self) -> None:
        """End every hang in progress (their connections are closed)."""
        with self._lock:
            self._release_gen += 1

    def close(self) -> None:
        """Server stop: end hangs and cut latencies short, now and from now on."""
        with self._lock:
            self._closed = True
            self._release_gen += 1

    @property
    def rules(self) -> list[FaultRule]:
        """A copy of the rules, in order."""
        with self._lock:
            return list(self._rules)

    def stats(self) -> dict[str, int]:
        """How many requests each action was applied to."""
        with self._lock:
            return dict(self._counts)

    def to_dict(self) -> dict[str, Any]:
        """Rules and counters as JSON (the admin endpoint's answer)."""
        with self._lock:
            return {
                "rules": [r.to_dict() for r in self._rules],
                "fired": dict(self._counts),
            }

    # --- decision -----------------------------------------------------------------------------

    def decide(self, method: str, path: str) -> tuple[float, FaultRule | None]:
        """Which faults apply to one request: total added latency and the terminal rule, if any."""
        if path.startswith(_ADMIN_PREFIX):
            return 0.0, None
        delay = 0.0
        with self._lock:
            if not self._rules:
                return 0.0, None
            for rule in self._rules:
                if not rule.matches(method, path):
                    continue
                if rule.times is not None and rule.fired >= rule.times:
                    continue
                if rule.fraction < 1.0 and self._random.random() >= rule.fraction:
                    continue
                rule.fired += 1
                self._counts[rule.action] += 1
                if rule.action == "latency":
                    delay += rule.latency_s
                    continue
                return delay, rule
        return delay, None

    async def _pause(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; cut short on release/close. True if it ran the full time."""
        with self._lock:
            generation, closed = self._release_gen, self._closed
        if closed:
            return False
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            await asyncio.sleep(min(left, _POLL_S))
            if self._release_gen != generation:
                return False

    # --- ASGI ---------------------------------------------------------------------------------

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Apply the faults of one HTTP request; True when a fault answered (or muted) it."""
        delay, rule = self.decide(scope.get("method", "GET"), scope.get("path", ""))
        if delay:
            await self._pause(delay)
        if rule is None:
            return False
        await _drain_body(receive)
        if rule.action in ("error", "rate_limit"):
            status = 429 if rule.action == "rate_limit" else rule.status
            headers = [(b"content-type", b"application/json")]
            if rule.retry_after_s is not None:
                headers.append((b"retry-after", _format_seconds(rule.retry_after_s).encode()))
            body = json.dumps({"detail": f"injected fault: {status}"}).encode()
            headers.append((b"content-length", str(len(body)).encode()))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return True
        if rule.action == "hang":
            await self._pause(rule.max_hang_s)
        await _close_connection(send)
        return True


def _format_seconds(seconds: float) -> str:
    # Whole seconds as RFC 9110 wants; fractions kept so tests need not wait a full second.
    if seconds == math.floor(seconds):
        return str(int(seconds))
    return f"{seconds:g}"


async def _drain_body(receive: Receive) -> None:
    while True:
        message = await receive()
        if message.get("type") != "http.request" or not message.get("more_body", False):
            return


class DroppedConnection(ConnectionAbortedError):
    """Raised by a drop fault when the server offers no way to close the connection."""


async def _close_connection(send: Send) -> None:
    """Close the client's connection without an answer.

    ASGI has no message for that, so this reaches the transport of uvicorn's request cycle (the
    owner of ``send``); elsewhere it raises, which the server turns into a broken connection.
    """
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise DroppedConnection("fault injection dropped the connection")
    transport.close()
    # Let connection_lost run so uvicorn sees a disconnect, not an app that forgot to answer.
    for _ in range(100):
        if getattr(cycle, "disconnected", True):
            return
        await asyncio.sleep(0.001)
