"""How the app process and its export worker process talk: the launch, the frames, the tags.

The parent starts the child with :func:`worker_command` and :func:`settings_env`, then writes
frames to its stdin and reads answers from its stdout. A frame is a 4-byte little-endian length
and a ``marshal`` payload (builtins only: spans travel as the records of ``record.py``). This
module is the one reader and writer of frames, for both sides.

Parent -> child frames are tuples whose first item is a tag:

* ``(MSG_RESOURCE, rid, attributes)``: a resource's attributes, before the first span naming it;
* ``(MSG_SPANS, [record, ...])``: finished spans;
* ``(MSG_FLUSH, seq, timeout_s, report)``: flush; ``report=False`` is a checkpoint of the
  replay buffer, which settles without reporting losses (those stay for the app's own flush);
* ``(MSG_STATS, seq, timeout_s)``: the child's ``stats()``;
* ``(MSG_SHUTDOWN, seq, timeout_s)``: shut down, answer ``{"ok": bool, "stats": {...}}``, exit.

Child -> parent frames are ``(seq, result)``; ``seq`` 0 says the child is set up.
"""

from __future__ import annotations

import json
import marshal
import os
import struct
import sys
from collections.abc import Iterator
from typing import IO, Any

from galileo_otel.export.sdk_span import span_record
from galileo_otel.settings import GalileoSettings

__all__ = [
    "CHILD_MODULE",
    "METHOD_ENV",
    "MSG_FLUSH",
    "MSG_RESOURCE",
    "MSG_SHUTDOWN",
    "MSG_SPANS",
    "MSG_STATS",
    "NICE_ENV",
    "READY_SEQ",
    "SETTINGS_ENV",
    "decode",
    "encode",
    "encode_spans",
    "extract_span",
    "iter_frames",
    "read_frame",
    "settings_env",
    "worker_command",
    "write_frame",
    "write_raw",
]

MSG_RESOURCE = 0
MSG_SPANS = 1
MSG_FLUSH = 2
MSG_SHUTDOWN = 3
MSG_STATS = 4
READY_SEQ = 0  # the child's first answer: set up, frames may come

CHILD_MODULE = "galileo_otel.export.offload.child"
SETTINGS_ENV = "GALILEO_OTEL_WORKER_SETTINGS"
NICE_ENV = "GALILEO_OTEL_WORKER_NICE"
# Who logged the spans (Galileo's logging_method) when not this client: the gateway's pipelines
# of other languages' spans. The child's session tracker stamps it on every session it opens.
METHOD_ENV = "GALILEO_OTEL_WORKER_LOGGING_METHOD"
# The worker's niceness (Unix): it yields the CPU to the app's process on a busy machine.
_CHILD_NICE = "10"
_HEADER = struct.Struct("<I")


# --- frames -----------------------------------------------------------------------------------
def encode(msg: Any) -> bytes:
    """A message as a frame's payload (``marshal``)."""
    return marshal.dumps(msg)


def decode(data: bytes) -> Any:
    """A frame's payload as the message it holds."""
    return marshal.loads(data)


def encode_spans(records: list[tuple[Any, ...]]) -> bytes:
    """A ``MSG_SPANS`` payload; values ``marshal`` cannot write are sent as strings."""
    try:
        return marshal.dumps((MSG_SPANS, records))
    except ValueError:
        return marshal.dumps((MSG_SPANS, [_sanitize(x) for x in records]))


def write_frame(out: IO[bytes], obj: Any) -> None:
    """Write one length-prefixed ``marshal`` frame and flush it."""
    write_raw(out, marshal.dumps(obj))


def write_raw(out: IO[bytes], data: bytes) -> None:
    """Write one frame already encoded (:func:`encode`, :func:`encode_spans`) and flush it."""
    out.write(_HEADER.pack(len(data)) + data)
    out.flush()


def read_frame(inp: IO[bytes]) -> Any:
    """Read one frame; raises ``EOFError`` when the other side is gone."""
    head = _read_exact(inp, _HEADER.size)
    (size,) = _HEADER.unpack(head)
    return marshal.loads(_read_exact(inp, size))


def iter_frames(inp: IO[bytes]) -> Iterator[Any]:
    """Frames from ``inp`` until EOF."""
    while True:
        try:
            yield read_frame(inp)
        except EOFError:
            return


def _read_exact(inp: IO[bytes], n: int) -> bytes:
    buf = inp.read(n)
    if buf is None or len(buf) < n:
        parts = [buf or b""]
        got = len(parts[0])
        while got < n:
            chunk = inp.read(n - got)
            if not chunk:
                raise EOFError("pipe closed")
            parts.append(chunk)
            got += len(chunk)
        buf = b"".join(parts)
    return buf


# --- spans as plain tuples --------------------------------------------------------------------
def extract_span(span: Any, resource_id: int) -> tuple[Any, ...]:
    """An ended span as a tuple of builtins (what ``marshal`` can write)."""
    return span_record(span, resource_id)


def _sanitize(item: tuple[Any, ...]) -> tuple[Any, ...]:
    """Make a record marshal-able: values of unexpected types become strings."""

    def fix(v: Any) -> Any:
        if v is None or type(v) in (str, int, float, bool, bytes):
            return v
        if isinstance(v, (list, tuple)):
            return tuple(fix(x) for x in v)
        return str(v)

    attrs = {str(k): fix(v) for k, v in item[10].items()}
    events = item[11]
    if events:
        events = tuple((str(n), ts, {str(k): fix(v) for k, v in a.items()}) for n, ts, a in events)
    return (*item[:9], fix(item[9]), attrs, events, item[12])


# --- the launch -------------------------------------------------------------------------------
def settings_env(
    settings: GalileoSettings, destination: Any = None, logging_method: str | None = None
) -> dict[str, str]:
    """Environment of the worker process: the settings as JSON, the API key in its own var.

    ``logging_method``, when given, goes in :data:`METHOD_ENV` (the child's sessions carry it).
    """
    data = settings.model_dump(mode="json", exclude={"api_key"})
    data["export_process"] = False
    if destination is not None and getattr(destination, "project_id", None):
        for name in ("project_id", "log_stream_id", "experiment_id"):
            value = getattr(destination, name, None)
            if value:
                data[name] = str(value)
    env = dict(os.environ)
    # Under `opentelemetry-instrument` PYTHONPATH starts with the auto-instrumentation
    # sitecustomize: the worker would run the zero-code set-up again, configure its own export
    # (another worker, without end) and trace itself. The worker is plain: drop that entry.
    if env.get("PYTHONPATH"):
        kept = [
            p
            for p in env["PYTHONPATH"].split(os.pathsep)
            if p and os.path.basename(os.path.normpath(p)) != "auto_instrumentation"
        ]
        if kept:
            env["PYTHONPATH"] = os.pathsep.join(kept)
        else:
            del env["PYTHONPATH"]
    env[SETTINGS_ENV] = json.dumps(data)
    env.pop(METHOD_ENV, None)  # never inherited: only the pipeline that spawns us says
    if logging_method is not None:
        env[METHOD_ENV] = logging_method
    env.setdefault(NICE_ENV, _CHILD_NICE)
    env.pop("GALILEO_API_KEY", None)
    if settings.api_key is not None:
        env["GALILEO_API_KEY"] = settings.api_key.get_secret_value()
    return env


def worker_command() -> list[str]:
    """The export worker process's command line: this interpreter running :mod:`.child`."""
    return [sys.executable, "-m", CHILD_MODULE]
