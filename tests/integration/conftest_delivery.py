"""Helpers of the delivery tests (in-process and worker-process pipelines): settings, reads."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from galileo_otel.settings import GalileoSettings

KEY = "test-key"


def settings_for(
    url: str, spool: Path, *, project: str = "delivery", **overrides: Any
) -> GalileoSettings:
    """Settings for a fast delivery test against the local server at ``url``."""
    values: dict[str, Any] = {
        "api_key": KEY,
        "api_url": url,
        "project": project,
        "log_stream": "default",
        "batch_delay": 0.05,
        "export_timeout": 5.0,
        "read_timeout": 2.0,
        "spool_dir": str(spool),
    }
    values.update(overrides)
    return GalileoSettings(**values)


def get(url: str, path: str) -> Any:
    """GET a local-server path as JSON; ``None`` for a 404."""
    req = urllib.request.Request(url + path, headers={"Galileo-API-Key": KEY})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def project_id(url: str, project: str = "delivery") -> str:
    """The id of the project named ``project`` on the local server."""
    projects = get(url, f"/projects?project_name={project}&type=gen_ai")
    return str(projects[0]["id"])


def assert_stored_exactly(url: str, trace_ids: list[str], project: str = "delivery") -> None:
    """The server holds exactly these traces: each one present, none more."""
    assert len(set(trace_ids)) == len(trace_ids)
    pid = project_id(url, project)
    missing = [
        i for i, tid in enumerate(trace_ids) if get(url, f"/v2/projects/{pid}/traces/{tid}") is None
    ]
    assert missing == []
    assert get(url, "/local/stats")["traces"] == len(trace_ids)
