"""Who logged a session and its traces (``logging_method``): the gateway's mapping from the
OTLP resource's SDK language, the session record and batch header that carry it, the client's
per-call stamp, and the in-process default left as it was (``python_client``)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest_api import PROJECT_ID, FakeAPI, ok, session_answer
from conftest_pipeline import DEST, adopting_pipeline
from opentelemetry.sdk.resources import Resource

from galileo_otel.api.client import GalileoClient
from galileo_otel.api.models import LoggingMethod
from galileo_otel.errors import ConfigError
from galileo_otel.export.spool import pending_in
from galileo_otel.export.spool_format import LOGGING_METHODS, VERSION, BatchHeader
from galileo_otel.gateway.origin import logging_method_of, logging_method_of_language
from galileo_otel.sessions.store import SessionRecord
from galileo_otel.sessions.tracker import SessionTracker
from galileo_otel.settings import GalileoSettings

GALILEO_SESSION = "7d0f2b9e-8c41-4f3a-9b6e-5a2c1d0e9f87"


# --- the mapping -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("language", "method"),
    [
        ("python", "python_client"),
        ("nodejs", "typescript_client"),
        ("webjs", "typescript_client"),
        (" NodeJS ", "typescript_client"),
        ("go", "api_direct"),
        ("java", "api_direct"),
        ("", "api_direct"),
        (None, "api_direct"),
        (3, "api_direct"),
    ],
)
def test_sdk_language_maps_to_a_logging_method(language: Any, method: str) -> None:
    assert logging_method_of_language(language) == method


def test_a_span_is_mapped_by_its_resource() -> None:
    class Span:
        def __init__(self, resource: Any) -> None:
            self.resource = resource

    assert logging_method_of(Span(Resource.create({}))) == "python_client"  # the SDK's default
    assert logging_method_of(Span(Resource({"telemetry.sdk.language": "nodejs"}))) == (
        "typescript_client"
    )
    assert logging_method_of(Span(Resource({}))) == "api_direct"
    assert logging_method_of(Span(None)) == "api_direct"


def test_the_methods_are_the_official_sdks() -> None:
    official = pytest.importorskip("galileo.schema.trace").LoggingMethod
    assert {m.value for m in official} == {m.value for m in LoggingMethod} == LOGGING_METHODS
    for language in ("python", "nodejs", "webjs", "rust", None):
        assert official(logging_method_of_language(language))


# --- session record and tracker --------------------------------------------------------------
def test_the_tracker_stamps_its_sessions_and_their_create_session() -> None:
    tracker = SessionTracker(logging_method="typescript_client")
    record = tracker.session_for_trace({"session.id": "conv-1"}, 1, 2)
    assert record.logging_method == "typescript_client"
    existing = tracker.session_for_trace({"galileo.session.id": GALILEO_SESSION}, 3, 4)
    assert existing.logging_method == "typescript_client"
    seen: list[dict[str, Any]] = []

    def create(payload: dict[str, Any]) -> str:
        seen.append(dict(payload))
        return GALILEO_SESSION

    tracker.ensure_created(record, create)
    assert seen[0]["logging_method"] == "typescript_client"
    assert SessionRecord.from_dict(json.loads(json.dumps(record.to_dict()))) == record


def test_in_process_sessions_carry_no_method_so_the_formats_are_unchanged() -> None:
    tracker = SessionTracker()
    record = tracker.session_for_trace({"session.id": "conv-1"}, 1, 2)
    assert record.logging_method is None
    assert "logging_method" not in record.to_dict()  # store rows and headers as before
    assert "logging_method" not in tracker.payload(record)


def test_trackers_of_two_methods_on_one_store_share_a_conversation() -> None:
    settings = GalileoSettings(project="p", log_stream="s")
    python = SessionTracker.from_settings(settings)
    node = SessionTracker.from_settings(
        settings, logging_method="typescript_client", store=python.store
    )
    node_record = node.session_for_trace({"session.id": "conv-1"}, 1, 2)
    assert node_record.key.startswith("p/s|")  # the namespace does not name the method
    joined = python.session_for_trace({"session.id": "conv-1"}, 3, 4)
    assert joined.local_id == node_record.local_id
    assert joined.logging_method == "typescript_client"  # the opener's
    python.close()


# --- batch header (spool format) -------------------------------------------------------------
def _header(session: dict[str, Any]) -> BatchHeader:
    return BatchHeader(
        reliable=True,
        session=session,
        local_id=session["local_id"],
        external_id="conv-7",
        placeholder=False,
        destination=DEST,
        target=None,
        origin="abc",
        traces=1,
        spans=2,
    )


def test_the_header_round_trips_the_logging_method() -> None:
    record = SessionRecord(local_id="loc-1", key="k", logging_method="typescript_client")
    made = _header(record.to_dict())
    stored = json.loads(json.dumps(made.encode()))
    assert stored["v"] == VERSION == 1
    assert BatchHeader.decode(stored).logging_method == "typescript_client"


def test_an_old_header_reads_as_the_clients_own_method() -> None:
    # A row written before the logging method existed, byte for byte as it was stored.
    old = {
        "v": 1,
        "reliable": True,
        "session": {"local_id": "loc-1", "key": "k", "galileo_id": None, "sampled": True},
        "local_id": "loc-1",
        "external_id": "conv-7",
        "placeholder": True,
        "destination": None,
        "target": {"project": "p"},
        "origin": "abc",
        "traces": 1,
        "spans": 2,
    }
    assert BatchHeader.decode(old).logging_method is None
    unknown = {**old, "session": {**old["session"], "logging_method": "cobol_client"}}
    assert BatchHeader.decode(unknown).logging_method is None


@pytest.mark.parametrize("method", ["typescript_client", None])
def test_a_spooled_batch_is_sent_with_its_method(tmp_path: Any, method: str | None) -> None:
    # Written by another process (a gateway that crashed), adopted and sent by this one.
    spool_dir = tmp_path / "spool"
    session = SessionRecord(
        local_id="loc-1", key="k", galileo_id=GALILEO_SESSION, logging_method=method
    ).to_dict()
    pipeline, client = adopting_pipeline(spool_dir, _header(session).encode(), b'[{"id": "t1"}]')
    try:
        assert pipeline.force_flush(5.0) is True
    finally:
        pipeline.shutdown(2.0)
    (post,) = client.trace_posts()
    assert post.body.get("logging_method") == method  # None: the client's own
    assert post.body["session_id"] == GALILEO_SESSION
    assert pending_in(spool_dir) == []


# --- the client's per-call stamp -------------------------------------------------------------
def _client(api: FakeAPI) -> GalileoClient:
    return GalileoClient(
        api_url="http://galileo.test",
        api_key="k" * 20,
        project_id=PROJECT_ID,
        transport=api.transport(),
    )


def test_create_session_and_log_traces_take_a_method_per_call() -> None:
    api = FakeAPI([ok(session_answer()), ok(session_answer()), ok({}), ok({})])
    with _client(api) as client:
        client.create_session(logging_method="typescript_client")
        client.create_session()
        client.log_traces_encoded(b"[]", project_id=PROJECT_ID, logging_method="api_direct")
        client.log_traces_encoded(b"[]", project_id=PROJECT_ID)
        with pytest.raises(ConfigError, match="logging_method"):
            client.create_session(logging_method="cobol_client")
    methods = [body["logging_method"] for body in api.bodies()]
    assert methods == ["typescript_client", "python_client", "api_direct", "python_client"]
