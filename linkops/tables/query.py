"""Validation of a table query request into a normalized :class:`Query`.

The request is untrusted JSON (``{table, columns?, filters?, sort?, page?}``). Every name in it
is looked up in the declared tables (:mod:`linkops.tables.schema`); from here on only the
declared :class:`~linkops.tables.schema.Column` objects travel, never request strings.

Decisions (documented for API users):

- ``page.size`` defaults to 50; a size above 500 is *clamped* to 500 (the applied size is
  reported in ``page.size`` and ``meta.query``); a size below 1 or not an integer is a 400.
- ``eq`` with ``null`` matches NULL (``IS NULL``); ``in`` may contain ``null`` for the same
  meaning; ``gt``/``lt``/``gte``/``lte`` with ``null`` are a 400. A NULL cell never matches a
  comparison.
- ``time`` values are ISO-8601 strings (``Z`` or an offset; naive means UTC), normalized to
  the stored fixed-width UTC form before comparing.
- ``bool`` values must be JSON booleans; ``int`` values JSON integers within int64;
  ``float`` values finite numbers (integers within int64 included).
- The sort is the requested one (or the table's default), followed by the table's unique key
  columns as a tie-break, in the direction of the last sort term.

*Errors*: :class:`~linkops.errors.ValidationError` with codes ``INVALID_TABLE``,
``INVALID_COLUMN``, ``INVALID_OPERATOR``, ``INVALID_FILTER`` or ``VALIDATION_ERROR`` (request
shape); message and ``details`` name the offending thing and where it was (``field``).
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Literal

import attrs

from linkops.errors import ValidationError
from linkops.tables.schema import TABLES, Column, Table
from linkops.timeutil import parse_iso, to_iso

Scalar = str | int | float | bool | None
Op = Literal["eq", "in", "gt", "lt", "gte", "lte"]
Direction = Literal["asc", "desc"]

OPERATORS: tuple[Op, ...] = ("eq", "in", "gt", "lt", "gte", "lte")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
MAX_IN_VALUES = 100
MAX_FILTERS = 32
MAX_STRING = 1024
# Cursors carry sort-key values (a long description sorts too); the MAC check is cheap.
MAX_CURSOR = 65536
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
_REQUEST_KEYS = frozenset({"table", "columns", "filters", "sort", "page"})


@attrs.frozen
class Filter:
    column: Column
    op: Op
    # A scalar, or for ``in`` a tuple of scalars; normalized (times canonical).
    value: Scalar | tuple[Scalar, ...]

    def applied(self) -> dict[str, Any]:
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        return {"col": self.column.name, "op": self.op, "val": value}


@attrs.frozen
class OrderTerm:
    column: Column
    dir: Direction


@attrs.frozen
class Query:
    table: Table
    columns: tuple[Column, ...]
    filters: tuple[Filter, ...]
    # The full ordering: requested (or default) sort plus the unique-key tie-break.
    order: tuple[OrderTerm, ...]
    size: int
    cursor: str | None

    def applied(self) -> dict[str, Any]:
        """The query as it was applied, in request form (reusable as a request)."""
        return {
            "table": self.table.name,
            "columns": [c.name for c in self.columns],
            "filters": [f.applied() for f in self.filters],
            "sort": [{"col": t.column.name, "dir": t.dir} for t in self.order],
            "page": {"size": self.size, "cursor": self.cursor},
        }

    def shape_hash(self) -> str:
        """Identifies what a cursor may continue: table declaration, filters and ordering.

        Column selection and page size are left out: changing them between pages does not
        move the keyset position. Filter order is irrelevant (they are a conjunction).
        """
        filters = sorted(json.dumps(f.applied(), sort_keys=True) for f in self.filters)
        shape = {
            "table": self.table.name,
            "fingerprint": self.table.fingerprint,
            "filters": filters,
            "order": [[t.column.name, t.dir] for t in self.order],
        }
        text = json.dumps(shape, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:32]


def _show(value: Any) -> str:
    """A short, safe rendering of request text for an error message."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _fail(code: str, message: str, **details: Any) -> ValidationError:
    return ValidationError(message, code=code, details=details)


def parse_query(request: Any) -> Query:
    """Validate ``request`` against the declared tables; see the module docstring."""
    if not isinstance(request, dict):
        raise _fail("VALIDATION_ERROR", "a table query must be a JSON object", field="$")
    unknown = sorted(str(k) for k in request if k not in _REQUEST_KEYS)
    if unknown:
        raise _fail(
            "VALIDATION_ERROR",
            f"unknown field {_show(unknown[0])} in table query",
            field=unknown[0],
            allowed=sorted(_REQUEST_KEYS),
        )
    table = _table(request.get("table"))
    columns = _columns(table, request.get("columns"))
    filters = _filters(table, request.get("filters"))
    order = _order(table, request.get("sort"))
    size, cursor = _page(request.get("page"))
    return Query(table, columns, filters, order, size, cursor)


def _table(name: Any) -> Table:
    table = TABLES.get(name) if isinstance(name, str) else None
    if table is None:
        raise _fail(
            "INVALID_TABLE",
            f"unknown table {_show(name)}",
            table=name if isinstance(name, str) else _show(name),
            known=sorted(TABLES),
        )
    return table


def _column(table: Table, name: Any, field: str) -> Column:
    column = table.by_name.get(name) if isinstance(name, str) else None
    if column is None:
        raise _fail(
            "INVALID_COLUMN",
            f"unknown column {_show(name)} in table {table.name} (at {field})",
            column=name if isinstance(name, str) else _show(name),
            table=table.name,
            field=field,
            known=[c.name for c in table.columns],
        )
    return column


def _columns(table: Table, value: Any) -> tuple[Column, ...]:
    if value is None:
        return table.columns
    if not isinstance(value, list) or not value:
        raise _fail(
            "VALIDATION_ERROR", "columns must be a non-empty list of column names", field="columns"
        )
    chosen: dict[str, Column] = {}
    for i, name in enumerate(value):
        column = _column(table, name, f"columns[{i}]")
        chosen.setdefault(column.name, column)
    return tuple(chosen.values())


def _filters(table: Table, value: Any) -> tuple[Filter, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _fail("INVALID_FILTER", "filters must be a list of {col, op, val}", field="filters")
    if len(value) > MAX_FILTERS:
        raise _fail(
            "INVALID_FILTER", f"at most {MAX_FILTERS} filters are allowed", field="filters"
        )
    return tuple(_filter(table, item, f"filters[{i}]") for i, item in enumerate(value))


def _filter(table: Table, item: Any, field: str) -> Filter:
    if not isinstance(item, dict) or not {"col", "op"} <= item.keys() or not item.keys() <= {
        "col",
        "op",
        "val",
    }:
        raise _fail(
            "INVALID_FILTER", f"{field} must be an object {{col, op, val}}", field=field
        )
    column = _column(table, item["col"], f"{field}.col")
    op = item["op"]
    if op not in OPERATORS:
        raise _fail(
            "INVALID_OPERATOR",
            f"unknown operator {_show(op)} at {field}.op",
            operator=op if isinstance(op, str) else _show(op),
            field=f"{field}.op",
            known=list(OPERATORS),
        )
    raw = item.get("val")
    if op == "in":
        if not isinstance(raw, list):
            raise _fail(
                "INVALID_FILTER", f"{field}.val must be a list for 'in'", field=f"{field}.val"
            )
        if len(raw) > MAX_IN_VALUES:
            raise _fail(
                "INVALID_FILTER",
                f"{field}.val has {len(raw)} values; 'in' allows at most {MAX_IN_VALUES}",
                field=f"{field}.val",
            )
        values = tuple(_value(column, v, f"{field}.val[{i}]") for i, v in enumerate(raw))
        return Filter(column, op, values)
    scalar = _value(column, raw, f"{field}.val")
    if scalar is None and op != "eq":
        raise _fail(
            "INVALID_FILTER", f"{field}: null can only be used with 'eq' or 'in'", field=field
        )
    return Filter(column, op, scalar)


def _bad_value(column: Column, value: Any, field: str, why: str) -> ValidationError:
    return _fail(
        "INVALID_FILTER",
        f"{field}: {_show(value)} is not a valid {column.type} for column {column.name} ({why})",
        field=field,
        column=column.name,
        type=column.type,
    )


def _value(column: Column, value: Any, field: str) -> Scalar:
    if value is None:
        return None
    if isinstance(value, dict | list | tuple):
        raise _bad_value(column, "<nested>", field, "nested values are not allowed")
    kind = column.type
    if kind == "bool":
        if not isinstance(value, bool):
            raise _bad_value(column, value, field, "expected true or false")
        return value
    if kind in ("int", "float") and isinstance(value, int) and not isinstance(value, bool):
        if not INT64_MIN <= value <= INT64_MAX:
            raise _bad_value(column, value, field, "outside the 64-bit integer range")
        return value
    if kind == "float" and isinstance(value, float):
        if not math.isfinite(value):
            raise _bad_value(column, value, field, "NaN and Infinity are not allowed")
        return value
    if kind in ("int", "float"):
        raise _bad_value(column, value, field, "expected a number")
    if not isinstance(value, str):
        raise _bad_value(column, value, field, "expected a string")
    if len(value) > MAX_STRING:
        raise _bad_value(column, "<long string>", field, f"longer than {MAX_STRING} characters")
    if kind == "time":
        try:
            return to_iso(parse_iso(value))
        except (ValueError, OverflowError):
            raise _bad_value(column, value, field, "expected an ISO-8601 time")
    return value


def _order(table: Table, value: Any) -> tuple[OrderTerm, ...]:
    terms: list[OrderTerm] = []
    if value is None or value == []:
        terms = [OrderTerm(table.by_name[t.column], t.dir) for t in table.default_sort]
    elif not isinstance(value, list) or len(value) > len(table.columns):
        raise _fail("VALIDATION_ERROR", "sort must be a list of {col, dir}", field="sort")
    else:
        seen: set[str] = set()
        for i, item in enumerate(value):
            field = f"sort[{i}]"
            if not isinstance(item, dict) or "col" not in item or not item.keys() <= {
                "col",
                "dir",
            }:
                raise _fail("VALIDATION_ERROR", f"{field} must be {{col, dir}}", field=field)
            column = _column(table, item["col"], f"{field}.col")
            direction = item.get("dir", "asc")
            if direction not in ("asc", "desc"):
                raise _fail(
                    "VALIDATION_ERROR",
                    f"{field}.dir must be 'asc' or 'desc', not {_show(direction)}",
                    field=f"{field}.dir",
                )
            if column.name in seen:
                raise _fail(
                    "VALIDATION_ERROR",
                    f"{field}: column {column.name} is sorted twice",
                    field=field,
                    column=column.name,
                )
            seen.add(column.name)
            terms.append(OrderTerm(column, direction))
    # Tie-break in the last term's direction so one index can serve the whole ORDER BY.
    tie_dir = terms[-1].dir
    named = {t.column.name for t in terms}
    terms.extend(OrderTerm(table.by_name[k], tie_dir) for k in table.key if k not in named)
    return tuple(terms)


def _page(value: Any) -> tuple[int, str | None]:
    if value is None:
        return DEFAULT_PAGE_SIZE, None
    if not isinstance(value, dict) or not value.keys() <= {"size", "cursor"}:
        raise _fail("VALIDATION_ERROR", "page must be {size?, cursor?}", field="page")
    size = value.get("size", DEFAULT_PAGE_SIZE)
    if size is None:
        size = DEFAULT_PAGE_SIZE
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise _fail(
            "VALIDATION_ERROR",
            f"page.size must be a positive integer, not {_show(size)}",
            field="page.size",
        )
    cursor = value.get("cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise _fail("INVALID_CURSOR", "page.cursor must be a string", field="page.cursor")
    if cursor == "":
        cursor = None
    return min(size, MAX_PAGE_SIZE), cursor
