"""The spool on disk: private whatever the umask, bounded in bytes (database, WAL, WAL index)."""

from __future__ import annotations

import logging
import os
import random
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from galileo_otel.export.spool import DB_NAME, DISK_TOLERANCE_BYTES, Spool, key_fingerprint


@pytest.fixture
def opened() -> Iterator[list[Spool]]:
    spools: list[Spool] = []
    yield spools
    for spool in spools:
        spool.close()


@pytest.fixture
def umask() -> Iterator[Any]:
    """Set the process umask for one test; the old one comes back after it."""
    old = os.umask(0o022)
    os.umask(old)

    def set_umask(mask: int) -> None:
        os.umask(mask)

    yield set_umask
    os.umask(old)


def make(path: Path, opened: list[Spool], **kwargs: Any) -> Spool:
    kwargs.setdefault("origin", key_fingerprint("k"))
    spool = Spool(path, **kwargs)
    opened.append(spool)
    return spool


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def files(directory: Path) -> list[Path]:
    return [directory / DB_NAME, directory / f"{DB_NAME}-wal", directory / f"{DB_NAME}-shm"]


def disk_bytes(directory: Path) -> int:
    """Every byte of every file in the spool directory, whatever it is."""
    return sum(p.stat().st_size for p in directory.iterdir() if p.is_file())


# --- privacy ------------------------------------------------------------------------------------
@pytest.mark.parametrize("mask", [0o022, 0o000])
def test_a_new_spool_is_private_whatever_the_umask(
    tmp_path: Path, opened: list[Spool], umask: Any, mask: int, caplog: pytest.LogCaptureFixture
) -> None:
    umask(mask)
    spool = make(tmp_path / "cache" / "spool", opened)
    entry = spool.write({"traces": 1}, b"[1]")  # the WAL and its index exist once written
    assert entry is not None
    spool.dead_letter(entry, {"why": "test"})
    assert mode(tmp_path / "cache" / "spool") == 0o700
    for path in files(tmp_path / "cache" / "spool"):
        assert path.exists() and mode(path) == 0o600, path
    assert "readable by other users" not in caplog.text  # nothing was found open


def test_a_spool_found_open_to_others_is_tightened_with_one_line(
    tmp_path: Path, opened: list[Spool], umask: Any, caplog: pytest.LogCaptureFixture
) -> None:
    umask(0o000)
    directory = tmp_path / "spool"
    first = make(directory, opened)
    assert first.write({"traces": 1}, b"[1]") is not None
    first.close()
    os.chmod(directory, 0o755)  # as an earlier release left it
    os.chmod(directory / DB_NAME, 0o644)  # (the WAL files go with the last connection)
    with caplog.at_level(logging.WARNING, logger="galileo_otel.export.spool"):
        again = make(directory, opened)
        assert len(again.pending_names()) == 1  # nothing lost by tightening
    lines = [r for r in caplog.records if "readable by other users" in r.getMessage()]
    assert len(lines) == 1
    assert str(directory) in lines[0].getMessage() and "drwxr-xr-x" in lines[0].getMessage()
    assert mode(directory) == 0o700
    for path in files(directory):
        if path.exists():
            assert mode(path) == 0o600, path


def test_a_set_aside_database_is_private_too(
    tmp_path: Path, opened: list[Spool], umask: Any
) -> None:
    umask(0o000)
    directory = tmp_path / "spool"
    directory.mkdir(mode=0o700)
    (directory / DB_NAME).write_bytes(b"not a database, but maybe someone's prompts" * 100)
    os.chmod(directory / DB_NAME, 0o666)
    spool = make(directory, opened)
    (aside,) = spool.set_aside
    assert mode(aside) == 0o600
    assert mode(directory / DB_NAME) == 0o600


# --- the disk cap -------------------------------------------------------------------------------
@pytest.mark.parametrize("cap", [300_000, 24_000_000])
def test_the_directory_stays_within_the_cap_through_an_outage(
    tmp_path: Path, opened: list[Spool], cap: int
) -> None:
    """Nothing is sent (an outage): batches pile up, some fail permanently (dead letters)."""
    directory = tmp_path / "spool"
    spool = make(directory, opened, max_bytes=cap, dead_max_bytes=cap // 4)
    rng = random.Random(17)  # incompressible payloads of mixed sizes, fixed for the test
    peak = refused = written = 0
    kept = []
    for i in range(2_000):
        entry = spool.write({"traces": 2}, rng.randbytes(rng.randint(500, 60_000)))
        if entry is None:
            refused += 1
        else:
            written += 1
            if i % 7 == 0:
                spool.dead_letter(entry, {"status_code": 422, "i": i})
            else:
                kept.append(entry)
        peak = max(peak, disk_bytes(directory))
        if refused > 200:
            break
    usage = spool.usage()
    assert written > 5 and refused > 200  # it filled up, and then refused: never waited
    assert peak <= cap + DISK_TOLERANCE_BYTES, (peak, cap)
    assert usage["bytes"] <= cap  # the payloads alone stay under the cap itself
    assert usage["dead_batches"] > 0
    # The backlog is sent after the outage: the WAL is truncated and the pages given back.
    for entry in kept:
        entry.delete()
    assert spool.pending_names() == []
    wal = directory / f"{DB_NAME}-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    assert (directory / DB_NAME).stat().st_size <= usage["dead_bytes"] + 512 * 1024


def test_dead_letters_make_room_on_disk_and_every_drop_is_counted(
    tmp_path: Path, opened: list[Spool]
) -> None:
    cap = 300_000
    spool = make(tmp_path, opened, max_bytes=cap, dead_max_bytes=cap)
    for i in range(30):
        spool.dead_letter_new({"traces": 1}, os.urandom(40_000), {"i": i})
        assert disk_bytes(tmp_path) <= cap + DISK_TOLERANCE_BYTES
    usage = spool.usage()
    assert usage["dead_evicted"] > 0 and usage["dead_batches"] + usage["dead_evicted"] == 30
    assert [e["i"] for e in spool.dead_errors()][-1] == 29  # the newest are kept
    where = spool.dead_letter_new({"traces": 1}, os.urandom(cap + 1), {"i": "huge"})
    assert where.startswith("dropped") and spool.usage()["dead_dropped"] == 1


def test_the_running_totals_match_the_rows_and_seed_from_an_older_spool(
    tmp_path: Path, opened: list[Spool]
) -> None:
    spool = make(tmp_path, opened)
    entries = [spool.write({"traces": 1}, b"x" * n) for n in (10, 200, 3_000, 40_000)]
    assert all(e is not None for e in entries)
    entries[1].delete()  # type: ignore[union-attr]
    spool.dead_letter(entries[2], {"why": "422"})  # type: ignore[arg-type]
    spool.close()

    def totals(conn: sqlite3.Connection) -> tuple[int, int, int, int]:
        meta = dict(conn.execute("SELECT name, value FROM meta").fetchall())
        (rows,) = conn.execute("SELECT COALESCE(SUM(bytes), 0) FROM batch").fetchone()
        (dead,) = conn.execute("SELECT COALESCE(SUM(bytes), 0) FROM dead").fetchone()
        return meta["batch_bytes"], rows, meta["dead_bytes"], dead

    conn = sqlite3.connect(tmp_path / DB_NAME)
    batch_total, batch_rows, dead_total, dead_rows = totals(conn)
    assert (batch_total, dead_total) == (batch_rows, dead_rows) and batch_rows > 40_000
    # A spool made before the totals existed: no meta rows.
    conn.execute("DELETE FROM meta")
    conn.commit()
    conn.close()
    again = make(tmp_path, opened)
    assert again.write({"traces": 1}, b"y" * 500) is not None
    # A writer that does not keep the totals (an earlier release sharing the spool): renew()
    # puts them right.
    conn = sqlite3.connect(tmp_path / DB_NAME)
    try:
        assert totals(conn)[0] == totals(conn)[1]
        conn.execute(
            "INSERT INTO batch (created, owner, lease, origin, traces, bytes, header, payload)"
            " VALUES (0, 'old:1:x', 0, NULL, 1, 777, '{}', x'00')"
        )
        conn.commit()
        assert totals(conn)[0] != totals(conn)[1]
        again.renew()
        batch_total, batch_rows, dead_total, dead_rows = totals(conn)
    finally:
        conn.close()
    assert (batch_total, dead_total) == (batch_rows, dead_rows)


def test_a_write_never_sums_over_the_rows(tmp_path: Path, opened: list[Spool]) -> None:
    spool = make(tmp_path, opened)
    for _ in range(20):
        assert spool.write({"traces": 1}, b"z" * 1000) is not None
    statements: list[str] = []
    spool._run(lambda c, _o: c.set_trace_callback(statements.append))
    try:
        assert spool.write({"traces": 1}, b"z" * 1000) is not None
    finally:
        spool._run(lambda c, _o: c.set_trace_callback(None))
    assert statements and not [s for s in statements if "SUM(" in s.upper()]
