"""Spool: one file per batch, claims by flock, crash recovery, dead letters (POSIX)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from galileo_otel.export.spool import Spool

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock claims are POSIX")


def test_write_then_claim_roundtrip(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    entry = spool.write({"traces": 2}, b'[{"id":1},{"id":2}]')
    assert entry.claimed and entry.name.endswith(".batch")
    assert spool.pending_names() == [entry.name]
    # held by the writer: nobody else (not even this process through another open) can claim it
    assert spool.claim(entry.name) is None
    assert Spool(tmp_path).claim_oldest(10) == []
    entry.release()
    again = Spool(tmp_path).claim(entry.name)
    assert again is not None
    assert again.header == {"traces": 2}
    assert again.payload() == b'[{"id":1},{"id":2}]'
    again.delete()
    assert spool.pending_names() == []


def test_claim_oldest_is_ordered_and_skips_claimed(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    entries = [spool.write({"n": i}, b"[]") for i in range(5)]
    for e in entries:
        e.release()
    first = spool.claim_oldest(2)
    assert [e.header["n"] for e in first] == [0, 1]
    second = spool.claim_oldest(10)
    assert [e.header["n"] for e in second] == [2, 3, 4]
    assert spool.claim_oldest(10, skip=set()) == []


def test_claim_after_delete_or_dead_letter_fails(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    entry = spool.write({}, b"[]")
    name = entry.name
    entry.delete()
    assert spool.claim(name) is None
    other = spool.write({"x": 1}, b"[]")
    target = spool.dead_letter(other, {"status_code": 422, "message": "bad"})
    assert target.parent == spool.dead_path
    assert spool.pending_names() == []
    assert spool.dead_names() == [other.name]
    note = json.loads((spool.dead_path / (other.name + ".error.json")).read_text())
    assert note["status_code"] == 422
    assert spool.claim(other.name) is None


def test_unreadable_file_is_set_aside(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    (tmp_path / "00000000000000000001-1-0.batch").write_bytes(b"not json\nxx")
    assert spool.claim_oldest(5) == []
    assert spool.dead_names() == ["00000000000000000001-1-0.batch"]


def test_session_notes(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    assert spool.known_session("local-1") is None
    spool.note_session("local-1", "galileo-1")
    assert Spool(tmp_path).known_session("local-1") == "galileo-1"


def test_cleanup_removes_stale_temp_files_only(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    stale = tmp_path / ".tmp-dead-writer.batch"
    stale.write_bytes(b"half")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    fresh = tmp_path / ".tmp-live-writer.batch"
    fresh.write_bytes(b"half")
    kept = spool.write({}, b"[]")
    kept.release()
    spool.cleanup()
    assert not stale.exists()
    assert fresh.exists()
    assert spool.pending_names() == [kept.name]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_dead_claimers_batches_become_claimable(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    entry = spool.write({"n": 1}, b"[]")
    entry.release()
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: claim it and die without releasing
        try:
            got = Spool(tmp_path).claim(entry.name)
            os.write(ready_w, b"1" if got else b"0")
            time.sleep(30)
        finally:
            os._exit(0)
    assert os.read(ready_r, 1) == b"1"
    assert spool.claim(entry.name) is None  # held by the live child
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    again = spool.claim(entry.name)  # the kernel dropped the dead child's lock
    assert again is not None and again.header == {"n": 1}
    again.release()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_processes_racing_claim_each_batch_once(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    for i in range(60):
        spool.write({"n": i}, b"[]").release()
    out_dir = tmp_path / "claims"
    out_dir.mkdir()
    pids = []
    for worker in range(3):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                mine = Spool(tmp_path)
                got = []
                while True:
                    batch = mine.claim_oldest(1)
                    if not batch:
                        if not mine.pending_names():
                            break
                        continue
                    got.append(batch[0].header["n"])
                    batch[0].delete()
                (out_dir / str(worker)).write_text(json.dumps(got))
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    for pid in pids:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                assert status == 0
                break
            time.sleep(0.01)
        else:
            os.kill(pid, 9)
            pytest.fail("claimer did not finish")
    claimed = [n for f in out_dir.iterdir() for n in json.loads(f.read_text())]
    assert sorted(claimed) == list(range(60))
