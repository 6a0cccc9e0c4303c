"""FailoverSessionStore without sockets: a shared store that fails on demand, an injected clock."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest

from galileo_otel.sessions.failover import FailoverSessionStore
from galileo_otel.sessions.store import MemorySessionStore, SessionStoreUnavailable
from galileo_otel.sessions.tracker import SessionTracker

S = 1_000_000_000


class Flaky(MemorySessionStore):
    """A shared store stand-in: a memory store whose every call fails while ``down``."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.calls = 0
        self.noted: dict[str, str] = {}

    def _check(self) -> None:
        self.calls += 1
        if self.down:
            raise SessionStoreUnavailable("shared store: connection refused")

    def open_or_join(self, scope: str, **kwargs: Any) -> Any:
        self._check()
        return super().open_or_join(scope, **kwargs)

    def latest(self, scope: str) -> Any:
        self._check()
        return super().latest(scope)

    def get(self, local_id: str) -> Any:
        self._check()
        return super().get(local_id)

    def put(self, record: Any) -> None:
        self._check()
        super().put(record)

    def create_once(self, local_id: str, create: Any, *, timeout_s: float | None = None) -> str:
        self._check()
        return super().create_once(local_id, create, timeout_s=timeout_s)

    def note_created(self, local_id: str, galileo_id: str) -> None:
        self.noted[local_id] = galileo_id


def turn(tracker: SessionTracker, at_s: float, **attrs: Any) -> Any:
    start = int(at_s * S)
    attributes = {k.replace("__", "."): v for k, v in attrs.items()}
    return tracker.session_for_trace(attributes, start, start + S)


def test_outage_falls_back_retries_with_backoff_and_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    shared = Flaky()
    store = FailoverSessionStore(
        shared, MemorySessionStore(), retry_after_s=1, max_retry_after_s=4, clock=lambda: now[0]
    )
    tracker = SessionTracker(store, idle_timeout_s=600)
    created: list[dict[str, Any]] = []

    def create(payload: dict[str, Any]) -> str:
        created.append(payload)
        return str(uuid.uuid4())

    before = turn(tracker, 0, session__id="c", user__id="u")
    caplog.set_level(logging.WARNING, logger="galileo_otel")
    shared.down = True
    during = [turn(tracker, 10 + i, session__id="c", user__id="u") for i in range(10)]
    assert len({r.local_id for r in during}) == 1 and during[0].local_id != before.local_id
    assert shared.calls == 2  # one failed call; the other nine went straight to the fallback
    # a session opened during the outage is created locally, without asking the shared store;
    # it chains to the shared session before it, which is created first (here, during the
    # outage: its id is written back to the shared store later)
    gid = tracker.ensure_created(during[0], create)
    assert shared.calls == 2 and gid and len(created) == 2
    before_gid = tracker.ensure_created(before, create)
    assert created[1]["previous_session_id"] == before_gid
    assert shared.noted == {before.local_id: before_gid}
    now[0] = 1.5  # the retry is due, fails again: the next one waits twice as long
    turn(tracker, 30, session__id="c", user__id="u")
    now[0] = 3.0
    turn(tracker, 31, session__id="c", user__id="u")
    assert shared.calls == 3  # at 3.0 the retry (due at 1.5 + 2) is not due yet
    messages = [r.getMessage() for r in caplog.records]
    assert sum("unreachable" in m for m in messages) == 1  # said once per outage
    shared.down = False
    now[0] = 3.6
    after = turn(tracker, 40, session__id="c", user__id="u")
    # The shared store kept the session before the outage, but the conversation moved on to
    # the fallback session: the shared store continues from there, one chain.
    assert during[0].previous_local_id == before.local_id
    assert after.local_id not in (before.local_id, during[0].local_id)
    assert after.previous_local_id == during[0].local_id
    assert turn(tracker, 41, session__id="c", user__id="u").local_id == after.local_id
    assert sum("answers again" in m for m in messages + [r.getMessage() for r in caplog.records])
    stats = tracker.stats()
    assert stats["store_outages"] == 1 and stats["store_down"] == 0
    assert stats["store_fallback_sessions"] == 1 and stats["store_fallback_creates"] == 1
    # the local session is still found (e.g. by a late batch) after the outage
    assert store.get(during[0].local_id) is not None
    tracker.close()


def test_default_retry_is_one_second_doubling_to_thirty_as_the_readme_says() -> None:
    # docs/how-to/redis.md: "Redis is tried again after 1 s (doubling up to 30 s)": the defaults.
    now = [0.0]
    shared = Flaky()
    shared.down = True
    store = FailoverSessionStore(shared, MemorySessionStore(), clock=lambda: now[0])
    tried_at: list[float] = []
    for step in range(130 * 4 + 1):  # every 0.25 s for 130 s
        now[0] = step / 4
        calls = shared.calls
        store.latest("conversation")
        if shared.calls > calls:
            tried_at.append(now[0])
    assert tried_at == [0.0, 1.0, 3.0, 7.0, 15.0, 31.0, 61.0, 91.0, 121.0]
    store.close()


@pytest.mark.parametrize("comes_back", ["empty", "as-it-was"])
@pytest.mark.parametrize("keyed", [True, False], ids=["conversation", "automatic"])
def test_one_conversation_is_one_chain_across_an_outage(comes_back: str, keyed: bool) -> None:
    """shared -> fallback -> shared, linked by previous_session_id, as Galileo receives them."""
    now = [0.0]
    shared = Flaky()
    store = FailoverSessionStore(
        shared, MemorySessionStore(), retry_after_s=1, clock=lambda: now[0]
    )
    tracker = SessionTracker(store, idle_timeout_s=600)
    created: dict[str, dict[str, Any]] = {}

    def create(payload: dict[str, Any]) -> str:
        gid = str(uuid.uuid4())
        created[gid] = payload
        return gid

    attrs = {"session__id": "conv", "user__id": "u"} if keyed else {"user__id": "u"}
    first = turn(tracker, 0, **attrs)
    g1 = tracker.ensure_created(first, create)
    shared.down = True
    during = turn(tracker, 10, **attrs)
    assert turn(tracker, 11, **attrs).local_id == during.local_id  # one fallback session
    g2 = tracker.ensure_created(during, create)
    shared.down = False
    if comes_back == "empty":  # e.g. a restarted Redis without persistence
        shared._records.clear()
        shared._scopes.clear()
        shared._users.clear()
    now[0] = 2.0
    after = turn(tracker, 20, **attrs)
    g3 = tracker.ensure_created(after, create)
    assert turn(tracker, 21, **attrs).local_id == after.local_id  # shared again, and joined
    assert created[g1]["previous_session_id"] is None
    assert created[g2]["previous_session_id"] == g1
    assert created[g3]["previous_session_id"] == g2
    assert len(created) == 3
    tracker.close()
