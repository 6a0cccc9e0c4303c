"""Shared by the examples: use the Galileo API named by GALILEO_API_URL, or start a local one.

With ``GALILEO_API_URL`` (or ``GALILEO_CONSOLE_URL``) set, the examples talk to that API with
``GALILEO_API_KEY``. Without, they start the local Galileo-compatible server in-process on a
free loopback port (needs ``pip install 'galileo-otel[server]'``) and point the ``GALILEO_*``
variables at it, so every example runs with no account and no network.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

EXAMPLE_API_KEY = "example-key"


@contextmanager
def galileo_target(project: str, log_stream: str = "default") -> Iterator[str]:
    """Yield the API URL to use; GALILEO_PROJECT / GALILEO_LOG_STREAM default to the arguments."""
    os.environ.setdefault("GALILEO_PROJECT", project)
    os.environ.setdefault("GALILEO_LOG_STREAM", log_stream)
    if os.environ.get("GALILEO_API_URL") or os.environ.get("GALILEO_CONSOLE_URL"):
        yield os.environ.get("GALILEO_API_URL") or os.environ["GALILEO_CONSOLE_URL"]
        return
    from galileo_otel.server import serve_in_thread

    with (
        tempfile.TemporaryDirectory(prefix="galileo-example-") as tmp,
        serve_in_thread(db_path=os.path.join(tmp, "galileo.db"), api_key=EXAMPLE_API_KEY) as server,
    ):
        os.environ["GALILEO_API_URL"] = server.url
        os.environ["GALILEO_API_KEY"] = server.api_key or EXAMPLE_API_KEY
        print(
            f"(no GALILEO_API_URL set: started a local Galileo-compatible server at {server.url})"
        )
        try:
            yield server.url
        finally:
            # The server stops with this block: nothing may point at it afterwards.
            del os.environ["GALILEO_API_URL"]


def summary(prefix: str) -> dict[str, int]:
    """Count the sessions of the example's log stream and print one line; return the counts."""
    from galileo_otel.api.client import GalileoClient

    with GalileoClient() as client:
        dest = client.resolve_destination(create=False)
        sessions = list(
            client.iter_sessions(project_id=dest.project_id, log_stream_id=dest.log_stream_id)
        )
    traces = sum(int(s.get("num_traces") or 0) for s in sessions)
    print(
        f"{prefix}: {len(sessions)} sessions, {traces} traces in project "
        f"{os.environ['GALILEO_PROJECT']!r}, log stream {os.environ['GALILEO_LOG_STREAM']!r}"
    )
    return {"sessions": len(sessions), "traces": traces}
