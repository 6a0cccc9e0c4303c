"""A fork while another thread is inside SQLite leaves the child a working spool and store.

``galileo_otel._fork`` holds each SQLite-guarding lock across ``fork()``. Without it, a fork
that lands while a background thread holds the lock (mid-statement) gives the child a lock
held forever, and the child's first spool or session-store call hangs (seen in CI as "forked
child did not finish").
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from forking import run_forked
from galileo_otel.export.spool import Spool
from galileo_otel.sessions.store import SQLiteSessionStore

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX only")


def fork_while_held(lock: Any, child: Callable[[], Any]) -> Any:
    """Fork while another thread holds ``lock``; that thread lets go shortly after."""
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with lock:
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder, daemon=True)
    thread.start()
    assert held.wait(10)
    # Let go a moment after the fork began: the fork must wait for it, not copy it held.
    timer = threading.Timer(0.05, release.set)
    timer.start()
    try:
        return run_forked(child, timeout_s=15)
    finally:
        release.set()
        timer.cancel()
        thread.join(10)


def test_child_gets_a_usable_spool_when_forked_mid_statement(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    try:

        def child() -> Any:
            names = spool.pending_names()
            spool.close()
            return names

        assert fork_while_held(spool._lock, child) == []
        # the parent's lock was released after the fork
        assert spool._lock.acquire(timeout=1)
        spool._lock.release()
    finally:
        spool.close()


def test_child_gets_a_usable_session_store_when_forked_mid_statement(tmp_path: Path) -> None:
    store = SQLiteSessionStore(tmp_path / "sessions.sqlite3")
    try:

        def child() -> Any:
            found = store.latest("nobody")
            store.close()
            return found

        assert fork_while_held(store._lock, child) is None
    finally:
        store.close()
