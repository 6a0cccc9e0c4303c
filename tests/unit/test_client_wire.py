"""The wire the export pipeline uses: encoded Log Traces, timeouts by type, one retry policy."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from conftest_api import API_KEY, BASE, LOG_STREAM_ID, PROJECT_ID, FakeAPI, FakeClock, ok

from galileo_otel._version import __version__
from galileo_otel.api.client import GalileoClient, RetryPolicy
from galileo_otel.errors import APIError, APITimeoutError, RateLimitError, TransportError


def make(api: FakeAPI, clock: FakeClock | None = None, **kw: Any) -> GalileoClient:
    clock = clock or FakeClock()
    return GalileoClient(
        api_key=API_KEY,
        api_url=BASE,
        transport=api.transport(),
        sleep=clock.sleep,
        clock=clock,
        **kw,
    )


def test_log_traces_encoded_splices_the_envelope_around_the_bytes() -> None:
    api = FakeAPI([ok({"traces_count": 2})])
    traces = b'[{"type":"trace","id":"a","name":"\xc3\xa9"},{"type":"trace","id":"b"}]'
    with make(api, retry=RetryPolicy.none()) as client:
        answer = client.log_traces_encoded(
            traces,
            project_id=PROJECT_ID,
            session_id="s-1",
            session_external_id="conv",
            reliable=True,
            log_stream_id=LOG_STREAM_ID,
        )
    assert answer == {"traces_count": 2}
    (request,) = api.requests
    assert request.url.path == f"/v2/projects/{PROJECT_ID}/traces"
    assert request.content.startswith(b'{"traces":' + traces + b",")
    body = json.loads(request.content)
    assert [t["id"] for t in body["traces"]] == ["a", "b"] and body["traces"][0]["name"] == "é"
    assert body["session_id"] == "s-1" and body["session_external_id"] == "conv"
    assert body["log_stream_id"] == LOG_STREAM_ID and "experiment_id" not in body
    assert body["reliable"] is True and body["is_complete"] is True
    assert body["logging_method"] == "python_client" and body["client_version"] == __version__


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (httpx.ReadTimeout("slow read"), APITimeoutError),
        (httpx.ConnectTimeout("slow connect"), APITimeoutError),
        (httpx.PoolTimeout("pool"), APITimeoutError),
        (httpx.ConnectError("refused"), TransportError),
        (httpx.RemoteProtocolError("hung up"), TransportError),
    ],
)
def test_timeouts_are_told_apart_by_type_and_chained(exc: Exception, kind: type) -> None:
    api = FakeAPI([exc])
    with make(api, retry=RetryPolicy.none()) as client, pytest.raises(TransportError) as info:
        client.log_traces_encoded(b"[]", project_id=PROJECT_ID, session_id="s")
    assert type(info.value) is kind
    assert info.value.__cause__ is exc


def test_one_policy_decides_retries_for_client_and_pipeline() -> None:
    policy = RetryPolicy(backoff_initial_s=1.0, backoff_max_s=4.0, jitter=0.0)
    transient = APIError("HTTP 503", status_code=503, retryable=True)
    assert [policy.delay_for(transient, n, 0.0) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 4.0]
    limited = RateLimitError("HTTP 429", status_code=429, retryable=True, retry_after=7.0)
    assert policy.delay_for(limited, 1, 0.0) == 7.0
    too_long = RateLimitError("HTTP 429", status_code=429, retryable=True, retry_after=600.0)
    assert policy.delay_for(too_long, 1, 0.0) is None
    rejected = APIError("HTTP 422", status_code=422, retryable=False)
    assert policy.delay_for(rejected, 1, 0.0) is None
    assert RetryPolicy.is_permanent(rejected) and not RetryPolicy.is_permanent(transient)
    assert not RetryPolicy.is_permanent(TransportError("refused", retryable=True))


def test_the_client_waits_what_the_policy_says() -> None:
    clock = FakeClock()
    api = FakeAPI([ok({}, status=503), ok({}, status=503), ok({"traces_count": 0})])
    policy = RetryPolicy(backoff_initial_s=1.0, backoff_max_s=4.0, jitter=0.0)
    with make(api, clock, retry=policy) as client:
        client.log_traces_encoded(b"[]", project_id=PROJECT_ID, session_id="s")
    assert clock.sleeps == [1.0, 2.0]  # retried exactly twice, waits from delay_for
