"""Structured filters from the network: equality, IN and ranges on known metadata columns.

A client never sends SQL (unless the server was started with ``--allow-sql``). It sends a list of
conditions, all of which must hold::

    [{"column": "task", "op": "eq", "value": "qa"},
     {"column": "n", "op": "gte", "value": 3}, {"column": "n", "op": "lt", "value": 10},
     {"column": "task", "op": "in", "value": ["qa", "summary"]}]

Each column must be a metadata column of the table (or ``id``) with a scalar kind, and each value must
have that column's kind; the SQL is then written here, with every string literal quoted, so a value
such as ``"x' OR 1=1 --"`` stays one string literal.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from airsearch.errors import InputError

OPS = {"eq": "=", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "in": "IN"}
ORDERED_KINDS = ("int", "float", "str")
MAX_IN_VALUES = 1000
MAX_CONDITIONS = 32
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def filterable_columns(columns: Mapping[str, str]) -> dict[str, str]:
    """Column -> kind of every column a filter may name (scalar metadata columns and ``id``)."""
    return {"id": "str", **{c: k for c, k in columns.items() if k != "json"}}


def filter_sql(conditions: Sequence[Mapping[str, Any]], columns: Mapping[str, str]) -> str | None:
    """The SQL ``WHERE`` text of ``conditions`` (joined with AND), checked against the table's columns."""
    if len(conditions) > MAX_CONDITIONS:
        raise InputError(f"at most {MAX_CONDITIONS} conditions", field="filters")
    allowed = filterable_columns(columns)
    parts = [_condition(c, allowed, f"filters[{i}]") for i, c in enumerate(conditions)]
    return " AND ".join(parts) or None


def _condition(cond: Mapping[str, Any], allowed: Mapping[str, str], field: str) -> str:
    if not isinstance(cond, Mapping) or set(cond) - {"column", "op", "value"}:
        raise InputError("each condition is {column, op, value}", field=field)
    column, op, value = cond.get("column"), cond.get("op", "eq"), cond.get("value")
    if column not in allowed:
        raise InputError(f"unknown column {column!r}; filterable: {sorted(allowed)}", field=f"{field}.column")
    if op not in OPS:
        raise InputError(f"unknown op {op!r}; one of {sorted(OPS)}", field=f"{field}.op")
    kind = allowed[column]
    if op in ("gt", "gte", "lt", "lte") and kind not in ORDERED_KINDS:
        raise InputError(f"column {column!r} ({kind}) has no order", field=f"{field}.op")
    if op == "in":
        if not isinstance(value, list) or not 0 < len(value) <= MAX_IN_VALUES:
            raise InputError(f"'in' takes a list of 1..{MAX_IN_VALUES} values", field=f"{field}.value")
        literal = "(" + ", ".join(_literal(v, kind, f"{field}.value") for v in value) + ")"
    else:
        literal = _literal(value, kind, f"{field}.value")
    return f"{_identifier(column)} {OPS[op]} {literal}"


def _identifier(column: str) -> str:
    if _IDENT.match(column):
        return column
    if "`" in column:
        raise InputError(f"column {column!r} cannot be filtered on", field="filters")
    return f"`{column}`"


def _literal(value: Any, kind: str, field: str) -> str:
    ok = {
        "str": isinstance(value, str),
        "bool": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
    }.get(kind, False)
    if not ok:
        raise InputError(f"expected a {kind} value, got {value!r}", field=field)
    if kind == "str":
        if "\x00" in value:
            raise InputError("strings may not contain NUL", field=field)
        return "'" + value.replace("'", "''") + "'"
    if kind == "bool":
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError("numbers must be finite", field=field)
    return repr(int(value)) if kind == "int" else repr(float(value))
