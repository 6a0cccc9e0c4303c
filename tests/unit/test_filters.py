"""api/filters.py: the DSL builds the filters and filter trees the API expects."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from galileo_otel.api import filters as f
from galileo_otel.api.filters import (
    And,
    Condition,
    Not,
    Or,
    boolean,
    collection,
    date,
    fully_annotated,
    id_,
    number,
    text,
    to_filter_list,
    to_filter_tree,
)
from galileo_otel.api.models import (
    AndNode,
    FilterLeaf,
    LogRecordsNumberFilter,
    LogRecordsTextFilter,
    NotNode,
)
from galileo_otel.errors import ConfigError

U4 = "9b2f8a3c-1d4e-4f5a-8b6c-7d8e9f0a1b2c"


def leaf(cond: Condition) -> dict[str, Any]:
    return cond.to_filter_dict()


def test_all_names_exist_and_are_sorted() -> None:
    assert f.__all__ == sorted(f.__all__)
    for name in f.__all__:
        assert hasattr(f, name), name


def test_issue_examples() -> None:
    assert leaf(text("external_id") == "conv-1") == {
        "type": "text",
        "column_id": "external_id",
        "operator": "eq",
        "value": "conv-1",
        "case_sensitive": True,
    }
    assert leaf(text("input").contains("refund", case_sensitive=False)) == {
        "type": "text",
        "column_id": "input",
        "operator": "contains",
        "value": "refund",
        "case_sensitive": False,
    }
    assert leaf(number("num_traces").between(2, 5)) == {
        "type": "number",
        "column_id": "num_traces",
        "operator": "between",
        "value": [2, 5],
    }
    when = datetime(2025, 3, 1, 9, 30, tzinfo=timezone.utc)
    assert leaf(date("created_at") >= when) == {
        "type": "date",
        "column_id": "created_at",
        "operator": "gte",
        "value": "2025-03-01T09:30:00Z",
    }


def test_combining_builds_the_tree() -> None:
    a = text("external_id") == "conv-1"
    b = text("input").contains("refund", case_sensitive=False)
    c = number("num_traces").between(2, 5)
    tree = a | (b & ~c)
    assert tree.to_dict() == {
        "or": [
            {"filter": leaf(a)},
            {"and": [{"filter": leaf(b)}, {"not": {"filter": leaf(c)}}]},
        ]
    }
    assert isinstance(tree.to_model().or_[1], AndNode)  # type: ignore[attr-defined]


def test_same_operator_chains_flatten_but_mixed_ones_nest() -> None:
    a, b, c = (text(x) == "v" for x in "abc")
    assert a & b & c == And((a, b, c))
    assert a | b | c == Or((a, b, c))
    assert (a & b) | c == Or((And((a, b)), c))
    assert (a & b) & (b & c) == And((a, b, b, c))


def test_double_negation_cancels() -> None:
    a = boolean("has_error").is_true()
    assert ~a == Not(a)
    assert ~~a == a
    assert (~a).to_dict() == {"not": {"filter": leaf(a)}}


@pytest.mark.parametrize(
    ("cond", "operator", "value"),
    [
        (text("name") == "x", "eq", "x"),
        (text("name") != "x", "ne", "x"),
        (text("name").eq("x"), "eq", "x"),
        (text("name").ne("x"), "ne", "x"),
        (text("name").contains("x"), "contains", "x"),
        (text("name").one_of(["a", "b"]), "one_of", ["a", "b"]),
        (text("name").not_in(("a",)), "not_in", ["a"]),
        (number("n") == 3, "eq", 3),
        (number("n") != 3, "ne", 3),
        (number("n") > 3, "gt", 3),
        (number("n") >= 3, "gte", 3),
        (number("n") < 3.5, "lt", 3.5),
        (number("n") <= 3, "lte", 3),
        (3 < number("n"), "gt", 3),  # reflected: Python asks the column
        (3 >= number("n"), "lte", 3),
        (boolean("b") == True, "eq", True),  # noqa: E712 - the DSL overloads ==
        (boolean("b") != True, "ne", True),  # noqa: E712
        (boolean("b").is_false(), "eq", False),
        (collection("tags") == "x", "eq", "x"),
        (collection("tags").eq(["x", "y"]), "eq", ["x", "y"]),
        (collection("tags").contains("x"), "contains", "x"),
        (collection("tags").one_of(["x"]), "one_of", ["x"]),
        (collection("tags").not_in(["x"]), "not_in", ["x"]),
        (id_("id") == U4, "eq", U4),
        (id_("id") != uuid.UUID(U4), "ne", U4),
        (id_("id").one_of([uuid.UUID(U4), "abc"]), "one_of", [U4, "abc"]),
        (id_("id").not_in([U4]), "not_in", [U4]),
        (id_("id").contains("9b2f"), "contains", "9b2f"),
    ],
)
def test_operators(cond: Condition, operator: str, value: Any) -> None:
    wire = leaf(cond)
    assert wire["operator"] == operator
    assert wire["value"] == value


def test_case_sensitivity_flows_through() -> None:
    assert leaf(text("a").one_of(["x"], case_sensitive=False))["case_sensitive"] is False
    assert leaf(collection("tags").contains("X", case_sensitive=False))["case_sensitive"] is False
    assert "case_sensitive" not in leaf(number("n") > 1)


def test_collection_not_equal_is_a_negated_eq() -> None:
    assert (collection("tags") != "x").to_dict() == {
        "not": {"filter": leaf(collection("tags") == "x")}
    }


def test_dates() -> None:
    naive = datetime(2025, 1, 1, 12, 0)
    assert leaf(date("created_at") > naive)["value"] == "2025-01-01T12:00:00Z"
    plus_two = timezone(timedelta(hours=2))
    aware = datetime(2025, 1, 1, 12, 0, tzinfo=plus_two)
    assert leaf(date("created_at") < aware)["value"] == "2025-01-01T12:00:00+02:00"
    assert leaf(date("updated_at") == "2025-01-01T00:00:00Z")["operator"] == "eq"
    assert leaf(date("updated_at") != "2025-01-01T00:00:00Z")["operator"] == "ne"
    assert leaf(date("updated_at") <= naive)["operator"] == "lte"


def test_fully_annotated() -> None:
    assert leaf(fully_annotated()) == {"column_id": "fully_annotated", "type": "fully_annotated"}
    assert leaf(fully_annotated([uuid.UUID(U4)]))["user_ids"] == [U4]


def test_conditions_are_models_too() -> None:
    cond = number("n").between(1, 2)
    assert isinstance(cond.model, LogRecordsNumberFilter)
    assert isinstance(cond.to_model(), FilterLeaf)
    assert isinstance((~cond).to_model(), NotNode)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: text("a") == 1, "invalid text filter"),
        (lambda: number("n") > "lots", "invalid number filter"),
        (lambda: number("n") > True, "is a bool"),
        (lambda: number("n").between(1, "x"), "invalid number filter"),
        (lambda: boolean("b") == "yes", "not True or False"),
        (lambda: boolean("b") == 1, "not True or False"),
        (lambda: date("d") > "yesterday", "invalid date filter"),
        (lambda: id_("id") == 5, "invalid id filter"),
        (lambda: text("a").one_of("abc"), "a list of values"),
        (lambda: text(""), "non-empty"),
        (lambda: fully_annotated([]), "fully_annotated"),
    ],
)
def test_mistakes_fail_where_written(build: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build()


def test_filters_are_not_bools() -> None:
    a, b = text("a") == "x", text("b") == "y"
    with pytest.raises(TypeError, match=re.escape("&, | and ~")):
        bool(a)
    with pytest.raises(TypeError):
        _ = a and b
    with pytest.raises(TypeError, match="between"):
        _ = 2 < number("n") < 5
    with pytest.raises(TypeError):
        bool(a | b)


def test_columns_are_not_hashable() -> None:
    with pytest.raises(TypeError):
        hash(text("a"))
    assert repr(text("a")) == "TextColumn('a')"


def test_combining_with_a_non_filter_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        _ = (text("a") == "x") & "nope"  # type: ignore[operator]


# --- normalising what callers pass --------------------------------------------------------------


def test_to_filter_list_accepts_dsl_models_dicts_and_an_and() -> None:
    model = LogRecordsTextFilter(column_id="m", operator="eq", value="v")
    out = to_filter_list(
        [
            text("a") == "x",
            model,
            {"type": "boolean", "column_id": "b", "value": True},
            {"filter": {"type": "number", "column_id": "n", "operator": "gt", "value": 1}},
            FilterLeaf(filter=model),
            (number("x") > 1) & (number("y") < 2),
        ]
    )
    assert [flt.column_id for flt in out] == ["a", "m", "b", "n", "m", "x", "y"]
    assert to_filter_list(text("a") == "x")[0].column_id == "a"
    assert to_filter_list({"type": "text", "column_id": "a", "operator": "eq", "value": "x"})
    assert to_filter_list([]) == []


def test_to_filter_list_rejects_or_and_not() -> None:
    a, b = text("a") == "x", text("b") == "y"
    for bad in (a | b, ~a, [a, a | b], [42]):
        with pytest.raises(ConfigError, match="filter_tree"):
            to_filter_list(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="is not allowed for a text filter"):
        to_filter_list([{"type": "text", "column_id": "a", "operator": "lt", "value": "x"}])


def test_to_filter_tree_accepts_dsl_models_and_dicts() -> None:
    a = text("a") == "x"
    assert to_filter_tree(a) == FilterLeaf(filter=a.model)
    assert to_filter_tree(a.model) == FilterLeaf(filter=a.model)
    assert to_filter_tree(a.to_model()) == a.to_model()
    assert to_filter_tree(leaf(a)) == FilterLeaf(filter=a.model)  # bare filter dict -> leaf
    tree = (a | ~a).to_dict()
    assert to_filter_tree(tree).model_dump() == (a | ~a).to_model().model_dump()
    with pytest.raises(ConfigError, match="invalid filter tree"):
        to_filter_tree({"xor": []})
    with pytest.raises(ConfigError, match="not int"):
        to_filter_tree(5)  # type: ignore[arg-type]


def test_str_reads_like_the_dsl() -> None:
    tree = (text("external_id") == "conv-1") | (
        text("input").contains("refund", case_sensitive=False) & ~number("num_traces").between(2, 5)
    )
    assert str(tree) == (
        "text('external_id') == 'conv-1' | (text('input') contains 'refund' (case-insensitive)"
        " & ~(number('num_traces') between [2, 5]))"
    )
    when = datetime(2025, 1, 1, tzinfo=timezone.utc)
    assert str(date("created_at") >= when) == "date('created_at') >= '2025-01-01T00:00:00+00:00'"
    assert str(fully_annotated()) == "fully_annotated()"
