"""One set of counter names and one merge of span counters for both pipelines."""

from __future__ import annotations

import threading

from galileo_otel.export.stats import ALWAYS, Counters, merge_spans, spool_figures


def test_counters_add_from_many_threads_and_snapshot_has_every_key() -> None:
    counters = Counters()

    def count() -> None:
        for _ in range(1000):
            counters.add("traces_sent")
            counters.add("failed.http_503", 2)

    threads = [threading.Thread(target=count) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = counters.snapshot()
    assert snap["traces_sent"] == 4000 == counters.get("traces_sent")
    assert snap["failed.http_503"] == 8000
    assert all(snap[key] == 0 for key in ALWAYS if key != "traces_sent")


def test_merge_adds_the_hand_off_to_an_inner_pipelines_drops() -> None:
    inner = {"dropped.queue_full": 3, "dropped.shutdown": 2, "spans_dropped": 5}
    merge_spans(inner, taken=100, queued=7, dropped_full=4, dropped_closed=1)
    assert inner["spans_queued"] == 107 and inner["queue_size"] == 7
    assert inner["dropped.queue_full"] == 7 and inner["dropped.shutdown"] == 3
    assert inner["spans_dropped"] == 10


def test_spool_figures_name_the_usage() -> None:
    usage = {
        "batches": 2,
        "bytes": 10,
        "dead_batches": 1,
        "dead_bytes": 4,
        "disk_bytes": 4096,
        "dead_dropped": 1,
    }
    assert spool_figures(usage) == {
        "spool_files": 2,
        "spool_bytes": 10,
        "spool_dead_files": 1,
        "spool_dead_bytes": 4,
        "spool_foreign_batches": 0,
        "spool_foreign_traces": 0,
        "spool_disk_bytes": 4096,
        "spool_dead_dropped": 1,
        "spool_dead_evicted": 0,
    }
