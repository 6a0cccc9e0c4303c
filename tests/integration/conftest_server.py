"""Helpers for the local-server tests: a plain-Python reference of the filter semantics, and
hypothesis strategies for random filter trees over a known set of sessions."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

# ------------------------------------------------------------------------------------------------
# Reference semantics (written from the docs of galileo_otel.server.query, not from its SQL)
# ------------------------------------------------------------------------------------------------

TEXT_COLUMNS = ("name", "external_id", "logging_method", "client_version", "input", "output")
ID_COLUMNS = ("id", "previous_session_id", "log_stream_id", "experiment_id")
DATE_COLUMNS = ("created_at", "updated_at")
NUMBER_COLUMNS = ("num_traces", "num_spans", "num_errors")


def _dt(value: Any) -> datetime:
    if isinstance(value, datetime):
        result = value
    else:
        result = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return result if result.tzinfo else result.replace(tzinfo=timezone.utc)


def _norm_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return value.lower()


def column_value(record: Mapping[str, Any], column: str) -> Any:
    if column.startswith("user_metadata."):
        return (record.get("user_metadata") or {}).get(column[len("user_metadata.") :])
    if column == "has_children":
        return record["num_traces"] > 0
    if column == "has_error":
        return record["num_errors"] > 0
    return record.get(column)


def leaf_matches(record: Mapping[str, Any], flt: Mapping[str, Any]) -> bool:
    kind = flt["type"]
    op = flt.get("operator", "eq")
    value = flt["value"]
    x = column_value(record, flt["column_id"])
    cs = flt.get("case_sensitive", True)
    if kind == "collection":
        values = [value] if isinstance(value, str) else list(value)
        tags = list(x or [])
        if not cs:
            values = [v.lower() for v in values]
            tags = [t.lower() for t in tags]
        if op == "contains":
            return all(v in tags for v in values)
        if op == "one_of":
            return any(t in values for t in tags)
        if op == "not_in":
            return not any(t in values for t in tags)
        if op == "eq":
            return set(tags) == set(values)
        raise AssertionError(op)
    if kind in ("text", "id"):
        if kind == "id":
            value = [_norm_id(v) for v in value] if isinstance(value, list) else _norm_id(value)
        elif not cs:
            value = [v.lower() for v in value] if isinstance(value, list) else value.lower()
            x = x.lower() if isinstance(x, str) else x
        positive = {
            "eq": lambda: x is not None and x == value,
            "ne": lambda: x is not None and x == value,
            "contains": lambda: x is not None and value in x,
            "one_of": lambda: x is not None and x in value,
            "not_in": lambda: x is not None and x in value,
        }[op]()
        return not positive if op in ("ne", "not_in") else positive
    if kind == "boolean":
        return (x == value) if op == "eq" else (x != value)
    if kind == "date":
        x, value = (None if x is None else _dt(x)), _dt(value)
    if kind == "number" and op == "between":
        return x is not None and value[0] <= x <= value[1]
    if op == "ne":
        return not (x is not None and x == value)
    if x is None:
        return False
    return {
        "eq": x == value,
        "gt": x > value,
        "gte": x >= value,
        "lt": x < value,
        "lte": x <= value,
    }[op]


def tree_matches(record: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    if "filter" in node:
        return leaf_matches(record, node["filter"])
    if "and" in node:
        return all(tree_matches(record, child) for child in node["and"])
    if "or" in node:
        return any(tree_matches(record, child) for child in node["or"])
    return not tree_matches(record, node["not"])


def expected_count(
    records: list[Mapping[str, Any]],
    filters: list[Mapping[str, Any]] | None = None,
    filter_tree: Mapping[str, Any] | None = None,
) -> int:
    return sum(
        1
        for r in records
        if all(leaf_matches(r, f) for f in filters or [])
        and (filter_tree is None or tree_matches(r, filter_tree))
    )


# ------------------------------------------------------------------------------------------------
# A varied data set: plain dicts of Create Session fields plus traces to log for each
# ------------------------------------------------------------------------------------------------

WORDS = ["alpha", "Alpha", "beta", "BETA", "Ünïcode", "ünïcode", "conv-1", "conv-2", "x", ""]
TAGS = ["a", "A", "b", "c", "ß", "é"]
BASE_TIME = datetime(2026, 1, 1, tzinfo=timezone.utc)


def trace_status(tags: list[str]) -> int:
    """The status code the tests give a trace: traces tagged "c" failed."""
    return 500 if "c" in tags else 200


def session_specs() -> list[dict[str, Any]]:
    """Sessions in creation order; ``previous`` is an index of an earlier one, ``traces`` tag lists."""
    return [
        {
            "name": "Alpha",
            "external_id": "conv-1",
            "user_metadata": {"user": "alice", "tier": "gold"},
            "client_version": "1.0",
            "traces": [],
        },
        {
            "name": "alpha beta",
            "external_id": "conv-2",
            "user_metadata": {"user": "bob"},
            "client_version": "1.1",
            "previous": 0,
            "traces": [["a", "B"], ["b"]],
        },
        {
            "name": None,
            "external_id": None,
            "user_metadata": {},
            "client_version": None,
            "traces": [["b"]],
        },
        {
            "name": "Gamma",
            "external_id": "CONV-3",
            "user_metadata": {"user": "Alice", "tier": "silver"},
            "client_version": "1.0",
            "previous": 1,
            "traces": [["a"], ["c"], []],
        },
        {
            "name": "Ünïcode",
            "external_id": "conv-4",
            "user_metadata": {"user": "ünï"},
            "client_version": "2.0",
            "traces": [],
        },
        {
            "name": "",
            "external_id": "conv-5",
            "user_metadata": {"note": 'it\'s "quoted"; --'},
            "client_version": "2.0",
            "previous": 3,
            "traces": [["ß", "A"]],
        },
    ]


# ------------------------------------------------------------------------------------------------
# Hypothesis strategies: random filters and trees over the columns of a record set
# ------------------------------------------------------------------------------------------------


def _text_values(records: list[Mapping[str, Any]], column: str) -> st.SearchStrategy[str]:
    seen = [v for r in records if isinstance(v := column_value(r, column), str)]
    pieces = [s[: len(s) // 2] for s in seen] + [s.upper() for s in seen]
    return st.sampled_from(seen + pieces + WORDS) | st.text(max_size=4)


def text_filter(records: list[Mapping[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        column = draw(
            st.sampled_from(
                [*TEXT_COLUMNS, "user_metadata.user", "user_metadata.tier", "user_metadata.none"]
            )
        )
        op = draw(st.sampled_from(["eq", "ne", "contains", "one_of", "not_in"]))
        values = _text_values(records, column)
        value: Any = (
            draw(st.lists(values, max_size=3)) if op in ("one_of", "not_in") else draw(values)
        )
        return {
            "type": "text",
            "column_id": column,
            "operator": op,
            "value": value,
            "case_sensitive": draw(st.booleans()),
        }

    return build()


def id_filter(records: list[Mapping[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    ids = [v for r in records for c in ID_COLUMNS if (v := r.get(c))]

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        column = draw(st.sampled_from(ID_COLUMNS))
        op = draw(st.sampled_from(["eq", "ne", "contains", "one_of", "not_in"]))
        one = (
            st.sampled_from(ids)
            | st.sampled_from([i.upper() for i in ids])
            | st.sampled_from([i[:8] for i in ids])
            | st.uuids(version=4).map(str)
        )
        value: Any = draw(st.lists(one, max_size=3)) if op in ("one_of", "not_in") else draw(one)
        return {"type": "id", "column_id": column, "operator": op, "value": value}

    return build()


def date_filter(records: list[Mapping[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    stamps = [_dt(r[c]) for r in records for c in DATE_COLUMNS]

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        base = draw(st.sampled_from(stamps))
        shift = draw(st.sampled_from([0, 0, 1, -1, 1_000_000, -3_600_000_000]))
        when = base + timedelta(microseconds=shift)
        text = (
            when.isoformat()
            if draw(st.booleans())
            else when.astimezone(timezone(timedelta(hours=2))).isoformat()
        )
        return {
            "type": "date",
            "column_id": draw(st.sampled_from(DATE_COLUMNS)),
            "operator": draw(st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte"])),
            "value": text,
        }

    return build()


def number_filter() -> st.SearchStrategy[dict[str, Any]]:
    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        op = draw(st.sampled_from(["eq", "ne", "gt", "gte", "lt", "lte", "between"]))
        num = st.integers(-1, 5) | st.sampled_from([0.5, 1.5, 2.0])
        value: Any = [draw(num), draw(num)] if op == "between" else draw(num)
        return {
            "type": "number",
            "column_id": draw(st.sampled_from(NUMBER_COLUMNS)),
            "operator": op,
            "value": value,
        }

    return build()


def boolean_filter() -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        lambda column, op, value: {
            "type": "boolean",
            "column_id": column,
            "operator": op,
            "value": value,
        },
        st.sampled_from(["has_children", "has_error"]),
        st.sampled_from(["eq", "ne"]),
        st.booleans(),
    )


def collection_filter() -> st.SearchStrategy[dict[str, Any]]:
    tag = st.sampled_from([*TAGS, "zzz"])
    return st.builds(
        lambda op, value, cs: {
            "type": "collection",
            "column_id": "tags",
            "operator": op,
            "value": value,
            "case_sensitive": cs,
        },
        st.sampled_from(["eq", "contains", "one_of", "not_in"]),
        tag | st.lists(tag, max_size=3),
        st.booleans(),
    )


def any_filter(records: list[Mapping[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        text_filter(records),
        id_filter(records),
        date_filter(records),
        number_filter(),
        boolean_filter(),
        collection_filter(),
    )


def filter_tree(records: list[Mapping[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    leaves = any_filter(records).map(lambda f: {"filter": f})
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=4).map(lambda c: {"and": c}),
            st.lists(children, max_size=4).map(lambda c: {"or": c}),
            children.map(lambda c: {"not": c}),
        ),
        max_leaves=12,
    )
