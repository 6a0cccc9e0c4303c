"""The spool is opened on the spooler thread, never on the thread that builds the pipeline.

Opening SQLite may wait up to its busy timeout (2 s) while another process holds the write
lock; configure() runs on the app's thread and must not wait for that.
"""

from __future__ import annotations

import threading
from typing import Any

from conftest_pipeline import emit, tracer_for
from test_pipeline import make

import galileo_otel.export.spooler as spooler_module


def test_spool_opens_on_the_spooler_thread_and_batches_wait_for_it(
    tmp_path: Any, monkeypatch: Any
) -> None:
    real_open = spooler_module.open_spool
    release = threading.Event()
    opened_on: list[str] = []

    def slow_open(*args: Any, **kwargs: Any) -> Any:
        opened_on.append(threading.current_thread().name)
        release.wait(10)  # another process holding the write lock, say
        return real_open(*args, **kwargs)

    monkeypatch.setattr(spooler_module, "open_spool", slow_open)
    pipeline, client, _ = make(tmp_path)  # builds and starts: returns while the open waits
    try:
        stats = pipeline.stats()
        assert stats["spool_enabled"] is False
        assert stats["spool_reason"].startswith("not open yet")
        emit(tracer_for(pipeline), session="early")  # accepted before the spool is open
        assert pipeline.force_flush(0.2) is False  # its batch waits for the spool
        assert client.trace_posts() == []
        release.set()
        assert pipeline.force_flush(5.0) is True
        assert opened_on == ["galileo-otel-spooler"]
        stats = pipeline.stats()
        assert stats["spool_enabled"] is True and "spool_reason" not in stats
        assert stats["traces_confirmed"] == 1
        assert [c.body["session_external_id"] for c in client.trace_posts()] == ["early"]
    finally:
        release.set()
        pipeline.shutdown(2.0)


def test_unusable_spool_is_reported_once_the_spooler_tried(tmp_path: Any) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the spool directory should be")
    pipeline, client, _ = make(tmp_path, spool_dir=str(blocker))
    try:
        emit(tracer_for(pipeline), session="s")
        assert pipeline.force_flush(5.0) is True  # delivered without a spool
        stats = pipeline.stats()
        assert stats["spool_enabled"] is False
        assert stats["spool_reason"].startswith("unusable")
        assert len(client.trace_posts()) == 1
    finally:
        pipeline.shutdown(2.0)
