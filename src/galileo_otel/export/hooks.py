"""Process hooks (interpreter exit, fork) that hold their pipeline weakly.

One helper for the in-process and the worker-process pipelines: a hook calls a method of its
pipeline while the pipeline lives, does nothing once it is collected, and never raises (an exit
or fork hook that raises would disturb the app). The process-wide hooks of
:mod:`galileo_otel.lifecycle` (every ``configure()`` handle, SIGTERM, pool children) are
registered after a pipeline's own, so they run first (``atexit`` is LIFO).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import weakref
from collections.abc import Callable

__all__ = ["ProcessHooks", "weak_call"]


def weak_call(method: Callable[[], object]) -> Callable[[], None]:
    """A hook calling the bound ``method`` while its object is alive; it never raises."""
    ref = weakref.WeakMethod(method)

    def call() -> None:
        bound = ref()
        if bound is not None:
            with contextlib.suppress(Exception):
                bound()

    return call


class ProcessHooks:
    """An object's interpreter-exit and after-fork hooks, each holding the object weakly.

    Args:
        at_exit: Bound method run at interpreter exit (until :meth:`cancel_exit`).
        after_fork_in_child: Bound method run in a forked child (POSIX).
        exit_hook: Register ``at_exit`` at all (``shutdown_at_exit``).
    """

    def __init__(
        self,
        at_exit: Callable[[], object],
        after_fork_in_child: Callable[[], object],
        *,
        exit_hook: bool = True,
    ) -> None:
        self._exit: Callable[[], None] | None = None
        if exit_hook:
            self._exit = weak_call(at_exit)
            atexit.register(self._exit)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=weak_call(after_fork_in_child))

    def cancel_exit(self) -> None:
        """The object is shut down: its exit hook goes (a fork hook is harmless once collected)."""
        hook, self._exit = self._exit, None
        if hook is not None:
            with contextlib.suppress(ValueError):
                atexit.unregister(hook)
