"""Process hooks (interpreter exit, fork) that hold their pipeline weakly.

One helper for the in-process and the worker-process pipelines: a hook calls a method of its
pipeline while the pipeline lives, does nothing once it is collected, and never raises (an exit
or fork hook that raises would disturb the app).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable

__all__ = ["weak_call"]


def weak_call(method: Callable[[], object]) -> Callable[[], None]:
    """A hook calling the bound ``method`` while its object is alive; it never raises."""
    ref = weakref.WeakMethod(method)

    def call() -> None:
        bound = ref()
        if bound is not None:
            with contextlib.suppress(Exception):
                bound()

    return call
