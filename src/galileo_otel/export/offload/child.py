"""The export worker process of ``GALILEO_EXPORT_PROCESS``: ``python -m`` this module.

Rebuilds piped spans and runs the usual in-process ExportPipeline on them, built by the same
``make_pipeline`` as in the app's process; answers flushes, stats and the shutdown; exits on
EOF (the parent is gone or closed the pipe).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
from typing import IO, Any

from galileo_otel.api.suppress import suppressed
from galileo_otel.export.offload.fallback import in_process_pipeline
from galileo_otel.export.offload.protocol import (
    METHOD_ENV,
    MSG_FLUSH,
    MSG_RESOURCE,
    MSG_SHUTDOWN,
    MSG_SPANS,
    MSG_STATS,
    NICE_ENV,
    READY_SEQ,
    SETTINGS_ENV,
    iter_frames,
    write_frame,
)
from galileo_otel.export.record import Rebuilder, make_resource


def main() -> int:
    """Serve the pipe on stdin/stdout until EOF or a shutdown message."""
    # The protocol owns the real stdout; anything printed goes to stderr instead.
    out_fd = os.dup(1)
    os.dup2(2, 1)
    out: IO[bytes] = os.fdopen(out_fd, "wb")
    inp: IO[bytes] = os.fdopen(os.dup(0), "rb", buffering=1 << 20)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    nice = int(os.environ.get(NICE_ENV, "0") or 0)
    if nice and hasattr(os, "nice"):
        # Background work: on a busy machine the app's own process gets the CPU first.
        with contextlib.suppress(OSError):
            os.nice(nice)

    from galileo_otel.settings import GalileoSettings

    data = json.loads(os.environ.get(SETTINGS_ENV, "{}"))
    data["export_process"] = False
    settings = GalileoSettings(**data)
    # The same pipeline as in-process, from the same factory (export_process is off here); its
    # sessions stamp the parent pipeline's logging method when it has one (the gateway's).
    built, tracker = in_process_pipeline(settings, logging_method=os.environ.get(METHOD_ENV))
    if built is None:  # export disabled (the parent never starts us then): nothing to serve
        os._exit(0)
    pipeline = built

    def close_tracker() -> None:
        if tracker is not None:  # after the pipeline's shutdown: it uses the tracker to the end
            with contextlib.suppress(Exception):
                tracker.close()

    # Checkpoints of the replay buffer: settled, without reporting losses (ExportPipeline).
    checkpoint = getattr(pipeline, "checkpoint", pipeline.force_flush)
    # Guards ``out``: the main loop and the flush threads answer on the one pipe.
    out_lock = threading.Lock()

    def reply(seq: int, result: Any) -> None:
        with out_lock:
            try:
                write_frame(out, (seq, result))
            except (OSError, ValueError):
                os._exit(0)  # the parent is gone

    def flush(seq: int, timeout: float, report: bool) -> None:
        # A checkpoint (report=False) only asks whether the child is done with what it got;
        # the losses stay for the app's own next flush to report.
        done = pipeline.force_flush(timeout) if report else checkpoint(timeout)
        reply(seq, bool(done))

    reply(READY_SEQ, True)  # set up: the parent's start() stops waiting
    resources: dict[int, Any] = {}
    span_of = Rebuilder(resources).span_of  # this (reading) thread's own
    submit = pipeline.submit
    for msg in iter_frames(inp):
        tag = msg[0]
        if tag == MSG_SPANS:
            for item in msg[1]:
                try:
                    span = span_of(item)
                except KeyError:  # a resource number never announced: an empty resource
                    resources[item[12]] = make_resource({})
                    span = span_of(item)
                submit(span)
        elif tag == MSG_RESOURCE:
            resources[msg[1]] = make_resource(msg[2])
        elif tag == MSG_FLUSH:
            report = bool(msg[3]) if len(msg) > 3 else True
            threading.Thread(
                target=suppressed(flush), args=(msg[1], msg[2], report), daemon=True
            ).start()
        elif tag == MSG_STATS:
            reply(msg[1], pipeline.stats())
        elif tag == MSG_SHUTDOWN:
            ok = bool(pipeline.shutdown(msg[2]))
            reply(msg[1], {"ok": ok, "stats": pipeline.stats()})
            out.close()
            close_tracker()
            os._exit(0)
    # EOF: the parent is gone (or closed the pipe); flush what is here within the usual bound.
    pipeline.shutdown(settings.export_timeout)
    close_tracker()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
