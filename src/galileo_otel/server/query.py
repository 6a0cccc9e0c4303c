"""Count/Query Sessions filters compiled to parameterised SQLite: fixed column SQL, bound values only.

Input is the wire JSON of ``filters`` / ``filter_tree`` (already validated by the shared pydantic
models); output is a WHERE clause, optional CTEs and a dict of named parameters. No value from a
request is ever pasted into SQL text: column SQL comes from :data:`SESSION_COLUMNS`, and a
``user_metadata.<key>`` column looks its key up with a bound parameter.

Semantics, for every filter type (see the server README section):

- Every leaf is two-valued: a missing value (``NULL``) never matches ``eq``/``contains``/``one_of``
  /``gt``...; ``ne`` and ``not_in`` are exactly their negation, so a missing value matches them.
- ``case_sensitive: false`` compares ``str.lower()`` of both sides (a SQL function registered by
  the store, so SQL and Python agree beyond ASCII).
- text: ``eq``/``ne``/``contains`` (substring) take a string; ``one_of``/``not_in`` a list.
- id: like text over the canonical lower-case UUID; a value that parses as a UUID is normalised.
- date: compares instants (naive values are UTC), microsecond precision.
- number: ``between`` takes ``[low, high]``, both inclusive; the others take one number.
- boolean: ``eq``/``ne``.
- collection (``tags``): a string is a one-element list. ``contains``: every value is an element;
  ``one_of``: some element is a value; ``not_in``: no element is a value; ``eq``: the same set.
- ``filters`` must all hold, and so must ``filter_tree``; ``{"and": []}`` holds, ``{"or": []}``
  does not.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticValidationError

__all__ = [
    "MAX_FILTER_CONDITIONS",
    "SESSION_COLUMNS",
    "USER_METADATA_PREFIX",
    "Column",
    "CompiledFilter",
    "FilterError",
    "compile_session_filter",
    "compile_session_sort",
    "datetime_to_us",
]

ColumnKind = Literal["id", "text", "date", "number", "boolean", "collection"]
Loc = tuple[str | int, ...]

USER_METADATA_PREFIX = "user_metadata."


@dataclass(frozen=True)
class Column:
    """A filterable session column: its filter type and the fixed SQL that reads it (alias ``s``)."""

    name: str
    kind: ColumnKind
    sql: str
    sortable: bool = True


SESSION_COLUMNS: Mapping[str, Column] = {
    column.name: column
    for column in (
        Column("id", "id", "s.id"),
        Column("previous_session_id", "id", "s.previous_session_id"),
        Column("log_stream_id", "id", "s.log_stream_id"),
        Column("experiment_id", "id", "s.experiment_id"),
        Column("name", "text", "s.name"),
        Column("external_id", "text", "s.external_id"),
        Column("logging_method", "text", "s.logging_method"),
        Column("client_version", "text", "s.client_version"),
        Column("input", "text", "s.input"),
        Column("output", "text", "s.output"),
        Column("created_at", "date", "s.created_at_us"),
        Column("updated_at", "date", "s.updated_at_us"),
        Column("num_traces", "number", "s.num_traces"),
        Column("num_spans", "number", "s.num_spans"),
        Column("num_errors", "number", "s.num_errors"),
        Column("input_tokens", "number", "s.input_tokens"),
        Column("output_tokens", "number", "s.output_tokens"),
        Column("total_tokens", "number", "s.total_tokens"),
        Column("duration_ns", "number", "s.duration_ns"),
        Column("num_llm_calls", "number", "s.num_llm_calls"),
        Column("num_failed_steps", "number", "s.num_failed_steps"),
        Column("has_children", "boolean", "(s.num_traces > 0)"),
        Column("has_error", "boolean", "(s.num_errors > 0)"),
        Column("tags", "collection", "s.tags", sortable=False),
    )
}
"""Every session column a filter or a sort may name, plus ``user_metadata.<key>`` (text)."""

# A metadata value is looked up with json_each and a bound key: json_extract's path syntax cannot
# address every key (SQLite 3.40 has no escape for '"' inside a quoted path label).
_METADATA_SQL = "(SELECT j.value FROM json_each(s.user_metadata) AS j WHERE j.key = {key})"

# SQLite's parser overflows near 40 nested parentheses and its expression tree stops at depth
# 1000, so deep trees are cut into CTEs and wide and/or lists into balanced groups.
_MAX_INLINE_DEPTH = 12
_MAX_GROUP = 64
# Each leaf references json_each up to four times and SQLite allows 65535 references per query.
MAX_FILTER_CONDITIONS = 5000

_DATETIME = TypeAdapter(datetime)


class FilterError(ValueError):
    """A filter that validates against the schema but cannot apply to sessions (answered 422).

    Attributes:
        loc: Where in the request body, FastAPI style (``("body", "filters", 0, "column_id")``).
        msg: What is wrong, naming the column and the filter type or operator.
        input: The offending value.
    """

    def __init__(self, loc: Loc, msg: str, input: Any = None) -> None:
        super().__init__(msg)
        self.loc = loc
        self.msg = msg
        self.input = input

    def to_detail(self) -> dict[str, Any]:
        """One entry of a FastAPI 422 ``detail`` list."""
        return {"type": "value_error", "loc": list(self.loc), "msg": self.msg, "input": self.input}


@dataclass
class CompiledFilter:
    """A compiled filter: ``WITH`` terms (may be empty), a WHERE expression and its parameters."""

    ctes: list[str] = field(default_factory=list)
    where: str = "1"
    params: dict[str, Any] = field(default_factory=dict)

    def with_clause(self) -> str:
        """``WITH a AS (...), b AS (...) `` or the empty string."""
        return f"WITH {', '.join(self.ctes)} " if self.ctes else ""


def datetime_to_us(value: datetime) -> int:
    """Microseconds since the epoch; a naive datetime is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    delta = value - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclass
class _Frag:
    sql: str
    depth: int


def _sql_number(value: int | float) -> int | float:
    """A number SQLite can bind: integers beyond 64 bits compare the same as floats (or inf)."""
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    return value


def _known_columns() -> str:
    return ", ".join([*SESSION_COLUMNS, USER_METADATA_PREFIX + "<key>"])


def _norm_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return value.lower()


class FilterCompiler:
    """Compiles the wire JSON of filters and filter trees into SQL over one table's rows."""

    # The rows a filter selects, for the CTEs that hold a too deeply nested part of it.
    rows_from = "sessions AS s"
    row_alias = "s"

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self.params: dict[str, Any] = {}
        self.ctes: list[str] = []
        self.leaves = 0

    def bind(self, value: Any) -> str:
        name = f"{self._prefix}{len(self.params)}"
        self.params[name] = value
        return ":" + name

    def column(self, column_id: Any, loc: Loc, *, for_sort: bool = False) -> tuple[ColumnKind, str]:
        if not isinstance(column_id, str):
            raise FilterError(loc, "column_id must be a string", column_id)
        column = SESSION_COLUMNS.get(column_id)
        if column is not None:
            if for_sort and not column.sortable:
                raise FilterError(loc, f"column '{column_id}' cannot be sorted on", column_id)
            return column.kind, column.sql
        if column_id.startswith(USER_METADATA_PREFIX) and len(column_id) > len(
            USER_METADATA_PREFIX
        ):
            key = column_id[len(USER_METADATA_PREFIX) :]
            return "text", _METADATA_SQL.format(key=self.bind(key))
        raise FilterError(
            loc,
            f"unknown column '{column_id}' for sessions; known columns: {_known_columns()}",
            column_id,
        )

    # --- tree -------------------------------------------------------------------------------

    def node(self, node: Any, loc: Loc) -> _Frag:
        if not isinstance(node, Mapping) or len(node) != 1:
            raise FilterError(
                loc,
                'a filter tree node is {"filter": {...}}, {"and": [...]}, {"or": [...]} or {"not": {...}}',
                node,
            )
        ((kind, child),) = node.items()
        if kind == "filter":
            return self.leaf(child, (*loc, "filter"))
        if kind == "not":
            inner = self.node(child, (*loc, "not"))
            return self.shallow(_Frag(f"NOT ({inner.sql})", inner.depth + 1))
        if kind in ("and", "or") and isinstance(child, Sequence) and not isinstance(child, str):
            frags = [self.node(item, (*loc, kind, i)) for i, item in enumerate(child)]
            return self.join(kind.upper(), frags)
        raise FilterError(loc, f"unknown filter tree node '{kind}'", node)

    def join(self, op: str, frags: list[_Frag]) -> _Frag:
        if not frags:
            return _Frag("1" if op == "AND" else "0", 0)
        while len(frags) > _MAX_GROUP:
            frags = [
                self.join(op, frags[i : i + _MAX_GROUP]) for i in range(0, len(frags), _MAX_GROUP)
            ]
        sql = f" {op} ".join(f"({f.sql})" for f in frags)
        return self.shallow(_Frag(sql, max(f.depth for f in frags) + 1))

    def shallow(self, frag: _Frag) -> _Frag:
        """Moves a too deeply nested expression into a CTE of matching rowids."""
        if frag.depth <= _MAX_INLINE_DEPTH:
            return frag
        name = f"{self._prefix}cte{len(self.ctes)}"
        alias = self.row_alias
        self.ctes.append(
            f"{name}(rid) AS (SELECT {alias}.rowid FROM {self.rows_from} WHERE {frag.sql})"
        )
        return _Frag(f"{alias}.rowid IN {name}", 1)

    # --- leaves -----------------------------------------------------------------------------

    def leaf(self, flt: Any, loc: Loc) -> _Frag:
        self.leaves += 1
        if self.leaves > MAX_FILTER_CONDITIONS:
            raise FilterError(
                loc, f"a query may hold at most {MAX_FILTER_CONDITIONS} filter conditions", None
            )
        if not isinstance(flt, Mapping):
            raise FilterError(
                loc, "a filter is an object with type, column_id, operator, value", flt
            )
        ftype = flt.get("type")
        if ftype == "fully_annotated":
            raise FilterError(
                (*loc, "type"),
                "the fully_annotated filter needs an annotation-queue context, "
                "which Count/Query Sessions do not have",
                ftype,
            )
        column_id = flt.get("column_id")
        kind, col = self.column(column_id, (*loc, "column_id"))
        if ftype != kind:
            raise FilterError(
                (*loc, "type"),
                f"column '{column_id}' is a {kind} column; a {ftype} filter does not apply to it "
                f"(use type '{kind}')",
                ftype,
            )
        op = flt.get("operator", "eq")
        value = flt.get("value")
        cs = bool(flt.get("case_sensitive", True))
        vloc = (*loc, "value")
        if kind == "text":
            return _Frag(self.text(col, op, value, cs, vloc), 2)
        if kind == "id":
            return _Frag(self.id(col, op, value, vloc), 2)
        if kind == "date":
            return _Frag(self.date(col, op, value, vloc), 2)
        if kind == "number":
            return _Frag(self.number(col, op, value, vloc), 2)
        if kind == "boolean":
            return _Frag(self.boolean(col, op, value, vloc), 2)
        return _Frag(self.collection(col, op, value, cs, vloc), 4)

    @staticmethod
    def _negate(op: str, positive: str) -> str:
        return f"NOT {positive}" if op in ("ne", "not_in") else positive

    def _scalar_or_list(self, op: str, value: Any, loc: Loc, what: str) -> None:
        if op in ("one_of", "not_in"):
            if not isinstance(value, list):
                raise FilterError(loc, f"operator '{op}' needs a list of {what}s", value)
        elif isinstance(value, list):
            raise FilterError(loc, f"operator '{op}' needs a single {what}, not a list", value)

    def text(self, col: str, op: str, value: Any, cs: bool, loc: Loc) -> str:
        self._scalar_or_list(op, value, loc, "string")
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(v, str) for v in items):
            raise FilterError(loc, "a text filter compares strings", value)
        lhs = col if cs else f"galileo_lower({col})"
        if not cs:
            value = [v.lower() for v in value] if isinstance(value, list) else value.lower()
        return self._compare(op, lhs, value, loc)

    def id(self, col: str, op: str, value: Any, loc: Loc) -> str:
        self._scalar_or_list(op, value, loc, "id")
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(v, str) for v in items):
            raise FilterError(loc, "an id filter compares ids (strings)", value)
        value = [_norm_id(v) for v in value] if isinstance(value, list) else _norm_id(value)
        return self._compare(op, col, value, loc)

    def _compare(self, op: str, lhs: str, value: Any, loc: Loc) -> str:
        if op in ("eq", "ne"):
            return self._negate(op, f"coalesce({lhs} = {self.bind(value)}, 0)")
        if op == "contains":
            return f"coalesce(instr({lhs}, {self.bind(value)}) > 0, 0)"
        if op in ("one_of", "not_in"):
            param = self.bind(json.dumps(value))
            return self._negate(op, f"coalesce({lhs} IN (SELECT value FROM json_each({param})), 0)")
        raise FilterError((*loc[:-1], "operator"), f"unknown operator '{op}'", op)

    def date(self, col: str, op: str, value: Any, loc: Loc) -> str:
        try:
            instant = value if isinstance(value, datetime) else _DATETIME.validate_python(value)
        except PydanticValidationError:
            raise FilterError(loc, "a date filter needs an ISO 8601 date-time", value) from None
        return self._order(op, col, datetime_to_us(instant), loc)

    def _order(self, op: str, col: str, value: Any, loc: Loc) -> str:
        symbol = {"eq": "=", "ne": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}.get(op)
        if symbol is None:
            raise FilterError((*loc[:-1], "operator"), f"unknown operator '{op}'", op)
        return self._negate(op, f"coalesce({col} {symbol} {self.bind(value)}, 0)")

    @staticmethod
    def _is_number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    def bind_number(self, value: int | float) -> str:
        return self.bind(_sql_number(value))

    def number(self, col: str, op: str, value: Any, loc: Loc) -> str:
        if op == "between":
            if not (
                isinstance(value, list) and len(value) == 2 and all(map(self._is_number, value))
            ):
                raise FilterError(loc, "operator 'between' needs [low, high]", value)
            low, high = self.bind_number(value[0]), self.bind_number(value[1])
            return f"coalesce({col} BETWEEN {low} AND {high}, 0)"
        if not self._is_number(value):
            raise FilterError(loc, f"operator '{op}' needs a single number", value)
        return self._order(op, col, _sql_number(value), loc)

    def boolean(self, col: str, op: str, value: Any, loc: Loc) -> str:
        if not isinstance(value, bool):
            raise FilterError(loc, "a boolean filter needs true or false", value)
        if op not in ("eq", "ne"):
            raise FilterError((*loc[:-1], "operator"), f"unknown operator '{op}'", op)
        return self._negate(op, f"coalesce({col} = {self.bind(int(value))}, 0)")

    def collection(self, col: str, op: str, value: Any, cs: bool, loc: Loc) -> str:
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise FilterError(loc, "a collection filter needs a string or a list of strings", value)
        elem = "t.value" if cs else "galileo_lower(t.value)"
        if not cs:
            values = [v.lower() for v in values]
        param = self.bind(json.dumps(values))
        has_all = (
            f"NOT EXISTS (SELECT 1 FROM json_each({param}) AS v WHERE NOT EXISTS "
            f"(SELECT 1 FROM json_each({col}) AS t WHERE {elem} = v.value))"
        )
        some_in = (
            f"EXISTS (SELECT 1 FROM json_each({col}) AS t "
            f"WHERE {elem} IN (SELECT value FROM json_each({param})))"
        )
        if op == "contains":
            return has_all
        if op == "one_of":
            return some_in
        if op == "not_in":
            return f"NOT {some_in}"
        if op == "eq":
            only_those = (
                f"NOT EXISTS (SELECT 1 FROM json_each({col}) AS t "
                f"WHERE {elem} NOT IN (SELECT value FROM json_each({param})))"
            )
            return f"{has_all} AND {only_those}"
        raise FilterError((*loc[:-1], "operator"), f"unknown operator '{op}'", op)


def compile_session_filter(
    filters: Sequence[Mapping[str, Any]] | None = None,
    filter_tree: Mapping[str, Any] | None = None,
    *,
    param_prefix: str = "f",
) -> CompiledFilter:
    """Compile ``filters`` (all must hold) and ``filter_tree`` into SQL over ``sessions AS s``.

    Args:
        filters: The wire JSON of ``filters``: typed filters that must all match.
        filter_tree: The wire JSON of ``filter_tree``: and/or/not nested to any depth.
        param_prefix: Prefix of the named parameters (keeps them apart from the caller's).

    Returns:
        The WHERE expression, the CTEs it refers to and its named parameters.

    Raises:
        FilterError: An unknown column, a filter type that does not fit the column, or a value
            that does not fit the operator; ``loc`` points into the request body.
    """
    compiler = FilterCompiler(param_prefix)
    frags = [compiler.leaf(flt, ("body", "filters", i)) for i, flt in enumerate(filters or ())]
    if filter_tree is not None:
        frags.append(compiler.node(filter_tree, ("body", "filter_tree")))
    where = compiler.join("AND", frags).sql if frags else "1"
    return CompiledFilter(ctes=compiler.ctes, where=where, params=compiler.params)


def compile_session_sort(
    sort: Mapping[str, Any] | None, *, param_prefix: str = "o"
) -> tuple[str, dict[str, Any]]:
    """Compile a Query Sessions ``sort`` into an ORDER BY list (default: newest first).

    Ties are broken by insertion order in the same direction, so pages never overlap.

    Raises:
        FilterError: The column is unknown or cannot be sorted on.
    """
    if sort is None:
        return "s.created_at_us DESC, s.rowid DESC", {}
    compiler = FilterCompiler(param_prefix)
    _, col = compiler.column(sort.get("column_id"), ("body", "sort", "column_id"), for_sort=True)
    direction = "ASC" if sort.get("ascending", True) else "DESC"
    return f"{col} {direction}, s.rowid {direction}", compiler.params
