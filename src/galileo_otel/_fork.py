"""Locks that guard a SQLite connection, held across ``fork()``.

A thread of the parent may be inside SQLite (holding SQLite's own mutexes, or ours) at the
instant another thread forks. The child gets a copy of every lock in that state and nobody to
release it: the child's first statement then waits forever. The cure is the one the standard
library's ``logging`` uses: before the fork, the forking thread takes each registered lock (so no
other thread is mid-statement), after the fork the parent releases them and the child gets new
ones. Waiting is bounded by ``_HOLD_TIMEOUT_S``: a statement waits at most its busy timeout.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["hold_across_fork"]

# Longer than any busy timeout of ours (2 s spool, 5 s session store): a lock still held after
# it belongs to a stuck thread, and the child is better off with a new lock than the fork hung.
_HOLD_TIMEOUT_S = 10.0


class _Held:
    __slots__ = ("__weakref__", "attr", "factory", "owner")

    def __init__(self, owner: Any, attr: str, factory: Callable[[], Any]) -> None:
        self.owner = weakref.ref(owner)
        self.attr = attr
        self.factory = factory


_REGISTRY: list[_Held] = []
# Guards _REGISTRY and _TAKEN; taken first by the forking thread, so no registration races a fork.
_REGISTRY_LOCK = threading.Lock()
_TAKEN: list[Any] = []  # locks the forking thread acquired, released after the fork


def hold_across_fork(
    owner: Any, attr: str = "_lock", factory: Callable[[], Any] = threading.Lock
) -> None:
    """Hold ``owner.<attr>`` across every ``fork()``; a forked child gets ``factory()`` instead."""
    with _REGISTRY_LOCK:
        _REGISTRY[:] = [h for h in _REGISTRY if h.owner() is not None]
        _REGISTRY.append(_Held(owner, attr, factory))


def _before() -> None:
    _REGISTRY_LOCK.acquire()
    for held in _REGISTRY:
        owner = held.owner()
        lock = getattr(owner, held.attr, None) if owner is not None else None
        if lock is not None and lock.acquire(timeout=_HOLD_TIMEOUT_S):
            _TAKEN.append(lock)


def _after_in_parent() -> None:
    for lock in reversed(_TAKEN):
        lock.release()
    _TAKEN.clear()
    _REGISTRY_LOCK.release()


def _after_in_child() -> None:
    global _REGISTRY_LOCK
    _TAKEN.clear()
    for held in _REGISTRY:
        owner = held.owner()
        if owner is not None:
            setattr(owner, held.attr, held.factory())
    _REGISTRY_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX only
    os.register_at_fork(
        before=_before, after_in_parent=_after_in_parent, after_in_child=_after_in_child
    )
