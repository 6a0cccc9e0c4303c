"""GalileoClient / AsyncGalileoClient against the real local server on 127.0.0.1: the wire, both ends."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import pytest

from galileo_otel import __version__
from galileo_otel.api.client import AsyncGalileoClient, GalileoClient, RetryPolicy
from galileo_otel.api.filters import id_, number, text
from galileo_otel.errors import (
    AuthError,
    ConfigError,
    NotFoundError,
    RateLimitError,
    TransportError,
    ValidationError,
)

pytestmark = pytest.mark.integration

FAST_RETRY = RetryPolicy(max_attempts=4, deadline_s=10.0, backoff_initial_s=0.01, jitter=0.0)


def _trace(text_in: str, n_spans: int = 1) -> dict[str, Any]:
    tid = str(uuid.uuid4())
    spans = [
        {
            "type": "tool",
            "id": str(uuid.uuid4()),
            "trace_id": tid,
            "parent_id": tid,
            "name": f"tool-{i}",
            "input": text_in,
            "output": "ok",
        }
        for i in range(n_spans)
    ]
    return {"id": tid, "trace_id": tid, "input": text_in, "output": "done", "spans": spans}


def test_sessions_and_traces_round_trip(local_project: Any) -> None:
    _server, client, project_id = local_project
    first = client.create_session(
        name="support", external_id="conv-1", user_metadata={"u": "alice"}
    )
    second = client.create_session(external_id="conv-2", previous_session_id=str(first.id))
    assert str(first.project_id) == project_id
    assert second.previous_session_id == first.id

    answer = client.log_traces(
        [_trace("where is my refund?"), _trace("thanks", n_spans=2)],
        session_id=str(first.id),
        include_trace_ids=True,
    )
    assert answer.traces_count == 2
    client.log_traces([_trace("hello")], session_id=str(second.id))

    assert client.count_sessions() == 2
    assert client.count_sessions(filters=[text("external_id") == "conv-1"]) == 1
    assert client.count_sessions(filter_tree=number("num_traces") >= 2) == 1
    assert (
        client.count_sessions(
            filter_tree=(text("external_id") == "conv-1") | (text("external_id") == "conv-2")
        )
        == 2
    )
    assert client.count_sessions(filter_tree=~(id_("id") == str(first.id))) == 1

    records = list(client.iter_sessions(limit=1))
    assert sorted(r["external_id"] for r in records) == ["conv-1", "conv-2"]


def test_bodies_carry_the_stamps_the_server_stores(local_project: Any) -> None:
    _server, client, _project_id = local_project
    client.create_session(external_id="stamped")
    stamped = [text("logging_method") == "python_client", text("client_version") == __version__]
    assert client.count_sessions(filters=stamped) == 1
    assert client.count_sessions(filters=[text("logging_method") == "api_direct"]) == 0


def test_resolve_destination_creates_then_finds(local_server: Any) -> None:
    with GalileoClient(api_url=local_server.url, api_key=local_server.api_key) as client:
        made = client.resolve_destination(project="fresh", log_stream="prod")
        again = client.resolve_destination(project="fresh", log_stream="prod", create=False)
        assert made.project_id == again.project_id and made.log_stream_id == again.log_stream_id
        with pytest.raises(NotFoundError, match="'ghost'"):
            client.resolve_destination(project="ghost", create=False)
        with pytest.raises(NotFoundError):
            client.resolve_destination(project_id=str(uuid.uuid4()))
        assert client.healthcheck() is True


def test_auth_errors(local_server: Any) -> None:
    with GalileoClient(api_url=local_server.url, api_key="wrong-key") as client:
        with pytest.raises(AuthError) as info:
            client.get_project("x")
        assert "wrong-key" not in str(info.value)
    with GalileoClient(api_url=local_server.url) as client:
        with pytest.raises(ConfigError, match="GALILEO_API_KEY"):
            client.get_project("x")


def test_server_422_detail_reaches_the_caller(local_project: Any) -> None:
    _server, client, project_id = local_project
    with pytest.raises(ValidationError) as info:
        client.log_traces_raw(b'{"traces": []}', project_id=project_id)
    err = info.value
    assert err.status_code == 422
    assert isinstance(err.detail, list) and err.detail
    assert any("traces" in [str(p) for p in item["loc"]] for item in err.detail)


def test_transient_server_failures_are_retried(local_project: Any) -> None:
    server, client, project_id = local_project
    server.faults.fail("POST /v2/projects/*/sessions/count", status=503, times=2)
    assert client.request_json(
        "POST", f"/v2/projects/{project_id}/sessions/count", json={}, retry=FAST_RETRY
    ) == {"total_count": 0}

    server.faults.rate_limit("POST /v2/projects/*/sessions/count", retry_after_s=0.0, times=1)
    assert client.count_sessions() == 0  # the bound client's default policy honours Retry-After

    server.faults.drop("POST /v2/projects/*/sessions/count", times=1)
    assert client.request_json(
        "POST", f"/v2/projects/{project_id}/sessions/count", json={}, retry=FAST_RETRY
    ) == {"total_count": 0}


def test_rate_limit_without_retry_reports_retry_after(local_project: Any) -> None:
    server, client, project_id = local_project
    server.faults.rate_limit("*/sessions/count", retry_after_s=3.0, times=1)
    with pytest.raises(RateLimitError) as info:
        client.request_json(
            "POST", f"/v2/projects/{project_id}/sessions/count", json={}, retry=RetryPolicy.none()
        )
    assert info.value.retry_after == pytest.approx(3.0)


def test_a_hanging_server_is_a_timeout_not_a_hang(local_project: Any) -> None:
    server, client, project_id = local_project
    server.faults.hang("*/sessions/count", max_hang_s=5.0, times=1)
    try:
        with pytest.raises(TransportError, match="timed out"):
            client.request_json(
                "POST",
                f"/v2/projects/{project_id}/sessions/count",
                json={},
                retry=RetryPolicy.none(),
                timeout=0.3,
            )
    finally:
        server.faults.release()


def test_async_client_against_the_server(local_project: Any) -> None:
    server, client, project_id = local_project

    async def main() -> int:
        async with AsyncGalileoClient(
            api_url=server.url,
            api_key=server.api_key,
            project_id=project_id,
            log_stream_id=client.log_stream_id,
        ) as aclient:
            created = await aclient.create_session(external_id="async-1")
            await aclient.log_traces([_trace("hi")], session_id=str(created.id))
            records = [
                r async for r in aclient.iter_sessions(filters=[text("external_id") == "async-1"])
            ]
            assert len(records) == 1
            return await aclient.count_sessions(filters=[number("num_traces") == 1])

    assert asyncio.run(main()) == 1


def test_key_stays_out_of_every_log_line_on_a_real_socket(
    local_project: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # httpx and httpcore log at DEBUG on a real connection; none of it may carry the key.
    server, client, project_id = local_project
    caplog.set_level(logging.DEBUG)
    server.faults.fail("*/sessions/count", status=503, times=1)
    client.request_json(
        "POST", f"/v2/projects/{project_id}/sessions/count", json={}, retry=FAST_RETRY
    )
    client.create_session(external_id="logged")
    messages = [r.getMessage() for r in caplog.records]
    assert any("retrying" in m for m in messages)
    assert any("httpcore" in r.name or "httpx" in r.name for r in caplog.records)
    assert not [m for m in messages if server.api_key in m]
