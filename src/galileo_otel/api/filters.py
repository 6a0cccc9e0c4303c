"""A small Python DSL for Count/Query Sessions filters: ``text("input").contains("refund") & ...``.

Columns compare into conditions; ``&``, ``|`` and ``~`` combine them into a filter tree.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Union
from uuid import UUID

import pydantic
from pydantic import BaseModel

from galileo_otel.api.models import (
    AndNode,
    FilterLeaf,
    LogRecordsBooleanFilter,
    LogRecordsCollectionFilter,
    LogRecordsDateFilter,
    LogRecordsFullyAnnotatedFilter,
    LogRecordsIDFilter,
    LogRecordsNumberFilter,
    LogRecordsTextFilter,
    NotNode,
    OrNode,
    filter_adapter,
    filter_expression_adapter,
    to_wire,
)
from galileo_otel.errors import ConfigError

__all__ = [
    "And",
    "BooleanColumn",
    "CollectionColumn",
    "Condition",
    "DateColumn",
    "Filter",
    "FilterInput",
    "IdColumn",
    "Not",
    "NumberColumn",
    "Or",
    "TextColumn",
    "boolean",
    "collection",
    "date",
    "fully_annotated",
    "id_",
    "number",
    "text",
    "to_filter_list",
    "to_filter_tree",
]

_TYPED_FILTERS = (
    LogRecordsIDFilter,
    LogRecordsDateFilter,
    LogRecordsNumberFilter,
    LogRecordsBooleanFilter,
    LogRecordsCollectionFilter,
    LogRecordsTextFilter,
    LogRecordsFullyAnnotatedFilter,
)
_TREE_NODES = (FilterLeaf, AndNode, OrNode, NotNode)
_TypedFilter = Union[  # noqa: UP007 - a runtime alias
    LogRecordsIDFilter,
    LogRecordsDateFilter,
    LogRecordsNumberFilter,
    LogRecordsBooleanFilter,
    LogRecordsCollectionFilter,
    LogRecordsTextFilter,
    LogRecordsFullyAnnotatedFilter,
]
_TreeNode = Union[FilterLeaf, AndNode, OrNode, NotNode]  # noqa: UP007 - a runtime alias


def _build(model: type[_TypedFilter], **fields: Any) -> Condition:
    """Validate one typed filter now, so a mistake fails where it was written."""
    try:
        return Condition(model.model_validate(fields))
    except pydantic.ValidationError as exc:
        raise ConfigError(
            f"invalid {fields.get('type', 'filter')} filter: {_first_error(exc)}"
        ) from None


def _first_error(exc: pydantic.ValidationError) -> str:
    errors = exc.errors(include_url=False)
    parts = []
    for err in errors:
        where = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


class Filter(ABC):
    """A filter tree: a :class:`Condition`, or :class:`And` / :class:`Or` / :class:`Not` of trees.

    Combine with ``&`` (and), ``|`` (or) and ``~`` (not). What is built is validated at once (a
    bad value fails on the line that wrote it) and serialises to JSON that validates against the
    OpenAPI schema. Mind the parentheses: ``&`` and ``|`` bind tighter than ``==``. Python's
    ``and``/``or``/``not`` cannot be overloaded, so a filter refuses to be used as a bool rather
    than silently dropping half of a query.

    Example:
        >>> from galileo_otel.api.filters import number, text
        >>> tree = (text("external_id") == "conv-1") | number("num_traces").between(2, 5)
        >>> list(tree.to_dict())
        ['or']
    """

    __slots__ = ()

    def __and__(self, other: Filter) -> Filter:
        if not isinstance(other, Filter):
            return NotImplemented
        return And(_children(self, And) + _children(other, And))

    def __or__(self, other: Filter) -> Filter:
        if not isinstance(other, Filter):
            return NotImplemented
        return Or(_children(self, Or) + _children(other, Or))

    def __invert__(self) -> Filter:
        return Not(self)

    def __bool__(self) -> bool:
        raise TypeError(
            "a filter is not a bool: combine filters with &, | and ~ (not 'and', 'or', 'not'), "
            "and write 2 < x < 5 as number(...).between(2, 5)"
        )

    @abstractmethod
    def to_model(self) -> BaseModel:
        """The filter-tree model (:class:`FilterLeaf`, :class:`AndNode`, ...) of this filter."""

    def to_dict(self) -> dict[str, Any]:
        """The filter tree as JSON-ready ``dict``, e.g. ``{"and": [{"filter": {...}}, ...]}``."""
        return to_wire(self.to_model())


_OP_WORDS = {
    "eq": "==",
    "ne": "!=",
    "gt": ">",
    "gte": ">=",
    "lt": "<",
    "lte": "<=",
    "between": "between",
    "contains": "contains",
    "one_of": "one of",
    "not_in": "not in",
}


def _nested(node: Filter, *, always: bool = False) -> str:
    # A readable form for logs and CLI output: parenthesise whatever is not a single condition.
    # ~ binds tighter than & and |, so a negation needs no parentheses of its own.
    text_form = str(node)
    bare = isinstance(node, (Condition, Not)) and not always
    return text_form if bare else f"({text_form})"


def _children(node: Filter, kind: type[And] | type[Or]) -> tuple[Filter, ...]:
    # (a & b) & c reads as one and-node of three, not a nested pair.
    return node.children if isinstance(node, kind) else (node,)


@dataclass(frozen=True, eq=True, slots=True)
class Condition(Filter):
    """One typed filter (a leaf of the tree). ``model`` is its pydantic model.

    A condition can also go in the flat ``filters=[...]`` list of Count/Query Sessions.
    """

    model: _TypedFilter

    def __str__(self) -> str:
        f = self.model
        if isinstance(f, LogRecordsFullyAnnotatedFilter):
            return f"fully_annotated({f.user_ids or ''})"
        value = f.value.isoformat() if isinstance(f.value, datetime) else f.value
        flag = "" if getattr(f, "case_sensitive", True) else " (case-insensitive)"
        return f"{f.type}({f.column_id!r}) {_OP_WORDS[f.operator]} {value!r}{flag}"

    def to_model(self) -> FilterLeaf:
        """The leaf node ``{"filter": ...}`` of this condition."""
        return FilterLeaf(filter=self.model)

    def to_filter_dict(self) -> dict[str, Any]:
        """The typed filter alone, as it goes in the ``filters`` list."""
        return to_wire(self.model)


@dataclass(frozen=True, eq=True, slots=True)
class And(Filter):
    """Every child matches."""

    children: tuple[Filter, ...]

    def __str__(self) -> str:
        return " & ".join(_nested(child) for child in self.children)

    def to_model(self) -> AndNode:
        """The ``{"and": [...]}`` node."""
        return AndNode.model_validate({"and": [child.to_model() for child in self.children]})


@dataclass(frozen=True, eq=True, slots=True)
class Or(Filter):
    """At least one child matches."""

    children: tuple[Filter, ...]

    def __str__(self) -> str:
        return " | ".join(_nested(child) for child in self.children)

    def to_model(self) -> OrNode:
        """The ``{"or": [...]}`` node."""
        return OrNode.model_validate({"or": [child.to_model() for child in self.children]})


@dataclass(frozen=True, eq=True, slots=True)
class Not(Filter):
    """The child does not match."""

    child: Filter

    def __str__(self) -> str:
        return f"~{_nested(self.child, always=True)}"

    def to_model(self) -> NotNode:
        """The ``{"not": ...}`` node."""
        return NotNode.model_validate({"not": self.child.to_model()})

    def __invert__(self) -> Filter:
        return self.child  # ~~x is x


# ------------------------------------------------------------------------------------------------
# Columns
# ------------------------------------------------------------------------------------------------


class _Column:
    """A column to compare; ``==`` and friends return a :class:`Condition`, not a bool."""

    __slots__ = ("column_id",)
    __hash__ = None  # type: ignore[assignment]  # == builds a condition, so columns are unhashable

    def __init__(self, column_id: str) -> None:
        if not isinstance(column_id, str) or not column_id:
            raise ConfigError("a filter column id must be a non-empty string")
        self.column_id = column_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.column_id!r})"


class TextColumn(_Column):
    """A text column: ``input``, ``output``, ``name``, ``external_id``, ... (see :func:`text`)."""

    __slots__ = ()

    def eq(self, value: str, *, case_sensitive: bool = True) -> Condition:
        """The column equals ``value``."""
        return self._cond("eq", value, case_sensitive)

    def ne(self, value: str, *, case_sensitive: bool = True) -> Condition:
        """The column does not equal ``value``."""
        return self._cond("ne", value, case_sensitive)

    def contains(self, value: str, *, case_sensitive: bool = True) -> Condition:
        """The column contains ``value`` as a substring."""
        return self._cond("contains", value, case_sensitive)

    def one_of(self, values: Iterable[str], *, case_sensitive: bool = True) -> Condition:
        """The column equals one of ``values``."""
        return self._cond("one_of", _as_list(values), case_sensitive)

    def not_in(self, values: Iterable[str], *, case_sensitive: bool = True) -> Condition:
        """The column equals none of ``values``."""
        return self._cond("not_in", _as_list(values), case_sensitive)

    def __eq__(self, value: object) -> Condition:  # type: ignore[override]
        return self.eq(value)  # type: ignore[arg-type]  # validated by the model

    def __ne__(self, value: object) -> Condition:  # type: ignore[override]
        return self.ne(value)  # type: ignore[arg-type]  # validated by the model

    def _cond(self, operator: str, value: Any, case_sensitive: bool) -> Condition:
        return _build(
            LogRecordsTextFilter,
            type="text",
            column_id=self.column_id,
            operator=operator,
            value=value,
            case_sensitive=case_sensitive,
        )


class CollectionColumn(_Column):
    """A list-valued column such as ``tags`` (see :func:`collection`)."""

    __slots__ = ()

    def eq(self, value: str | Iterable[str], *, case_sensitive: bool = True) -> Condition:
        """The collection equals ``value``."""
        value = value if isinstance(value, str) else _as_list(value)
        return self._cond("eq", value, case_sensitive)

    def contains(self, value: str, *, case_sensitive: bool = True) -> Condition:
        """The collection contains ``value``."""
        return self._cond("contains", value, case_sensitive)

    def one_of(self, values: Iterable[str], *, case_sensitive: bool = True) -> Condition:
        """The collection holds at least one of ``values``."""
        return self._cond("one_of", _as_list(values), case_sensitive)

    def not_in(self, values: Iterable[str], *, case_sensitive: bool = True) -> Condition:
        """The collection holds none of ``values``."""
        return self._cond("not_in", _as_list(values), case_sensitive)

    def __eq__(self, value: object) -> Condition:  # type: ignore[override]
        return self.eq(value)  # type: ignore[arg-type]  # validated by the model

    def __ne__(self, value: object) -> Filter:  # type: ignore[override]
        # The API has no 'ne' for collections; "not equal" is the negation of 'eq'.
        return ~self.eq(value)  # type: ignore[arg-type]  # validated by the model

    def _cond(self, operator: str, value: Any, case_sensitive: bool) -> Condition:
        return _build(
            LogRecordsCollectionFilter,
            type="collection",
            column_id=self.column_id,
            operator=operator,
            value=value,
            case_sensitive=case_sensitive,
        )


class NumberColumn(_Column):
    """A numeric column such as ``num_traces`` (see :func:`number`)."""

    __slots__ = ()

    def between(self, low: float, high: float) -> Condition:
        """``low <= column <= high``."""
        return self._cond("between", [low, high])

    def __eq__(self, value: object) -> Condition:  # type: ignore[override]
        return self._cond("eq", value)

    def __ne__(self, value: object) -> Condition:  # type: ignore[override]
        return self._cond("ne", value)

    def __gt__(self, value: float) -> Condition:
        return self._cond("gt", value)

    def __ge__(self, value: float) -> Condition:
        return self._cond("gte", value)

    def __lt__(self, value: float) -> Condition:
        return self._cond("lt", value)

    def __le__(self, value: float) -> Condition:
        return self._cond("lte", value)

    def _cond(self, operator: str, value: Any) -> Condition:
        if isinstance(value, bool) or (
            isinstance(value, list) and any(isinstance(v, bool) for v in value)
        ):
            # bool is an int to Python, never what a number filter means.
            raise ConfigError(f"invalid number filter: {value!r} is a bool, not a number")
        return _build(
            LogRecordsNumberFilter,
            type="number",
            column_id=self.column_id,
            operator=operator,
            value=value,
        )


class DateColumn(_Column):
    """A date-time column such as ``created_at`` (see :func:`date`).

    Naive datetimes are taken as UTC, the zone Galileo stores its timestamps in.
    """

    __slots__ = ()

    def __eq__(self, value: object) -> Condition:  # type: ignore[override]
        return self._cond("eq", value)

    def __ne__(self, value: object) -> Condition:  # type: ignore[override]
        return self._cond("ne", value)

    def __gt__(self, value: datetime | str) -> Condition:
        return self._cond("gt", value)

    def __ge__(self, value: datetime | str) -> Condition:
        return self._cond("gte", value)

    def __lt__(self, value: datetime | str) -> Condition:
        return self._cond("lt", value)

    def __le__(self, value: datetime | str) -> Condition:
        return self._cond("lte", value)

    def _cond(self, operator: str, value: Any) -> Condition:
        if isinstance(value, datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return _build(
            LogRecordsDateFilter,
            type="date",
            column_id=self.column_id,
            operator=operator,
            value=value,
        )


class BooleanColumn(_Column):
    """A boolean column (see :func:`boolean`)."""

    __slots__ = ()

    def is_true(self) -> Condition:
        """The column is true."""
        return self._cond("eq", True)

    def is_false(self) -> Condition:
        """The column is false."""
        return self._cond("eq", False)

    def __eq__(self, value: object) -> Condition:  # type: ignore[override]
        return self._cond("eq", value)

    def __ne__(self, value: object) -> Condition:  # type: ignore[override]
        return self._cond("ne", value)

    def _cond(self, operator: str, value: Any) -> Condition:
        if not isinstance(value, bool):
            # pydantic would turn "no" or 0 into False; a filter should say what it means.
            raise ConfigError(f"invalid boolean filter: {value!r} is not True or False")
        return _build(
            LogRecordsBooleanFilter,
            type="boolean",
            column_id=self.column_id,
            operator=operator,
            value=value,
        )


class IdColumn(_Column):
    """An id column such as ``id`` or ``previous_session_id`` (see :func:`id_`)."""

    __slots__ = ()

    def contains(self, value: str) -> Condition:
        """The id contains ``value`` (a prefix or fragment)."""
        return self._cond("contains", value)

    def one_of(self, values: Iterable[UUID | str]) -> Condition:
        """The id is one of ``values``."""
        return self._cond("one_of", [_id_str(v) for v in values])

    def not_in(self, values: Iterable[UUID | str]) -> Condition:
        """The id is none of ``values``."""
        return self._cond("not_in", [_id_str(v) for v in values])

    def __eq__(self, value: object) -> Condition:  # type: ignore[override]
        return self._cond("eq", _id_str(value))

    def __ne__(self, value: object) -> Condition:  # type: ignore[override]
        return self._cond("ne", _id_str(value))

    def _cond(self, operator: str, value: Any) -> Condition:
        return _build(
            LogRecordsIDFilter,
            type="id",
            column_id=self.column_id,
            operator=operator,
            value=value,
        )


def _id_str(value: object) -> object:
    return str(value) if isinstance(value, UUID) else value


def _as_list(values: Iterable[Any]) -> list[Any]:
    if isinstance(values, (str, bytes)):
        # A bare string would be split into characters; almost certainly a missing [...].
        raise ConfigError(f"expected a list of values, got the string {values!r}")
    return list(values)


def text(column_id: str) -> TextColumn:
    """A text column: ``text("input").contains("refund", case_sensitive=False)``."""
    return TextColumn(column_id)


def number(column_id: str) -> NumberColumn:
    """A numeric column: ``number("num_traces").between(2, 5)``, ``number("x") >= 3``."""
    return NumberColumn(column_id)


def date(column_id: str) -> DateColumn:
    """A date-time column: ``date("created_at") >= datetime(2025, 1, 1, tzinfo=UTC)``."""
    return DateColumn(column_id)


def boolean(column_id: str) -> BooleanColumn:
    """A boolean column: ``boolean("has_error") == True`` or ``boolean("has_error").is_true()``."""
    return BooleanColumn(column_id)


def collection(column_id: str) -> CollectionColumn:
    """A list-valued column: ``collection("tags").contains("beta")``."""
    return CollectionColumn(column_id)


def id_(column_id: str) -> IdColumn:
    """An id column: ``id_("id") == session_uuid``, ``id_("id").one_of([...])``."""
    return IdColumn(column_id)


def fully_annotated(user_ids: Sequence[UUID | str] | None = None) -> Condition:
    """Records rated across all queue templates (annotation-queue searches only)."""
    ids = None if user_ids is None else [_id_str(u) for u in user_ids]
    return _build(LogRecordsFullyAnnotatedFilter, type="fully_annotated", user_ids=ids)


# ------------------------------------------------------------------------------------------------
# Normalising what callers pass: DSL objects, models or plain dicts
# ------------------------------------------------------------------------------------------------

FilterInput = Union[Filter, BaseModel, Mapping[str, Any]]  # noqa: UP007 - a runtime alias
"""What ``filters=[...]`` items and ``filter_tree=`` accept."""


def to_filter_tree(value: FilterInput) -> _TreeNode:
    """Turn a DSL filter, a model or a dict into a validated filter-tree model.

    A bare typed filter (``{"type": "text", ...}`` or a ``LogRecordsTextFilter``) becomes a leaf.

    Raises:
        ConfigError: The value is not a valid filter tree.
    """
    if isinstance(value, Filter):
        return value.to_model()  # type: ignore[return-value]  # every Filter builds a tree node
    if isinstance(value, _TREE_NODES):
        return value
    if isinstance(value, _TYPED_FILTERS):
        return FilterLeaf(filter=value)
    if isinstance(value, Mapping):
        data: Any = dict(value)
        if "type" in data and not {"filter", "and", "or", "not"} & data.keys():
            data = {"filter": data}
        try:
            node: _TreeNode = filter_expression_adapter.validate_python(data)
        except pydantic.ValidationError as exc:
            raise ConfigError(f"invalid filter tree: {_first_error(exc)}") from None
        return node
    raise ConfigError(
        f"a filter tree is a filter built with galileo_otel.api.filters, a filter model or a dict, "
        f"not {type(value).__name__}"
    )


def to_filter_list(values: FilterInput | Iterable[FilterInput]) -> list[_TypedFilter]:
    """Turn the ``filters=`` argument into a list of validated typed filters (and-ed together).

    Accepts conditions, typed filter models and dicts, or one and-filter of conditions.

    Raises:
        ConfigError: An item is not one typed filter (an or/not belongs in ``filter_tree``).
    """
    items: Iterable[Any]
    if isinstance(values, (Filter, BaseModel, Mapping)):
        items = [values]
    else:
        items = values
    out: list[_TypedFilter] = []
    for item in items:
        out.extend(_flat_filters(item))
    return out


def _flat_filters(item: Any) -> list[_TypedFilter]:
    if isinstance(item, Condition):
        return [item.model]
    if isinstance(item, And):
        return [f for child in item.children for f in _flat_filters(child)]
    if isinstance(item, _TYPED_FILTERS):
        return [item]
    if isinstance(item, FilterLeaf):
        return [item.filter]
    if isinstance(item, Mapping) and "filter" in item and len(item) == 1:
        item = item["filter"]
    if isinstance(item, Mapping):
        try:
            return [filter_adapter.validate_python(dict(item))]
        except pydantic.ValidationError as exc:
            raise ConfigError(f"invalid filter: {_first_error(exc)}") from None
    raise ConfigError(
        f"filters=[...] takes single conditions (and-ed together), not {type(item).__name__}; "
        "pass or/not combinations as filter_tree="
    )
