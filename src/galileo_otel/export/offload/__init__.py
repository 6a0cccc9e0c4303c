"""The export worker process (``GALILEO_EXPORT_PROCESS``): the same pipeline, in a child.

The parent (the app's process) is transport and replay only; everything else runs in the
child, through the same ``make_pipeline`` as in-process::

    protocol.py  the launch (command, environment) and the wire: frames, tags, one reader/writer
    replay.py    ReplayBuffer: frames the child has not confirmed, and when to ask for a checkpoint
    requests.py  Requests: flush / stats / shutdown waiting for the child's answer
    fallback.py  Fallback: the in-process pipeline used when no child keeps running
    parent.py    OffloadPipeline: the app's face; hand-off, a pipe-writer thread, restarts
    child.py     the child's main (``python -m galileo_otel.export.offload.child``)

Each of ReplayBuffer, Requests and the counters owns its lock; the parent's own fields belong to
its pipe-writer thread (or, set once, to the reader thread: the child's ready and dead flags).
"""

from __future__ import annotations

from galileo_otel.export.offload.parent import MAX_RESTARTS, OffloadPipeline
from galileo_otel.export.offload.protocol import (
    MSG_FLUSH,
    MSG_RESOURCE,
    MSG_SHUTDOWN,
    MSG_SPANS,
    MSG_STATS,
    NICE_ENV,
    SETTINGS_ENV,
    extract_span,
    iter_frames,
    read_frame,
    settings_env,
    worker_command,
    write_frame,
    write_raw,
)
from galileo_otel.export.offload.replay import ReplayBuffer
from galileo_otel.export.record import OffloadedSpan, make_resource, rebuild_span

__all__ = [
    "MAX_RESTARTS",
    "MSG_FLUSH",
    "MSG_RESOURCE",
    "MSG_SHUTDOWN",
    "MSG_SPANS",
    "MSG_STATS",
    "NICE_ENV",
    "SETTINGS_ENV",
    "OffloadPipeline",
    "OffloadedSpan",
    "ReplayBuffer",
    "extract_span",
    "iter_frames",
    "make_resource",
    "read_frame",
    "rebuild_span",
    "settings_env",
    "worker_command",
    "write_frame",
    "write_raw",
]
