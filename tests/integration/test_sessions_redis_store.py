"""The Redis session store against a real redis-server: the SQLite store's guarantees, and failover."""

from __future__ import annotations

import logging
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest_redis import RedisServer

from galileo_otel.sessions.failover import FailoverSessionStore
from galileo_otel.sessions.redis_store import RedisSessionStore, redact_url
from galileo_otel.sessions.store import (
    MemorySessionStore,
    SessionRecord,
    SessionStoreUnavailable,
    store_from_settings,
)
from galileo_otel.sessions.tracker import SessionTracker
from galileo_otel.settings import GalileoSettings
from session_fakes import CountingCreate

pytestmark = pytest.mark.integration

S = 1_000_000_000
T0 = 1_764_000_000 * S  # a real epoch in ns: 19 digits, beyond a double's exact integers


@pytest.fixture
def stores(redis_url: str) -> Any:
    made: list[Any] = []

    def make(**kwargs: Any) -> RedisSessionStore:
        store = RedisSessionStore(redis_url, **kwargs)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


def turn(tracker: SessionTracker, at_s: float, **attrs: Any) -> SessionRecord:
    attributes = {k.replace("__", "."): v for k, v in attrs.items()}
    start = T0 + int(at_s * S)
    return tracker.session_for_trace(attributes, start, start + 2 * S)


def test_rotation_and_chains_across_two_hosts(stores: Any) -> None:
    """Two trackers with their own connections ("hosts") take turns: one history, no fork."""
    a = SessionTracker(stores(), idle_timeout_s=600, max_age_s=3600, namespace="p/ls")
    b = SessionTracker(stores(), idle_timeout_s=600, max_age_s=3600, namespace="p/ls")
    s1 = turn(a, 0, session__id="conv", user__id="alice")
    assert turn(b, 100, session__id="conv", user__id="alice").local_id == s1.local_id
    assert turn(a, 650, session__id="conv", user__id="alice").local_id == s1.local_id
    # idle: 1300 - (650 + 2) > 600 on whichever host sees it
    s2 = turn(b, 1300, session__id="conv", user__id="alice")
    assert s2.local_id != s1.local_id and s2.previous_local_id == s1.local_id
    auto = turn(a, 1400, user__id="alice")  # alice's automatic session follows her latest
    assert auto.previous_local_id == s2.local_id
    s3 = turn(a, 1500, session__id="conv2", user__id="alice")
    assert s3.previous_local_id == auto.local_id
    # max age: the conversation started at 1300 rotates at 1300 + 3600 even though it is busy
    for at in range(1800, 4900, 500):
        assert turn(a if at % 1000 else b, at, session__id="conv", user__id="alice") == s2
    s4 = turn(b, 4950, session__id="conv", user__id="alice")
    assert s4.local_id != s2.local_id and s4.previous_local_id == s2.local_id
    stats = a.stats()
    assert b.stats()["rotated_idle"] == 1 and b.stats()["rotated_max_age"] == 1
    assert stats["store_round_trips"] > 0
    # the app's session.previous_id names a key of ours: its latest session, on any host
    c = turn(b, 5000, session__id="c-1", user__id="carol", session__previous_id="conv2")
    assert c.previous_local_id == s3.local_id


def test_keys_are_namespaced_and_expire(stores: Any, redis_server: RedisServer) -> None:
    tracker = SessionTracker(stores(ttl_s=120), idle_timeout_s=600, namespace="proj/stream")
    record = turn(tracker, 0, session__id="k", user__id="u")
    client = redis_server.client()
    try:
        keys = sorted(k.decode() for k in client.keys("*"))
        assert keys == [
            f"galileo-otel:v1:rec:{record.local_id}",
            "galileo-otel:v1:scope:proj/stream|key:k",
            "galileo-otel:v1:user:proj/stream|u",
        ]
        for key in keys:
            assert 0 < client.pttl(key) <= 120_000
    finally:
        client.close()
    other = SessionTracker(stores(), idle_timeout_s=600, namespace="proj/other")
    assert turn(other, 1, session__id="k", user__id="u").local_id != record.local_id


def test_sixteen_threads_on_four_hosts_make_one_session_created_once(stores: Any) -> None:
    create = CountingCreate()
    trackers = [SessionTracker(stores(), idle_timeout_s=600) for _ in range(4)]
    barrier = threading.Barrier(16, timeout=30)
    records: list[SessionRecord] = []
    galileo_ids: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        try:
            tracker = trackers[i % 4]
            barrier.wait()
            record = turn(tracker, i / 100, session__id="race", user__id="u")
            galileo_id = tracker.ensure_created(record, create, timeout_s=30)
            with lock:
                records.append(record)
                galileo_ids.append(galileo_id)
        except BaseException as exc:
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert len({r.local_id for r in records}) == 1
    assert len(set(galileo_ids)) == 1 and len(records) == 16
    assert len(create.calls) == 1
    assert sum(t.stats()["sessions_opened"] for t in trackers) == 1


def test_create_once_waits_for_the_holder_and_takes_over_after_a_failure(stores: Any) -> None:
    a, b = stores(lease_s=30), stores(lease_s=30)
    record = SessionRecord(local_id=str(uuid.uuid4()), key="key:x")
    a.put(record)
    entered, release = threading.Event(), threading.Event()

    def failing() -> str:
        entered.set()
        assert release.wait(30)
        raise RuntimeError("Create Session failed")

    def holder() -> None:
        with pytest.raises(RuntimeError):
            a.create_once(record.local_id, failing)

    t = threading.Thread(target=holder)
    t.start()
    assert entered.wait(30)
    with pytest.raises(TimeoutError):
        b.create_once(record.local_id, lambda: "never", timeout_s=0.2)
    release.set()
    t.join(30)
    # the failed holder released its lease at once: b creates without waiting for it to run out
    assert b.create_once(record.local_id, lambda: "gid-b", timeout_s=5) == "gid-b"
    assert a.create_once(record.local_id, lambda: "never") == "gid-b"
    assert a.get(record.local_id) is not None and a.get(record.local_id).galileo_id == "gid-b"  # type: ignore[union-attr]


def test_put_get_and_the_galileo_id_of_a_restored_record(stores: Any) -> None:
    store = stores()
    record = SessionRecord(local_id=str(uuid.uuid4()), key="k", name="n", sampled=False)
    store.put(record)
    got = store.get(record.local_id)
    assert got == record and got is not None and got.sampled is False
    assert store.create_once(record.local_id, lambda: "gid") == "gid"
    restored = SessionRecord.from_dict(record.to_dict())
    store.put(restored)
    assert restored.galileo_id == "gid"
    assert store.get("unknown") is None and store.latest("nothing") is None


def test_settings_build_a_failover_redis_store(redis_url: str) -> None:
    store = store_from_settings(GalileoSettings(session_store=redis_url))
    try:
        assert isinstance(store, FailoverSessionStore)
        assert isinstance(store.primary, RedisSessionStore)
        assert store.stats()["down"] == 0
    finally:
        store.close()
    # redis-py's URL parameters win over the store's defaults (1 s per round trip)
    tuned = RedisSessionStore(redis_url + "?socket_timeout=2.5")
    defaults = RedisSessionStore(redis_url)
    try:
        assert tuned._client.connection_pool.connection_kwargs["socket_timeout"] == 2.5
        assert defaults._client.connection_pool.connection_kwargs["socket_timeout"] == 1.0
    finally:
        tuned.close()
        defaults.close()
    assert redact_url("redis://user:hunter2@h:1/0") == "redis://user:***@h:1/0"
    assert "hunter2" not in repr(RedisSessionStore("redis://:hunter2@127.0.0.1:1/0"))


def test_unreachable_redis_falls_back_logs_once_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisServer(tmp_path / "redis").start()
    now = [0.0]
    primary = RedisSessionStore(server.url, timeout_s=0.5)
    store = FailoverSessionStore(primary, MemorySessionStore(), clock=lambda: now[0])
    tracker = SessionTracker(store, idle_timeout_s=600)
    create = CountingCreate(pause_s=0)
    try:
        shared = turn(tracker, 0, session__id="c", user__id="u")
        tracker.ensure_created(shared, create)
        server.kill()
        caplog.set_level(logging.WARNING, logger="galileo_otel")
        down = [turn(tracker, 10 + i, session__id="c", user__id="u") for i in range(5)]
        # per-process sessions: one for the conversation, still shipped and created once
        assert len({r.local_id for r in down}) == 1 and down[0].local_id != shared.local_id
        assert tracker.ensure_created(down[0], create) and len(create.calls) == 2
        warnings = [r for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(warnings) == 1 and "per-process sessions" in warnings[0].getMessage()
        stats = tracker.stats()
        assert stats["store_outages"] == 1 and stats["store_down"] == 1
        assert stats["store_fallback_sessions"] == 1
        # only one round trip was attempted while down: the retry is not due yet
        assert stats["store_fallback_calls"] >= 5
        server.start()
        now[0] += 1.5  # the retry is due
        back = turn(tracker, 20, session__id="c", user__id="u")
        assert tracker.stats()["store_down"] == 0
        # the restarted Redis kept nothing (no persistence): a fresh shared session
        assert back.local_id not in {shared.local_id, down[0].local_id}
        assert any("answers again" in r.getMessage() for r in caplog.records)
    finally:
        tracker.close()
        server.stop()


def test_slow_redis_times_out_into_the_fallback(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis").start()
    admin = server.client()
    primary = RedisSessionStore(server.url, timeout_s=0.2)
    tracker = SessionTracker(FailoverSessionStore(primary, MemorySessionStore()))
    try:
        turn(tracker, 0, session__id="c")
        # Redis stops answering for 5 s (25 timeouts): without the timeout the call would wait
        # it out and then succeed; with it, the trace gets a per-process session at once.
        admin.execute_command("CLIENT", "PAUSE", 5_000, "ALL")
        record = turn(tracker, 1, session__id="c")
        assert record.local_id
        assert tracker.stats()["store_outages"] == 1
    finally:
        admin.close()
        tracker.close()
        server.stop()  # SIGTERM ends a paused server too


def test_store_errors_are_wrapped(tmp_path: Path) -> None:
    store = RedisSessionStore("redis://127.0.0.1:1/0", timeout_s=0.2)
    try:
        with pytest.raises(SessionStoreUnavailable, match=r"127\.0\.0\.1:1"):
            store.latest("x")
    finally:
        store.close()


def test_unix_socket_url(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", unixsocket=True).start()
    assert server.socket is not None
    settings = GalileoSettings(session_store=f"unix://{server.socket}?db=2")
    try:
        with SessionTracker(store_from_settings(settings), idle_timeout_s=600) as tracker:
            first = turn(tracker, 0, session__id="u")
            assert turn(tracker, 1, session__id="u").local_id == first.local_id
            assert tracker.stats()["store_outages"] == 0
        import redis

        client = redis.Redis(unix_socket_path=str(server.socket), db=2)
        try:
            assert client.exists(f"galileo-otel:v1:rec:{first.local_id}")
        finally:
            client.close()
    finally:
        server.stop()
        server.socket.unlink(missing_ok=True)
        server.socket.parent.rmdir()


def test_a_users_new_conversations_on_many_hosts_at_once_form_one_linear_chain(
    stores: Any,
) -> None:
    """Eight new conversations of one user start at once on four hosts: each new session
    follows the user's latest, so they line up one after another, never two after the same."""
    trackers = [SessionTracker(stores(), idle_timeout_s=600) for _ in range(4)]
    start = turn(trackers[0], 0, user__id="dana")  # dana's latest session before the burst
    barrier = threading.Barrier(8, timeout=30)
    records: list[SessionRecord] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        barrier.wait()
        record = turn(trackers[i % 4], 10 + i / 100, session__id=f"new-{i}", user__id="dana")
        with lock:
            records.append(record)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(records) == 8
    previous = [r.previous_local_id for r in records]
    assert len(set(previous)) == 8  # no session is followed twice: no fork
    by_previous = {r.previous_local_id: r for r in records}
    chain, cur = [], start.local_id
    while cur in by_previous:
        cur = by_previous[cur].local_id
        chain.append(cur)
    assert len(chain) == 8  # one line from dana's earlier session through all eight


def test_a_lost_session_is_healed_once_across_hosts(stores: Any) -> None:
    """Two hosts meet the server's "session does not exist" for the same conversation."""
    create = CountingCreate(pause_s=0.0)
    a = SessionTracker(stores(), idle_timeout_s=600, namespace="p/ls")
    b = SessionTracker(stores(), idle_timeout_s=600, namespace="p/ls")
    record = turn(a, 0, session__id="conv")
    old = a.ensure_created(record, create)
    on_b = turn(b, 10, session__id="conv")
    assert on_b.galileo_id == old  # both hosts know the session by its Galileo id
    # Host A heals and makes it again first; B's heal comes late and must not clear it.
    assert a.heal(record, old)
    new = a.ensure_created(record, create)
    assert b.heal(on_b, old)  # the batch is resent; the store keeps A's new id
    assert b.ensure_created(on_b, create) == new
    assert len(create.calls) == 2
    assert a.stats()["sessions_healed"] == 1 and b.stats()["sessions_healed"] == 0
    # A's cached view of the scope does not bring the lost id back.
    assert turn(a, 20, session__id="conv").galileo_id == new


@pytest.mark.parametrize("outage", ["restarted-empty", "frozen"])
def test_one_conversation_is_one_chain_across_a_redis_outage(tmp_path: Path, outage: str) -> None:
    """A real redis-server goes away and comes back: shared -> fallback -> shared, one chain.

    ``restarted-empty``: stopped and started again without persistence (it forgot everything);
    ``frozen``: SIGSTOP then SIGCONT (it still holds the session from before the outage).
    """
    import signal

    server = RedisServer(tmp_path / "redis").start()
    now = [0.0]
    made: list[Any] = []

    def host() -> SessionTracker:
        redis_store = RedisSessionStore(server.url, timeout_s=0.3)
        store = FailoverSessionStore(
            redis_store, MemorySessionStore(), retry_after_s=1, clock=lambda: now[0]
        )
        tracker = SessionTracker(store, idle_timeout_s=600, namespace="p/ls")
        made.append(tracker)
        return tracker

    created: dict[str, dict[str, Any]] = {}

    def create(payload: dict[str, Any]) -> str:
        gid = str(uuid.uuid4())
        created[gid] = payload
        return gid

    try:
        a = host()
        attrs = {"session__id": "conv", "user__id": "alice"}
        first = turn(a, 0, **attrs)
        g1 = a.ensure_created(first, create)
        assert server.proc is not None
        if outage == "frozen":
            server.proc.send_signal(signal.SIGSTOP)
        else:
            server.stop()
        try:
            during = turn(a, 10, **attrs)
            assert turn(a, 11, **attrs).local_id == during.local_id
            g2 = a.ensure_created(during, create)
            assert a.stats()["store_down"] == 1
        finally:
            if outage == "frozen":
                server.proc.send_signal(signal.SIGCONT)
            else:
                server.start()
        now[0] = 2.0  # the retry is due
        after = turn(a, 20, **attrs)
        g3 = a.ensure_created(after, create)
        assert a.stats()["store_down"] == 0
        # Another host, which saw no outage, joins the shared session the chain continues in.
        assert turn(host(), 25, **attrs).local_id == after.local_id
        assert turn(a, 30, **attrs).local_id == after.local_id
        assert created[g1]["previous_session_id"] is None
        assert created[g2]["previous_session_id"] == g1
        assert created[g3]["previous_session_id"] == g2
        assert len(created) == 3
    finally:
        for tracker in made:
            tracker.close()
        server.stop()
