"""The table query service against a real SQLite file: every table, validation, cursors,
injection attempts. (Properties 25-27 with generated data are in test_prop_tables.py.)"""

from __future__ import annotations

import base64
import json
import math
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linkops.db import Database
from linkops.errors import ValidationError
from linkops.tables import TABLES, TableService
from linkops.tables.compile import compile_query
from linkops.tables.query import parse_query
from tests import test_tables_model as model

SECRET_CONTENT = "#!/bin/bash\necho TOP-SECRET-SCRIPT-BODY\n"
PASSWORD_HASH = "scrypt$SECRET-PASSWORD-HASH"
T = model.TIMES


def _seed(conn: sqlite3.Connection) -> None:
    machines = [
        {
            **dict.fromkeys(model.MACHINE_COLUMNS),
            "id": f"m{i:02d}",
            "name": f"name-{i % 3}",
            "type": ["VPS", "Proxmox", "VM"][i % 3],
            "host": "10.0.0.1",
            "port": 22,
            "user": "root",
            "tags": "[]",
            "client_id": f"LINKOPS-{i}",
            "enrollment_required": True,
            "enrolled": i % 2 == 0,
            "status": ["online", "offline", "unknown"][i % 3],
            "latency_ms": None if i % 4 == 0 else float(i),
            "last_seen": None if i % 4 == 0 else T[i % 6],
            "created_at": T[0],
            "updated_at": T[1],
        }
        for i in range(9)
    ]
    model.insert(conn, "machines", machines)
    ops = [
        {
            **dict.fromkeys(model.OPERATION_COLUMNS),
            "seq": i,
            "id": f"OP-{10000 + i}",
            "status": ["queued", "running", "success", "failed"][i % 4],
            "scripts": '["s1"]',
            "targets": '["m00"]',
            "concurrency": 2,
            "require_enrollment": True,
            "triggered_by": "alice",
            "created_at": T[i % 6],
            "result": json.dumps({"success": i, "failed": 1}),
        }
        for i in range(1, 9)
    ]
    model.insert(conn, "operations", ops)
    conn.execute(
        "INSERT INTO scripts (id, name, description, path, sha256, content, updated_at)"
        " VALUES ('s1', 'Update', 'apt upgrade', 'scripts/update.sh', 'abc', ?, ?)",
        (SECRET_CONTENT, T[2]),
    )
    conn.execute(
        "INSERT INTO users (username, username_norm, password_hash, created_at, updated_at)"
        " VALUES ('admin', 'admin', ?, ?, ?)",
        (PASSWORD_HASH, T[0], T[0]),
    )
    conn.execute(
        "INSERT INTO terminal_workspaces (id, owner, layout, max_panes, created_at, updated_at)"
        " VALUES ('ws-1', 'admin', 'grid2x1', 2, ?, ?)",
        (T[0], T[0]),
    )
    for pane, target in (("A", "m00"), ("B", None)):
        conn.execute(
            "INSERT INTO terminal_panes (workspace_id, pane, target) VALUES ('ws-1', ?, ?)",
            (pane, target),
        )
    conn.execute(
        "INSERT INTO terminal_sessions (workspace_id, pane, target, username, opened_at)"
        " VALUES ('ws-1', 'A', 'm00', 'admin', ?)",
        ("2026-06-01T00:00:00.000000Z",),
    )


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(tmp_path / "tables.db")
    database.write_sync(_seed)
    yield database
    database.close()


@pytest.fixture
def service(db: Database) -> TableService:
    return TableService(db, b"unit-test-secret")


def _snapshot(db: Database) -> dict[str, Any]:
    def read(conn: sqlite3.Connection) -> dict[str, Any]:
        schema = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
        tables = [r[1] for r in schema if r[0] == "table" and not r[1].startswith("sqlite_")]
        counts = {t: conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}
        return {"schema": [tuple(r) for r in schema], "counts": counts}

    return db.read_sync(read)


_PY_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "time": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
}


@pytest.mark.parametrize("table", sorted(TABLES))
async def test_every_table_answers_with_its_declared_columns(
    service: TableService, table: str
) -> None:
    result = await service.query({"table": table})
    spec = TABLES[table]
    assert result["rows"], f"{table} has no rows in the seeded database"
    for row in result["rows"]:
        assert list(row) == [c.name for c in spec.columns]
        for column in spec.columns:
            value = row[column.name]
            if value is None:
                assert column.nullable, (table, column.name)
            else:
                assert isinstance(value, _PY_TYPES[column.type]), (table, column.name, value)
                if column.type == "int":
                    assert not isinstance(value, bool)
    text = json.dumps(result)
    assert "TOP-SECRET-SCRIPT-BODY" not in text
    assert "SECRET-PASSWORD-HASH" not in text


def test_no_table_declares_secrets_or_script_content() -> None:
    forbidden = {"content", "password_hash", "password", "token", "jti", "secret", "key"}
    for table in TABLES.values():
        assert not forbidden & {c.name for c in table.columns}, table.name
        lowered = table.source.lower()
        for word in ("content", "password", "users", "revoked_tokens", "auth_attempts"):
            assert word not in lowered, (table.name, word)


async def test_infrastructure_counts_by_type(service: TableService) -> None:
    result = await service.query({"table": "tbl_infrastructure"})
    by_type = {r["type"]: r for r in result["rows"]}
    # Seed: i in 0..8, type i%3, enrolled when i even, status i%3.
    assert by_type["VPS"] == {
        "type": "VPS", "total": 3, "enrolled": 2, "online": 3, "offline": 0, "unknown": 0,
    }  # fmt: skip
    assert by_type["Proxmox"]["offline"] == 3
    assert by_type["VM"]["unknown"] == 3 and by_type["VM"]["enrolled"] == 2
    assert by_type["Proxmox"]["enrolled"] == 1


async def test_recent_activity_merges_operations_and_sessions_newest_first(
    service: TableService,
) -> None:
    result = await service.query({"table": "tbl_recent_activity", "columns": ["kind", "at"]})
    rows = result["rows"]
    assert rows[0]["kind"] == "terminal"  # opened in June, after every operation
    assert {r["kind"] for r in rows} == {"operation", "terminal"}
    stamps = [r["at"] for r in rows]
    assert stamps == sorted(stamps, reverse=True)


async def test_active_and_history_partition_operations(service: TableService) -> None:
    active = await service.query({"table": "tbl_operations", "columns": ["id", "status"]})
    history = await service.query({"table": "tbl_operations_history", "columns": ["id", "status"]})
    assert {r["status"] for r in active["rows"]} == {"queued", "running"}
    assert {r["status"] for r in history["rows"]} == {"success", "failed"}
    ids = [r["id"] for r in active["rows"] + history["rows"]]
    assert sorted(ids) == sorted(f"OP-{10000 + i}" for i in range(1, 9))


async def test_time_filters_accept_offsets_and_compare_as_instants(
    service: TableService,
) -> None:
    # T[2] is 2026-01-01T00:34:00.000002Z; written as +02:00 it is the same instant.
    shifted = "2026-01-01T02:34:00.000002+02:00"
    result = await service.query(
        {
            "table": "tbl_links",
            "columns": ["id", "last_seen"],
            "filters": [{"col": "last_seen", "op": "eq", "val": shifted}],
        }
    )
    assert result["rows"] and all(r["last_seen"] == T[2] for r in result["rows"])
    assert result["meta"]["query"]["filters"][0]["val"] == T[2]


async def test_null_filters_and_in_lists(service: TableService) -> None:
    nulls = await service.query(
        {
            "table": "tbl_links",
            "columns": ["id"],
            "filters": [{"col": "latency_ms", "op": "eq", "val": None}],
        }
    )
    assert [r["id"] for r in nulls["rows"]] == ["m00", "m04", "m08"]
    mixed = await service.query(
        {
            "table": "tbl_links",
            "columns": ["id"],
            "filters": [{"col": "latency_ms", "op": "in", "val": [None, 1, 2.0]}],
        }
    )
    assert [r["id"] for r in mixed["rows"]] == ["m00", "m01", "m02", "m04", "m08"]
    hundred = await service.query(
        {"table": "tbl_links", "filters": [{"col": "port", "op": "in", "val": list(range(100))}]}
    )
    assert len(hundred["rows"]) == 9


async def test_page_size_defaults_clamps_and_rejects(service: TableService) -> None:
    assert (await service.query({"table": "tbl_links"}))["page"]["size"] == 50
    clamped = await service.query({"table": "tbl_links", "page": {"size": 10_000}})
    assert clamped["page"]["size"] == 500 == clamped["meta"]["query"]["page"]["size"]
    for bad in (0, -1, "5", 2.5, True):
        with pytest.raises(ValidationError) as caught:
            await service.query({"table": "tbl_links", "page": {"size": bad}})
        assert caught.value.details["field"] == "page.size"


def _links(**fields: Any) -> dict[str, Any]:
    return {"table": "tbl_links", **fields}


def _f(col: Any, op: Any, val: Any) -> dict[str, Any]:
    return _links(filters=[{"col": col, "op": op, "val": val}])


BAD_REQUESTS: list[tuple[Any, str, str]] = [
    ({"table": "tbl_nope"}, "INVALID_TABLE", "tbl_nope"),
    ({"table": "tbl_links", "columns": ["id", "password_hash"]}, "INVALID_COLUMN", "password_hash"),
    ({"table": "tbl_scripts", "columns": ["content"]}, "INVALID_COLUMN", "content"),
    (_f("nope", "eq", 1), "INVALID_COLUMN", "nope"),
    ({"table": "tbl_links", "sort": [{"col": "zzz"}]}, "INVALID_COLUMN", "zzz"),
    (_f("id", "like", "m%"), "INVALID_OPERATOR", "like"),
    (_f("id", "ne", "m1"), "INVALID_OPERATOR", "ne"),
    (_f("port", "eq", "22"), "INVALID_FILTER", "port"),
    (_f("port", "eq", 22.0), "INVALID_FILTER", "port"),
    (_f("port", "eq", True), "INVALID_FILTER", "port"),
    (_f("port", "gt", 2**63), "INVALID_FILTER", "64-bit"),
    (_f("port", "gt", -(2**63) - 1), "INVALID_FILTER", "64-bit"),
    (_f("latency_ms", "gt", math.nan), "INVALID_FILTER", "NaN"),
    (_f("latency_ms", "lt", math.inf), "INVALID_FILTER", "latency_ms"),
    (_f("latency_ms", "lt", 10**30), "INVALID_FILTER", "64-bit"),
    (_f("enrolled", "eq", 1), "INVALID_FILTER", "enrolled"),
    (_f("id", "eq", {"$ne": 1}), "INVALID_FILTER", "nested"),
    (_f("id", "eq", ["m1"]), "INVALID_FILTER", "nested"),
    (_f("id", "in", [["m1"]]), "INVALID_FILTER", "nested"),
    (_f("id", "in", "m1"), "INVALID_FILTER", "list"),
    (_f("port", "in", list(range(101))), "INVALID_FILTER", "101"),
    (_f("last_seen", "gt", "yesterday"), "INVALID_FILTER", "ISO-8601"),
    (_f("last_seen", "gt", None), "INVALID_FILTER", "null"),
    (_f("id", "eq", "x" * 5000), "INVALID_FILTER", "longer"),
    (_links(filters=[{"col": "id", "op": "eq", "x": 1}]), "INVALID_FILTER", "filters[0]"),
    ({"table": "tbl_links", "filters": {"col": "id"}}, "INVALID_FILTER", "filters"),
    ({"table": "tbl_links", "sort": [{"col": "id", "dir": "up"}]}, "VALIDATION_ERROR", "up"),
    ({"table": "tbl_links", "sort": [{"col": "id"}, {"col": "id"}]}, "VALIDATION_ERROR", "twice"),
    ({"table": "tbl_links", "columns": []}, "VALIDATION_ERROR", "columns"),
    ({"table": "tbl_links", "limit": 5}, "VALIDATION_ERROR", "limit"),
    ({"table": "tbl_links", "page": {"cursor": 5}}, "INVALID_CURSOR", "cursor"),
    (["tbl_links"], "VALIDATION_ERROR", "object"),
]  # fmt: skip


@pytest.mark.parametrize(("request_", "code", "named"), BAD_REQUESTS)
async def test_bad_requests_are_400_naming_the_offender(
    service: TableService, db: Database, request_: Any, code: str, named: str
) -> None:
    before = _snapshot(db)
    with pytest.raises(ValidationError) as caught:
        await service.query(request_)
    error = caught.value
    assert (error.code, error.status) == (code, 400)
    assert named in error.message, error.message
    assert error.details, error
    assert _snapshot(db) == before


async def _cursor(service: TableService, request: dict[str, Any]) -> str:
    result = await service.query({**request, "page": {"size": 2}})
    cursor = result["page"]["next_cursor"]
    assert isinstance(cursor, str)
    return cursor


LINKS_BY_NAME = {"table": "tbl_links", "sort": [{"col": "name", "dir": "desc"}]}


async def test_cursor_continues_with_other_columns_and_page_size(service: TableService) -> None:
    cursor = await _cursor(service, LINKS_BY_NAME)
    rest = await service.query(
        {**LINKS_BY_NAME, "columns": ["id"], "page": {"size": 100, "cursor": cursor}}
    )
    first = await service.query({**LINKS_BY_NAME, "columns": ["id"], "page": {"size": 2}})
    whole = await service.query({**LINKS_BY_NAME, "columns": ["id"]})
    assert first["rows"] + rest["rows"] == whole["rows"]
    assert rest["page"]["next_cursor"] is None


@pytest.mark.parametrize(
    "other",
    [
        {**LINKS_BY_NAME, "sort": [{"col": "name", "dir": "asc"}]},
        {**LINKS_BY_NAME, "sort": [{"col": "type", "dir": "desc"}]},
        {**LINKS_BY_NAME, "filters": [{"col": "enrolled", "op": "eq", "val": True}]},
        {"table": "tbl_link_health", "sort": [{"col": "name", "dir": "desc"}]},
    ],
)
async def test_cursor_from_another_query_is_refused(
    service: TableService, other: dict[str, Any]
) -> None:
    cursor = await _cursor(service, LINKS_BY_NAME)
    with pytest.raises(ValidationError) as caught:
        await service.query({**other, "page": {"cursor": cursor}})
    assert caught.value.code == "INVALID_CURSOR"
    assert "different query" in caught.value.message


def _tamper_payload(cursor: str, change: Any) -> str:
    prefix, payload, mac = cursor.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    change(data)
    encoded = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{prefix}.{encoded}.{mac}"


async def test_forged_or_foreign_cursors_are_refused(service: TableService, db: Database) -> None:
    cursor = await _cursor(service, LINKS_BY_NAME)
    prefix, payload, mac = cursor.split(".")
    forged = [
        _tamper_payload(cursor, lambda d: d["k"].__setitem__(0, "zzz")),
        _tamper_payload(cursor, lambda d: d["k"].__setitem__(1, "m00' OR 1=1 --")),
        f"{prefix}.{payload}.{mac[:-2]}AA",
        # Same bytes, different spelling: the last character's unused low bit flipped.
        f"{prefix}.{payload}.{mac[:-1]}{B64URL[B64URL.index(mac[-1]) ^ 1]}",
        f"{prefix}.{payload}",
        f"v2.{payload}.{mac}",
        "not-a-cursor",
        "v1.!!!.!!!",
        "v1.é.é",
        cursor + "x" * 70_000,
        await _cursor(TableService(db, b"another-secret"), LINKS_BY_NAME),
    ]
    for bad in forged:
        with pytest.raises(ValidationError) as caught:
            await service.query({**LINKS_BY_NAME, "page": {"cursor": bad}})
        assert caught.value.code == "INVALID_CURSOR", bad
        assert caught.value.details == {"field": "page.cursor"}


INJECTIONS = [
    "id;DROP TABLE machines",
    "id; DROP TABLE machines; --",
    "sqlite_master",
    "rowid",
    "_rowid_",
    'id" FROM machines; DROP TABLE machines; --',
    "t.id",
    "(SELECT password_hash FROM users)",
    "id ASC, (SELECT 1)",
    "*",
]


@pytest.mark.parametrize("attack", INJECTIONS)
async def test_injection_attempts_are_refused_and_change_nothing(
    service: TableService, db: Database, attack: str
) -> None:
    before = _snapshot(db)
    attempts: list[tuple[dict[str, Any], str]] = [
        ({"table": attack}, "INVALID_TABLE"),
        ({"table": "tbl_links", "columns": ["id", attack]}, "INVALID_COLUMN"),
        (_f(attack, "eq", 1), "INVALID_COLUMN"),
        (_f("id", attack, 1), "INVALID_OPERATOR"),
        ({"table": "tbl_links", "sort": [{"col": attack, "dir": "asc"}]}, "INVALID_COLUMN"),
        ({"table": "tbl_links", "sort": [{"col": "id", "dir": attack}]}, "VALIDATION_ERROR"),
        ({"table": "tbl_links", "page": {"cursor": attack}}, "INVALID_CURSOR"),
    ]  # fmt: skip
    for request, code in attempts:
        with pytest.raises(ValidationError) as caught:
            await service.query(request)
        assert caught.value.code == code, request
    # As a value it is only ever a parameter: it matches nothing and runs nothing.
    result = await service.query(
        {"table": "tbl_links", "filters": [{"col": "name", "op": "in", "val": [attack, "x"]}]}
    )
    assert result["rows"] == []
    assert _snapshot(db) == before


async def test_a_hostile_value_is_matched_literally(service: TableService, db: Database) -> None:
    hostile = "x'); DROP TABLE machines; --"
    await db.execute("UPDATE machines SET name = ? WHERE id = 'm03'", (hostile,))
    result = await service.query(
        {
            "table": "tbl_links",
            "columns": ["id"],
            "filters": [{"col": "name", "op": "eq", "val": hostile}],
        }
    )
    assert result["rows"] == [{"id": "m03"}]
    compiled = compile_query(
        parse_query(
            {"table": "tbl_links", "filters": [{"col": "name", "op": "eq", "val": hostile}]}
        )
    )
    assert hostile not in compiled.sql and hostile in compiled.params


def test_compiled_sql_uses_only_declared_identifiers() -> None:
    query = parse_query(
        {
            "table": "tbl_links",
            "columns": ["name"],
            "filters": [{"col": "type", "op": "in", "val": ["VPS", None]}],
            "sort": [{"col": "latency_ms", "dir": "desc"}],
        }
    )
    compiled = compile_query(query, (1.5, "m01"))
    assert compiled.sql.count("?") == len(compiled.params)
    assert "VPS" not in compiled.sql and "m01" not in compiled.sql
    assert 'ORDER BY t."latency_ms" DESC, t."id" DESC LIMIT ?' in compiled.sql


async def test_long_sort_values_still_paginate(service: TableService, db: Database) -> None:
    long_names = [("m01", "n" * 6000 + "b"), ("m02", "n" * 6000 + "a"), ("m03", "n" * 6000 + "c")]
    await db.write(
        lambda conn: conn.executemany(
            "UPDATE machines SET name = ? WHERE id = ?", [(n, i) for i, n in long_names]
        )
    )
    request = {"table": "tbl_links", "columns": ["id"], "sort": [{"col": "name", "dir": "desc"}]}
    seen: list[str] = []
    cursor = None
    while True:
        result = await service.query({**request, "page": {"size": 1, "cursor": cursor}})
        seen.extend(r["id"] for r in result["rows"])
        cursor = result["page"]["next_cursor"]
        if cursor is None:
            break
    assert seen[:3] == ["m03", "m01", "m02"] and len(seen) == 9 == len(set(seen))


B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(position=st.integers(min_value=0), replacement=st.sampled_from(B64URL))
def test_any_altered_cursor_is_refused(db: Database, position: int, replacement: str) -> None:
    """Tamper evidence: changing any one character of a cursor makes it INVALID_CURSOR."""
    service = TableService(db, b"unit-test-secret")

    async def run() -> None:
        cursor = await _cursor(service, LINKS_BY_NAME)
        index = position % len(cursor)
        altered = cursor[:index] + replacement + cursor[index + 1 :]
        if altered == cursor:
            return
        with pytest.raises(ValidationError) as caught:
            await service.query({**LINKS_BY_NAME, "page": {"cursor": altered}})
        assert caught.value.code == "INVALID_CURSOR"
        # The same secret in a new service (a restart) still accepts the original.
        again = TableService(db, b"unit-test-secret")
        result = await again.query({**LINKS_BY_NAME, "page": {"cursor": cursor}})
        assert result["rows"]

    trio.run(run)
