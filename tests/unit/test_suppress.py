"""The client's own HTTP calls run with OpenTelemetry instrumentation suppressed.

Driven through the real httpx instrumentation's transports (wrapping httpx.MockTransport) and an
in-memory span exporter: an app's request through the same transport is traced (the control),
the client's is not, and the suppression stays inside the client's own task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from galileo_otel.api.client import AsyncGalileoClient, GalileoClient, RetryPolicy
from galileo_otel.api.suppress import SUPPRESSION_KEYS, suppress_instrumentation

instr_httpx = pytest.importorskip("opentelemetry.instrumentation.httpx")
instr_utils = pytest.importorskip("opentelemetry.instrumentation.utils")

BASE = "http://galileo.test"
PROJECT_ID = "6f1c2a1e-3b4d-4c5e-8f60-718293a4b5c6"


def _answer(request: httpx.Request) -> httpx.Response:
    if request.url.path.endswith("/traces"):
        return httpx.Response(200, json={"traces_count": 1})
    return httpx.Response(200, json={})


@pytest.fixture
def traced() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    yield provider, memory
    provider.shutdown()


def test_suppression_keys_are_the_ones_the_installed_instrumentations_check() -> None:
    # Pinned to the installed opentelemetry-instrumentation: if the keys move, this fails.
    assert instr_utils.is_instrumentation_enabled()
    assert instr_utils.is_http_instrumentation_enabled()
    with suppress_instrumentation():
        assert not instr_utils.is_instrumentation_enabled()
        assert not instr_utils.is_http_instrumentation_enabled()
        assert all(otel_context.get_value(key) is True for key in SUPPRESSION_KEYS)
    assert instr_utils.is_instrumentation_enabled()
    assert instr_utils.is_http_instrumentation_enabled()


def test_sync_client_requests_are_not_traced(
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, memory = traced
    transport = instr_httpx.SyncOpenTelemetryTransport(
        httpx.MockTransport(_answer), tracer_provider=provider
    )
    # The control: an app's request through the same transport makes a client span.
    with httpx.Client(transport=transport, base_url=BASE) as app_client:
        assert app_client.get("/app").status_code == 200
    assert [s.name for s in memory.get_finished_spans()] == ["GET"]
    memory.clear()

    with GalileoClient(
        api_url=BASE, api_key="k", transport=transport, retry=RetryPolicy.none()
    ) as client:
        assert client.healthcheck() is True
        client.log_traces_raw(b'{"traces": []}', project_id=PROJECT_ID)
        client.request_json("GET", "/v2/projects")
    assert memory.get_finished_spans() == ()
    # The caller's context is as it was.
    assert instr_utils.is_http_instrumentation_enabled()


def test_sync_client_failures_leave_the_context_restored() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with GalileoClient(
        api_url=BASE, api_key="k", transport=httpx.MockTransport(refuse), retry=RetryPolicy.none()
    ) as client:
        assert client.healthcheck() is False
    assert instr_utils.is_instrumentation_enabled()
    assert instr_utils.is_http_instrumentation_enabled()


def test_async_client_suppresses_its_own_task_only(
    traced: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, memory = traced
    inside = asyncio.Event()
    release = asyncio.Event()

    async def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/healthcheck":
            # The client's request is in flight (suppressed) while the app's task runs.
            inside.set()
            await release.wait()
        return _answer(request)

    async def scenario() -> None:
        transport = instr_httpx.AsyncOpenTelemetryTransport(
            httpx.MockTransport(answer), tracer_provider=provider
        )
        async with (
            AsyncGalileoClient(
                api_url=BASE, api_key="k", transport=transport, retry=RetryPolicy.none()
            ) as client,
            httpx.AsyncClient(transport=transport, base_url=BASE) as app_client,
        ):

            async def ours() -> bool:
                ok = await client.healthcheck()
                # Back in our task after the await: its context is restored.
                assert instr_utils.is_http_instrumentation_enabled()
                return ok

            async def app() -> None:
                await inside.wait()
                assert instr_utils.is_http_instrumentation_enabled()
                assert (await app_client.get("/app")).status_code == 200
                release.set()

            ok, _ = await asyncio.gather(ours(), app())
            assert ok is True
            await client.log_traces_raw(b'{"traces": []}', project_id=PROJECT_ID)

    asyncio.run(scenario())
    # Only the app's request was traced, although it ran while ours was suspended mid-request.
    assert [s.name for s in memory.get_finished_spans()] == ["GET"]
    assert memory.get_finished_spans()[0].attributes is not None


def test_async_client_cancelled_mid_request_restores_the_context(
    caplog: pytest.LogCaptureFixture,
) -> None:
    started = asyncio.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        started.set()
        await asyncio.Event().wait()  # never answers; the caller is cancelled
        raise AssertionError("unreachable")

    async def scenario() -> None:
        async with AsyncGalileoClient(
            api_url=BASE, api_key="k", transport=httpx.MockTransport(hang), retry=RetryPolicy.none()
        ) as client:

            async def caller() -> str:
                try:
                    await client.healthcheck()
                except asyncio.CancelledError:
                    # Cancelled mid-request, still in the caller's task: its context is back.
                    assert instr_utils.is_instrumentation_enabled()
                    assert instr_utils.is_http_instrumentation_enabled()
                    return "cancelled"
                return "answered"

            task = asyncio.ensure_future(caller())
            await started.wait()
            task.cancel()
            assert await task == "cancelled"

    asyncio.run(scenario())
    assert "Failed to detach context" not in caplog.text
    assert instr_utils.is_instrumentation_enabled()
