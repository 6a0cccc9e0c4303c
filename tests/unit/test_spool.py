"""The SQLite spool: ownership, adoption, bounds, bad files, API-key separation (no sockets)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from galileo_otel.export.spool import (
    DB_NAME,
    LEASE_S,
    Spool,
    dead_in,
    key_fingerprint,
    open_spool,
    pending_in,
)


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def opened() -> Iterator[list[Spool]]:
    spools: list[Spool] = []
    yield spools
    for spool in spools:
        spool.close()


def make(path: Path, opened: list[Spool], **kwargs: Any) -> Spool:
    kwargs.setdefault("origin", key_fingerprint("k"))
    spool = Spool(path, **kwargs)
    opened.append(spool)
    return spool


def header(traces: int = 1) -> dict[str, Any]:
    return {"traces": traces, "session": {"local_id": "x"}}


def test_write_claim_delete_roundtrip(tmp_path: Path, opened: list[Spool]) -> None:
    spool = make(tmp_path, opened)
    entry = spool.write(header(3), b"[1,2,3]")
    assert entry is not None and entry.payload() == b"[1,2,3]"
    entry.release()
    (again,) = spool.claim_oldest(10)
    assert again.header == header(3) and again.payload() == b"[1,2,3]"
    assert spool.claim_oldest(10, skip={again.name}) == []
    again.delete()
    assert spool.pending_names() == []


def test_a_live_owners_rows_are_never_adopted(tmp_path: Path, opened: list[Spool]) -> None:
    mine = make(tmp_path, opened)
    theirs = make(tmp_path, opened)  # same pid, another owner: alive, lease fresh
    entry = mine.write(header(), b"[]")
    assert entry is not None
    assert theirs.adopt() == []
    assert theirs.claim_oldest(10) == []
    assert len(mine.claim_oldest(10)) == 1


def test_expired_lease_is_adopted_once(tmp_path: Path, opened: list[Spool]) -> None:
    clock = Clock()
    mine = make(tmp_path, opened, clock=clock)
    a = make(tmp_path, opened, clock=clock)
    b = make(tmp_path, opened, clock=clock)
    assert mine.write(header(2), b"[]") is not None
    clock.now += LEASE_S - 1
    assert a.adopt() == []  # still leased
    mine.renew()
    clock.now += LEASE_S - 1
    assert a.adopt() == []  # the renewal kept it
    clock.now += 2
    adopted = a.adopt()
    assert [t for _, t in adopted] == [2]
    assert b.adopt() == []  # moved in one compare-and-set: only one adopter wins
    assert mine.claim_oldest(10) == []  # it is no longer ours
    assert len(a.claim_oldest(10)) == 1


def test_disowned_rows_are_adopted_at_once(tmp_path: Path, opened: list[Spool]) -> None:
    mine = make(tmp_path, opened)
    other = make(tmp_path, opened)
    assert mine.write(header(), b"[]") is not None
    assert mine.disown() == 1
    assert len(other.adopt()) == 1


def test_rows_of_a_dead_process_are_adopted(tmp_path: Path, opened: list[Spool]) -> None:
    code = (
        "import sys; from galileo_otel.export.spool import Spool, key_fingerprint\n"
        "s = Spool(sys.argv[1], origin=key_fingerprint('k'))\n"
        "for i in range(3): s.write({'traces': 1}, b'[]')\n"
        "s.close()\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, timeout=60)
    spool = make(tmp_path, opened)
    assert len(spool.adopt()) == 3  # its pid is gone: no need to wait out the lease


def test_other_api_keys_rows_are_skipped_and_counted(tmp_path: Path, opened: list[Spool]) -> None:
    theirs = make(tmp_path, opened, origin=key_fingerprint("other"))
    assert theirs.write(header(4), b"[]") is not None
    theirs.disown()
    mine = make(tmp_path, opened)
    assert mine.adopt() == []
    usage = mine.usage()
    assert usage["foreign_batches"] == 1 and usage["foreign_traces"] == 4
    # the key itself is never stored
    assert b"other" not in (tmp_path / DB_NAME).read_bytes()


def test_a_full_spool_refuses_new_batches(tmp_path: Path, opened: list[Spool]) -> None:
    spool = make(tmp_path, opened, max_bytes=600)
    assert spool.write(header(), b"x" * 400) is not None
    assert spool.write(header(), b"x" * 400) is None  # would pass 600 bytes
    assert len(spool.pending_names()) == 1
    assert spool.usage()["bytes"] <= 600


def test_dead_letters_are_bounded_oldest_first(tmp_path: Path, opened: list[Spool]) -> None:
    spool = make(tmp_path, opened, dead_max_bytes=1000)
    for i in range(5):
        entry = spool.write(header(), b"y" * 300)
        assert entry is not None
        spool.dead_letter(entry, {"n": i})
    assert spool.pending_names() == []
    assert [e["n"] for e in spool.dead_errors()] == [3, 4]  # the newest kept
    assert spool.usage()["dead_bytes"] <= 1000


def test_an_unreadable_row_is_set_aside(tmp_path: Path, opened: list[Spool]) -> None:
    spool = make(tmp_path, opened)
    entry = spool.write(header(), b"[]")
    assert entry is not None
    spool._run(lambda c, _o: c.execute("UPDATE batch SET header = '{broken'"), write=True)
    assert spool.claim_oldest(10) == []
    assert spool.pending_names() == []
    assert spool.dead_errors()[0]["reason"] == "unreadable"


@pytest.mark.parametrize("kind", ["fifo", "dir", "symlink", "garbage", "wal-fifo"])
def test_a_bad_database_path_is_set_aside_never_blocks(
    tmp_path: Path, opened: list[Spool], kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / DB_NAME
    if kind == "fifo":
        os.mkfifo(db)
    elif kind == "wal-fifo":
        os.mkfifo(tmp_path / f"{DB_NAME}-wal")
    elif kind == "dir":
        db.mkdir()
    elif kind == "symlink":
        (tmp_path / "elsewhere").write_bytes(b"")
        db.symlink_to(tmp_path / "elsewhere")
    else:
        db.write_bytes(b"this is not a database at all" * 100)
    (tmp_path / "00000-1-1.batch").write_text("an older version's file: ignored")
    with caplog.at_level(logging.WARNING):
        spool = make(tmp_path, opened)
        assert spool.write(header(), b"[]") is not None
    assert len(spool.set_aside) == 1
    assert sum("set aside" in r.getMessage() for r in caplog.records) == 1
    assert len(spool.pending_names()) == 1
    assert (tmp_path / "00000-1-1.batch").exists()


def test_an_unusable_directory_is_reported_not_raised(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    spool, reason = open_spool(
        blocked / "spool", origin="o", max_bytes=10, dead_max_bytes=10, why_off="off"
    )
    assert spool is None and reason.startswith("unusable")
    assert open_spool(None, origin="o", max_bytes=1, dead_max_bytes=1, why_off="off") == (
        None,
        "off",
    )


def test_session_notes_and_helpers(tmp_path: Path, opened: list[Spool]) -> None:
    spool = make(tmp_path, opened)
    spool.note_session("local", "galileo")
    assert spool.known_session("local") == "galileo"
    assert spool.known_session("other") is None
    entry = spool.write(header(), b"[]")
    assert entry is not None
    spool.dead_letter_new(header(), b"[]", {"why": "test"})
    assert len(pending_in(tmp_path)) == 1
    assert dead_in(tmp_path) == [{"why": "test"}]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_owns_nothing_of_its_parent(tmp_path: Path, opened: list[Spool]) -> None:
    spool = make(tmp_path, opened)
    assert spool.write(header(), b"[]") is not None
    parent_owner = spool.owner
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            ok = spool.owner != parent_owner and spool.claim_oldest(10) == []
            ok = ok and spool.adopt() == []  # the parent is alive: nothing to adopt
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.close(read)
    os.waitpid(pid, 0)
    assert answer == b"1"
    assert len(spool.claim_oldest(10)) == 1  # the parent's connection still works


def test_disk_space_of_sent_batches_is_given_back(tmp_path: Path, opened: list[Spool]) -> None:
    spool = make(tmp_path, opened)
    entries = [spool.write(header(), b"z" * 100_000) for _ in range(20)]
    spool.compact()
    full = (tmp_path / DB_NAME).stat().st_size
    for entry in entries:
        assert entry is not None
        entry.delete()
    spool.compact()
    assert (tmp_path / DB_NAME).stat().st_size < full / 4
    assert not (tmp_path / f"{DB_NAME}-wal").exists() or (
        (tmp_path / f"{DB_NAME}-wal").stat().st_size < 1_000_000
    )


def test_a_disowned_row_does_not_free_its_owners_leased_rows(
    tmp_path: Path, opened: list[Spool]
) -> None:
    mine = make(tmp_path, opened)
    other = make(tmp_path, opened)
    free = mine.write(header(), b"[]")
    kept = mine.write(header(), b"[]")
    assert kept is not None and free is not None
    mine.disown(keep={kept.name})  # shutdown while a stuck sender still holds `kept`
    assert [name for name, _ in other.adopt()] == [free.name]


def test_a_new_spool_uses_big_pages_and_an_old_one_keeps_its_own(
    tmp_path: Path, opened: list[Spool]
) -> None:
    import sqlite3

    new = make(tmp_path / "new", opened)
    assert new._run(lambda c, _o: c.execute("PRAGMA page_size").fetchone()[0]) == 16384
    # Freed pages are not zero-filled (2 = FAST), whatever SQLite was built with.
    assert new._run(lambda c, _o: c.execute("PRAGMA secure_delete").fetchone()[0]) == 2
    # A spool made by an earlier release (4 KiB pages, WAL) is used as it is.
    old_dir = tmp_path / "old"
    old_dir.mkdir()
    conn = sqlite3.connect(old_dir / DB_NAME)
    conn.execute("PRAGMA page_size=4096")
    conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE unrelated (x)")
    conn.close()
    old = make(old_dir, opened)
    assert old._run(lambda c, _o: c.execute("PRAGMA page_size").fetchone()[0]) == 4096
    entry = old.write(header(2), b"y" * 50_000)
    assert entry is not None
    entry.release()
    (again,) = old.claim_oldest(10)
    assert again.payload() == b"y" * 50_000
    again.delete()
    assert old.claim_oldest(10) == []


def test_deletes_keep_the_running_total_exact(tmp_path: Path, opened: list[Spool]) -> None:
    # The byte total that bounds the spool moves with each delete, once per row.
    spool = make(tmp_path, opened, max_bytes=1000)
    first = spool.write(header(), b"x" * 400)
    second = spool.write(header(), b"y" * 400)
    assert first is not None and second is not None
    assert spool.write(header(), b"z" * 400) is None  # full
    first.delete()
    first.delete()  # a row already gone frees nothing twice
    third = spool.write(header(), b"z" * 400)
    assert third is not None  # the room of exactly one batch came back
    assert spool.write(header(), b"w" * 400) is None
    spool.dead_letter(second, {"status": 422})
    third.delete()
    assert spool.usage()["bytes"] == 0 and spool.pending_names() == []
    assert len(spool.dead_names()) == 1
    assert spool.write(header(), b"v" * 400) is not None
