"""Shared by the session tests: every SQLite session store a test opens is closed after it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from galileo_otel.sessions.store import SQLiteSessionStore


@pytest.fixture(autouse=True)
def _close_sqlite_stores(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests close what they open: every SQLite store made in this process is closed at the end
    (Python 3.13 turns an unclosed connection into a ResourceWarning, an error here)."""
    opened: list[SQLiteSessionStore] = []
    init = SQLiteSessionStore.__init__

    def tracked(self: SQLiteSessionStore, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        opened.append(self)

    monkeypatch.setattr(SQLiteSessionStore, "__init__", tracked)
    yield
    for store in opened:
        store.close()
