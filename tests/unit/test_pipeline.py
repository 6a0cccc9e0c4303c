"""ExportPipeline state machine: queue, batching, delivery modes, flush and shutdown (no sockets)."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

import pytest
from conftest_pipeline import (
    DEST,
    PROJECT_ID,
    Call,
    FakeClient,
    FakeTracker,
    emit,
    fake_convert,
    refused,
    tracer_for,
    unavailable,
)

from forking import run_forked
from galileo_otel.errors import ConfigError, ValidationError
from galileo_otel.export.pipeline import ExportPipeline
from galileo_otel.export.spool import Spool, dead_in, pending_in
from galileo_otel.settings import GalileoSettings


class Waits:
    """Records retry waits instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> bool:
        self.waits.append(seconds)
        return False


def make(
    tmp_path: Any,
    client: FakeClient | None = None,
    *,
    start: bool = True,
    wait: Any = None,
    first_delay_s: float = 0.0,
    **overrides: Any,
) -> tuple[ExportPipeline, FakeClient, FakeTracker]:
    values: dict[str, Any] = {
        "api_key": "k",
        "batch_delay": 0.01,
        "export_timeout": 5.0,
        "spool_dir": str(tmp_path / "spool"),
    }
    values.update(overrides)
    client = client or FakeClient()
    tracker = FakeTracker()
    pipeline = ExportPipeline(
        GalileoSettings(**values),
        client=client,
        tracker=tracker,
        destination=DEST,
        convert=fake_convert,
        start=start,
        wait=wait or Waits(),
        first_delay_s=first_delay_s,
        spool_retry_s=0.05,
    )
    return pipeline, client, tracker


@pytest.fixture
def cleanup() -> Any:
    made: list[ExportPipeline] = []
    yield made
    for p in made:
        p.shutdown(1.0)


def test_queue_full_drops_newest_and_counts(tmp_path: Any) -> None:
    pipeline, _client, _ = make(tmp_path, start=False, max_queue_spans=3)
    results = [pipeline.submit(f"span-{i}") for i in range(5)]
    assert results == [True, True, True, False, False]
    assert list(pipeline.worker_queue()) == ["span-0", "span-1", "span-2"]  # the oldest are kept
    stats = pipeline.stats()
    assert stats["dropped.queue_full"] == 2
    assert stats["spans_dropped"] == 2
    assert stats["spans_queued"] == 3
    pipeline.shutdown(0.1)


def test_batches_split_by_trace_count_and_per_session(tmp_path: Any, cleanup: Any) -> None:
    # no timer closes a batch here (only a full batch or the flush), whatever the machine load
    pipeline, client, _tracker = make(
        tmp_path, batch_max_traces=2, batch_delay=60.0, first_delay_s=60.0
    )
    cleanup.append(pipeline)
    tracer = tracer_for(pipeline)
    for _ in range(5):
        emit(tracer, session="a")
    for _ in range(3):
        emit(tracer, session="b")
    assert pipeline.force_flush(5.0)
    posts = client.trace_posts()
    by_session: dict[str, list[int]] = {}
    for call in posts:
        body = call.body
        assert call.path == f"/v2/projects/{PROJECT_ID}/traces"
        assert body["reliable"] is True
        assert body["log_stream_id"] == DEST["log_stream_id"]
        assert {t["session_id"] for t in body["traces"]} == {body["session_id"]}
        by_session.setdefault(body["session_external_id"], []).append(len(body["traces"]))
    assert sorted(by_session["a"]) == [1, 2, 2]
    assert sorted(by_session["b"]) == [1, 2]
    # one Create Session per session, before its traces
    assert len(client.sessions) == 2
    assert {s["external_id"] for s in client.sessions} == {"a", "b"}
    session_ids = {c.body["session_external_id"]: c.body["session_id"] for c in posts}
    assert session_ids["a"] != session_ids["b"]
    stats = pipeline.stats()
    assert stats["traces_confirmed"] == 8
    assert stats["spans_queued"] == 16


def test_batches_split_by_encoded_size(tmp_path: Any, cleanup: Any) -> None:
    # batch_max_bytes=2048 leaves ~1 KiB for traces after the envelope reserve
    pipeline, client, _ = make(tmp_path, batch_max_bytes=2048, batch_max_traces=100)
    cleanup.append(pipeline)
    tracer = tracer_for(pipeline)
    for _ in range(12):
        emit(tracer, session="big", payload="x" * 300)
    assert pipeline.force_flush(5.0)
    posts = client.trace_posts()
    assert sum(len(c.body["traces"]) for c in posts) == 12
    assert len(posts) >= 4
    for call in posts:
        assert len(json.dumps(call.body)) <= 2048
        assert 1 <= len(call.body["traces"]) <= 3


def test_permanent_error_is_dead_lettered_once(tmp_path: Any, cleanup: Any) -> None:
    def reject(call: Call) -> None:
        if call.path.endswith("/traces"):
            raise ValidationError(
                "HTTP 422", status_code=422, detail=[{"msg": "field required"}], retryable=False
            )

    pipeline, client, _ = make(tmp_path, FakeClient(reject))
    cleanup.append(pipeline)
    tracer = tracer_for(pipeline)
    emit(tracer)
    emit(tracer)
    assert pipeline.force_flush(5.0) is False
    assert len(client.trace_posts()) == 1  # not retried
    (note,) = dead_in(tmp_path / "spool")
    assert pending_in(tmp_path / "spool") == []
    assert note["status_code"] == 422 and note["detail"] == [{"msg": "field required"}]
    # a later flush (and the periodic spool retry) never sends it again
    assert pipeline.force_flush(1.0) is True
    assert len(client.trace_posts()) == 1
    stats = pipeline.stats()
    assert stats["traces_dead_lettered"] == 2
    assert stats["dead_lettered.422"] == 2
    assert stats["requests_retried"] == 0


def test_retry_after_is_honoured_then_delivered(tmp_path: Any, cleanup: Any) -> None:
    answers = [unavailable(429, retry_after=2.5), unavailable(503)]

    def flaky(call: Call) -> None:
        if call.path.endswith("/traces") and answers:
            raise answers.pop(0)

    waits = Waits()
    pipeline, client, _ = make(tmp_path, FakeClient(flaky), wait=waits)
    cleanup.append(pipeline)
    emit(tracer_for(pipeline))
    assert pipeline.force_flush(5.0) is True
    assert waits.waits[0] == 2.5  # Retry-After wins over the backoff
    assert (
        0.25 <= waits.waits[1] <= 1.0
    )  # then exponential backoff with jitter (0.5 s initial, 2nd try)
    assert len(client.trace_posts()) == 3
    stats = pipeline.stats()
    assert stats["requests_retried"] == 2
    assert stats["traces_confirmed"] == 1
    assert pending_in(tmp_path / "spool") == []  # confirmed, so deleted


def test_retry_stops_at_the_deadline_and_keeps_the_batch_spooled(
    tmp_path: Any, cleanup: Any
) -> None:
    down = threading.Event()
    down.set()
    attempts: list[Call] = []

    def maybe_down(call: Call) -> None:
        attempts.append(call)
        if down.is_set():
            raise unavailable(503, retry_after=1.0)

    # Retry waits are virtual: each one moves the pipeline's clock on instead of sleeping.
    skipped = [0.0]

    def clock() -> float:
        return time.monotonic() + skipped[0]

    def wait(seconds: float) -> bool:
        skipped[0] += seconds
        return False

    client = FakeClient(maybe_down)
    pipeline = ExportPipeline(
        GalileoSettings(
            api_key="k", batch_delay=0.01, export_timeout=2.5, spool_dir=str(tmp_path / "spool")
        ),
        client=client,
        tracker=FakeTracker(),
        destination=DEST,
        convert=fake_convert,
        clock=clock,
        wait=wait,
        first_delay_s=0.0,
        spool_retry_s=0.05,
    )
    cleanup.append(pipeline)
    first_give_up: list[int] = []
    given_up = threading.Event()
    # The senders put an undelivered batch back through the spooler: spy on that hand-over.
    spooler = pipeline.spooler
    leave = spooler.put_back

    def spy(*args: Any, **kwargs: Any) -> None:
        if not given_up.is_set():
            first_give_up.append(len(attempts))
        leave(*args, **kwargs)
        given_up.set()

    spooler.put_back = spy  # type: ignore[method-assign]
    emit(tracer_for(pipeline), session="s")
    assert given_up.wait(10)
    # retry waits of 1 s (Retry-After) count against the 2.5 s deadline: 3 attempts, then
    # the batch stays in the spool
    assert first_give_up == [3]
    assert pipeline.stats()["traces_spooled"] >= 1
    assert len(pending_in(tmp_path / "spool")) == 1
    # the server is back: force_flush retries the spooled batch at once and confirms it
    down.clear()
    assert pipeline.force_flush(5.0) is True
    assert pending_in(tmp_path / "spool") == []
    assert pipeline.stats()["traces_confirmed"] == 1


def _outbound(seq: int, traces: int, *, reliable: bool) -> Any:
    """A closed batch of ``traces`` fake traces for session ``s``, as the Batcher makes one."""
    from conftest_pipeline import FakeRecord

    from galileo_otel.export._stage import Outbound
    from galileo_otel.export.spool_format import BatchHeader

    record = FakeRecord(f"local-{seq}", "s", "s")
    header = BatchHeader(
        reliable=reliable,
        session=record.to_dict(),
        local_id=record.local_id,
        external_id="s",
        placeholder=False,
        destination=DEST,
        target=None,
        origin="",
        traces=traces,
        spans=traces,
    )
    payload = json.dumps([{"type": "trace", "id": f"t{seq}-{i}"} for i in range(traces)])
    return Outbound(seq=seq, header=header, payload=payload.encode(), record=record)


@pytest.mark.parametrize("reliable", [True, False])
def test_deliver_now_sends_one_batch_on_the_callers_thread(
    tmp_path: Any, cleanup: Any, reliable: bool
) -> None:
    def answer(call: Call) -> None:
        assert threading.current_thread() is threading.main_thread()
        if call.path.endswith("/traces") and call.body["traces"][0]["id"] == "t1-0":
            # Permanent: dead-lettered, never retried.
            raise ValidationError("HTTP 422", status_code=422, retryable=False)

    pipeline, client, _ = make(tmp_path, FakeClient(answer), start=False, reliable=reliable)
    cleanup.append(pipeline)
    pipeline.senders.deliver_now(_outbound(0, 2, reliable=reliable))
    pipeline.senders.deliver_now(_outbound(1, 3, reliable=reliable))
    assert client.trace_ids() == ["t0-0", "t0-1", "t1-0", "t1-1", "t1-2"]
    assert pipeline.senders.threads == []  # no sender thread was started for it
    stats = pipeline.stats()
    assert stats["traces_confirmed"] == 2
    assert stats["traces_dead_lettered"] == stats["dead_lettered.422"] == 3


def test_force_flush_true_only_when_confirmed(tmp_path: Any, cleanup: Any) -> None:
    gate = threading.Event()

    def slow(call: Call) -> None:
        if call.path.endswith("/traces"):
            gate.wait(5)

    pipeline, _client, _ = make(tmp_path, FakeClient(slow))
    cleanup.append(pipeline)
    emit(tracer_for(pipeline))
    assert pipeline.force_flush(0.2) is False  # sent, not yet answered
    gate.set()
    assert pipeline.force_flush(5.0) is True
    # nothing queued: flush is trivially true
    assert pipeline.force_flush(1.0) is True


def test_fire_and_forget_counts_failures_and_never_spools(tmp_path: Any, cleanup: Any) -> None:
    fail = {"n": 0}
    lock = threading.Lock()

    def every_other(call: Call) -> None:
        if call.path.endswith("/traces"):
            with lock:
                fail["n"] += 1
                odd = fail["n"] % 2
            if not odd:
                raise unavailable(503)

    waits = Waits()
    pipeline, client, _ = make(
        tmp_path, FakeClient(every_other), reliable=False, batch_max_traces=1, wait=waits
    )
    cleanup.append(pipeline)
    tracer = tracer_for(pipeline)
    for i in range(6):
        emit(tracer, session=f"s{i}")
    assert pipeline.force_flush(5.0) is False
    posts = client.trace_posts()
    assert len(posts) == 6  # no retry
    assert all(c.body["reliable"] is False for c in posts)
    stats = pipeline.stats()
    assert stats["traces_sent"] == 6
    assert stats["traces_confirmed"] == 3
    assert stats["traces_failed"] == 3 == stats["failed.http_503"]
    assert waits.waits == []
    assert not (tmp_path / "spool").exists()


def test_connection_refused_in_fire_and_forget_is_counted(tmp_path: Any, cleanup: Any) -> None:
    def down(call: Call) -> None:
        raise refused()

    pipeline, _client, _ = make(tmp_path, FakeClient(down), reliable=False)
    cleanup.append(pipeline)
    tracer = tracer_for(pipeline)
    emit(tracer, session="x")
    emit(tracer, session="y")
    assert pipeline.force_flush(5.0) is False
    stats = pipeline.stats()
    assert stats["traces_failed"] == 2 == stats["failed.connection"]
    assert stats["traces_confirmed"] == 0


def test_shutdown_is_bounded_with_a_hanging_server(tmp_path: Any) -> None:
    hang = threading.Event()

    def hangs(call: Call) -> None:
        hang.wait(30)

    pipeline, _client, _ = make(tmp_path, FakeClient(hangs), export_timeout=30.0)
    tracer = tracer_for(pipeline)
    for i in range(20):
        emit(tracer, session=f"s{i % 3}")
    started = time.monotonic()
    ok = pipeline.shutdown(1.0)
    elapsed = time.monotonic() - started
    assert ok is False
    assert elapsed < 4.0  # the bound is 1 s; leave room for a loaded CI machine
    # everything queued is in the spool (the hung requests' batches too), ready for the next run
    with Spool(tmp_path / "spool") as spool:
        total = spool.usage()["traces"]
    hang.set()
    assert total == 20
    assert pipeline.submit("late") is False
    assert pipeline.stats()["dropped.shutdown"] >= 1


def test_shutdown_with_the_server_down_spools_without_waiting_out_retries(tmp_path: Any) -> None:
    def down(call: Call) -> None:
        raise refused()

    waits = Waits()
    # no timer closes a batch before shutdown, whatever the machine load: one batch per session
    pipeline, _client, _ = make(
        tmp_path,
        FakeClient(down),
        export_timeout=60.0,
        wait=waits,
        batch_delay=60.0,
        first_delay_s=60.0,
    )
    tracer = tracer_for(pipeline)
    for i in range(30):
        emit(tracer, session=f"s{i % 4}")
    started = time.monotonic()
    assert pipeline.shutdown(60.0) is False
    assert time.monotonic() - started < 10.0  # not the 60 s timeout: nothing left to wait for
    stats = pipeline.stats()
    assert stats["traces_spooled"] == 30
    assert stats["traces_confirmed"] == 0
    assert len(pending_in(tmp_path / "spool")) == 4


def test_restart_sends_spooled_batches_once(tmp_path: Any) -> None:
    def down(call: Call) -> None:
        raise refused()

    # no timer closes a batch before shutdown, whatever the machine load (with the default
    # 10 ms delay a slow emit loop split a session's traces over two batches): one per session
    first, _, _ = make(
        tmp_path, FakeClient(down), export_timeout=0.3, batch_delay=60.0, first_delay_s=60.0
    )
    tracer = tracer_for(first)
    for i in range(7):
        emit(tracer, session=f"s{i % 2}")
    assert first.shutdown(2.0) is False
    assert first.stats()["traces_spooled"] == 7
    assert len(pending_in(tmp_path / "spool")) == 2

    # two new pipelines share the spool: each batch is sent by exactly one of them
    second, client2, _ = make(tmp_path)
    third, client3, _ = make(tmp_path)
    try:
        # each flush covers the backlog its pipeline adopted at start (the first one adopts all)
        assert second.force_flush(10.0) and third.force_flush(10.0)
    finally:
        second.shutdown(2.0)
        third.shutdown(2.0)
    assert pending_in(tmp_path / "spool") == []
    ids = client2.trace_ids() + client3.trace_ids()
    assert len(ids) == 7 == len(set(ids))
    # each session is created once, then its batch is sent with that id
    for client in (client2, client3):
        for call in client.trace_posts():
            assert call.body["session_id"] in {s["id"] for s in client.sessions}


def test_batches_of_another_api_key_are_left_alone(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def down(call: Call) -> None:
        raise refused()

    first, _, _ = make(tmp_path, FakeClient(down), export_timeout=0.3)
    emit(tracer_for(first), session="mine")
    first.shutdown(2.0)
    assert len(pending_in(tmp_path / "spool")) == 1

    other, other_client, _ = make(tmp_path, api_key="someone-else")
    with caplog.at_level("WARNING"):
        assert other.force_flush(2.0)
        assert other.force_flush(2.0)
        stats = other.stats()
        other.shutdown(2.0)
    assert other_client.trace_posts() == []  # not sent with the wrong key
    assert dead_in(tmp_path / "spool") == []
    assert stats["spool_foreign_batches"] == 1 and stats["spool_foreign_traces"] == 1
    # The spool's size on disk (what GALILEO_SPOOL_MAX_BYTES bounds) is a stats() figure too.
    assert stats["spool_disk_bytes"] >= stats["spool_bytes"] > 0
    assert stats["spool_dead_dropped"] == 0
    assert sum("another API key" in r.getMessage() for r in caplog.records) == 1
    assert "someone-else" not in caplog.text

    same, same_client, _ = make(tmp_path)
    assert same.force_flush(10.0)  # the backlog it adopted, sent with the right key
    same.shutdown(2.0)
    assert pending_in(tmp_path / "spool") == []
    assert len(same_client.trace_posts()) == 1


def test_a_missing_api_key_keeps_batches_in_the_spool_not_dead(tmp_path: Any) -> None:
    def no_key(call: Call) -> None:
        raise ConfigError("no API key: set GALILEO_API_KEY")

    pipeline, _client, _ = make(tmp_path, FakeClient(no_key))
    emit(tracer_for(pipeline))
    assert pipeline.force_flush(1.0) is False
    pipeline.shutdown(1.0)
    assert len(pending_in(tmp_path / "spool")) == 1 and dead_in(tmp_path / "spool") == []
    assert pipeline.stats()["traces_dead_lettered"] == 0


def test_disabled_pipeline_accepts_nothing(tmp_path: Any) -> None:
    pipeline, client, _ = make(tmp_path, logging_disabled=True)
    assert pipeline.submit("span") is False
    assert pipeline.force_flush(0.1) is True
    assert pipeline.shutdown(0.1) is True
    assert client.calls == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX only")
def test_forked_child_has_its_own_queue_and_worker(tmp_path: Any) -> None:
    pipeline, client, _ = make(tmp_path)
    tracer = tracer_for(pipeline)
    emit(tracer, session="parent")
    assert pipeline.force_flush(5.0)
    pipeline.worker_queue().append("parent-only")  # the child must not inherit queued work
    pipeline.worker_queue().pop()

    def child() -> list[Any]:
        before = len(client.trace_posts())
        ok_empty = len(pipeline.worker_queue()) == 0 and pipeline.stats()["spans_queued"] == 0
        emit(tracer, session="child")
        flushed = pipeline.force_flush(5.0)
        sent = len(client.trace_posts()) - before
        worker = pipeline.batcher.thread
        worker_ok = worker is not None and worker.is_alive()
        pipeline.shutdown(1.0)
        return [ok_empty, flushed, sent, worker_ok]

    assert run_forked(child) == [True, True, 1, True]
    # the parent still works and did not see the child's batch
    emit(tracer, session="parent")
    assert pipeline.force_flush(5.0)
    assert [c.body["session_external_id"] for c in client.trace_posts()] == ["parent", "parent"]
    pipeline.shutdown(1.0)


def test_submit_is_cheap_and_never_raises(tmp_path: Any) -> None:
    pipeline, _, _ = make(tmp_path, start=False, max_queue_spans=10)
    for _ in range(100):
        pipeline.submit(object())
    assert pipeline.stats()["dropped.queue_full"] == 90
    pipeline.shutdown(0.1)


if sys.platform == "win32":  # pragma: no cover
    pytestmark = pytest.mark.skip("POSIX spool locks")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX only")
def test_a_forked_child_does_not_inherit_queued_work(tmp_path: Any) -> None:
    # the parent's worker has not run yet: its three spans sit in the queue at the fork
    pipeline, client, _ = make(tmp_path, start=False)
    tracer = tracer_for(pipeline)
    emit(tracer, session="parent", children=2)
    assert len(pipeline.worker_queue()) == 3
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            inherited = len(pipeline.worker_queue()) + pipeline.stats()["spans_queued"]
            pipeline.start()
            emit(tracer, session="child")
            flushed = pipeline.force_flush(5.0)
            sessions = [c.body["session_external_id"] for c in client.trace_posts()]
            os.write(write_fd, json.dumps([inherited, flushed, sessions]).encode())
            pipeline.shutdown(1.0)
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    _, status = os.waitpid(pid, 0)  # bounded by the child's own 5 s flush
    data = os.read(read_fd, 1000)
    os.close(read_fd)
    assert status == 0
    assert json.loads(data) == [0, True, ["child"]]  # nothing of the parent's was sent there
    pipeline.start()
    assert pipeline.force_flush(5.0)
    assert [c.body["session_external_id"] for c in client.trace_posts()] == ["parent"]
    pipeline.shutdown(1.0)


def test_counters_reconcile_under_a_flapping_server(tmp_path: Any) -> None:
    import random

    rng = random.Random(7)

    def flaky(call: Call) -> None:
        if not call.path.endswith("/traces"):
            return
        roll = rng.random()
        if roll < 0.2:
            raise ValidationError("HTTP 422", status_code=422, detail="bad", retryable=False)
        if roll < 0.6:
            raise unavailable(503)

    pipeline, _client, _ = make(
        tmp_path,
        FakeClient(flaky),
        batch_max_traces=2,
        export_timeout=0.5,
        spool_max_bytes=4000,
    )
    tracer = tracer_for(pipeline)
    for i in range(60):
        emit(tracer, session=f"s{i % 5}", payload="x" * 50)
    pipeline.force_flush(5.0)
    pipeline.shutdown(2.0)
    stats = pipeline.stats()
    assert stats["traces_batched"] == 60
    assert stats["traces_dead_lettered"] > 0 and stats["traces_confirmed"] > 0
    settled = (
        stats["traces_confirmed"]
        + stats["traces_pending"]
        + stats["traces_failed"]
        + stats["traces_dead_lettered"]
        + stats["dropped.spool_full"]
        + stats["traces_handed_over"]
    )
    assert stats["traces_batched"] + stats["traces_adopted"] == settled
    # a batch retried or re-claimed from the spool is "sent" once, not once per attempt
    assert stats["requests_retried"] > 0
    assert stats["traces_sent"] <= stats["traces_batched"] + stats["traces_adopted"]
    # what is pending after shutdown is exactly what waits in the spool
    with Spool(tmp_path / "spool") as spool:
        assert spool.usage()["traces"] == stats["traces_pending"]


def test_a_sampled_out_session_is_dropped_and_counted(tmp_path: Any, cleanup: Any) -> None:
    pipeline, client, tracker = make(tmp_path)
    cleanup.append(pipeline)
    tracer = tracer_for(pipeline)
    emit(tracer, session="kept")
    emit(tracer, session="dropped")
    assert pipeline.force_flush(5.0)
    tracker.records["dropped"].sampled = False  # type: ignore[attr-defined]
    emit(tracer, session="dropped")
    emit(tracer, session="kept")
    assert pipeline.force_flush(5.0)
    sessions = [c.body["session_external_id"] for c in client.trace_posts()]
    assert sorted(sessions) == ["dropped", "kept", "kept"]
    stats = pipeline.stats()
    assert stats["dropped.sampled"] == 1 and stats["traces_batched"] == 3


def test_a_live_neighbours_batches_never_hold_up_our_flush(tmp_path: Any) -> None:
    release = threading.Event()

    def hangs(call: Call) -> None:
        if call.path.endswith("/traces"):
            release.wait(30)

    # A and B share one spool; A's batch hangs in flight, B's server is healthy
    a, _a_client, _ = make(tmp_path, FakeClient(hangs), export_timeout=30.0)
    b, b_client, _ = make(tmp_path)
    try:
        emit(tracer_for(a), session="a")
        assert a.force_flush(0.2) is False  # A's own batch is still in flight
        emit(tracer_for(b), session="b")
        assert b.force_flush(5.0) is True  # B waits for B's work only
        assert [c.body["session_external_id"] for c in b_client.trace_posts()] == ["b"]
        assert b.stats()["traces_adopted"] == 0  # A is alive: its batch is not B's to take
    finally:
        release.set()
        assert a.shutdown(5.0) is True
        b.shutdown(2.0)
    assert pending_in(tmp_path / "spool") == []
