"""A validated :class:`~linkops.tables.query.Query` → one parameterised SQL statement.

Every identifier in the statement comes from :mod:`linkops.tables.schema` (the table's
``source`` and ``t."<declared column>"``); every value from the request or the cursor is a
``?`` parameter. The statement has the shape::

    SELECT t."a" AS c0, … FROM (<source>) AS t
    WHERE <filters> AND <keyset> ORDER BY t."x" DESC, t."id" DESC LIMIT ?

*Keyset*: the page after position ``(v0, v1, …)`` under the ordering ``(e0, e1, …)`` is the rows
strictly after it in that order: ``after0 OR (eq0 AND after1) OR (eq0 AND eq1 AND after2)…``.
NULL sorts as the smallest value (SQLite's native order, so ``ORDER BY e ASC|DESC`` can use an
index), which decides what "after" means for NULL:

============  ================================  =====================================
direction     position value is NULL            position value is v
============  ================================  =====================================
asc           ``e IS NOT NULL``                 ``e > v``
desc          nothing is after (NULLs are last) ``e < v`` (``OR e IS NULL`` if nullable)
============  ================================  =====================================

A redundant bound on the first term (e.g. ``e0 <= v0``) is added when it is exact, so SQLite
can seek in an index instead of scanning from the start on deep pages.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from linkops.tables.query import Filter, OrderTerm, Query, Scalar
from linkops.tables.schema import Column

_COMPARISONS = {"gt": ">", "lt": "<", "gte": ">=", "lte": "<="}


@attrs.frozen
class CompiledQuery:
    sql: str
    params: tuple[Scalar, ...]
    # Result column i is outputs[i] (selected columns first, then sort keys not selected).
    outputs: tuple[Column, ...]


def _param(value: Scalar) -> Scalar:
    # Booleans are stored as 0/1.
    return int(value) if isinstance(value, bool) else value


def _filter_sql(flt: Filter, params: list[Scalar]) -> str:
    expr = flt.column.sql
    if flt.op == "in":
        assert isinstance(flt.value, tuple)
        present = [v for v in flt.value if v is not None]
        parts = []
        if present:
            params.extend(_param(v) for v in present)
            parts.append(f"{expr} IN ({', '.join('?' for _ in present)})")
        if len(present) != len(flt.value):
            parts.append(f"{expr} IS NULL")
        return "(" + " OR ".join(parts) + ")" if parts else "0"
    assert not isinstance(flt.value, tuple)
    if flt.op == "eq":
        if flt.value is None:
            return f"{expr} IS NULL"
        params.append(_param(flt.value))
        return f"{expr} = ?"
    params.append(_param(flt.value))
    return f"{expr} {_COMPARISONS[flt.op]} ?"


def _equal(term: OrderTerm, value: Scalar, params: list[Scalar]) -> str:
    if value is None:
        return f"{term.column.sql} IS NULL"
    params.append(value)
    return f"{term.column.sql} = ?"


def _after(term: OrderTerm, value: Scalar, params: list[Scalar]) -> str | None:
    """Rows strictly after ``value`` in this term alone; None when there are none."""
    expr = term.column.sql
    if term.dir == "asc":
        if value is None:
            return f"{expr} IS NOT NULL"
        params.append(value)
        return f"{expr} > ?"
    if value is None:
        return None
    params.append(value)
    if term.column.nullable:
        return f"({expr} < ? OR {expr} IS NULL)"
    return f"{expr} < ?"


def _bound(term: OrderTerm, value: Scalar, params: list[Scalar]) -> str | None:
    """An exact, index-friendly superset of the keyset on the first term (or None)."""
    expr = term.column.sql
    if term.dir == "asc":
        if value is None:
            return None
        params.append(value)
        return f"{expr} >= ?"
    if value is None:
        return f"{expr} IS NULL"
    if term.column.nullable:
        return None
    params.append(value)
    return f"{expr} <= ?"


def _keyset_clause(
    order: Sequence[OrderTerm], after: Sequence[Scalar], params: list[Scalar]
) -> str:
    """Rows strictly after the position ``after``; appends its parameters in text order."""
    bound = _bound(order[0], after[0], params)
    alternatives: list[str] = []
    for i, term in enumerate(order):
        local: list[Scalar] = []
        conditions = [_equal(order[j], after[j], local) for j in range(i)]
        step = _after(term, after[i], local)
        if step is None:
            continue
        conditions.append(step)
        alternatives.append("(" + " AND ".join(conditions) + ")")
        params.extend(local)
    keyset = "(" + " OR ".join(alternatives) + ")" if alternatives else "0"
    return f"{bound} AND {keyset}" if bound is not None else keyset


def compile_query(query: Query, after: Sequence[Scalar] | None = None) -> CompiledQuery:
    """The statement for one page of ``query``, starting after ``after`` if given."""
    outputs: list[Column] = list(query.columns)
    names = {c.name for c in outputs}
    outputs.extend(t.column for t in query.order if t.column.name not in names)
    select = ", ".join(f"{c.sql} AS c{i}" for i, c in enumerate(outputs))
    params: list[Scalar] = []
    where = [_filter_sql(f, params) for f in query.filters]
    if after is not None:
        where.append(_keyset_clause(query.order, after, params))
    sql = f"SELECT {select} FROM ({query.table.source}) AS t"
    if where:
        sql += " WHERE " + " AND ".join(where)
    order_by = ", ".join(f"{t.column.sql} {t.dir.upper()}" for t in query.order)
    sql += f" ORDER BY {order_by} LIMIT ?"
    params.append(query.size + 1)
    return CompiledQuery(sql, tuple(params), tuple(outputs))
