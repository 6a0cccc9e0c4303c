"""Run a function in a forked child and get its result back, for tests of fork behaviour.

Importable from unit and integration tests (``tests/`` is on sys.path through tests/conftest.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any


def run_forked(child: Callable[[], Any], timeout_s: float = 20.0) -> Any:
    """Fork, run ``child()`` in the child and return its JSON result (POSIX only).

    The parent waits on the result pipe, not on a clock loop. A child still running after
    ``timeout_s`` dumps every thread's stack (faulthandler) and exits, and the test fails with
    those stacks: a hang names the lock it hangs on.
    """
    import faulthandler
    import select
    import tempfile

    with tempfile.TemporaryFile() as stacks:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: never returns into pytest
            code = 1
            try:
                os.close(read_fd)
                faulthandler.dump_traceback_later(timeout_s, exit=True, file=stacks)
                os.write(write_fd, json.dumps(child()).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write_fd)
        chunks = []
        try:
            while select.select([read_fd], [], [], timeout_s + 10)[0]:
                chunk = os.read(read_fd, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
            else:
                os.kill(pid, 9)
        finally:
            os.close(read_fd)
        _, status = os.waitpid(pid, 0)
        stacks.seek(0)
        dump = stacks.read().decode(errors="replace")
    if status != 0 or not chunks:
        raise AssertionError(f"forked child failed (wait status {status}); its stacks:\n{dump}")
    return json.loads(b"".join(chunks))
