"""galileo-otel doctor checks the session store: SQLite writable, Redis reachable, not stale."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from galileo_otel import cli
from galileo_otel.errors import ValidationError

pytestmark = pytest.mark.integration


@pytest.fixture
def seeded(local_project: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    server, client, project_id = local_project
    monkeypatch.setenv("GALILEO_API_URL", server.url)
    monkeypatch.setenv("GALILEO_API_KEY", server.api_key)
    monkeypatch.setenv("GALILEO_PROJECT", "test")
    monkeypatch.setenv("GALILEO_LOG_STREAM", "default")
    monkeypatch.setenv("GALILEO_SPOOL_DIR", str(tmp_path / "spool"))
    return client, project_id


def _checks(capsys: pytest.CaptureFixture[str]) -> dict[str, tuple[str, str]]:
    return {
        c["check"]: (c["status"], c["message"])
        for c in json.loads(capsys.readouterr().out)["checks"]
    }


def test_redis_store_reachable_names_its_version(
    seeded: Any, redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GALILEO_SESSION_STORE", redis_url)
    assert cli.main(["doctor", "--json"]) == 0
    status, message = _checks(capsys)["session store"]
    assert status == "ok" and message.startswith(f"{redis_url} answers: ")
    import redis

    with redis.Redis.from_url(redis_url) as client:
        version = client.info("server")["redis_version"]
    assert message.endswith((f"Redis {version}", f"Valkey {version}"))


def test_unreachable_redis_store_is_a_problem(
    seeded: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("redis")
    # Port 1 on loopback: nothing listens there, the connection is refused at once.
    monkeypatch.setenv("GALILEO_SESSION_STORE", "redis://:hunter2@127.0.0.1:1/0")
    assert cli.main(["doctor", "--json", "--timeout", "2"]) == 1
    status, message = _checks(capsys)["session store"]
    assert status == "FAIL"
    assert "cannot reach Redis at redis://:***@127.0.0.1:1/0" in message
    assert "hunter2" not in message


def test_sqlite_store_path_is_checked(
    seeded: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "stores" / "sessions.db"
    monkeypatch.setenv("GALILEO_SESSION_STORE", f"sqlite:///{good}")
    assert cli.main(["doctor", "--json"]) == 0
    assert _checks(capsys)["session store"] == (
        "ok",
        f"SQLite {good}: writable, will be created on first use",
    )
    assert not good.exists()  # the doctor looks, it creates nothing
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("GALILEO_SESSION_STORE", f"sqlite:///{blocker}/sessions.db")
    assert cli.main(["doctor", "--json"]) == 1
    status, message = _checks(capsys)["session store"]
    assert status == "FAIL" and f"{blocker} is not a directory" in message


def test_dead_letters_for_missing_sessions_name_a_stale_store(
    seeded: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from galileo_otel.export.spool import Spool

    client, project_id = seeded
    # The server's own answer to traces for a session it does not have (a wiped database).
    with pytest.raises(ValidationError) as refused:
        client.log_traces([{"input": "hi", "output": "hello"}], session_id=str(uuid.uuid4()))
    error = {"status_code": refused.value.status_code, "message": refused.value.message}
    assert "does not exist" in error["message"]
    with Spool(tmp_path / "spool") as spool:
        spool.dead_letter_new({"project_id": project_id}, b"[]", error)
    store = tmp_path / "sessions.db"
    monkeypatch.setenv("GALILEO_SESSION_STORE", f"sqlite:///{store}")
    assert cli.main(["doctor"]) == 1
    out = capsys.readouterr().out
    (line,) = [
        line for line in out.splitlines() if "refused because their session does not exist" in line
    ]
    assert "[FAIL] session store: 1 batch(es)" in line
    assert f"the session store {store} remembers sessions this server does not have" in line
    assert "galileo-otel doctor --clear-dead" in line
    # Cleared, the dead letters no longer accuse the store.
    assert cli.main(["doctor", "--clear-dead"]) == 0
    assert "does not exist" not in capsys.readouterr().out
