"""The wire the export pipeline uses: encoded Log Traces, timeouts by type, one retry policy."""

from __future__ import annotations

import asyncio
import json
import logging
import platform
import re
import socket
import threading
from typing import Any

import httpx
import pytest
from conftest_api import API_KEY, BASE, LOG_STREAM_ID, PROJECT_ID, FakeAPI, FakeClock, ok

from galileo_otel._version import __version__
from galileo_otel.api.client import AsyncGalileoClient, GalileoClient, RetryPolicy
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


def _log_traces(client: GalileoClient, session_id: str = "s-1") -> None:
    client.log_traces_encoded(
        b'[{"type":"trace","id":"a"}]',
        project_id=PROJECT_ID,
        session_id=session_id,
        reliable=True,
        log_stream_id=LOG_STREAM_ID,
        timeout=7.0,
    )


def test_the_request_built_for_the_transport_is_what_httpx_post_sends() -> None:
    # The client builds the httpx.Request itself (headers merged once) and hands it to the
    # transport; the same request through httpx.Client.post is the reference.
    ours = FakeAPI([ok({})])
    with make(ours, retry=RetryPolicy.none()) as client:
        _log_traces(client)
    (sent,) = ours.requests
    reference = FakeAPI([ok({})])
    user_agent = (
        f"galileo-otel/{__version__} python/{platform.python_version()} httpx/{httpx.__version__}"
    )
    with httpx.Client(base_url=BASE, transport=reference.transport()) as plain:
        plain.post(
            str(sent.url),
            content=sent.content,
            headers={
                "User-Agent": user_agent,
                "Accept": "application/json",
                "Galileo-API-Key": API_KEY,
                "Content-Type": "application/json",
            },
            timeout=7.0,
        )
    (expected,) = reference.requests
    assert sent.method == expected.method == "POST"
    assert sent.url == expected.url
    assert sent.headers.multi_items() == expected.headers.multi_items()
    assert sent.content == expected.content
    assert sent.extensions["timeout"] == expected.extensions["timeout"]
    assert "cookie" not in sent.headers


def test_the_async_client_sends_and_retries_exactly_as_the_sync_client() -> None:
    # One request loop's rules for both clients: the same attempts (URL, parameters, headers,
    # body, per-attempt timeout capped by the deadline), the same waits, the same answer.
    def script() -> list[Any]:
        return [
            ok({}, status=503),
            httpx.ConnectError("refused"),
            ok({"traces_count": 1}),
        ]

    policy = RetryPolicy(backoff_initial_s=1.0, backoff_max_s=4.0, jitter=0.0, deadline_s=9.5)
    call: dict[str, Any] = {
        "json": {"a": 1},
        "params": {"page": "2"},
        "retry": policy,
        "timeout": 8.0,
    }
    sync_api, sync_clock = FakeAPI(script()), FakeClock()
    with make(sync_api, sync_clock) as client:
        sync_answer = client.request_json("POST", "/v2/things", **call)

    async_api, async_clock = FakeAPI(script()), FakeClock()

    async def main() -> Any:
        async with AsyncGalileoClient(
            api_key=API_KEY,
            api_url=BASE,
            transport=async_api.transport(),
            sleep=async_clock.async_sleep,
            clock=async_clock,
        ) as aclient:
            return await aclient.request_json("POST", "/v2/things", **call)

    async_answer = asyncio.run(main())
    assert sync_answer == async_answer == {"traces_count": 1}
    assert sync_clock.sleeps == async_clock.sleeps == [1.0, 2.0]
    assert len(sync_api.requests) == len(async_api.requests) == 3
    for ours, theirs in zip(sync_api.requests, async_api.requests, strict=True):
        assert (ours.method, ours.url, ours.content) == (theirs.method, theirs.url, theirs.content)
        assert ours.url.params["page"] == "2"
        assert ours.headers.multi_items() == theirs.headers.multi_items()
        assert ours.extensions["timeout"] == theirs.extensions["timeout"]
    # The third attempt starts 3 s into a 9.5 s deadline: its 8 s timeouts are capped to 6.5 s.
    assert sync_api.requests[0].extensions["timeout"]["read"] == pytest.approx(8.0)
    assert sync_api.requests[2].extensions["timeout"]["read"] == pytest.approx(6.5)


@pytest.mark.parametrize("proxy", [False, True], ids=["direct", "through-httpx-client"])
def test_cookies_a_server_sets_are_never_sent_back(
    proxy: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if proxy:  # a proxy for https only: http://galileo.test still reaches the mock transport
        monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    api = FakeAPI([ok({}, **{"Set-Cookie": "lb=sticky; Path=/"}), ok({}), ok([])])
    with make(api, retry=RetryPolicy.none()) as client:
        _log_traces(client)
        _log_traces(client)
        client.request_json("GET", "/projects", params={"project_name": "x"})
    assert len(api.requests) == 3
    assert all("cookie" not in r.headers for r in api.requests)


def test_the_envelope_follows_each_batchs_session_and_the_clients_fields() -> None:
    api = FakeAPI([ok({}), ok({}), ok({})])
    with make(api, retry=RetryPolicy.none()) as client:
        _log_traces(client, "s-1")
        _log_traces(client, "s-2")
        client.logging_method = "playground"
        _log_traces(client, "s-1")
    bodies = api.bodies()
    assert [b["session_id"] for b in bodies] == ["s-1", "s-2", "s-1"]
    assert [b["logging_method"] for b in bodies] == ["python_client"] * 2 + ["playground"]
    assert all(b["traces"] == [{"type": "trace", "id": "a"}] for b in bodies)


def test_the_requests_keep_httpx_log_line_and_a_closed_client_still_refuses(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = FakeAPI([ok({})])
    client = make(api, retry=RetryPolicy.none())
    with caplog.at_level(logging.INFO, logger="httpx"):
        _log_traces(client)
    assert [r.getMessage() for r in caplog.records if r.name == "httpx"] == [
        f'HTTP Request: POST {BASE}/v2/projects/{PROJECT_ID}/traces "HTTP/1.1 200 OK"'
    ]
    client.close()
    with pytest.raises(RuntimeError, match="closed"):
        _log_traces(client)
    assert len(api.requests) == 1


def test_with_a_proxy_in_the_environment_requests_go_through_httpx_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # httpx mounts the proxy per URL; the client then leaves the routing to httpx.Client.send.
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "")
    sent: list[httpx.Request] = []

    def via_client(self: httpx.Client, request: httpx.Request, **kw: Any) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={}, request=request)

    monkeypatch.setattr(httpx.Client, "send", via_client)
    with make(FakeAPI(), retry=RetryPolicy.none()) as client:
        _log_traces(client)
    assert len(sent) == 1 and "cookie" not in sent[0].headers


def _raw_requests(n: int) -> tuple[str, list[bytes], threading.Thread]:
    """A one-connection loopback server: the raw bytes of ``n`` requests, each answered ``{}``."""
    server = socket.create_server(("127.0.0.1", 0))
    got: list[bytes] = []

    def serve() -> None:
        with server:
            for _ in range(n):
                conn, _addr = server.accept()
                with conn:
                    data = b""
                    while b"\r\n\r\n" not in data:
                        data += conn.recv(65536)
                    head, _, rest = data.partition(b"\r\n\r\n")
                    length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
                    while len(rest) < length:
                        rest += conn.recv(65536)
                    got.append(data[: len(head) + 4] + rest)
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
                    )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{server.getsockname()[1]}", got, thread


def test_the_bytes_on_the_socket_are_what_httpx_post_sends() -> None:
    # A real transport and socket (the Log Traces body goes to it in parts): the server reads
    # the very bytes httpx.Client.post sends for the joined body.
    url, got, thread = _raw_requests(2)
    traces = b'[{"type":"trace","id":"a","name":"\xc3\xa9"}' + b',{"id":"x"}' * 5000 + b"]"
    with GalileoClient(api_key=API_KEY, api_url=url, retry=RetryPolicy.none()) as client:
        client.log_traces_encoded(
            traces, project_id=PROJECT_ID, session_id="s-1", log_stream_id=LOG_STREAM_ID
        )
    body = got[0].partition(b"\r\n\r\n")[2]
    assert body.startswith(b'{"traces":' + traces + b",") and json.loads(body)["session_id"]
    with httpx.Client() as plain:
        plain.post(
            f"{url}/v2/projects/{PROJECT_ID}/traces",
            content=body,
            headers={
                "User-Agent": (
                    f"galileo-otel/{__version__} python/{platform.python_version()} "
                    f"httpx/{httpx.__version__}"
                ),
                "Accept": "application/json",
                "Galileo-API-Key": API_KEY,
                "Content-Type": "application/json",
            },
        )
    thread.join(10)
    assert got[0] == got[1]
