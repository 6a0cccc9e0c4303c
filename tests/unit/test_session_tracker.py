"""SessionTracker: keys, automatic sessions, idle and max-age rotation, chaining, Create Session."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest_sessions import _close_sqlite_stores  # noqa: F401 (autouse fixture)

from galileo_otel.errors import TransportError
from galileo_otel.sessions.store import MemorySessionStore, SessionStore, SQLiteSessionStore
from galileo_otel.sessions.tracker import SessionRecord, SessionTracker, sampled, scope_of
from galileo_otel.settings import GalileoSettings

S = 1_000_000_000  # ns per second


class FakeCreate:
    """Create Session stand-in: records payloads, hands out uuid4 ids, can be told to fail."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail = 0

    def __call__(self, payload: dict[str, Any]) -> str:
        if self.fail:
            self.fail -= 1
            raise TransportError("connection refused")
        self.calls.append(dict(payload))
        return str(uuid.uuid4())


def trace(tracker: SessionTracker, at_s: float, dur_s: float = 1.0, **attrs: Any) -> SessionRecord:
    """One trace whose root starts at ``at_s`` seconds and lasts ``dur_s``."""
    attributes = {k.replace("__", "."): v for k, v in attrs.items()}
    start = int(at_s * S)
    return tracker.session_for_trace(attributes, start, start + int(dur_s * S))


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> SessionStore:
    if request.param == "memory":
        return MemorySessionStore()
    return SQLiteSessionStore(tmp_path / "sessions.db")


def test_same_key_within_idle_joins_and_after_idle_rotates(store: SessionStore) -> None:
    tracker = SessionTracker(store, idle_timeout_s=10)
    a = trace(tracker, 0, session__id="conv-1")
    b = trace(tracker, 5, session__id="conv-1")  # gap 4 s
    c = trace(tracker, 16, session__id="conv-1")  # last ended at 6: gap exactly 10 s: still live
    d = trace(tracker, 27.5, session__id="conv-1")  # gap 10.5 s: closed, new session
    assert a.local_id == b.local_id == c.local_id
    assert d.local_id != a.local_id
    assert d.previous_local_id == a.local_id
    assert d.external_id == a.external_id == "conv-1"
    assert d.key == a.key == "key:conv-1"
    assert d.started_ns == int(27.5 * S)
    stats = tracker.stats()
    assert stats["traces"] == 4 and stats["sessions_opened"] == 2 and stats["rotated_idle"] == 1


def test_long_overlapping_trace_keeps_session_alive(store: SessionStore) -> None:
    tracker = SessionTracker(store, idle_timeout_s=10)
    a = trace(tracker, 0, dur_s=1, session__id="k")
    long = trace(tracker, 0.5, dur_s=30, session__id="k")  # ends at 30.5
    b = trace(tracker, 35, session__id="k")  # gap from the latest end: 4.5 s
    assert a.local_id == long.local_id == b.local_id


def test_max_age_rotates_busy_sessions(store: SessionStore) -> None:
    tracker = SessionTracker(store, idle_timeout_s=10, max_age_s=12)
    ids = [trace(tracker, t, session__id="busy").local_id for t in (0, 5, 10, 15, 20, 25, 30)]
    # session 1 started at 0: 15 is older than 12 s -> session 2 from 15; 30 - 15 > 12 -> 3
    assert ids[:3] == [ids[0]] * 3
    assert ids[3:6] == [ids[3]] * 3 and ids[3] != ids[0]
    assert ids[6] not in (ids[0], ids[3])
    assert store.get(ids[3]).previous_local_id == ids[0]  # type: ignore[union-attr]
    assert store.get(ids[6]).previous_local_id == ids[3]  # type: ignore[union-attr]
    assert tracker.stats()["rotated_max_age"] == 2


def test_automatic_sessions_per_user_and_process(store: SessionStore) -> None:
    tracker = SessionTracker(store, idle_timeout_s=10, service_name="svc")
    alice1 = trace(tracker, 0, user__id="alice")
    bob = trace(tracker, 1, enduser__id="bob")
    anon1 = trace(tracker, 2)
    alice2 = trace(tracker, 3, user__id="alice")
    anon2 = trace(tracker, 4)
    assert alice1.local_id == alice2.local_id
    assert anon1.local_id == anon2.local_id
    assert len({alice1.local_id, bob.local_id, anon1.local_id}) == 3
    assert alice1.key == "user:alice" and bob.key == "user:bob" and anon1.key == "auto:svc"
    assert alice1.external_id is None and anon1.external_id is None
    assert alice1.user_id == "alice" and bob.user_id == "bob" and anon1.user_id is None
    # the anonymous automatic session rotates and chains too
    anon3 = trace(tracker, 100)
    assert anon3.local_id != anon1.local_id and anon3.previous_local_id == anon1.local_id


def test_scope_of() -> None:
    assert scope_of("k", "u", "svc") == "key:k"
    assert scope_of(None, "u", "svc") == "user:u"
    assert scope_of(None, None, "svc") == "auto:svc"
    assert scope_of(None, None, None) == "auto:"


def test_chaining_rule_across_rotations(store: SessionStore) -> None:
    """Conversation chain first, then the user's latest session, for keyed and auto sessions."""
    tracker = SessionTracker(store, idle_timeout_s=10)
    a1 = trace(tracker, 0, user__id="alice")  # automatic session of alice
    c1 = trace(tracker, 2, user__id="alice", session__id="c")  # a new conversation
    assert a1.previous_local_id is None
    assert c1.previous_local_id == a1.local_id  # first session of a key: user's latest
    a2 = trace(tracker, 20, user__id="alice")  # auto session idled out
    assert a2.previous_local_id == c1.local_id  # automatic: user's latest session (any kind)
    c2 = trace(tracker, 21, user__id="alice", session__id="c")  # conversation idled out
    assert c2.previous_local_id == c1.local_id  # keyed again: the conversation keeps its chain
    d1 = trace(tracker, 22, user__id="alice", session__id="d")
    assert d1.previous_local_id == c2.local_id  # new conversation: user's latest session
    # another user's history is separate
    b1 = trace(tracker, 23, user__id="bob", session__id="e")
    assert b1.previous_local_id is None


def test_keyed_session_without_user_chains_only_its_key(store: SessionStore) -> None:
    tracker = SessionTracker(store, idle_timeout_s=10)
    trace(tracker, 0, user__id="alice")
    k1 = trace(tracker, 1, session__id="k")
    assert k1.previous_local_id is None and k1.user_id is None
    k2 = trace(tracker, 50, session__id="k")
    assert k2.previous_local_id == k1.local_id


def test_app_previous_id_honoured(store: SessionStore) -> None:
    tracker = SessionTracker(store, idle_timeout_s=10)
    old = trace(tracker, 0, session__id="ticket-1")
    # a key of ours: mapped to that key's latest session
    new = trace(tracker, 1, session__id="ticket-2", session__previous_id="ticket-1")
    assert new.previous_local_id == old.local_id
    # a Galileo UUID we do not know as a key: taken as-is
    galileo_prev = str(uuid.uuid4())
    other = trace(tracker, 2, session__id="ticket-3", session__previous_id=galileo_prev)
    assert other.previous_local_id is None and other.previous_galileo_id == galileo_prev
    # neither: ignored, the normal rule applies (alice's latest session)
    a = trace(tracker, 3, user__id="alice")
    odd = trace(tracker, 4, session__id="t4", user__id="alice", session__previous_id="nope")
    assert odd.previous_local_id == a.local_id and odd.previous_galileo_id is None
    # a UUID that is also one of our keys: the key wins
    key_uuid = str(uuid.uuid4())
    keyed = trace(tracker, 5, session__id=key_uuid)
    follow = trace(tracker, 6, session__id="t5", session__previous_id=key_uuid)
    assert follow.previous_local_id == keyed.local_id and follow.previous_galileo_id is None
    # only consulted when the trace opens a session
    joined = trace(tracker, 7, session__id="t5", session__previous_id="ticket-1")
    assert joined.local_id == follow.local_id
    assert tracker.stats()["previous_id_ignored"] == 1


def test_app_previous_id_naming_own_key_after_rotation(store: SessionStore) -> None:
    tracker = SessionTracker(store, idle_timeout_s=10)
    k1 = trace(tracker, 0, session__id="k")
    k2 = trace(tracker, 100, session__id="k", session__previous_id="k")
    assert k2.local_id != k1.local_id and k2.previous_local_id == k1.local_id


def test_name_and_metadata(store: SessionStore) -> None:
    tracker = SessionTracker(
        store,
        service_name="chat-api",
        metadata_attributes=["tenant", "plan", "tags", "missing"],
    )
    rec = trace(
        tracker,
        0,
        session__id="conv",
        user__id="alice",
        tenant="acme",
        plan=3,
        tags=("a", "b"),
        galileo__session__name="Support chat",
        galileo__session__metadata=json.dumps({"channel": "web", "tenant": "override"}),
    )
    assert rec.name == "Support chat"
    assert rec.user_metadata == {
        "user.id": "alice",
        "service.name": "chat-api",
        "tenant": "override",  # session(metadata=...) wins over copied attributes
        "plan": "3",
        "tags": '["a", "b"]',
        "channel": "web",
    }
    assert trace(tracker, 1, session__id="conv2").name == "conv2"  # derived: the key
    assert trace(tracker, 2, user__id="zed").name is None
    # docs/concepts/sessions.md: session(name=...), else the key; the root span's name is metadata.
    named = tracker.session_for_trace({"session.id": "c3"}, 0, 1, root_name="chat gpt-4o-mini")
    assert named.name == "c3"
    assert named.user_metadata["root_span.name"] == "chat gpt-4o-mini"
    bad_meta = trace(tracker, 3, session__id="c4", galileo__session__metadata="{not json")
    assert bad_meta.user_metadata == {"service.name": "chat-api"}


def test_ensure_created_once_and_payload(store: SessionStore) -> None:
    tracker = SessionTracker(store, idle_timeout_s=10, service_name="svc")
    create = FakeCreate()
    rec = trace(tracker, 0, session__id="conv", user__id="u", galileo__session__name="n")
    gid = tracker.ensure_created(rec, create)
    assert tracker.ensure_created(rec, create) == gid
    again = trace(tracker, 1, session__id="conv", user__id="u")
    assert tracker.ensure_created(again, create) == gid
    assert again.galileo_id == gid
    assert create.calls == [
        {
            "name": "n",
            "external_id": "conv",
            "previous_session_id": None,
            "user_metadata": {"user.id": "u", "service.name": "svc"},
        }
    ]
    assert tracker.stats()["sessions_created"] == 1


def test_ensure_created_creates_previous_first(store: SessionStore) -> None:
    tracker = SessionTracker(store, idle_timeout_s=10)
    create = FakeCreate()
    s1 = trace(tracker, 0, session__id="c", user__id="u")
    s2 = trace(tracker, 100, session__id="c", user__id="u")
    s3 = trace(tracker, 200, session__id="c", user__id="u")
    assert s3.previous_local_id == s2.local_id
    gid3 = tracker.ensure_created(s3, create)  # nothing was created yet: walks back the chain
    assert len(create.calls) == 3
    assert create.calls[0]["previous_session_id"] is None
    gid1 = store.get(s1.local_id).galileo_id  # type: ignore[union-attr]
    gid2 = store.get(s2.local_id).galileo_id  # type: ignore[union-attr]
    assert create.calls[1]["previous_session_id"] == gid1
    assert create.calls[2]["previous_session_id"] == gid2
    assert s3.galileo_id == gid3 and s3.previous_galileo_id == gid2
    assert tracker.ensure_created(s1, create) == gid1
    assert tracker.ensure_created(s2, create) == gid2
    assert len(create.calls) == 3


def test_ensure_created_failure_records_nothing_and_retries(store: SessionStore) -> None:
    tracker = SessionTracker(store)
    create = FakeCreate()
    create.fail = 1
    rec = trace(tracker, 0, session__id="c")
    with pytest.raises(TransportError):
        tracker.ensure_created(rec, create)
    assert rec.galileo_id is None and store.get(rec.local_id).galileo_id is None  # type: ignore[union-attr]
    gid = tracker.ensure_created(rec, create)
    assert len(create.calls) == 1 and rec.galileo_id == gid
    assert tracker.stats()["create_failed"] == 1


def test_app_previous_uuid_goes_to_payload(store: SessionStore) -> None:
    tracker = SessionTracker(store)
    create = FakeCreate()
    prev = str(uuid.uuid4())
    rec = trace(tracker, 0, session__id="c", session__previous_id=prev)
    tracker.ensure_created(rec, create)
    assert create.calls[0]["previous_session_id"] == prev


def test_app_previous_key_created_first(store: SessionStore) -> None:
    tracker = SessionTracker(store)
    create = FakeCreate()
    t1 = trace(tracker, 0, session__id="ticket-1")
    t2 = trace(tracker, 1, session__id="ticket-2", session__previous_id="ticket-1")
    tracker.ensure_created(t2, create)
    assert [c["external_id"] for c in create.calls] == ["ticket-1", "ticket-2"]
    assert create.calls[1]["previous_session_id"] == store.get(t1.local_id).galileo_id  # type: ignore[union-attr]


def test_record_round_trip_and_restore_in_fresh_tracker() -> None:
    tracker = SessionTracker(idle_timeout_s=10)
    create = FakeCreate()
    s1 = trace(tracker, 0, session__id="c", user__id="u")
    gid1 = tracker.ensure_created(s1, create)
    s2 = trace(tracker, 100, session__id="c", user__id="u")
    assert s2.previous_galileo_id == gid1  # known at open time, carried in the record
    data = json.loads(json.dumps(s2.to_dict()))
    assert SessionRecord.from_dict(data) == s2
    assert len(s2.local_id) == 36 and uuid.UUID(s2.local_id).version == 4
    # a new process (empty memory store) restores the record from the spool and creates it
    fresh = SessionTracker(idle_timeout_s=10)
    restored = SessionRecord.from_dict(data)
    gid2 = fresh.ensure_created(restored, create)
    assert restored.galileo_id == gid2
    assert create.calls[-1]["previous_session_id"] == gid1
    assert fresh.ensure_created(SessionRecord.from_dict(data), create) == gid2
    assert len(create.calls) == 2


def test_from_dict_ignores_unknown_and_requires_ids() -> None:
    rec = SessionRecord.from_dict({"local_id": "x", "key": "key:k", "future": 1})
    assert rec.user_metadata == {} and rec.started_ns == 0
    with pytest.raises(KeyError):
        SessionRecord.from_dict({"key": "k"})


def test_from_settings() -> None:
    settings = GalileoSettings(
        session_idle_timeout="2m",
        session_max_age=3600,
        session_metadata_attributes="tenant, plan",
        service_name="svc",
        max_tracked_sessions=5,
    )
    tracker = SessionTracker.from_settings(settings)
    assert isinstance(tracker.store, MemorySessionStore)
    rec = trace(tracker, 0, tenant="t", plan="p")
    assert rec.key == "auto:svc"
    assert rec.user_metadata == {"service.name": "svc", "tenant": "t", "plan": "p"}
    assert trace(tracker, 121).local_id == rec.local_id  # gap 120 s: not more than 2 m
    assert trace(tracker, 242.5).local_id != rec.local_id


def test_from_settings_sqlite(tmp_path: Path) -> None:
    settings = GalileoSettings(session_store=f"sqlite:///{tmp_path}/s.db")
    tracker = SessionTracker.from_settings(settings)
    assert isinstance(tracker.store, SQLiteSessionStore)
    assert tracker.store.path == tmp_path / "s.db"
    tracker.close()


def test_invalid_timeouts() -> None:
    with pytest.raises(ValueError):
        SessionTracker(idle_timeout_s=-1)


def test_memory_bounded_with_lru(store: SessionStore) -> None:
    tracker = SessionTracker(
        MemorySessionStore(max_tracked=3) if isinstance(store, MemorySessionStore) else store,
        idle_timeout_s=10,
    )
    if isinstance(store, SQLiteSessionStore):
        tracker = SessionTracker(SQLiteSessionStore(store.path.with_name("lru.db"), max_tracked=3))
    first = trace(tracker, 0, session__id="k0")
    for i in range(1, 10):
        trace(tracker, i, session__id=f"k{i}")
    assert tracker.store.stats()["scopes"] == 3
    assert tracker.store.latest("key:k0") is None and tracker.store.latest("key:k9") is not None
    # a forgotten key seen again starts a fresh session (its old chain is gone)
    again = trace(tracker, 11, session__id="k0")
    assert again.local_id != first.local_id and again.previous_local_id is None


def test_rotated_sessions_are_forgotten() -> None:
    mem = MemorySessionStore(max_tracked=4)
    tracker = SessionTracker(mem, idle_timeout_s=1)
    create = FakeCreate()
    for i in range(200):
        rec = trace(tracker, i * 10, session__id="k", user__id="u")
        tracker.ensure_created(rec, create)
    stats = mem.stats()
    assert stats["scopes"] == 1 and stats["users"] == 1
    assert stats["sessions"] <= 1 + 2 * 16 + 1  # the live one plus a bounded tail
    assert stats["swept"] > 0
    assert len(create.calls) == 200


def test_uncreated_chain_survives_sweep() -> None:
    mem = MemorySessionStore(max_tracked=1)
    tracker = SessionTracker(mem, idle_timeout_s=1)
    create = FakeCreate()
    records = [trace(tracker, i * 10, session__id="k") for i in range(100)]
    # nothing created yet: the whole chain is still needed, so nothing may be forgotten
    assert mem.stats()["sessions"] == 100
    tracker.ensure_created(records[-1], create)
    assert len(create.calls) == 100
    assert create.calls[0]["previous_session_id"] is None
    assert all(c["previous_session_id"] for c in create.calls[1:])


def test_namespaces_keep_destinations_apart(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    app_a = SessionTracker(SQLiteSessionStore(path), namespace="proj-a/default")
    app_a2 = SessionTracker(SQLiteSessionStore(path), namespace="proj-a/default")
    app_b = SessionTracker(SQLiteSessionStore(path), namespace="proj-b/default")
    a = trace(app_a, 0, session__id="conv-1", user__id="u")
    assert trace(app_a2, 1, session__id="conv-1", user__id="u").local_id == a.local_id
    b = trace(app_b, 2, session__id="conv-1", user__id="u")
    assert b.local_id != a.local_id
    assert b.previous_local_id is None  # the user's history in project a is not b's
    assert a.key == "proj-a/default|key:conv-1" and a.external_id == "conv-1"
    follow = trace(app_b, 3, session__id="conv-2", session__previous_id="conv-1")
    assert follow.previous_local_id == b.local_id


def test_namespace_of_settings() -> None:
    from galileo_otel.sessions.tracker import namespace_of

    assert namespace_of(GalileoSettings()) == ""
    assert namespace_of(GalileoSettings(project="p", log_stream="ls")) == "p/ls"
    exp = str(uuid.uuid4())
    assert namespace_of(GalileoSettings(project="p", experiment_id=exp)) == f"p/{exp}"
    tracker = SessionTracker.from_settings(GalileoSettings(project="p", log_stream="ls"))
    assert trace(tracker, 0, session__id="k").key == "p/ls|key:k"


# --- sampling, existing Galileo sessions, scrubbed keys -------------------------------------------


def test_sampling_keeps_whole_sessions_the_same_in_every_tracker(store: SessionStore) -> None:
    keys = [f"conv-{i}" for i in range(2000)]
    # two trackers with their own stores, like two hosts: the same decision for every key
    a = SessionTracker(store, sample_rate=0.25, idle_timeout_s=10_000)
    b = SessionTracker(MemorySessionStore(), sample_rate=0.25)
    decided_a = {k: trace(a, i, session__id=k).sampled for i, k in enumerate(keys)}
    decided_b = {k: trace(b, i, session__id=k).sampled for i, k in enumerate(keys)}
    assert decided_a == decided_b
    assert decided_a == {k: sampled(k, 0.25) for k in keys}
    kept = sum(decided_a.values())
    assert 400 < kept < 600  # SHA-256 spreads 2000 keys around a quarter
    # every later trace of a session shares its decision, and the counts say so
    again = {k: trace(a, 3000 + i, session__id=k).sampled for i, k in enumerate(keys[:100])}
    assert again == {k: decided_a[k] for k in keys[:100]}
    stats = a.stats()
    dropped = 2000 - kept
    assert stats["sessions_sampled_out"] == dropped
    assert stats["traces_sampled_out"] == dropped + sum(not v for v in again.values())
    # rate 1 keeps all, rate 0 drops all; the decision is carried by the record (spool, Redis)
    assert sampled("x", 1.0) and not sampled("x", 0.0)
    record = trace(SessionTracker(sample_rate=0.0), 0, session__id="k")
    assert record.sampled is False
    assert SessionRecord.from_dict(record.to_dict()).sampled is False
    assert SessionRecord.from_dict({"local_id": "x", "key": "k"}).sampled is True
    with pytest.raises(ValueError):
        SessionTracker(sample_rate=1.5)


def test_chain_skips_sampled_out_sessions(store: SessionStore) -> None:
    kept_key = next(f"k{i}" for i in range(100) if sampled(f"k{i}", 0.5))
    dropped_key = next(f"k{i}" for i in range(100) if not sampled(f"k{i}", 0.5))
    tracker = SessionTracker(store, idle_timeout_s=10, sample_rate=0.5)
    create = FakeCreate()
    first = trace(tracker, 0, session__id=kept_key, user__id="u")
    gid = tracker.ensure_created(first, create)
    middle = trace(tracker, 1, session__id=dropped_key, user__id="u")
    last = trace(tracker, 2, session__id=kept_key + "-again", user__id="u")
    assert not middle.sampled and last.sampled == sampled(kept_key + "-again", 0.5)
    assert last.previous_local_id == middle.local_id
    tracker.ensure_created(last, create)
    # the dropped session was never created, and its place in the chain went to its predecessor
    assert len(create.calls) == 2
    assert create.calls[1]["previous_session_id"] == gid


def test_galileo_session_id_sends_traces_there_and_creates_nothing(store: SessionStore) -> None:
    tracker = SessionTracker(store)
    gid = str(uuid.uuid4())
    record = trace(tracker, 0, galileo__session__id=gid.upper(), session__id="ignored")
    assert record.galileo_id == gid and record.local_id == gid
    create = FakeCreate()
    assert tracker.ensure_created(record, create) == gid and create.calls == []
    assert store.latest("key:ignored") is None  # nothing opened either
    stats = tracker.stats()
    assert stats["galileo_session_traces"] == 1 and stats["sessions_opened"] == 0
    # not a UUID: ignored, the trace is sessioned as usual
    assert trace(tracker, 1, galileo__session__id="nope", session__id="k").external_id == "k"


def test_scrubbed_values_are_never_keys_names_or_metadata(store: SessionStore) -> None:
    scrubbed = "[Scrubbed due to 'session']"
    tracker = SessionTracker(store, metadata_attributes=["tenant"])
    a = tracker.session_for_trace(
        {
            "session.id": scrubbed,
            "galileo.otel.conversation_key": "a" + b"conv-a".hex(),
            "galileo.session.name": scrubbed,
            "galileo.otel.conversation_name": "a" + b"Support".hex(),
            "galileo.session.metadata": scrubbed,
            "tenant": "[Scrubbed due to 'secret']",
            "user.id": "alice",
        },
        0,
        S,
    )
    assert a.external_id == "conv-a" and a.name == "Support"
    assert "tenant" not in a.user_metadata and a.user_id == "alice"
    # without a captured copy, a scrubbed key falls to the automatic session of the user
    b = tracker.session_for_trace({"session.id": scrubbed, "user.id": "bob"}, 0, S)
    assert b.external_id is None and b.key == "user:bob"


def test_users_from_other_tools(store: SessionStore) -> None:
    tracker = SessionTracker(store)
    assert trace(tracker, 0, langfuse__user__id="lf").user_id == "lf"
    traceloop = {"traceloop.association.properties.user_id": "tl"}
    assert tracker.session_for_trace(traceloop, 0, S).user_id == "tl"


def _fast_and_general(rate: float, keyed_only: bool) -> None:
    import random

    class General(MemorySessionStore):
        """The memory store seen as any store: the tracker takes the general path."""

    fast = SessionTracker(MemorySessionStore(), idle_timeout_s=30, max_age_s=60, sample_rate=rate)
    general = SessionTracker(General(), idle_timeout_s=30, max_age_s=60, sample_rate=rate)
    assert fast._join_live is not None and general._join_live is None
    rng = random.Random(7)
    fast_ids: dict[str, int] = {}
    general_ids: dict[str, int] = {}
    at = 0.0
    for _ in range(3000):
        at += 40.0 if rng.random() < 0.01 else rng.choice([0.5, 1.0, 2.0])
        attrs: dict[str, Any] = {}
        if keyed_only or rng.random() < 0.7:
            attrs["session__id"] = f"conv-{rng.randrange(3)}"
        if rng.random() < 0.5:
            attrs["user__id"] = f"user-{rng.randrange(3)}"
        if rng.random() < 0.05:
            attrs["session__previous_id"] = f"conv-{rng.randrange(6)}"
        a, b = trace(fast, at, **attrs), trace(general, at, **attrs)
        # Sessions are named by the order they were opened in, the same on both sides.
        assert fast_ids.setdefault(a.local_id, len(fast_ids)) == general_ids.setdefault(
            b.local_id, len(general_ids)
        )
        assert (a.previous_local_id is None) == (b.previous_local_id is None)
        assert a.sampled == b.sampled
    assert fast.stats() == general.stats()
    assert fast.stats()["rotated_idle"] > 0 and fast.stats()["rotated_max_age"] > 0
    if rate < 1:
        assert 0 < fast.stats()["traces_sampled_out"] < 3000


def test_the_memory_stores_fast_join_decides_as_the_general_path() -> None:
    """Same traces, same sessions and counts, with and without the fast path (fixed seed)."""
    _fast_and_general(1.0, keyed_only=False)
    # Sampling by key (automatic sessions are sampled by their random id: not comparable).
    _fast_and_general(0.5, keyed_only=True)


class _GeneralPathStore(MemorySessionStore):
    """The memory store under another type: the tracker takes its general path for it."""


def test_fast_path_resolves_like_the_general_path() -> None:
    """The memory store's fast path (a plain session.id joining a live session) decides exactly
    as the general path does, including values it must decline: padded, scrubbed (the key
    captured at span start stands in), from baggage, traces naming a previous session or an
    existing Galileo session."""
    from galileo_otel.sessions.resolve import encode_captured

    scrubbed = "[Scrubbed due to 'session']"
    turns: list[tuple[float, dict[str, Any]]] = [
        (0, {"session.id": "conv-1"}),
        (1, {"session.id": " conv-1 "}),
        (2, {"session.id": "conv-1", "user.id": "u"}),
        (3, {"session.id": scrubbed, "galileo.otel.conversation_key": encode_captured("conv-2")}),
        (4, {"session.id": "conv-2"}),
        (5, {"session.id": "conv-3", "galileo.session.from_baggage": True, "user.id": "v"}),
        (6, {"session.id": "conv-3", "gen_ai.conversation.id": "other"}),
        (7, {"session.id": "conv-1", "session.previous_id": "conv-2"}),
        (8, {"session.id": "", "user.id": "u"}),
        # An existing Galileo session, named or captured at span start: never a join of conv-1.
        (9, {"session.id": "conv-1", "galileo.session.id": "6f1c2a8e-0d3b-4c5e-9a7f-1b2c3d4e5f60"}),
        (
            9,
            {
                "session.id": "conv-1",
                "galileo.otel.galileo_id": "7f1c2a8e-0d3b-4c5e-9a7f-1b2c3d4e5f60",
            },
        ),
        (30, {"session.id": "conv-1"}),  # idle: rotates, chained
        (31, {"session.id": "conv-1"}),
    ]
    fast = SessionTracker(MemorySessionStore(), idle_timeout_s=10, namespace="p/l")
    general = SessionTracker(_GeneralPathStore(), idle_timeout_s=10, namespace="p/l")
    assert fast._join_live is not None and general._join_live is None
    ids: dict[str, str] = {}  # fast local id -> general local id: the same partition of traces
    for at_s, attrs in turns:
        a = fast.session_for_trace(dict(attrs), int(at_s * S), int(at_s * S) + S)
        b = general.session_for_trace(dict(attrs), int(at_s * S), int(at_s * S) + S)
        assert ids.setdefault(a.local_id, b.local_id) == b.local_id, attrs
        assert (a.key, a.external_id, a.user_id) == (b.key, b.external_id, b.user_id), attrs
        assert (a.previous_local_id is None) == (b.previous_local_id is None), attrs
        if a.previous_local_id is not None:
            assert ids[a.previous_local_id] == b.previous_local_id
    assert len(set(ids.values())) == len(ids)
    assert fast.stats() == {**general.stats(), "traces": len(turns)}
    assert general.stats()["traces"] == len(turns)
    assert repr(fast._fast_traces) == "count(5)"  # the joins at 1, 2, 4, 6 and 31
