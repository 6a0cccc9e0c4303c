"""The filter -> SQL compiler of the local server: bound parameters only, clear errors, any depth."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from galileo_otel.server.query import (
    MAX_FILTER_CONDITIONS,
    SESSION_COLUMNS,
    FilterError,
    compile_session_filter,
    compile_session_sort,
    datetime_to_us,
)
from galileo_otel.server.store import BadReferenceError, Store

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


class _Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[Store, str]]:
    db = Store(tmp_path / "q.db", now=_Clock())
    pid = db.create_project("p")["id"]
    a = db.create_session(pid, {"name": "a", "user_metadata": {'k"ey': "v'1", "n": "5"}})
    db.create_session(pid, {"name": "b", "previous_session_id": a["id"]})
    db.ingest_traces(pid, {"session_id": a["id"], "traces": [{"tags": ["x", "Y"]}]})
    try:
        yield db, pid
    finally:
        db.close()


def _leaf(**flt: Any) -> dict[str, Any]:
    return {"filter": flt}


def test_values_are_bound_never_pasted() -> None:
    evil = "'; DROP TABLE sessions; --"
    compiled = compile_session_filter(
        [
            {"type": "text", "column_id": "name", "operator": "eq", "value": evil},
            {
                "type": "text",
                "column_id": f"user_metadata.{evil}",
                "operator": "one_of",
                "value": [evil],
            },
            {"type": "collection", "column_id": "tags", "operator": "contains", "value": evil},
            {"type": "id", "column_id": "id", "operator": "contains", "value": evil},
        ]
    )
    assert "DROP" not in compiled.where and "--" not in compiled.where
    assert any(evil in str(v) for v in compiled.params.values())
    assert all(name.startswith("f") for name in compiled.params)


def test_sql_looking_metadata_keys_and_values_match_as_data(store: tuple[Store, str]) -> None:
    db, pid = store
    flt = {"type": "text", "column_id": 'user_metadata.k"ey', "operator": "eq", "value": "v'1"}
    assert db.count_with(pid, [flt]) == 1
    assert db.count_with(pid, [{**flt, "value": "V'1", "case_sensitive": False}]) == 1
    assert db.stats()["sessions"] == 2


@pytest.mark.parametrize(
    ("flt", "loc_tail", "words"),
    [
        (
            {"type": "text", "column_id": "nope", "operator": "eq", "value": "x"},
            "column_id",
            ["unknown column 'nope'", "user_metadata.<key>"],
        ),
        (
            {"type": "text", "column_id": "user_metadata.", "operator": "eq", "value": "x"},
            "column_id",
            ["unknown column"],
        ),
        (
            {"type": "number", "column_id": "name", "operator": "eq", "value": 1},
            "type",
            ["'name' is a text column", "number filter"],
        ),
        (
            {
                "type": "date",
                "column_id": "user_metadata.k",
                "operator": "gt",
                "value": "2026-01-01T00:00:00Z",
            },
            "type",
            ["text column"],
        ),
        (
            {"type": "id", "column_id": "created_at", "operator": "eq", "value": "x"},
            "type",
            ["date column"],
        ),
        (
            {"type": "text", "column_id": "name", "operator": "eq", "value": ["a"]},
            "value",
            ["single string"],
        ),
        (
            {"type": "text", "column_id": "name", "operator": "not_in", "value": "a"},
            "value",
            ["list of strings"],
        ),
        (
            {"type": "id", "column_id": "id", "operator": "one_of", "value": "a"},
            "value",
            ["list of ids"],
        ),
        (
            {"type": "number", "column_id": "num_traces", "operator": "between", "value": [1]},
            "value",
            ["[low, high]"],
        ),
        (
            {"type": "number", "column_id": "num_traces", "operator": "gt", "value": [1, 2]},
            "value",
            ["single number"],
        ),
        (
            {"type": "date", "column_id": "created_at", "operator": "gt", "value": "yesterday"},
            "value",
            ["ISO 8601"],
        ),
        (
            {"type": "boolean", "column_id": "has_children", "operator": "eq", "value": "yes"},
            "value",
            ["true or false"],
        ),
        ({"type": "fully_annotated"}, "type", ["annotation-queue"]),
    ],
)
def test_errors_say_where_and_what(flt: dict[str, Any], loc_tail: str, words: list[str]) -> None:
    with pytest.raises(FilterError) as info:
        compile_session_filter([flt])
    assert info.value.loc == ("body", "filters", 0, loc_tail)
    for word in words:
        assert word in info.value.msg
    detail = info.value.to_detail()
    assert detail["type"] == "value_error" and detail["loc"][-1] == loc_tail


def test_tree_errors_point_into_the_tree() -> None:
    bad = {"type": "text", "column_id": "nope", "operator": "eq", "value": "x"}
    tree = {
        "or": [
            _leaf(type="boolean", column_id="has_children", value=True),
            {"not": {"and": [{"filter": bad}]}},
        ]
    }
    with pytest.raises(FilterError) as info:
        compile_session_filter(None, tree)
    assert info.value.loc == (
        "body",
        "filter_tree",
        "or",
        1,
        "not",
        "and",
        0,
        "filter",
        "column_id",
    )
    with pytest.raises(FilterError, match="filter tree node"):
        compile_session_filter(None, {"xor": []})
    with pytest.raises(FilterError, match="filter tree node"):
        compile_session_filter(None, {"and": [], "or": []})


def test_empty_and_or_are_true_and_false(store: tuple[Store, str]) -> None:
    db, pid = store
    assert db.count_with(pid) == 2
    assert db.count_with(pid, filter_tree={"and": []}) == 2
    assert db.count_with(pid, filter_tree={"or": []}) == 0
    assert db.count_with(pid, filter_tree={"not": {"or": []}}) == 2


def _deep(depth: int, leaf: dict[str, Any]) -> dict[str, Any]:
    node = leaf
    for level in range(depth):
        node = [{"not": node}, {"and": [node, leaf]}, {"or": [leaf, node]}][level % 3]
    return node


@pytest.mark.parametrize("depth", [1, 11, 12, 13, 40, 120, 250])
def test_any_depth_compiles_and_runs(store: tuple[Store, str], depth: int) -> None:
    db, pid = store
    # Collection leaves compile to the most deeply nested SQL; session a matches the leaf, b not.
    leaf = _leaf(
        type="collection", column_id="tags", operator="eq", value=["X", "y"], case_sensitive=False
    )
    tree = _deep(depth, leaf)
    expected = int(_truth(tree, True)) + int(_truth(tree, False))
    assert db.count_with(pid, filter_tree=tree) == expected
    compiled = compile_session_filter(None, tree)
    if depth == 1:
        assert compiled.ctes == []
    if depth >= 40:
        assert compiled.ctes  # cut into CTEs, or SQLite's parser would overflow


def _truth(node: dict[str, Any], leaf_value: bool) -> bool:
    if "filter" in node:
        return leaf_value
    if "and" in node:
        return all(_truth(c, leaf_value) for c in node["and"])
    if "or" in node:
        return any(_truth(c, leaf_value) for c in node["or"])
    return not _truth(node["not"], leaf_value)


def test_wide_trees_are_grouped_and_bounded(store: tuple[Store, str]) -> None:
    db, pid = store
    leaf = _leaf(type="text", column_id="name", operator="eq", value="a")
    assert db.count_with(pid, filter_tree={"or": [leaf] * MAX_FILTER_CONDITIONS}) == 1
    assert db.count_with(pid, filter_tree={"and": [leaf] * 3000}) == 1
    with pytest.raises(FilterError, match="at most"):
        compile_session_filter(None, {"or": [leaf] * (MAX_FILTER_CONDITIONS + 1)})


def test_numbers_beyond_64_bits_compare(store: tuple[Store, str]) -> None:
    db, pid = store
    flt = {"type": "number", "column_id": "num_traces", "operator": "lt", "value": 2**70}
    assert db.count_with(pid, [flt]) == 2
    assert db.count_with(pid, [{**flt, "value": -(10**400), "operator": "gt"}]) == 2
    between = {
        "type": "number",
        "column_id": "num_traces",
        "operator": "between",
        "value": [1, 10**400],
    }
    assert db.count_with(pid, [between]) == 1


def test_dates_compare_as_instants(store: tuple[Store, str]) -> None:
    db, pid = store
    first = T0 + timedelta(seconds=2)  # project, then session a
    for value in (
        first.isoformat(),
        first.astimezone(timezone(timedelta(hours=9))).isoformat(),
        first.replace(tzinfo=None).isoformat(),
        first,
    ):
        flt = {"type": "date", "column_id": "created_at", "operator": "eq", "value": value}
        assert db.count_with(pid, [flt]) == 1, value
    assert datetime_to_us(datetime(1970, 1, 1, 0, 0, 1)) == 1_000_000


def test_sort_compiles_from_the_allow_list() -> None:
    assert compile_session_sort(None) == ("s.created_at_us DESC, s.rowid DESC", {})
    order, params = compile_session_sort({"column_id": "num_traces", "ascending": False})
    assert order == "s.num_traces DESC, s.rowid DESC" and params == {}
    order, params = compile_session_sort({"column_id": "user_metadata.a b"})
    assert "json_each" in order and list(params.values()) == ["a b"]
    for bad in ("tags", "nope", "name; DROP TABLE sessions"):
        with pytest.raises(FilterError) as info:
            compile_session_sort({"column_id": bad})
        assert info.value.loc == ("body", "sort", "column_id")


def test_every_column_is_filterable(store: tuple[Store, str]) -> None:
    db, pid = store
    samples = {
        "id": "00000000-0000-4000-8000-000000000000",
        "text": "zzz",
        "date": "2026-01-01T00:00:00Z",
        "number": 1,
        "boolean": True,
        "collection": ["zzz"],
    }
    for name, column in SESSION_COLUMNS.items():
        flt = {
            "type": column.kind,
            "column_id": name,
            "operator": "eq",
            "value": samples[column.kind],
        }
        assert db.count_with(pid, [flt]) in (0, 1, 2)


def test_store_rejects_unknown_references(store: tuple[Store, str]) -> None:
    db, pid = store
    with pytest.raises(BadReferenceError) as info:
        db.create_session(pid, {"previous_session_id": "00000000-0000-4000-8000-000000000000"})
    assert info.value.loc == ("body", "previous_session_id")
    with pytest.raises(BadReferenceError):
        db.ingest_traces(pid, {"traces": [{"session_id": "00000000-0000-4000-8000-000000000001"}]})
    assert db.stats()["traces"] == 1
