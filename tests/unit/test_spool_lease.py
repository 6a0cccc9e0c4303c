"""The spool's lease is 60 s (docs/concepts/delivery.md): a live owner's batch is not taken before."""

from __future__ import annotations

from pathlib import Path

from galileo_otel.export.spool import LEASE_S, Spool


def test_a_live_owners_batch_is_adopted_only_after_its_60_s_lease(tmp_path: Path) -> None:
    assert LEASE_S == 60.0
    now = [1000.0]
    owner = Spool(tmp_path, origin="o", clock=lambda: now[0])
    other = Spool(tmp_path, origin="o", clock=lambda: now[0])
    try:
        assert owner.write({"traces": 2}, b"[]") is not None
        # same host, owner process alive (it is this one): only the lease can run out
        now[0] = 1000.0 + 59.9
        assert other.adopt() == []
        now[0] = 1000.0 + 60.1
        assert [traces for _, traces in other.adopt()] == [2]
        # a renewal moves the lease on by another 60 s for the new owner
        assert other.renew() == 1
        now[0] = 1000.0 + 60.1 + 59.9
        assert owner.adopt() == []
    finally:
        owner.close()
        other.close()
