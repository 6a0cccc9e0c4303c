"""Stand-ins shared by the session-store tests (unit and Redis integration).

Importable from unit and integration tests (``tests/`` is on sys.path through tests/conftest.py).
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any


class CountingCreate:
    """Thread-safe Create Session stand-in that counts calls; a short pause widens the race."""

    def __init__(self, pause_s: float = 0.02) -> None:
        self.lock = threading.Lock()
        self.calls: list[dict[str, Any]] = []
        self.pause_s = pause_s

    def __call__(self, payload: dict[str, Any]) -> str:
        with self.lock:
            self.calls.append(payload)
        time.sleep(self.pause_s)  # widens the race; the assertions hold whatever the timing
        return str(uuid.uuid4())
