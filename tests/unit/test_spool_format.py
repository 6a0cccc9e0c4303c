"""The spool header codec: one version, checked; a header of another version is set aside."""

from __future__ import annotations

from typing import Any

import pytest
from conftest_pipeline import DEST, adopting_pipeline

from galileo_otel.export.spool import dead_in, pending_in
from galileo_otel.export.spool_format import VERSION, BatchHeader, ForeignHeader


def header(**overrides: Any) -> BatchHeader:
    values: dict[str, Any] = {
        "reliable": True,
        "session": {"local_id": "loc-1", "key": "k"},
        "local_id": "loc-1",
        "external_id": "conv-7",
        "placeholder": True,
        "destination": DEST,
        "target": {"project": "p"},
        "origin": "abc",
        "traces": 3,
        "spans": 9,
    }
    values.update(overrides)
    return BatchHeader(**values)


def test_round_trip() -> None:
    made = header()
    stored = made.encode()
    assert stored["v"] == VERSION
    assert BatchHeader.decode(stored) == made


@pytest.mark.parametrize(
    "stored",
    [
        {**header().encode(), "v": VERSION + 1},
        {**header().encode(), "v": None},
        {k: v for k, v in header().encode().items() if k != "v"},
        {**header().encode(), "session": "not an object"},
        {**header().encode(), "traces": "many"},
        ["not", "an", "object"],
    ],
)
def test_foreign_or_malformed_headers_are_refused(stored: Any) -> None:
    with pytest.raises(ForeignHeader):
        BatchHeader.decode(stored)


def test_a_spooled_batch_of_another_version_is_set_aside_not_sent(tmp_path: Any) -> None:
    spool_dir = tmp_path / "spool"
    future = {**header(traces=2).encode(), "v": VERSION + 1, "new_field": {"x": 1}}
    pipeline, client = adopting_pipeline(spool_dir, future, b"[{}, {}]")
    try:
        # adopted, then set aside: a loss in the flush's scope, never a crash or a send
        assert pipeline.force_flush(5.0) is False
        assert pipeline.force_flush(5.0) is True
    finally:
        pipeline.shutdown(2.0)
    assert client.trace_posts() == []
    assert pending_in(spool_dir) == []
    (note,) = dead_in(spool_dir)
    assert "header version" in note["message"]
    stats = pipeline.stats()
    assert stats["traces_adopted"] == 2
    assert stats["dead_lettered.foreign_header"] == 2 == stats["traces_dead_lettered"]
