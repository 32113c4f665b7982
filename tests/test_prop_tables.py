"""Property tests for the table query engine (SPEC §9 properties 25, 26, 27).

Every example writes generated rows into a real SQLite database (``linkops.db.Database`` on a
temp file), runs the query through :class:`linkops.tables.TableService` page by page, and
compares each page with the Python model in ``tests/test_tables_model.py``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linkops.db import Database
from linkops.errors import ValidationError
from linkops.tables import TABLES, TableService
from linkops.tables.schema import Column
from linkops.timeutil import now_iso, parse_iso
from tests import test_tables_model as model

SETTINGS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(tmp_path / "tables.db")
    yield database
    database.close()


def _load(db: Database, data: model.Dataset) -> None:
    def fill(conn: sqlite3.Connection) -> None:
        model.reset(conn)
        data.write(conn)

    db.write_sync(fill)


def _counts(db: Database) -> dict[str, Any]:
    def read(conn: sqlite3.Connection) -> dict[str, Any]:
        schema = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
        counts = {
            t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            for t in ("machines", "operations", "scripts", "users")
        }
        return {"schema": [tuple(r) for r in schema], "counts": counts}

    return db.read_sync(read)


# -- strategies for queries -----------------------------------------------------------------


def _shifted(stamp: str) -> str:
    """The same instant written with a +02:00 offset (the engine must normalize it)."""
    return parse_iso(stamp).astimezone(timezone(timedelta(hours=2))).isoformat()


@st.composite
def _value(draw: st.DrawFn, column: Column, rows: list[model.Row]) -> tuple[Any, Any]:
    """``(request value, model value)`` for ``column``: usually one that occurs in the data."""
    seen = [r[column.name] for r in rows if r[column.name] is not None]
    extras: dict[str, list[Any]] = {
        "str": ["alpha", "m03", "VPS", "zz", ""],
        "int": [-1, 0, 1, 3, 22, 2**63 - 1],
        "float": [0, 1, 2.5, -3.0, 1e9],
        "bool": [True, False],
        "time": model.TIMES,
    }
    pool = seen + extras[column.type]
    value = draw(st.sampled_from(pool))
    if column.type == "bool":
        value = bool(value)
    if column.type == "time" and draw(st.booleans()):
        return _shifted(value), value
    return value, value


@st.composite
def _filter(draw: st.DrawFn, table: str, rows: list[model.Row]) -> tuple[model.Row, model.Row]:
    column = draw(st.sampled_from(TABLES[table].columns))
    op = draw(st.sampled_from(["eq", "in", "gt", "lt", "gte", "lte"]))
    request: Any
    wanted: Any
    if op == "in":
        pairs = draw(st.lists(st.one_of(st.just((None, None)), _value(column, rows)), max_size=4))
        request = [p[0] for p in pairs]
        wanted = [p[1] for p in pairs]
    elif op == "eq" and column.nullable and draw(st.integers(0, 4)) == 0:
        request = wanted = None
    else:
        request, wanted = draw(_value(column, rows))
    return (
        {"col": column.name, "op": op, "val": request},
        {"col": column.name, "op": op, "val": wanted},
    )


@st.composite
def _query(draw: st.DrawFn, table: str, rows: list[model.Row]) -> tuple[model.Row, list[model.Row]]:
    """A request (without page) and the model's filters (normalized values)."""
    names = [c.name for c in TABLES[table].columns]
    request: model.Row = {"table": table}
    if draw(st.booleans()):
        request["columns"] = draw(st.lists(st.sampled_from(names), min_size=1, max_size=5))
    pairs = draw(st.lists(_filter(table, rows), max_size=3))
    if pairs:
        request["filters"] = [p[0] for p in pairs]
    sort_cols = draw(st.lists(st.sampled_from(names), max_size=3, unique=True))
    sort: list[model.Row] = []
    for col in sort_cols:
        direction = draw(st.sampled_from(["asc", "desc", None]))
        sort.append({"col": col} if direction is None else {"col": col, "dir": direction})
    explicit_empty = draw(st.booleans())
    if sort or explicit_empty:
        request["sort"] = sort
    return request, [p[1] for p in pairs]


# -- the walk -------------------------------------------------------------------------------


def _check_meta(result: model.Row, before: str, after: str) -> None:
    as_of = result["meta"]["as_of"]
    assert isinstance(as_of, str) and as_of.endswith("Z")
    assert parse_iso(as_of).utcoffset() == timedelta(0)
    assert before <= as_of <= after


@settings(SETTINGS, max_examples=200)
@given(data=st.data())
def test_property_26_queries_filter_sort_and_paginate(db: Database, data: st.DataObject) -> None:
    """Property 26: table queries filter, sort and paginate correctly.

    Every page equals the Python model's page (filters, order with tie-break, projection);
    walking all pages yields every matching row exactly once, in order, even when rows are
    inserted between page fetches (a new row appears iff it sorts after the current position).
    Property 27 rides along: every page carries ``meta.as_of`` from the query's time.
    """
    table = data.draw(st.sampled_from(model.MODELLED_TABLES), label="table")
    dataset = data.draw(model.datasets(), label="dataset")
    _load(db, dataset)
    rows = model.table_rows(table, dataset)
    request, filters = data.draw(_query(table, rows), label="query")
    size = data.draw(st.integers(1, 6), label="size")
    inserting = table != "tbl_infrastructure" and data.draw(st.booleans(), label="inserting")
    batches: list[model.Dataset] = []
    if inserting:
        for b in range(data.draw(st.integers(1, 3), label="batches")):
            batches.append(data.draw(model.datasets(max_size=3, batch=b + 1), label="insert"))
    order = model.full_order(table, request.get("sort"))
    columns = request.get("columns") or [c.name for c in TABLES[table].columns]
    columns = list(dict.fromkeys(columns))
    service = TableService(db, b"property-26-secret")
    original = model.evaluate(rows, filters, order)

    async def walk() -> list[model.Row]:
        cursor: str | None = None
        position: model.Row | None = None
        walked: list[model.Row] = []
        page_no = 0
        while True:
            before = now_iso()
            result = await service.query({**request, "page": {"size": size, "cursor": cursor}})
            _check_meta(result, before, now_iso())
            assert result["table"] == table
            assert result["page"]["size"] == size
            expected_all = model.evaluate(model.table_rows(table, dataset), filters, order)
            remaining = model.after(expected_all, position, order)
            expected = remaining[:size]
            assert result["rows"] == model.project(expected, columns), (page_no, result["meta"])
            walked.extend(expected)
            cursor = result["page"]["next_cursor"]
            assert (cursor is not None) == (len(remaining) > size)
            if cursor is None:
                return walked
            position = expected[-1]
            if page_no < len(batches):
                dataset.extend(batches[page_no])
                await db.write(batches[page_no].write)
            page_no += 1

    walked = trio.run(walk)
    # The SPEC property, stated on its own: each original match exactly once, in order.
    keys = [tuple(r[k] for k in TABLES[table].key) for r in walked]
    assert len(keys) == len(set(keys))
    original_keys = [tuple(r[k] for k in TABLES[table].key) for r in original]
    assert [k for k in keys if k in set(original_keys)] == original_keys
    assert walked == model.evaluate(walked, filters, order)


@SETTINGS
@given(
    name=st.one_of(
        st.text(max_size=40).filter(lambda s: s not in TABLES),
        st.sampled_from(
            [
                "machines",
                "users",
                "sqlite_master",
                "tbl_links;DROP TABLE machines",
                "TBL_LINKS",
                " tbl_links",
                "tbl_links ",
                "tbl_links--",
            ]
        ),
        st.integers(),
        st.none(),
        st.lists(st.just("tbl_links"), max_size=2),
        st.dictionaries(st.just("name"), st.just("tbl_links")),
    )
)
def test_property_25_unknown_table_names_are_rejected(db: Database, name: Any) -> None:
    """Property 25: unknown table names are rejected with 400 INVALID_TABLE naming them."""
    before = _counts(db)
    service = TableService(db, b"property-25-secret")

    async def ask() -> ValidationError:
        with pytest.raises(ValidationError) as caught:
            await service.query({"table": name, "columns": ["id"]})
        return caught.value

    error = trio.run(ask)
    assert error.code == "INVALID_TABLE"
    assert error.status == 400
    if isinstance(name, str):
        assert error.details["table"] == name
        assert repr(name)[:60] in error.message or len(repr(name)) > 80
    assert _counts(db) == before


@SETTINGS
@given(
    table=st.sampled_from(sorted(TABLES)),
    size=st.one_of(st.none(), st.integers(1, 10_000)),
    dataset=model.datasets(max_size=5),
)
def test_property_27_results_carry_as_of(
    db: Database, table: str, size: int | None, dataset: model.Dataset
) -> None:
    """Property 27: every table result carries ``meta.as_of`` (ISO-8601 UTC, the query time)
    and the applied query (with the page size as applied: default 50, clamped to 500)."""
    _load(db, dataset)
    service = TableService(db, b"property-27-secret")
    request: model.Row = {"table": table}
    if size is not None:
        request["page"] = {"size": size}

    async def ask() -> tuple[str, model.Row, str]:
        before = now_iso()
        result = await service.query(request)
        return before, result, now_iso()

    before, result, after = trio.run(ask)
    _check_meta(result, before, after)
    applied = result["meta"]["query"]
    expected_size = 50 if size is None else min(size, 500)
    assert applied["table"] == table
    assert applied["page"]["size"] == result["page"]["size"] == expected_size
    assert applied["columns"] == [c.name for c in TABLES[table].columns]
    assert [s["col"] for s in applied["sort"]][-len(TABLES[table].key) :] == list(
        TABLES[table].key
    ) or set(TABLES[table].key) <= {s["col"] for s in applied["sort"]}
