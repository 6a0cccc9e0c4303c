"""The REST client remembers where it points: names resolved once, lazily; ids per call win."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from galileo_otel.api.client import AsyncGalileoClient, GalileoClient
from galileo_otel.api.filters import number
from galileo_otel.errors import NotFoundError

pytestmark = pytest.mark.integration


def _env(monkeypatch: pytest.MonkeyPatch, server: Any, **names: str) -> None:
    monkeypatch.setenv("GALILEO_API_URL", server.url)
    monkeypatch.setenv("GALILEO_API_KEY", server.api_key)
    for key, value in names.items():
        monkeypatch.setenv(f"GALILEO_{key.upper()}", value)


def test_names_from_the_environment_are_enough(
    local_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _env(monkeypatch, local_server, project="chat", log_stream="prod")
    with GalileoClient() as client:
        session = client.create_session(external_id="conv-1", user_metadata={"user.id": "a"})
        client.log_traces([{"input": "hi", "output": "hello"}], session_id=str(session.id))
        local_server.wait_idle()
        assert client.count_sessions() == 1
        assert client.count_sessions(filters=[number("num_traces") >= 1]) == 1
        (record,) = client.iter_sessions()
        assert record["external_id"] == "conv-1"
        (stream,) = client.list_log_streams()
        assert stream.name == "prod" and str(stream.id) == record["log_stream_id"]
    # The names really were created where they say, once.
    with GalileoClient(api_url=local_server.url, api_key=local_server.api_key) as check:
        dest = check.resolve_destination(project="chat", log_stream="prod", create=False)
        assert check.count_sessions(project_id=dest.project_id) == 1


def test_names_as_arguments_and_per_call_ids_as_overrides(local_server: Any) -> None:
    with GalileoClient(
        api_url=local_server.url, api_key=local_server.api_key, project="p1", log_stream="a"
    ) as client:
        client.log_traces([{"input": "1", "output": "1"}])
        other = client.resolve_destination(project="p2", log_stream="b")
        # resolve_destination() re-points the client ...
        client.create_session(external_id="in-p2")
        client.create_session(external_id="in-p2-too")
        local_server.wait_idle()
        assert client.count_sessions() == 2
        # ... and per-call ids still win.
        first = client.resolve_destination(project="p1", log_stream="a", create=False)
        assert first.project_id != other.project_id
        assert (
            client.count_sessions(project_id=first.project_id, log_stream_id=first.log_stream_id)
            == 0
        )
        assert (
            client.count_sessions(project_id=other.project_id, log_stream_id=other.log_stream_id)
            == 2
        )


def test_a_read_never_creates_the_named_project(
    local_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _env(monkeypatch, local_server, project="ghost")
    with GalileoClient() as client:
        with pytest.raises(NotFoundError, match="project 'ghost' does not exist"):
            client.count_sessions()
        assert client.get_project("ghost") is None
        # A write may create it, as configure() does (GALILEO_CREATE_MISSING is on by default).
        client.create_session(external_id="x")
        local_server.wait_idle()
        assert client.count_sessions() == 1


def test_async_client_remembers_too(local_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _env(monkeypatch, local_server, project="chat-async")

    async def scenario() -> tuple[int, str | None]:
        async with AsyncGalileoClient() as client:
            session = await client.create_session(external_id="conv-a")
            await client.log_traces([{"input": "q", "output": "a"}], session_id=str(session.id))
            await asyncio.to_thread(local_server.wait_idle)
            records = [r async for r in client.iter_sessions()]
            return await client.count_sessions(), records[0]["external_id"]

    assert asyncio.run(scenario()) == (1, "conv-a")


def test_the_docs_client_example_runs(
    local_server: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pathlib import Path

    page = Path(__file__).resolve().parents[2] / "docs" / "reference" / "client.md"
    section = page.read_text(encoding="utf-8").split("# The REST client", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    _env(monkeypatch, local_server)
    namespace: dict[str, Any] = {}
    exec(compile(code, "docs/reference/client.md", "exec"), namespace)
    assert namespace["n"] == 0  # the one session has one trace, not >= 2
    local_server.wait_idle()
    with GalileoClient(project="my-app", log_stream="prod") as client:
        (record,) = client.iter_sessions()
    assert capsys.readouterr().out.split() == [record["id"]]
