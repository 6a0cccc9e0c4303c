"""Session keys survive logfire's default scrubbing (real logfire.configure, real local server)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from galileo_otel.api.filters import text

pytestmark = pytest.mark.integration

APP = Path(__file__).with_name("logfire_app.py")


def test_scrubbed_session_attributes_still_make_their_own_sessions(
    local_project: Any, tmp_path: Path
) -> None:
    pytest.importorskip("logfire", reason="logfire is in the dev extra")
    server, client, _project_id = local_project
    existing = str(client.create_session(name="from the official integration").id)
    done = subprocess.run(
        [sys.executable, str(APP), server.url, server.api_key, str(tmp_path / "spool"), existing],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["flushed"] is True
    sessions = list(client.iter_sessions())
    by_key = {s.get("external_id"): s for s in sessions}
    # without the keys captured at span start, all three would be one "[Scrubbed ...]" session
    assert not any("Scrubbed" in str(s.get("external_id")) for s in sessions)
    assert by_key["conv-1"]["num_traces"] == 2
    assert by_key["conv-2"]["num_traces"] == 1
    assert by_key["conv-2"]["user_metadata"]["user.id"] == "alice"
    assert by_key["conv-3"]["name"] == "Support"  # the name, captured too, not "[Scrubbed ...]"
    (official,) = [s for s in sessions if s["id"] == existing]
    assert official["num_traces"] == 1  # galileo.session.id honoured: nothing new created
    assert len(sessions) == 4
    assert len(list(client.iter_sessions(filters=[text("external_id") == "conv-1"]))) == 1
