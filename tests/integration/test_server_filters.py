"""Count/Query Sessions filter semantics of the local server: every operator of every filter type
with known data and counts, and random filter trees checked against a plain-Python evaluation."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest_server import (
    BASE_TIME,
    any_filter,
    expected_count,
    filter_tree,
    session_specs,
    trace_status,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from galileo_otel.api.client import GalileoClient
from galileo_otel.api.models import LogRecordsQueryCountRequest
from galileo_otel.server import serve_in_thread
from galileo_otel.server.query import compile_session_filter
from galileo_otel.server.store import Store

pytestmark = pytest.mark.integration

KEY = "filter-key"


def _seed_via_api(client: GalileoClient, project_id: str, log_stream_id: str) -> list[str]:
    ids: list[str] = []
    for spec in session_specs():
        created = client.create_session(
            project_id=project_id,
            log_stream_id=log_stream_id,
            name=spec["name"],
            external_id=spec["external_id"],
            previous_session_id=ids[spec["previous"]] if "previous" in spec else None,
            user_metadata=spec["user_metadata"] or None,
        )
        ids.append(str(created.id))
        for n, tags in enumerate(spec["traces"]):
            client.log_traces(
                [
                    {
                        "input": f"q{n}",
                        "output": f"a{n}",
                        "tags": tags,
                        "status_code": trace_status(tags),
                        "spans": [{"type": "tool", "input": "x", "output": "y"}] * n,
                    }
                ],
                project_id=project_id,
                session_id=ids[-1],
            )
    return ids


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One server for the module, seeded with session_specs() through the real API."""
    db = tmp_path_factory.mktemp("filters") / "galileo.db"
    with serve_in_thread(db_path=db, api_key=KEY) as server:
        with GalileoClient(api_url=server.url, api_key=KEY) as client:
            dest = client.resolve_destination(project="filters", log_stream="default")
            ids = _seed_via_api(client, dest.project_id, str(dest.log_stream_id))
            records = list(client.iter_sessions(project_id=dest.project_id))
            by_id = {r["id"]: r for r in records}
            yield {
                "server": server,
                "client": client,
                "project_id": dest.project_id,
                "log_stream_id": str(dest.log_stream_id),
                "ids": ids,
                "records": [by_id[i] for i in ids],
            }


def _names(seeded: dict[str, Any], indexes: set[int]) -> set[str]:
    return {seeded["ids"][i] for i in indexes}


def _check(seeded: dict[str, Any], flt: dict[str, Any], expected: set[int]) -> None:
    client: GalileoClient = seeded["client"]
    pid = seeded["project_id"]
    assert client.count_sessions(project_id=pid, filters=[flt]) == len(expected), flt
    found = {r["id"] for r in client.iter_sessions(project_id=pid, filters=[flt], limit=2)}
    assert found == _names(seeded, expected), flt
    # The same filter as a one-leaf tree, and its negation, agree.
    assert client.count_sessions(project_id=pid, filter_tree={"filter": flt}) == len(expected)
    negated = client.count_sessions(project_id=pid, filter_tree={"not": {"filter": flt}})
    assert negated == len(seeded["ids"]) - len(expected)


# Indexes into session_specs(): 0 Alpha, 1 alpha beta, 2 (no name), 3 Gamma, 4 Ünïcode, 5 "".
TEXT_CASES = [
    ("name", "eq", "Alpha", True, {0}),
    ("name", "eq", "alpha", False, {0}),
    ("name", "eq", "ÜNÏCODE", False, {4}),
    ("name", "eq", "", True, {5}),
    ("name", "ne", "Alpha", True, {1, 2, 3, 4, 5}),
    ("name", "ne", "ALPHA", False, {1, 2, 3, 4, 5}),
    ("name", "contains", "lpha", True, {0, 1}),
    ("name", "contains", "ALPHA", True, set()),
    ("name", "contains", "ALPHA", False, {0, 1}),
    ("name", "contains", "", True, {0, 1, 3, 4, 5}),
    ("name", "one_of", ["Alpha", "Gamma", "nope"], True, {0, 3}),
    ("name", "one_of", ["alpha", "gamma"], False, {0, 3}),
    ("name", "one_of", [], True, set()),
    ("name", "not_in", ["Alpha", "Gamma"], True, {1, 2, 4, 5}),
    ("name", "not_in", ["ALPHA"], False, {1, 2, 3, 4, 5}),
    ("external_id", "eq", "conv-3", False, {3}),
    ("external_id", "eq", "conv-3", True, set()),
    ("external_id", "contains", "conv", True, {0, 1, 4, 5}),
    ("logging_method", "eq", "python_client", True, {0, 1, 2, 3, 4, 5}),
    ("input", "eq", "q0", True, {1, 2, 3, 5}),
    ("output", "eq", "a2", True, {3}),
    ("user_metadata.user", "eq", "alice", True, {0}),
    ("user_metadata.user", "eq", "alice", False, {0, 3}),
    ("user_metadata.user", "ne", "alice", True, {1, 2, 3, 4, 5}),
    ("user_metadata.tier", "one_of", ["gold", "silver"], True, {0, 3}),
    ("user_metadata.tier", "not_in", ["gold"], True, {1, 2, 3, 4, 5}),
    ("user_metadata.note", "contains", '"quoted"; --', True, {5}),
    ("user_metadata.missing", "eq", "", True, set()),
]


@pytest.mark.parametrize(("column", "op", "value", "cs", "expected"), TEXT_CASES)
def test_text_filter(
    seeded: dict[str, Any], column: str, op: str, value: Any, cs: bool, expected: set[int]
) -> None:
    flt = {
        "type": "text",
        "column_id": column,
        "operator": op,
        "value": value,
        "case_sensitive": cs,
    }
    _check(seeded, flt, expected)


def test_id_filter_every_operator(seeded: dict[str, Any]) -> None:
    ids = seeded["ids"]
    _check(seeded, {"type": "id", "column_id": "id", "operator": "eq", "value": ids[2]}, {2})
    _check(seeded, {"type": "id", "column_id": "id", "value": ids[2].upper()}, {2})  # default eq
    _check(
        seeded,
        {"type": "id", "column_id": "id", "operator": "ne", "value": ids[2]},
        {0, 1, 3, 4, 5},
    )
    _check(
        seeded,
        {
            "type": "id",
            "column_id": "id",
            "operator": "one_of",
            "value": [ids[0], ids[4], "not-a-uuid"],
        },
        {0, 4},
    )
    _check(
        seeded,
        {"type": "id", "column_id": "id", "operator": "not_in", "value": [ids[0], ids[4]]},
        {1, 2, 3, 5},
    )
    _check(
        seeded,
        {"type": "id", "column_id": "id", "operator": "contains", "value": ids[3][:13].upper()},
        {3},
    )
    prev = "previous_session_id"
    _check(seeded, {"type": "id", "column_id": prev, "operator": "eq", "value": ids[1]}, {3})
    _check(
        seeded,
        {"type": "id", "column_id": prev, "operator": "ne", "value": ids[1]},
        {0, 1, 2, 4, 5},
    )
    _check(
        seeded,
        {"type": "id", "column_id": prev, "operator": "one_of", "value": [ids[0], ids[3]]},
        {1, 5},
    )
    _check(
        seeded,
        {
            "type": "id",
            "column_id": "log_stream_id",
            "operator": "eq",
            "value": seeded["log_stream_id"],
        },
        {0, 1, 2, 3, 4, 5},
    )


def test_date_filter_every_operator(seeded: dict[str, Any]) -> None:
    stamps = [
        datetime.fromisoformat(r["created_at"]).astimezone(timezone.utc) for r in seeded["records"]
    ]
    assert stamps == sorted(stamps)
    t = stamps[3]
    eq_idx = {i for i, s in enumerate(stamps) if s == t}
    before = {i for i, s in enumerate(stamps) if s < t}
    after = {i for i, s in enumerate(stamps) if s > t}
    every = set(range(len(stamps)))
    for value in (
        t.isoformat(),
        t.astimezone(timezone(timedelta(hours=-5))).isoformat(),
        t.replace(tzinfo=None).isoformat(),
    ):  # naive = UTC

        def flt(op: str, v: str = value) -> dict[str, Any]:
            return {"type": "date", "column_id": "created_at", "operator": op, "value": v}

        _check(seeded, flt("eq"), eq_idx)
        _check(seeded, flt("ne"), every - eq_idx)
        _check(seeded, flt("gt"), after)
        _check(seeded, flt("gte"), after | eq_idx)
        _check(seeded, flt("lt"), before)
        _check(seeded, flt("lte"), before | eq_idx)
    _check(
        seeded,
        {
            "type": "date",
            "column_id": "updated_at",
            "operator": "gte",
            "value": "2000-01-01T00:00:00Z",
        },
        every,
    )


# num_traces per session: 0, 2, 1, 3, 0, 1; num_spans: 0, 1, 0, 3, 0, 0
NUMBER_CASES = [
    ("num_traces", "eq", 1, {2, 5}),
    ("num_traces", "eq", 1.0, {2, 5}),
    ("num_traces", "ne", 0, {1, 2, 3, 5}),
    ("num_traces", "gt", 1, {1, 3}),
    ("num_traces", "gte", 1, {1, 2, 3, 5}),
    ("num_traces", "lt", 1, {0, 4}),
    ("num_traces", "lte", 2, {0, 1, 2, 4, 5}),
    ("num_traces", "between", [1, 2], {1, 2, 5}),
    ("num_traces", "between", [0.5, 2.5], {1, 2, 5}),
    ("num_traces", "between", [3, 1], set()),
    ("num_traces", "gt", 1.5, {1, 3}),
    ("num_spans", "eq", 3, {3}),
    ("num_spans", "between", [1, 10], {1, 3}),
]


@pytest.mark.parametrize(("column", "op", "value", "expected"), NUMBER_CASES)
def test_number_filter(
    seeded: dict[str, Any], column: str, op: str, value: Any, expected: set[int]
) -> None:
    _check(
        seeded, {"type": "number", "column_id": column, "operator": op, "value": value}, expected
    )


def test_boolean_filter(seeded: dict[str, Any]) -> None:
    flt = {"type": "boolean", "column_id": "has_children"}
    _check(seeded, {**flt, "operator": "eq", "value": True}, {1, 2, 3, 5})
    _check(seeded, {**flt, "value": False}, {0, 4})  # default eq
    _check(seeded, {**flt, "operator": "ne", "value": True}, {0, 4})
    _check(seeded, {**flt, "operator": "ne", "value": False}, {1, 2, 3, 5})
    # Only Gamma (3) has a failed trace (status 500).
    _check(seeded, {"type": "boolean", "column_id": "has_error", "value": True}, {3})
    _check(
        seeded,
        {"type": "boolean", "column_id": "has_error", "operator": "ne", "value": True},
        {0, 1, 2, 4, 5},
    )
    _check(
        seeded, {"type": "number", "column_id": "num_errors", "operator": "gte", "value": 1}, {3}
    )


# tags per session: {} ; {a, B, b} ; {b} ; {a, c} ; {} ; {ß, A}
COLLECTION_CASES = [
    ("contains", "a", True, {1, 3}),
    ("contains", "a", False, {1, 3, 5}),
    ("contains", ["a", "b"], True, {1}),
    ("contains", ["a", "b"], False, {1}),
    ("contains", [], True, {0, 1, 2, 3, 4, 5}),
    ("one_of", ["c", "ß"], True, {3, 5}),
    ("one_of", ["A"], False, {1, 3, 5}),
    ("one_of", "b", True, {1, 2}),
    ("not_in", ["b"], True, {0, 3, 4, 5}),
    ("not_in", ["B"], False, {0, 3, 4, 5}),
    ("eq", ["b"], True, {2}),
    ("eq", "b", True, {2}),
    ("eq", ["c", "a"], True, {3}),
    ("eq", ["a", "a", "c"], True, {3}),
    ("eq", ["A", "B", "b"], False, {1}),
    ("eq", [], True, {0, 4}),
]


@pytest.mark.parametrize(("op", "value", "cs", "expected"), COLLECTION_CASES)
def test_collection_filter(
    seeded: dict[str, Any], op: str, value: Any, cs: bool, expected: set[int]
) -> None:
    _check(
        seeded,
        {
            "type": "collection",
            "column_id": "tags",
            "operator": op,
            "value": value,
            "case_sensitive": cs,
        },
        expected,
    )


def test_filters_and_tree_combine(seeded: dict[str, Any]) -> None:
    client: GalileoClient = seeded["client"]
    pid = seeded["project_id"]
    has = {"type": "boolean", "column_id": "has_children", "value": True}  # 1, 2, 3, 5
    alice = {
        "type": "text",
        "column_id": "user_metadata.user",
        "operator": "eq",
        "value": "alice",
        "case_sensitive": False,
    }  # 0, 3
    gamma = {"type": "text", "column_id": "name", "operator": "eq", "value": "Gamma"}
    assert client.count_sessions(project_id=pid, filters=[has, alice]) == 1  # Gamma
    tree = {"or": [{"filter": alice}, {"not": {"filter": has}}]}  # 0, 3, 4
    assert client.count_sessions(project_id=pid, filter_tree=tree) == 3
    assert client.count_sessions(project_id=pid, filters=[has], filter_tree=tree) == 1
    nested = {"and": [tree, {"not": {"or": [{"filter": gamma}, {"and": []}]}}]}
    assert client.count_sessions(project_id=pid, filter_tree=nested) == 0
    assert client.count_sessions(project_id=pid, filter_tree={"and": []}) == 6
    assert client.count_sessions(project_id=pid, filter_tree={"or": []}) == 0


def test_count_is_scoped_by_log_stream_and_experiment(seeded: dict[str, Any]) -> None:
    client: GalileoClient = seeded["client"]
    pid = seeded["project_id"]
    other = client.create_log_stream(pid, "other-stream")
    assert client.count_sessions(project_id=pid, log_stream_id=str(other.id)) == 0
    assert client.count_sessions(project_id=pid, log_stream_id=seeded["log_stream_id"]) == 6
    experiment = "6f1c2f6e-8a8e-4d55-9d7e-4a3b7b0c9e11"
    assert client.count_sessions(project_id=pid, experiment_id=experiment) == 0


def test_random_trees_against_the_running_server(seeded: dict[str, Any]) -> None:
    client: GalileoClient = seeded["client"]
    pid = seeded["project_id"]
    records = seeded["records"]

    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(tree=filter_tree(records))
    def check(tree: dict[str, Any]) -> None:
        assert client.count_sessions(project_id=pid, filter_tree=tree) == expected_count(
            records, filter_tree=tree
        )

    check()


# ------------------------------------------------------------------------------------------------
# The same property in-process, through the query compiler and store: more examples, more data
# ------------------------------------------------------------------------------------------------


class _Clock:
    """A clock that repeats some instants, so date eq/ne see ties."""

    def __init__(self) -> None:
        self._steps = itertools.cycle([0, 1, 0, 250_000, 3_000_000])
        self.now = BASE_TIME

    def __call__(self) -> datetime:
        self.now += timedelta(microseconds=next(self._steps))
        return self.now


def _seed_store(path: Path) -> tuple[Store, str, list[dict[str, Any]]]:
    store = Store(path, now=_Clock())
    project = store.create_project("p")
    pid = project["id"]
    stream = store.create_log_stream(pid, "default")
    ids: list[str] = []
    for round_ in range(3):
        for spec in session_specs():
            created = store.create_session(
                pid,
                {
                    "name": spec["name"],
                    "external_id": spec["external_id"],
                    "user_metadata": spec["user_metadata"],
                    "client_version": spec["client_version"],
                    "logging_method": ["python_client", "api_direct", "playground"][round_],
                    "log_stream_id": stream["id"] if round_ != 1 else None,
                    "previous_session_id": ids[spec["previous"]] if "previous" in spec else None,
                },
            )
            ids.append(created["id"])
            for n, tags in enumerate(spec["traces"][: round_ + 2]):
                store.ingest_traces(
                    pid,
                    {
                        "session_id": created["id"],
                        "traces": [
                            {
                                "input": f"q{n}",
                                "output": f"a{round_}",
                                "tags": tags,
                                "status_code": trace_status(tags),
                                "spans": [{"type": "tool"}] * (n + round_),
                            }
                        ],
                    },
                )
    records, more = store.search_sessions(pid, {}, compile_session_filter(), None, 0, 1000)
    assert not more and len(records) == 18
    return store, pid, records


def test_random_trees_and_filters_in_process(tmp_path: Path) -> None:
    store, pid, records = _seed_store(tmp_path / "q.db")
    try:

        @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(
            tree=st.none() | filter_tree(records),
            filters=st.lists(any_filter(records), max_size=2),
        )
        def check(tree: dict[str, Any] | None, filters: list[dict[str, Any]]) -> None:
            # The body is valid for the shared model, i.e. what the API would accept.
            LogRecordsQueryCountRequest.model_validate({"filters": filters, "filter_tree": tree})
            compiled = compile_session_filter(filters, tree)
            assert store.count_sessions(pid, {}, compiled) == expected_count(records, filters, tree)

        check()
    finally:
        store.close()
