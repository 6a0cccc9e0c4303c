"""Processes that end (galileo_otel.lifecycle): the exit flush, SIGTERM, fork children, aflush.

No sockets: handles over a fake pipeline that records what it was asked. Whatever installs
process-wide hooks (SIGTERM, atexit, after-fork) runs in a forked child, not in pytest.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import weakref
from pathlib import Path
from typing import Any

import pytest

from forking import run_forked
from galileo_otel import lifecycle
from galileo_otel.configure import GalileoHandle
from galileo_otel.settings import GalileoSettings

WAIT_S = 10.0


class FakePipeline:
    """Records flushes and shutdowns; a flush can be held until ``release`` is set."""

    def __init__(self, marker: Path | None = None) -> None:
        self.flushes: list[float | None] = []
        self.shutdowns: list[float | None] = []
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()
        self.marker = marker

    def submit(self, span: Any) -> bool:
        return True

    def force_flush(self, timeout_s: float | None = None) -> bool:
        self.flushes.append(timeout_s)
        self.entered.set()
        return self.release.wait(WAIT_S)

    def shutdown(self, timeout_s: float | None = None) -> bool:
        self.shutdowns.append(timeout_s)
        self.entered.set()
        ok = self.release.wait(WAIT_S)
        if self.marker is not None:
            self.marker.write_text(f"{os.getpid()} {timeout_s}")
        return ok

    def stats(self) -> dict[str, Any]:
        return {}


class FakeProcessor:
    def shutdown(self) -> None:
        pass


def make_handle(pipeline: FakePipeline, **settings: Any) -> GalileoHandle:
    values: dict[str, Any] = {"api_key": "k", "project": "p", "export_timeout": 7.0}
    values.update(settings)
    return GalileoHandle(
        enabled=True,
        settings=GalileoSettings(**values),
        processor=FakeProcessor(),
        pipeline=pipeline,
    )


@pytest.fixture
def handles(monkeypatch: pytest.MonkeyPatch) -> weakref.WeakSet[GalileoHandle]:
    """A fresh registry of live handles (and exit flush) for the test."""
    registry: weakref.WeakSet[GalileoHandle] = weakref.WeakSet()
    monkeypatch.setattr(lifecycle, "_handles", registry)
    monkeypatch.setattr(lifecycle, "_exit", None)
    return registry


# --- flush on demand ----------------------------------------------------------------------------


def test_force_flush_covers_every_live_handle_and_skips_closed_ones(
    handles: weakref.WeakSet[GalileoHandle],
) -> None:
    a, b, c = FakePipeline(), FakePipeline(), FakePipeline()
    ha, hb, hc = make_handle(a), make_handle(b), make_handle(c)
    handles.update([ha, hb, hc])
    hc.shutdown(1.0)
    assert lifecycle.force_flush(3.0) is True
    assert len(a.flushes) == len(b.flushes) == 1 and c.flushes == []
    assert all(0 <= t <= 3.0 for t in a.flushes + b.flushes if t is not None)
    assert lifecycle.force_flush() is True
    assert a.flushes[-1] == 7.0  # the handle's own default: export_timeout


def test_aforce_flush_never_blocks_the_event_loop(
    handles: weakref.WeakSet[GalileoHandle],
) -> None:
    pipeline = FakePipeline()
    pipeline.release.clear()  # the flush waits until the loop has ticked
    handle = make_handle(pipeline)
    handles.add(handle)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        assert await asyncio.to_thread(pipeline.entered.wait, WAIT_S)
        while ticks < 20:
            ticks += 1
            await asyncio.sleep(0)
        pipeline.release.set()

    async def main() -> tuple[bool, bool]:
        flushed, _ = await asyncio.gather(lifecycle.aforce_flush(5.0), ticker())
        pipeline.release.clear()
        pipeline.entered.clear()
        own, _ = await asyncio.gather(handle.aforce_flush(5.0), ticker_again())
        return flushed, own

    async def ticker_again() -> None:
        nonlocal ticks
        ticks = 0
        await ticker()

    # Had the flush blocked the loop, the ticker could not run and the flush would give up
    # after WAIT_S and return False.
    assert asyncio.run(main()) == (True, True)
    assert ticks == 20 and len(pipeline.flushes) == 2


# --- the exit flush -----------------------------------------------------------------------------


def test_exit_flush_runs_once_and_a_second_caller_waits_for_it(
    handles: weakref.WeakSet[GalileoHandle],
) -> None:
    pipeline = FakePipeline()
    pipeline.release.clear()
    handle = make_handle(pipeline, exit_timeout=9.0)  # the registry holds it weakly
    handles.add(handle)
    results: list[bool] = []
    first = threading.Thread(target=lambda: results.append(lifecycle.exit_flush("first")))
    first.start()
    assert pipeline.entered.wait(WAIT_S)
    second = threading.Thread(target=lambda: results.append(lifecycle.exit_flush("second")))
    second.start()
    pipeline.release.set()
    first.join(WAIT_S)
    second.join(WAIT_S)
    assert results == [True, True]
    assert len(pipeline.shutdowns) == 1
    assert pipeline.shutdowns[0] is not None and 0 < pipeline.shutdowns[0] <= 9.0


def test_sigterm_while_the_exit_flush_starts_is_raised_after_it_delivers(
    handles: weakref.WeakSet[GalileoHandle], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The handler interrupts the main thread between 'flush now' and the flush thread running.

    It must neither start a second flush (which would find the pipeline closing and let the
    process die mid-delivery) nor die at once: the first flush delivers, then the process ends
    by the signal.
    """
    pipeline = FakePipeline()
    handle = make_handle(pipeline, exit_timeout=9.0)
    handles.add(handle)
    events: list[str] = []
    monkeypatch.setattr(lifecycle, "_die_by", lambda signum: events.append(f"die {signum}"))
    start = lifecycle._ExitFlush._start

    def interrupted_start(self: Any, *args: Any) -> Any:
        lifecycle._on_sigterm(signal.SIGTERM, None)  # the signal lands here
        events.append("sigterm handled")
        thread = start(self, *args)
        events.append("flush started")
        return thread

    original_shutdown = pipeline.shutdown

    def shutdown(timeout_s: float | None = None) -> bool:
        ok = original_shutdown(timeout_s)
        events.append("delivered")
        return ok

    monkeypatch.setattr(pipeline, "shutdown", shutdown)
    monkeypatch.setattr(lifecycle._ExitFlush, "_start", interrupted_start)
    assert lifecycle.exit_flush("interpreter exit") is True
    assert len(pipeline.shutdowns) == 1
    # "flush started" and "delivered" race (the flush thread may finish first); the signal is
    # kept until both happened, then raised once.
    assert events[0] == "sigterm handled" and events[-1] == f"die {signal.SIGTERM}"
    assert sorted(events[1:-1]) == ["delivered", "flush started"]


def test_exit_flush_is_bounded_by_exit_timeout(
    handles: weakref.WeakSet[GalileoHandle], caplog: pytest.LogCaptureFixture
) -> None:
    pipeline = FakePipeline()
    pipeline.release.clear()  # a shutdown that never ends (held until the test ends)
    handle = make_handle(pipeline, exit_timeout=0.0)
    handles.add(handle)
    try:
        assert lifecycle.exit_flush("test") is False
    finally:
        pipeline.release.set()
    assert "still running" in caplog.text


def test_exit_flush_with_no_handle_is_a_no_op(handles: weakref.WeakSet[GalileoHandle]) -> None:
    assert lifecycle.exit_flush("nothing") is True


# --- SIGTERM (in a forked child: it changes process-wide state) ---------------------------------


def _sigterm_child(tmp: Path, handle_sigterm: bool) -> int:
    """Fork a child that tracks a handle and SIGTERMs itself; its wait status."""
    marker = tmp / "flushed"
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            handle = make_handle(FakePipeline(marker), handle_sigterm=handle_sigterm)
            lifecycle.track(handle)
            os.kill(os.getpid(), signal.SIGTERM)
            code = 4  # not reached when the signal's default action runs
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return status


def test_sigterm_delivers_then_dies_by_the_signal(tmp_path: Path) -> None:
    status = _sigterm_child(tmp_path, handle_sigterm=True)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
    pid, bound = (tmp_path / "flushed").read_text().split()
    assert int(pid) != os.getpid() and 0 < float(bound) <= 5.0  # exit_timeout's default


def test_sigterm_opt_out_installs_nothing(tmp_path: Path) -> None:
    status = _sigterm_child(tmp_path, handle_sigterm=False)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM
    assert not (tmp_path / "flushed").exists()


def test_sigterm_handler_leaves_the_apps_own_handler_and_other_threads_alone() -> None:
    def child() -> list[Any]:
        def app_handler(signum: int, frame: Any) -> None:
            pass

        signal.signal(signal.SIGTERM, app_handler)
        kept = lifecycle.install_sigterm_handler() is False
        kept = kept and signal.getsignal(signal.SIGTERM) is app_handler
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        from_thread: list[bool] = []
        t = threading.Thread(target=lambda: from_thread.append(lifecycle.install_sigterm_handler()))
        t.start()
        t.join()
        untouched = signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        installed = lifecycle.install_sigterm_handler()
        return [kept, from_thread, untouched, installed, lifecycle.install_sigterm_handler()]

    assert run_forked(child) == [True, [False], True, True, True]


# --- forked pool children -----------------------------------------------------------------------


@pytest.mark.parametrize("how", ["return", "exception"])
def test_a_multiprocessing_fork_child_flushes_before_os_exit(tmp_path: Path, how: str) -> None:
    """multiprocessing ends its fork children with os._exit: the finalizer still delivers."""

    def child() -> list[Any]:
        import multiprocessing

        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        handle = make_handle(FakePipeline(tmp_path / "flushed"), handle_sigterm=False)
        lifecycle.track(handle)
        process = multiprocessing.get_context("fork").Process(
            target=_fail if how == "exception" else _noop
        )
        process.start()
        process.join(WAIT_S)
        return [process.exitcode, os.getpid()]

    exitcode, parent = run_forked(child)
    assert exitcode == (1 if how == "exception" else 0)
    pid, _ = (tmp_path / "flushed").read_text().split()
    assert int(pid) not in (parent, os.getpid())  # written by the pool child itself


def _noop() -> None:
    pass


def _fail() -> None:
    raise RuntimeError("the task failed")


# --- serverless_handler -------------------------------------------------------------------------


class LambdaContext:
    def __init__(self, remaining_ms: Any) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        if isinstance(self.remaining_ms, Exception):
            raise self.remaining_ms
        return int(self.remaining_ms)


@pytest.mark.parametrize(
    ("args", "kwargs", "timeout_s", "expected"),
    [
        (({}, LambdaContext(3000)), {}, None, 2.5),  # remaining time minus the margin
        (({}, LambdaContext(3000)), {}, 1.0, 1.0),  # the configured bound is shorter
        (({},), {"context": LambdaContext(10_000)}, 20.0, 9.5),  # context as a keyword
        (({}, LambdaContext(200)), {}, None, 0.0),  # less than the margin left: no wait
        (({}, LambdaContext(RuntimeError("x"))), {}, 4.0, 4.0),  # a context that cannot tell
        (({}, object()), {}, None, None),  # not a Lambda context: the handles' default
        ((), {}, 2.0, 2.0),  # a plain function
    ],
)
def test_flush_bound(
    args: tuple[Any, ...], kwargs: dict[str, Any], timeout_s: float | None, expected: float | None
) -> None:
    from galileo_otel.serverless import flush_bound

    assert flush_bound(args, kwargs, timeout_s, 0.5) == expected


def test_serverless_handler_flushes_before_returning_and_when_raising(
    handles: weakref.WeakSet[GalileoHandle],
) -> None:
    import galileo_otel

    pipeline = FakePipeline()
    handle = make_handle(pipeline)
    handles.add(handle)
    seen: list[int] = []

    @galileo_otel.serverless_handler
    def handler(event: dict[str, Any], context: Any) -> int:
        seen.append(len(pipeline.flushes))  # not flushed yet while it runs
        if event.get("fail"):
            raise ValueError("bad event")
        return 7

    @galileo_otel.serverless_handler(timeout_s=3.0)
    def plain() -> str:
        return "ok"

    assert handler({}, LambdaContext(2000)) == 7
    with pytest.raises(ValueError, match="bad event"):
        handler({"fail": True}, object())  # no Lambda context
    assert plain() == "ok"
    assert handler.__name__ == "handler"
    assert seen == [0, 1]
    assert pipeline.flushes == pytest.approx(
        [1.5, 7.0, 3.0], abs=0.1
    )  # remaining - margin; export_timeout; timeout_s


def test_serverless_handler_async_awaits_the_flush_off_the_loop(
    handles: weakref.WeakSet[GalileoHandle], caplog: pytest.LogCaptureFixture
) -> None:
    import galileo_otel

    pipeline = FakePipeline()
    pipeline.release.clear()
    handle = make_handle(pipeline)
    handles.add(handle)
    ticks = 0

    @galileo_otel.serverless_handler(margin_s=1.0)
    async def handler(event: dict[str, Any], context: Any) -> str:
        return "done"

    async def ticker() -> None:
        nonlocal ticks
        assert await asyncio.to_thread(pipeline.entered.wait, WAIT_S)
        while ticks < 10:
            ticks += 1
            await asyncio.sleep(0)
        pipeline.release.set()

    async def main() -> str:
        result, _ = await asyncio.gather(handler({}, LambdaContext(5000)), ticker())
        return str(result)

    assert asyncio.run(main()) == "done"
    assert ticks == 10 and pipeline.flushes == pytest.approx([4.0], abs=0.1)
    assert "not every trace" not in caplog.text


def test_serverless_handler_says_when_the_flush_ran_out_of_time(
    handles: weakref.WeakSet[GalileoHandle], caplog: pytest.LogCaptureFixture
) -> None:
    import galileo_otel

    pipeline = FakePipeline()
    handle = make_handle(pipeline)
    handles.add(handle)
    pipeline.force_flush = lambda timeout_s=None: False  # type: ignore[method-assign]

    @galileo_otel.serverless_handler
    def handler(event: Any, context: Any) -> int:
        return 1

    assert handler({}, LambdaContext(1000)) == 1
    assert "not every trace of this invocation was delivered" in caplog.text


def test_with_celery_imported_its_pool_child_shutdown_signal_runs_the_exit_flush(
    tmp_path: Path,
) -> None:
    """Celery's worker_process_shutdown is the hook of billiard children (they skip finalizers)."""

    def child() -> list[Any]:
        import sys
        import types

        class Signal:
            def __init__(self) -> None:
                self.receivers: list[tuple[Any, dict[str, Any]]] = []

            def connect(self, receiver: Any, **kwargs: Any) -> None:
                self.receivers.append((receiver, kwargs))

        shutdown_signal = Signal()
        celery = types.ModuleType("celery")
        signals = types.ModuleType("celery.signals")
        signals.worker_process_shutdown = shutdown_signal  # type: ignore[attr-defined]
        celery.signals = signals  # type: ignore[attr-defined]
        sys.modules.update({"celery": celery, "celery.signals": signals})
        lifecycle._celery_connected = False  # pytest may have imported the real Celery before
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        handle = make_handle(FakePipeline(tmp_path / "flushed"), handle_sigterm=False)
        lifecycle.track(handle)
        lifecycle.track(handle)  # connected once, however many handles
        [(receiver, kwargs)] = shutdown_signal.receivers
        receiver(sender="worker@host", pid=os.getpid(), exitcode=0)  # as Celery sends it
        return [kwargs, handle._closed]

    kwargs, closed = run_forked(child)
    assert kwargs == {"weak": False, "dispatch_uid": "galileo-otel-exit-flush"}
    assert closed is True and (tmp_path / "flushed").exists()
