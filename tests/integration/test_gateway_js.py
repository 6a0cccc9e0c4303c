"""The stock OpenTelemetry JS SDK (tests/js: sdk-trace-base + exporter-trace-otlp-proto, run by
node) sends conversations to a real gateway in front of the local server; a kill -9 while the
server answers 503 and a restart lose nothing.

Without node or the npm packages (``npm ci`` in tests/js) the tests skip, except under CI=true
where they fail: .ci/run installs them."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest_gateway import (
    KEY,
    GatewayProcess,
    galileo_id,
    gateway_env,
    sessions_of,
    stored_ids,
    wait_for,
)
from conftest_redis import require

pytestmark = [pytest.mark.integration, pytest.mark.slow]

JS_DIR = Path(__file__).resolve().parents[1] / "js"
PROJECT = "gw-project"


@pytest.fixture
def node() -> str:
    found = shutil.which("node")
    if found is None:
        require("node", "install Node.js 18+ (Debian package 'nodejs')")
    assert found is not None
    if not (JS_DIR / "node_modules" / "@opentelemetry" / "exporter-trace-otlp-proto").is_dir():
        require("the npm packages of tests/js", "run 'npm ci' in tests/js")
    return found


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Any]:
    from galileo_otel.server import serve_in_thread

    with serve_in_thread(db_path=tmp_path / "galileo.db", api_key=KEY) as running:
        yield running


def _send(node: str, url: str, turns: list[dict[str, str]], **scenario: Any) -> dict[str, Any]:
    done = subprocess.run(
        [node, str(JS_DIR / "send.mjs"), url, json.dumps({"turns": turns, **scenario})],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _expected(acked: list[dict[str, Any]]) -> set[str]:
    return {
        galileo_id(int(s["traceId"], 16), int(s["spanId"], 16), s["parent"] is None) for s in acked
    }


def test_js_sdk_conversations_survive_a_kill_9_while_galileo_fails(
    node: str, server: Any, tmp_path: Path
) -> None:
    server.faults.fail("*", status=503)
    gw = GatewayProcess(gateway_env(server.url, tmp_path), tmp_path / "gw.log").start()
    try:
        turns = [
            {"conversation": "js-a1", "user": "alice"},
            {"conversation": "js-b1", "user": "bob"},
            {"conversation": "js-a1", "user": "alice"},
            {"conversation": "js-a2", "user": "alice"},
        ]
        sent = _send(node, gw.traces_url, turns, headers={"logstream": "js-stream"})
        assert len(sent["acked"]) == 8 and not sent["failed"]
        assert gw.metrics()["galileo_gateway_wal_entries"] == 4  # one request per turn

        gw.kill()
        server.faults.clear()
        gw.start()
        expected = _expected(sent["acked"])
        wait_for(lambda: expected <= stored_ids(server, PROJECT), 60, "every acknowledged span")
    finally:
        gw.kill()
    sessions = {s["external_id"]: s for s in sessions_of(server, PROJECT)}
    assert {k: s["num_traces"] for k, s in sessions.items()} == {"js-a1": 2, "js-b1": 1, "js-a2": 1}
    assert sessions["js-a2"]["previous_session_id"] == sessions["js-a1"]["id"]
    assert sessions["js-b1"]["previous_session_id"] is None
    # Galileo shows the app's client (the resource's telemetry.sdk.language), not the gateway's.
    assert {s["logging_method"] for s in sessions.values()} == {"typescript_client"}
    streams = server.state.store.list_log_streams(sessions["js-a1"]["project_id"])
    assert {s["id"]: s["name"] for s in streams}[sessions["js-a1"]["log_stream_id"]] == "js-stream"
