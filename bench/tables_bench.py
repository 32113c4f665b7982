"""Table query engine: a page of 50 with two filters and a sort, at 10k links / 100k operations.

Each case times the engine (:class:`linkops.tables.TableService`, through ``Database.read``
like the route) against two baselines measured in the same run on the same data:

- *naive*: ``SELECT *`` of the base table, then filter, sort and slice in Python;
- *raw SQL*: the equivalent hand-written statement, also through ``Database.read``.

Prints median and p95 (ms) and the ratios engine/baseline. Deep pages (page 40, reached by
walking cursors) show that keyset pagination does not slow down with depth.
"""

from __future__ import annotations

import json
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import trio

from linkops.db import Database
from linkops.tables import TableService
from linkops.timeutil import to_iso

LINKS = 10_000
OPERATIONS = 100_000
ROUNDS = 60
NAIVE_ROUNDS = 8
BASE = datetime(2026, 1, 1, tzinfo=UTC)


def populate(db: Database) -> None:
    rng = random.Random(42)
    types = ["VPS", "Proxmox", "VM"]
    statuses = ["online", "offline", "unknown"]
    now = to_iso(BASE)

    def machines(conn: sqlite3.Connection) -> None:
        conn.executemany(
            "INSERT INTO machines (id, name, type, host, port, user, client_id, enrolled,"
            " status, latency_ms, last_seen, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, 22, 'root', ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    f"link-{i:05d}",
                    f"host-{rng.randrange(100_000):05d}",
                    rng.choice(types),
                    f"10.{i // 65536}.{i // 256 % 256}.{i % 256}",
                    f"LINKOPS-{i:08d}",
                    rng.random() < 0.7,
                    rng.choice(statuses),
                    rng.random() * 200 if rng.random() < 0.8 else None,
                    to_iso(BASE - timedelta(seconds=rng.randrange(86_400))),
                    now,
                    now,
                )
                for i in range(LINKS)
            ],
        )

    def operations(conn: sqlite3.Connection) -> None:
        # Realistic: almost everything has finished; a handful are queued or running.
        finished = ["success"] * 6 + ["failed", "partial", "stopped", "interrupted"]
        users = ["alice", "bob", "carol", "dave"]
        rows = []
        for seq in range(1, OPERATIONS + 1):
            created = BASE + timedelta(seconds=seq * 30 + rng.randrange(30))
            rows.append(
                (
                    seq,
                    f"OP-{10_000 + seq}",
                    rng.choice(["running", "queued"])
                    if rng.random() < 0.001
                    else rng.choice(finished),
                    json.dumps(["update"]),
                    json.dumps([f"link-{rng.randrange(LINKS):05d}"]),
                    5,
                    rng.choice(users),
                    to_iso(created),
                    to_iso(created + timedelta(seconds=1)),
                    to_iso(created + timedelta(seconds=rng.randrange(1, 600))),
                    json.dumps({"success": 1, "failed": 0}),
                )
            )
        conn.executemany(
            "INSERT INTO operations (seq, id, status, scripts, targets, concurrency,"
            " triggered_by, created_at, started_at, ended_at, result)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )

    db.write_sync(machines)
    db.write_sync(operations)
    # No ANALYZE: a deployed database has no sqlite_stat1 unless someone runs it.


async def timed(fn: Callable[[], Awaitable[Any]], rounds: int) -> list[float]:
    await fn()  # warm the page cache and the reader pool
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def summary(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95


def report(name: str, engine: list[float], baselines: dict[str, list[float]]) -> None:
    median, p95 = summary(engine)
    line = f"{name:<34} engine median {median:7.2f} ms  p95 {p95:7.2f} ms"
    for label, samples in baselines.items():
        b_median, b_p95 = summary(samples)
        line += f" | {label} median {b_median:8.2f} ms p95 {b_p95:8.2f} ms"
        line += f" (engine/{label} {median / b_median:.3g}x)"
    print(line, flush=True)


async def deep_cursor(service: TableService, request: dict[str, Any], pages: int) -> str:
    cursor: str | None = None
    for _ in range(pages):
        result = await service.query({**request, "page": {"size": 50, "cursor": cursor}})
        cursor = result["page"]["next_cursor"]
        assert cursor is not None, "ran out of pages"
    assert cursor is not None
    return cursor


# The two timed queries; tests/test_tables_plans.py checks that SQLite answers exactly these
# with index searches (no sort step), so the timings here are of the plans asserted there.
HISTORY_QUERY: dict[str, Any] = {
    "table": "tbl_operations_history",
    "filters": [
        {"col": "status", "op": "eq", "val": "failed"},
        {"col": "triggered_by", "op": "eq", "val": "alice"},
    ],
    "sort": [{"col": "created_at", "dir": "desc"}],
}
LINKS_QUERY: dict[str, Any] = {
    "table": "tbl_links",
    "filters": [
        {"col": "type", "op": "eq", "val": "VPS"},
        {"col": "enrolled", "op": "eq", "val": True},
    ],
    "sort": [{"col": "name", "dir": "asc"}],
}


async def run(db: Database) -> None:
    service = TableService(db, b"bench-secret")

    history = HISTORY_QUERY
    history_sql = (
        "SELECT seq, id, status, scripts, targets, concurrency, require_enrollment,"
        " triggered_by, commit_hash, created_at, started_at, ended_at, duration, error"
        " FROM operations WHERE status = 'failed' AND triggered_by = 'alice'"
        " ORDER BY created_at DESC, seq DESC LIMIT 51"
    )

    def history_naive(conn: sqlite3.Connection) -> list[dict[str, Any]]:
        rows = [dict(r) for r in conn.execute("SELECT * FROM operations")]
        kept = [
            r
            for r in rows
            if r["status"] not in ("queued", "running")
            and r["status"] == "failed"
            and r["triggered_by"] == "alice"
        ]
        kept.sort(key=lambda r: (r["created_at"], r["seq"]), reverse=True)
        return kept[:51]

    links = LINKS_QUERY
    links_sql = (
        "SELECT id, name, type, provider, host, port, user, tags, client_id, enrolled, status,"
        " latency_ms, last_seen FROM machines WHERE type = 'VPS' AND enrolled = 1"
        " ORDER BY name, id LIMIT 51"
    )

    def links_naive(conn: sqlite3.Connection) -> list[dict[str, Any]]:
        rows = [dict(r) for r in conn.execute("SELECT * FROM machines")]
        kept = [r for r in rows if r["type"] == "VPS" and r["enrolled"]]
        kept.sort(key=lambda r: (r["name"], r["id"]))
        return kept[:51]

    def raw(sql: str) -> Callable[[], Awaitable[Any]]:
        return lambda: db.fetchall(sql)

    for name, request, sql, naive in (
        ("history: 2 filters, sort, page 1", history, history_sql, history_naive),
        ("links: 2 filters, sort, page 1", links, links_sql, links_naive),
    ):
        engine = await timed(lambda r=request: service.query(r), ROUNDS)  # type: ignore[misc]
        report(
            name,
            engine,
            {
                "raw SQL": await timed(raw(sql), ROUNDS),
                "naive": await timed(lambda n=naive: db.read(n), NAIVE_ROUNDS),  # type: ignore[misc]
            },
        )

    for name, request, sql in (
        ("history: page 40 via cursor", history, history_sql),
        ("links: page 20 via cursor", links, links_sql),
    ):
        pages = 40 if request is history else 20
        cursor = await deep_cursor(service, request, pages - 1)
        deep = {**request, "page": {"size": 50, "cursor": cursor}}
        offset_sql = sql.replace("LIMIT 51", f"LIMIT 51 OFFSET {50 * (pages - 1)}")
        engine = await timed(lambda d=deep: service.query(d), ROUNDS)  # type: ignore[misc]
        report(name, engine, {"raw SQL OFFSET": await timed(raw(offset_sql), ROUNDS)})

    active = {"table": "tbl_operations"}
    active_sql = (
        "SELECT * FROM operations WHERE status IN ('queued', 'running')"
        " ORDER BY created_at DESC, seq DESC LIMIT 51"
    )
    engine = await timed(lambda: service.query(active), ROUNDS)
    report("active operations: page 1", engine, {"raw SQL": await timed(raw(active_sql), ROUNDS)})

    activity = {"table": "tbl_recent_activity"}
    activity_sql = (
        "SELECT 'operation' AS kind, id AS ref, created_at AS at FROM operations"
        " ORDER BY created_at DESC, seq DESC LIMIT 51"
    )
    engine = await timed(lambda: service.query(activity), ROUNDS)
    report(
        "recent activity: default, page 1",
        engine,
        {"raw SQL": await timed(raw(activity_sql), ROUNDS)},
    )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="linkops-tables-bench-") as tmp:
        db = Database(Path(tmp) / "bench.db")
        try:
            started = time.perf_counter()
            populate(db)
            print(
                f"populated {LINKS} links and {OPERATIONS} operations"
                f" in {time.perf_counter() - started:.1f} s",
                flush=True,
            )
            trio.run(run, db)
        finally:
            db.close()


if __name__ == "__main__":
    main()
