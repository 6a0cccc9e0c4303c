"""OffloadPipeline, the worker process's parent, against a stand-in child that speaks the
protocol (no server, no sockets): replay after a crash, the stats merge, the fallback when no
child can start, a fork mid-lock, and the real child's niceness."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from test_offload import make_spans

from forking import run_forked
from galileo_otel.api.client import Destination
from galileo_otel.export.offload import (
    MAX_RESTARTS,
    MSG_FLUSH,
    MSG_SHUTDOWN,
    MSG_SPANS,
    MSG_STATS,
    OffloadPipeline,
)
from galileo_otel.export.offload.protocol import READY_SEQ
from galileo_otel.settings import GalileoSettings
from worker_start import ColdStart, wait_until_ready

PID = "6a0b3c8e-1f2d-4e5f-9a8b-7c6d5e4f3a2b"
LSID = "0f1e2d3c-4b5a-4968-8776-655443322110"

# A child that answers every flush True without delivering anything, and writes the span ids it
# got (with its pid) to a file: what the parent sent to which child. Plain Python (no imports
# of ours, so it starts fast): the frame layout is protocol.py's, 4-byte length + marshal.
_STAND_IN = f"""
import marshal, os, struct, sys
out = os.fdopen(os.dup(1), "wb")
inp = os.fdopen(os.dup(0), "rb")
log = open(sys.argv[1], "a")
def write(obj):
    data = marshal.dumps(obj)
    out.write(struct.pack("<I", len(data)) + data)
    out.flush()
def read():
    head = inp.read(4)
    if len(head) < 4:
        return None
    return marshal.loads(inp.read(struct.unpack("<I", head)[0]))
got = 0
write(({READY_SEQ}, True))
while (msg := read()) is not None:
    if msg[0] == {MSG_SPANS}:
        got += len(msg[1])
        log.write("".join(f"{{os.getpid()}} {{item[2]}}\\n" for item in msg[1]))
        log.flush()
    elif msg[0] == {MSG_FLUSH}:
        write((msg[1], True))
    elif msg[0] == {MSG_STATS}:
        write((msg[1], {{"traces_confirmed": got, "dropped.queue_full": 2}}))
    elif msg[0] == {MSG_SHUTDOWN}:
        write((msg[1], {{"ok": True, "stats": {{"traces_confirmed": got}}}}))
        break
"""


def settings(**extra: Any) -> GalileoSettings:
    return GalileoSettings(api_key="k" * 20, spool_dir="off", **extra)


def stand_in(log: Path) -> list[str]:
    return [sys.executable, "-c", _STAND_IN, str(log)]


def received(log: Path) -> list[tuple[int, int]]:
    lines = log.read_text().split() if log.exists() else []
    return [(int(lines[i]), int(lines[i + 1])) for i in range(0, len(lines), 2)]


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "received.txt"


def test_a_crashed_child_is_restarted_and_gets_what_it_had_not_confirmed(log: Path) -> None:
    pipeline = OffloadPipeline(
        settings(), command=stand_in(log), start=False, shutdown_at_exit=False
    )
    pipeline.start(wait=True)
    try:
        first, second = make_spans(), make_spans()
        for span in first:
            assert pipeline.submit(span)
        assert pipeline.force_flush(10.0) is True  # confirmed: never sent again
        assert pipeline.replay_spans() == 0
        for span in second:
            assert pipeline.submit(span)
        proc = pipeline.child
        assert proc is not None
        os.kill(proc.pid, signal.SIGKILL)  # whether or not it got the second spans
        proc.wait(10)
        assert pipeline.force_flush(20.0) is True
        new = pipeline.child
        assert new is not None and new.pid != proc.pid
        by_new = [span_id for pid, span_id in received(log) if pid == new.pid]
        assert by_new == [span.context.span_id for span in second]
        stats = pipeline.stats()
        assert stats["offload.child_exits"] == 1 and stats["offload.restarts"] == 1
        assert stats["offload.fallback"] == 0
    finally:
        assert pipeline.shutdown(10.0) is True


def test_stats_are_the_childs_with_this_processs_hand_off_merged_in(log: Path) -> None:
    pipeline = OffloadPipeline(
        settings(max_queue_spans=9), command=stand_in(log), start=False, shutdown_at_exit=False
    )
    pipeline.start(wait=True)
    try:
        spans = make_spans()
        assert all(pipeline.submit(span) for span in spans)
        assert pipeline.force_flush(10.0) is True
        stats = pipeline.stats()
        assert stats["traces_confirmed"] == 9  # the child's figure, as it answered
        assert stats["spans_queued"] == 9 and stats["queue_size"] == 0  # this process's
        assert stats["dropped.queue_full"] == 2 and stats["spans_dropped"] == 2  # child's + ours
        assert stats["offload.replay_overflow"] == 0
    finally:
        assert pipeline.shutdown(10.0) is True
    # after the shutdown: the child's final answer
    assert pipeline.stats()["traces_confirmed"] == 9


def test_no_child_can_start_then_the_export_runs_in_process(tmp_path: Path) -> None:
    """start() never raises for a child that cannot start; the writer falls back in-process."""
    missing = [str(tmp_path / "no-such-python")]
    pipeline = OffloadPipeline(
        settings(),
        command=missing,
        start=False,
        shutdown_at_exit=False,
        destination=Destination(PID, "p", LSID, None, "default"),
    )
    pipeline.start(wait=True)
    try:
        assert pipeline.force_flush(10.0) is True  # answered by the in-process fallback
        stats = pipeline.stats()
        assert stats["offload.fallback"] == 1
        assert stats["offload.restarts"] == 1 and stats["offload.child_exits"] == 0
        assert MAX_RESTARTS >= 1
    finally:
        assert pipeline.shutdown(10.0) is True


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo (Unix)")
def test_wait_ready_says_whether_the_worker_process_is_set_up(log: Path, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    # The stand-in, held before it says it is ready until the test opens the FIFO.
    gated = [sys.executable, "-c", f"open({str(gate)!r}, 'rb').close()\n" + _STAND_IN, str(log)]
    pipeline = OffloadPipeline(settings(), command=gated, start=False, shutdown_at_exit=False)
    assert pipeline.wait_ready(0) is False  # not started
    pipeline.start()
    try:
        assert pipeline.wait_ready(0.05) is False  # started, still held on its gate
        opener = os.open(gate, os.O_WRONLY)  # returns once the child opened its end
        os.close(opener)
        assert pipeline.wait_ready(30.0) is True
        assert pipeline.wait_ready(0) is True
        assert pipeline.force_flush(10.0) is True
    finally:
        assert pipeline.shutdown(10.0) is True


def test_wait_ready_is_false_for_a_worker_process_that_exits_before_it_is_set_up() -> None:
    quits = [sys.executable, "-c", "pass"]  # exits at once, never says it is ready
    pipeline = OffloadPipeline(settings(), command=quits, start=False, shutdown_at_exit=False)
    pipeline.start()
    try:
        assert pipeline.wait_ready(30.0) is False
    finally:
        pipeline.shutdown(10.0)


_LOCK_TYPES = (type(threading.Lock()), type(threading.RLock()))


def library_locks(root: Any) -> list[Any]:
    """Every lock held by ``root`` or the galileo_otel objects it reaches, in a stable order.

    What a forked child inherits held, found by walking the objects (their ``__dict__`` and
    slots, and the lists, tuples, sets and dicts in them) without naming any private field, and
    without patching ``threading.Lock``.
    """
    found: list[Any] = []
    seen: set[int] = set()

    def walk(obj: Any) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, _LOCK_TYPES):
            found.append(obj)
        elif isinstance(obj, (list, tuple, set, frozenset)):
            for item in obj:
                walk(item)
        elif isinstance(obj, dict):
            for item in obj.values():
                walk(item)
        elif type(obj).__module__.startswith("galileo_otel."):
            fields = list(getattr(obj, "__dict__", {}).values())
            for cls in type(obj).__mro__:
                slots = getattr(cls, "__slots__", ())
                for name in (slots,) if isinstance(slots, str) else slots:
                    if name not in ("__dict__", "__weakref__") and hasattr(obj, name):
                        fields.append(getattr(obj, name))
            for item in fields:
                walk(item)

    walk(root)
    return found


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX only")
def test_a_fork_while_the_parent_holds_its_locks_leaves_the_child_a_working_pipeline(
    log: Path,
) -> None:
    pipeline = OffloadPipeline(
        settings(), command=stand_in(log), start=False, shutdown_at_exit=False
    )
    pipeline.start(wait=True)
    locks = library_locks(pipeline)
    # The requests' and the replay buffer's locks at least (the reader and the writer take them).
    assert len(locks) >= 2
    try:
        parent_child = pipeline.child
        assert parent_child is not None

        def child() -> Any:  # a forked app process: its own worker process, fresh locks
            spans = make_spans()
            for span in spans:
                pipeline.submit(span)
            ok = pipeline.force_flush(10.0)
            own = pipeline.child
            done = pipeline.shutdown(10.0)
            return [ok, done, own is not None and own.pid != parent_child.pid]

        # Every one of them held by this thread at the fork, as the reader or the writer thread
        # might hold one; the library's after-fork hook must leave the child none of them.
        with contextlib.ExitStack() as held:
            for lock in locks:
                assert lock.acquire(timeout=10)
                held.callback(lock.release)
            assert run_forked(child, timeout_s=30) == [True, True, True]
        assert pipeline.child is parent_child  # the parent keeps its own
        assert pipeline.force_flush(10.0) is True
    finally:
        assert pipeline.shutdown(10.0) is True


@pytest.mark.skipif(not hasattr(os, "getpriority"), reason="Unix only")
def test_the_worker_process_runs_at_nice_10(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GALILEO_OTEL_WORKER_NICE", raising=False)
    pipeline = OffloadPipeline(
        settings(),
        start=False,
        shutdown_at_exit=False,
        destination=Destination(PID, "p", LSID, None, "default"),
    )
    pipeline.start()
    cold = ColdStart(0.0)
    try:
        # The real child: nice is applied before it says it is set up (its imports may take
        # most of a minute at nice 10 on a loaded machine, hence the measured wait).
        cold = wait_until_ready(pipeline)
        proc = pipeline.child
        assert proc is not None and proc.poll() is None
        ours = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, proc.pid) == min(19, ours + 10)
    finally:
        assert pipeline.shutdown(cold.bound(10.0)) is True


def test_process_hooks_hold_their_object_weakly_and_cancel_the_exit_hook(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import atexit
    import gc
    import weakref

    from galileo_otel.export.hooks import ProcessHooks

    registered: list[Any] = []
    monkeypatch.setattr(atexit, "register", registered.append)
    monkeypatch.setattr(atexit, "unregister", registered.remove)

    class Owner:
        def __init__(self) -> None:
            self.calls: list[str] = []
            self.hooks = ProcessHooks(self.at_exit, self.after_fork)

        def at_exit(self) -> None:
            self.calls.append("exit")

        def after_fork(self) -> None:
            self.calls.append("fork")

    owner = Owner()
    [hook] = registered
    hook()
    assert owner.calls == ["exit"]
    owner.hooks.cancel_exit()
    assert registered == []
    owner.hooks.cancel_exit()  # twice is fine
    again = Owner()
    [hook] = registered
    ref = weakref.ref(again)
    del again
    gc.collect()
    assert ref() is None  # the hook did not keep it alive
    hook()  # and does nothing now
