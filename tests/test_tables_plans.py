"""The indexes in 0001_initial.sql serve the table engine's common pages (SQLite's plans).

Checked without ANALYZE statistics, as a deployed database has none: a filtered, sorted page
must be an index search in sort order (no full scan, no sort of the whole table), and a page
after a cursor must seek (``<col> < ?``) rather than scan from the start. The benchmark
(bench/tables_bench.py) measures the same queries at 10k links / 100k operations.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.tables_bench import HISTORY_QUERY, LINKS_QUERY
from linkops.db import Database
from linkops.tables.compile import compile_query
from linkops.tables.query import parse_query


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(tmp_path / "plans.db")
    yield database
    database.close()


def _plan(db: Database, request: dict[str, Any], after: tuple[Any, ...] | None = None) -> str:
    compiled = compile_query(parse_query(request), after)
    rows = db.read_sync(
        lambda conn: conn.execute("EXPLAIN QUERY PLAN " + compiled.sql, compiled.params).fetchall()
    )
    return "\n".join(str(row[3]) for row in rows)


HISTORY = HISTORY_QUERY
LINKS = LINKS_QUERY


def test_filtered_sorted_pages_are_index_searches_in_order(db: Database) -> None:
    history = _plan(db, HISTORY)
    assert "SEARCH operations USING INDEX operations_status (status=?)" in history
    assert "TEMP B-TREE" not in history
    links = _plan(db, LINKS)
    assert "SEARCH machines USING INDEX machines_type_name (type=?)" in links
    assert "TEMP B-TREE" not in links
    by_seen = _plan(db, {"table": "tbl_links", "sort": [{"col": "last_seen", "dir": "desc"}]})
    assert "machines_last_seen" in by_seen and "TEMP B-TREE" not in by_seen


def test_pages_after_a_cursor_seek(db: Database) -> None:
    history = _plan(db, HISTORY, ("2026-01-01T00:00:00.000000Z", 500))
    assert "operations_status (status=? AND created_at<?)" in history
    links = _plan(db, LINKS, ("host-5", "link-00005"))
    assert "machines_type_name (type=? AND name>?)" in links


def test_active_operations_and_recent_activity_avoid_full_scans(db: Database) -> None:
    active = _plan(db, {"table": "tbl_operations"})
    assert "USING INDEX" in active and "SCAN operations\n" not in active + "\n"
    recent = _plan(db, {"table": "tbl_recent_activity"})
    # Each branch of the union reads only its newest rows, in index order.
    assert "SCAN operations USING INDEX operations_created" in recent
    assert "SCAN terminal_sessions USING INDEX terminal_sessions_opened" in recent
    counts = _plan(db, {"table": "tbl_infrastructure"})
    assert "COVERING INDEX machines_type_counts" in counts
