"""``/api/tables`` on the real running service (Hypercorn, real SQLite file, bearer auth)."""

from __future__ import annotations

import sqlite3
from typing import Any

import httpx
import trio

from linkops.config import Settings
from linkops.db import Database
from linkops.tables import TABLES
from linkops.timeutil import parse_iso
from tests import test_tables_model as model


def _seed(settings: Settings, count: int) -> None:
    db = Database(settings.database.path)
    machines = [
        {
            **dict.fromkeys(model.MACHINE_COLUMNS),
            "id": f"web-{i:03d}",
            "name": f"Web {i % 4}",
            "type": "VPS" if i % 2 else "VM",
            "host": "127.0.0.1",
            "port": 22,
            "user": "root",
            "tags": "[]",
            "client_id": f"LINKOPS-{i}",
            "enrollment_required": True,
            "enrolled": i % 3 == 0,
            "status": "online",
            "created_at": model.TIMES[0],
            "updated_at": model.TIMES[0],
        }
        for i in range(count)
    ]
    try:
        db.write_sync(lambda conn: model.insert(conn, "machines", machines))
    finally:
        db.close()


def _schema(settings: Settings) -> list[Any]:
    conn = sqlite3.connect(settings.database.path)
    try:
        rows = conn.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()
        return [*rows, conn.execute("SELECT COUNT(*) FROM machines").fetchone()]
    finally:
        conn.close()


def _error(response: httpx.Response, code: str) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code and error["message"] and error["timestamp"]
    return error


async def test_query_pages_through_http(
    client: httpx.AsyncClient, anon: httpx.AsyncClient, settings: Settings
) -> None:
    with trio.fail_after(30):
        _seed(settings, 23)
        request = {
            "table": "tbl_links",
            "columns": ["id", "name"],
            "filters": [{"col": "type", "op": "eq", "val": "VPS"}],
            "sort": [{"col": "name", "dir": "desc"}],
            "page": {"size": 5},
        }
        assert (await anon.post("/api/tables/query", json=request)).status_code == 401
        seen: list[dict[str, Any]] = []
        cursor = None
        while True:
            response = await client.post(
                "/api/tables/query", json={**request, "page": {"size": 5, "cursor": cursor}}
            )
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["table"] == "tbl_links" and body["page"]["size"] == 5
            assert parse_iso(body["meta"]["as_of"])
            assert body["meta"]["query"]["sort"][-1] == {"col": "id", "dir": "desc"}
            seen.extend(body["rows"])
            cursor = body["page"]["next_cursor"]
            if cursor is None:
                break
        expected = sorted(
            ({"id": f"web-{i:03d}", "name": f"Web {i % 4}"} for i in range(1, 23, 2)),
            key=lambda r: (r["name"], r["id"]),
            reverse=True,
        )
        assert seen == expected

        tables = await client.get("/api/tables")
        assert tables.status_code == 200
        assert [t["table"] for t in tables.json()["tables"]] == list(TABLES)


async def test_errors_are_structured_and_change_nothing(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    with trio.fail_after(30):
        _seed(settings, 3)
        before = _schema(settings)
        error = _error(
            await client.post("/api/tables/query", json={"table": "sqlite_master"}), "INVALID_TABLE"
        )
        assert error["details"]["table"] == "sqlite_master"
        error = _error(
            await client.post(
                "/api/tables/query",
                json={"table": "tbl_links", "sort": [{"col": "id;DROP TABLE machines"}]},
            ),
            "INVALID_COLUMN",
        )
        assert error["details"]["column"] == "id;DROP TABLE machines"
        _error(
            await client.post(
                "/api/tables/query",
                json={"table": "tbl_links", "filters": [{"col": "id", "op": "~", "val": 1}]},
            ),
            "INVALID_OPERATOR",
        )
        # Python's json module accepts NaN; the engine must not.
        nan = b'{"table": "tbl_links", "filters": [{"col": "latency_ms", "op": "gt", "val": NaN}]}'
        _error(
            await client.post(
                "/api/tables/query", content=nan, headers={"Content-Type": "application/json"}
            ),
            "INVALID_FILTER",
        )
        _error(
            await client.post(
                "/api/tables/query",
                json={"table": "tbl_links", "page": {"cursor": "rowid"}},
            ),
            "INVALID_CURSOR",
        )
        assert _schema(settings) == before
