"""Processes that end: deliver what a process holds before it goes, bounded in time.

A process can end in ways that run no ``atexit`` hook, and whatever its export pipeline still
held is then lost. This module covers each way, for every handle :func:`configure` made:

* **Interpreter exit** (``sys.exit``, the end of a script, a gunicorn worker, a spawned pool
  child): an ``atexit`` hook shuts the handles down within ``exit_timeout``.
* **A forked child of a pool** (``multiprocessing.Pool(maxtasksperchild=...)``, Celery's
  prefork pool) ends through ``os._exit``, which runs no ``atexit``. multiprocessing runs its
  finalizers first: a ``multiprocessing.util.Finalize`` is registered in every child it forks
  (``register_after_fork``). billiard, Celery's fork of it, leaves its pool children with
  ``os._exit`` before those finalizers, but sends Celery's ``worker_process_shutdown`` signal
  just before: with Celery imported, that signal runs the same exit flush.
* **SIGTERM** (Kubernetes, systemd, ``Pool.terminate()``): when the app has not installed a
  handler of its own (the handler is the default one), a handler delivers within
  ``exit_timeout`` and then terminates the process as the default action would, with the
  signal re-raised, so the exit status still says SIGTERM. ``GALILEO_HANDLE_SIGTERM=false``
  leaves SIGTERM alone.

The exit flush runs on a thread of its own, which the ending thread joins with a bound: a
signal handler interrupts the app wherever it is, perhaps holding a lock the flush needs, and
a second way of ending (SIGTERM arriving during a child's finalizer) joins the same flush
rather than cutting it short. What the flush cannot deliver in time is in the spool (reliable
mode), sent by the next process.

Also here: :func:`force_flush` and :func:`aforce_flush` over every live handle; the latter
awaits a flush running on a thread, so the event loop keeps running meanwhile.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib
import logging
import os
import signal
import sys
import threading
import time
import weakref
from types import FrameType
from typing import TYPE_CHECKING, Any

from galileo_otel._fork import hold_across_fork

if TYPE_CHECKING:
    from galileo_otel.configure import GalileoHandle

__all__ = [
    "aforce_flush",
    "exit_flush",
    "force_flush",
    "in_thread",
    "install_sigterm_handler",
    "live_handles",
    "track",
]

_log = logging.getLogger(__name__)

# Time a joined exit flush gets beyond its own bound: shutdown() closes the spool and joins
# threads after its flush deadline.
_JOIN_MARGIN_S = 1.0

# Guards _handles and the installs below. Reentrant: the SIGTERM handler runs on the main
# thread between two bytecodes, perhaps while that thread is inside track().
_lock = threading.RLock()
_handles: weakref.WeakSet[GalileoHandle] = weakref.WeakSet()
# The atexit and after-fork hooks are in place. A forked child inherits both registries, so
# this stays True there; a spawned child starts afresh and installs its own.
_installed = False
_celery_connected = False
# A fork while another thread holds _lock would leave the child's copy held forever.
hold_across_fork(sys.modules[__name__], "_lock", threading.RLock)


class _ExitFlush:
    """The one exit flush of this process: a thread that shuts every live handle down."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.thread: threading.Thread | None = None
        self.timeout_s = 0.0
        self.ok = False
        # The main thread is between deciding to flush and the flush thread running (or runs it
        # inline): a SIGTERM handler interrupting it there cannot wait for a thread that does
        # not exist yet, so it leaves its signal here and the flush re-raises it when done.
        self.starting = False
        self.deferred_signal: int | None = None

    def run(self, reason: str) -> bool:
        """Start the flush (once per process) and wait for it, bounded; ``True`` when done."""
        with _lock:
            thread = self.thread
            if thread is None:
                handles = [h for h in _handles if _is_live(h)]
                if not handles:
                    return True
                self.starting = True
                try:
                    thread = self._start(handles, reason)
                finally:
                    self.starting = False
                if thread is None:  # ran inline
                    self._raise_deferred()
                    return self.ok
        thread.join(self.timeout_s + _JOIN_MARGIN_S)
        self._raise_deferred()
        if thread.is_alive():
            _log.warning(
                "galileo-otel: %s: delivery still running after %.1f s; leaving the rest to "
                "the spool",
                reason,
                self.timeout_s,
            )
            return False
        return self.ok

    def _start(self, handles: list[GalileoHandle], reason: str) -> threading.Thread | None:
        """Start the flush thread; ``None`` when it ran inline (no threads this late)."""
        self.timeout_s = max(float(h.settings.exit_timeout) for h in handles)
        thread = threading.Thread(
            target=self._shutdown_all,
            args=(handles, self.timeout_s, reason),
            name="galileo-otel-exit",
            daemon=True,
        )
        try:
            thread.start()
        except RuntimeError:  # no new thread this late in finalization: inline
            self._shutdown_all(handles, self.timeout_s, reason)
            return None
        self.thread = thread
        return thread

    def defer(self, signum: int) -> bool:
        """Keep ``signum`` for the flush being started under us; ``True`` when there is one."""
        if not self.starting or self.pid != os.getpid():
            return False
        self.deferred_signal = signum
        return True

    def _raise_deferred(self) -> None:
        signum, self.deferred_signal = self.deferred_signal, None
        if signum is not None:
            _die_by(signum)

    def _shutdown_all(self, handles: list[GalileoHandle], timeout_s: float, reason: str) -> None:
        deadline = time.monotonic() + timeout_s
        ok = True
        for handle in handles:
            try:
                ok = handle.shutdown(max(0.0, deadline - time.monotonic())) and ok
            except Exception as exc:  # never raise into an ending process
                _log.warning("galileo-otel: %s: shutdown failed: %r", reason, exc)
                ok = False
        if not ok:
            _log.warning(
                "galileo-otel: %s: not everything was confirmed within %.1f s "
                "(GALILEO_EXIT_TIMEOUT); batches already in the spool go with the next process",
                reason,
                timeout_s,
            )
        self.ok = ok


_exit: _ExitFlush | None = None


def exit_flush(reason: str) -> bool:
    """Shut every live handle down within its ``exit_timeout``; at most once per process.

    A second call (another way of ending, arriving meanwhile) waits for the first one's flush
    instead of starting another. Never raises.

    Args:
        reason: Says in log lines why the process ends.

    Returns:
        ``True`` when everything was delivered (confirmed, in reliable mode).
    """
    global _exit
    with _lock:
        if _exit is None or _exit.pid != os.getpid():
            _exit = _ExitFlush()
        current = _exit
    try:
        return current.run(reason)
    except Exception as exc:  # pragma: no cover - a bug; never raise into an ending process
        _log.warning("galileo-otel: %s: exit flush failed: %r", reason, exc)
        return False


def _is_live(handle: GalileoHandle) -> bool:
    return bool(handle.enabled) and not handle._closed


def live_handles() -> list[GalileoHandle]:
    """The handles :func:`configure` made in this process that are not shut down."""
    with _lock:
        return [h for h in _handles if _is_live(h)]


def track(handle: GalileoHandle) -> None:
    """Cover ``handle`` at every way this process (or a child of it) ends.

    Called by :func:`~galileo_otel.configure.configure` for each handle it makes; the hooks
    are installed once per process.
    """
    global _installed
    with _lock:
        _handles.add(handle)
        first = not _installed
        _installed = True
    if first:
        # Registered after the pipeline's own exit hook, so it runs first (atexit is LIFO)
        # and its bound, exit_timeout, is the one that holds.
        atexit.register(_at_exit)
        _register_after_fork()
    _connect_celery()
    if handle.settings.handle_sigterm:
        install_sigterm_handler()


# --- interpreter exit ---------------------------------------------------------------------------


def _at_exit() -> None:
    exit_flush("interpreter exit")


# --- forked pool children -----------------------------------------------------------------------


class _ForkHooks:
    """The object multiprocessing's after-fork registry holds (it keeps weak references)."""


_FORK_HOOKS = _ForkHooks()


def _register_after_fork() -> None:
    try:
        from multiprocessing import util
    except ImportError:  # pragma: no cover - a Python without multiprocessing
        return
    # Runs in every child a multiprocessing (or billiard) Process forks, after the child
    # cleared the finalizers it inherited: the place to register the child's own.
    util.register_after_fork(_FORK_HOOKS, _in_forked_child)


def _in_forked_child(_hooks: _ForkHooks) -> None:
    from multiprocessing import util

    # exitpriority >= 0: run by _exit_function's first pass, before it joins child processes.
    util.Finalize(None, exit_flush, args=("pool child exit",), exitpriority=10)
    _connect_celery()


def _connect_celery() -> None:
    """With Celery imported, flush on ``worker_process_shutdown`` (its pool children's end)."""
    global _celery_connected
    if _celery_connected or "celery" not in sys.modules:
        return
    try:
        signals: Any = importlib.import_module("celery.signals")
    except Exception:  # pragma: no cover - a broken Celery install is not ours to report
        return
    with _lock:
        if _celery_connected:
            return
        _celery_connected = True
    signals.worker_process_shutdown.connect(
        _on_celery_child_exit, weak=False, dispatch_uid="galileo-otel-exit-flush"
    )


def _on_celery_child_exit(*_args: Any, **_kwargs: Any) -> None:
    exit_flush("Celery pool child exit")


# --- SIGTERM ------------------------------------------------------------------------------------


def install_sigterm_handler() -> bool:
    """Deliver on SIGTERM, then terminate as by default; ``True`` when our handler is in place.

    Installed only from the main thread, and only when SIGTERM has its default action: a
    handler the app (or its server: gunicorn, uvicorn, Celery) installed is left alone, since
    it ends the process through a normal exit, which the ``atexit`` hook covers.
    """
    if not hasattr(signal, "SIGTERM") or threading.current_thread() is not threading.main_thread():
        return False
    try:
        current = signal.getsignal(signal.SIGTERM)
    except ValueError:  # pragma: no cover - not the main interpreter
        return False
    if current is _on_sigterm:
        return True
    if current != signal.SIG_DFL:
        return False
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # pragma: no cover - not the main interpreter
        return False
    return True


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    current = _exit
    if current is not None and current.defer(signum):
        # We interrupted the main thread while it starts the exit flush: that flush delivers,
        # then ends the process by this signal.
        return
    exit_flush("SIGTERM")
    _die_by(signum)


def _die_by(signum: int) -> None:
    """The default action, as if we had never been there: the process ends by the signal."""
    with contextlib.suppress(ValueError, OSError):
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


# --- flush on demand ----------------------------------------------------------------------------


def force_flush(timeout_s: float | None = None) -> bool:
    """Flush every live handle of this process; ``True`` when all of it is done.

    Args:
        timeout_s: Bound of the whole call; each handle's own default (``export_timeout``)
            when ``None``.
    """
    handles = live_handles()
    deadline = None if timeout_s is None else time.monotonic() + max(0.0, timeout_s)
    ok = True
    for handle in handles:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            ok = handle.force_flush(left) and ok
        except Exception as exc:  # a flush never raises into the app
            _log.warning("galileo-otel: flush failed: %r", exc)
            ok = False
    return ok


async def in_thread(fn: Any, *args: Any) -> Any:
    """Await ``fn(*args)`` run on a thread of its own, so the event loop keeps running.

    Not the loop's default executor: the app may keep it busy, and a flush must not queue
    behind the app's work. If the awaiting task is cancelled, the flush still ends within its
    own bound.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def run() -> None:
        result: Any = None
        error: BaseException | None = None
        try:
            result = fn(*args)
        except BaseException as exc:
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="galileo-otel-aflush", daemon=True).start()
    return await future


async def aforce_flush(timeout_s: float | None = None) -> bool:
    """:func:`force_flush` for asyncio: awaits the flush, never blocks the event loop.

    Args:
        timeout_s: Bound of the flush; each handle's default (``export_timeout``) when ``None``.

    Returns:
        ``True`` when everything queued before the call was delivered.
    """
    return bool(await in_thread(force_flush, timeout_s))
