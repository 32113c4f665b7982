"""A straightforward Python model of the table engine, used as the oracle by the table tests.

It holds generated rows of the base tables as plain dicts (:class:`Dataset`), writes them into a
real database, derives the expected table rows in Python (not via our SQL), and evaluates
filters, ordering and keyset paging in Python. The tests at the bottom pin the model's own
semantics (NULL ordering, tie-break direction) so the oracle itself is checked.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
from hypothesis import strategies as st

from linkops.tables.schema import RECENT_WINDOW, TABLES
from linkops.timeutil import to_iso

Row = dict[str, Any]
BASE = datetime(2026, 1, 1, tzinfo=UTC)
TIMES = [to_iso(BASE + timedelta(minutes=17 * i, microseconds=i)) for i in range(6)]
NAMES = ["alpha", "Alpha", "beta", "é-gamma", "", "zeta 9"]
TYPES = ["VPS", "Proxmox", "VM", "Other"]
STATUSES = ["online", "offline", "unknown"]
OP_STATUSES = ["queued", "running", "success", "failed", "partial", "stopped", "interrupted"]

MACHINE_COLUMNS = (
    "id name type provider host port user tags client_id enrollment_required enrolled "
    "enrollment_verified_at enrollment_error key_ref proxy_jump icon status reachable "
    "latency_ms last_seen last_check health_error created_at updated_at"
).split()
SESSION_COLUMNS = "id workspace_id pane target username opened_at closed_at close_reason".split()
OPERATION_COLUMNS = (
    "seq id status scripts targets concurrency require_enrollment triggered_by commit_hash "
    "created_at started_at ended_at duration result error"
).split()


def _nullable(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


@st.composite
def machine(draw: st.DrawFn, ident: str) -> Row:
    return {
        "id": ident,
        "name": draw(st.sampled_from(NAMES)),
        "type": draw(st.sampled_from(TYPES)),
        "provider": draw(_nullable(st.sampled_from(["hetzner", "ovh"]))),
        "host": draw(st.sampled_from(["10.0.0.1", "10.0.0.2", "h.example"])),
        "port": draw(st.sampled_from([22, 2222, 65535, 1])),
        "user": draw(st.sampled_from(["root", "ops"])),
        "tags": json.dumps(draw(st.lists(st.sampled_from(["web", "db"]), max_size=2))),
        "client_id": f"LINKOPS-{ident}",
        "enrollment_required": draw(st.booleans()),
        "enrolled": draw(st.booleans()),
        "enrollment_verified_at": draw(_nullable(st.sampled_from(TIMES))),
        "enrollment_error": draw(_nullable(st.sampled_from(["mismatch", "no file"]))),
        "key_ref": draw(_nullable(st.sampled_from(["id_a", "id_b"]))),
        "proxy_jump": draw(_nullable(st.sampled_from(["m00", "m01"]))),
        "icon": draw(_nullable(st.sampled_from(["server"]))),
        "status": draw(st.sampled_from(STATUSES)),
        "reachable": draw(_nullable(st.booleans())),
        "latency_ms": draw(_nullable(st.sampled_from([0.5, 1.0, 12.25, -0.0, 3.0, 1e9]))),
        "last_seen": draw(_nullable(st.sampled_from(TIMES))),
        "last_check": draw(_nullable(st.sampled_from(TIMES))),
        "health_error": draw(_nullable(st.sampled_from(["timeout"]))),
        "created_at": draw(st.sampled_from(TIMES)),
        "updated_at": draw(st.sampled_from(TIMES)),
    }


@st.composite
def operation(draw: st.DrawFn, seq: int) -> Row:
    result = draw(
        st.one_of(
            st.just("{}"),
            st.builds(
                lambda s, f: json.dumps({"success": s, "failed": f}),
                st.integers(0, 3),
                st.integers(0, 3),
            ),
            st.just("not json"),
            st.just('{"success": ["m00"], "failed": 1.5}'),
        )
    )
    return {
        "seq": seq,
        "id": f"OP-{10000 + seq}",
        "status": draw(st.sampled_from(OP_STATUSES)),
        "scripts": json.dumps(draw(st.lists(st.sampled_from(["s1", "s2"]), min_size=1))),
        "targets": json.dumps(["m00"]),
        "concurrency": draw(st.integers(1, 5)),
        "require_enrollment": draw(st.booleans()),
        "triggered_by": draw(_nullable(st.sampled_from(["alice", "bob"]))),
        "commit_hash": draw(_nullable(st.sampled_from(["abc123"]))),
        "created_at": draw(st.sampled_from(TIMES)),
        "started_at": draw(_nullable(st.sampled_from(TIMES))),
        "ended_at": draw(_nullable(st.sampled_from(TIMES))),
        "duration": draw(_nullable(st.sampled_from([0.0, 1.5, 30.0]))),
        "result": result,
        "error": draw(_nullable(st.sampled_from(["boom"]))),
    }


@st.composite
def session(draw: st.DrawFn, ident: int) -> Row:
    closed = draw(_nullable(st.sampled_from(TIMES)))
    return {
        "id": ident,
        "workspace_id": draw(st.sampled_from(["ws-a", "ws-b"])),
        "pane": draw(st.sampled_from(["A", "B", "C", "D"])),
        "target": draw(st.sampled_from(["m00", "m01", "m02"])),
        "username": draw(st.sampled_from(["alice", "bob"])),
        "opened_at": draw(st.sampled_from(TIMES)),
        "closed_at": closed,
        "close_reason": None if closed is None else draw(st.sampled_from(["closed", "idle"])),
    }


def sessions(max_size: int = 10, start: int = 1) -> st.SearchStrategy[list[Row]]:
    return st.integers(0, max_size).flatmap(
        lambda n: st.tuples(*(session(start + i) for i in range(n))).map(list)
    )


SCRIPT_COLUMNS = (
    "id name description emoji path flags estimated_duration tags sha256 content updated_at"
).split()
WORKSPACE_COLUMNS = "id owner layout max_panes created_at updated_at closed_at".split()
PANE_COLUMNS = (
    "workspace_id pane target status cols rows connected_at disconnected_at error".split()
)


@st.composite
def script(draw: st.DrawFn, ident: str) -> Row:
    return {
        "id": ident,
        "name": draw(st.sampled_from(NAMES)),
        "description": draw(st.sampled_from(["Update", "Disk usage", ""])),
        "emoji": draw(_nullable(st.sampled_from(["📦", "🧹"]))),
        "path": f"scripts/{ident}.sh",
        "flags": draw(st.sampled_from(["[]", '["--dry-run"]'])),
        "estimated_duration": draw(_nullable(st.integers(0, 600))),
        "tags": "[]",
        "sha256": draw(st.sampled_from(["aa", "bb"])),
        "content": "#!/bin/bash\necho never-exposed\n",
        "updated_at": draw(st.sampled_from(TIMES)),
    }


@st.composite
def workspace(draw: st.DrawFn, ident: str) -> tuple[Row, list[Row]]:
    panes = draw(st.lists(st.sampled_from(["A", "B", "C", "D"]), min_size=1, unique=True))
    ws = {
        "id": ident,
        "owner": draw(st.sampled_from(["alice", "bob"])),
        "layout": draw(st.sampled_from(["single", "grid2x2"])),
        "max_panes": 4,
        "created_at": draw(st.sampled_from(TIMES)),
        "updated_at": draw(st.sampled_from(TIMES)),
        "closed_at": draw(_nullable(st.sampled_from(TIMES))),
    }
    rows = [
        {
            "workspace_id": ident,
            "pane": pane,
            "target": draw(_nullable(st.sampled_from(["m00", "m01"]))),
            "status": draw(st.sampled_from(["idle", "connected", "closed"])),
            "cols": draw(st.sampled_from([80, 120])),
            "rows": draw(st.sampled_from([24, 40])),
            "connected_at": draw(_nullable(st.sampled_from(TIMES))),
            "disconnected_at": draw(_nullable(st.sampled_from(TIMES))),
            "error": draw(_nullable(st.just("reset"))),
        }
        for pane in panes
    ]
    return ws, rows


def _many(item: Any, max_size: int, start: int, name: Callable[[int], Any]) -> Any:
    return st.integers(0, max_size).flatmap(
        lambda n: st.tuples(*(item(name(start + i)) for i in range(n))).map(list)
    )


@attrs.define
class Dataset:
    """Rows of the base tables, as written to the database."""

    machines: list[Row]
    operations: list[Row]
    sessions: list[Row]
    scripts: list[Row] = attrs.field(factory=list)
    workspaces: list[tuple[Row, list[Row]]] = attrs.field(factory=list)

    def write(self, conn: sqlite3.Connection) -> None:
        insert(conn, "machines", self.machines)
        insert(conn, "operations", self.operations)
        insert(conn, "terminal_sessions", self.sessions)
        insert(conn, "scripts", self.scripts)
        insert(conn, "terminal_workspaces", [ws for ws, _ in self.workspaces])
        insert(conn, "terminal_panes", [p for _, panes in self.workspaces for p in panes])

    def extend(self, more: Dataset) -> None:
        self.machines.extend(more.machines)
        self.operations.extend(more.operations)
        self.sessions.extend(more.sessions)
        self.scripts.extend(more.scripts)
        self.workspaces.extend(more.workspaces)


def datasets(max_size: int = 14, batch: int = 0) -> st.SearchStrategy[Dataset]:
    """Batch 0 is the initial data; batches 1.. are inserts with fresh, larger keys."""
    return st.builds(
        Dataset,
        machines(max_size=max_size, start=0 if batch == 0 else 40 + 10 * batch),
        operations(max_size=max_size, start=1 if batch == 0 else 100 + 10 * batch),
        sessions(max_size=max_size, start=1 if batch == 0 else 100 + 10 * batch),
        _many(script, max_size, 0 if batch == 0 else 40 + 10 * batch, lambda i: f"s{i:02d}"),
        _many(
            workspace, max_size // 3, 0 if batch == 0 else 40 + 10 * batch, lambda i: f"ws-{i:02d}"
        ),
    )


def machines(min_size: int = 0, max_size: int = 20, start: int = 0) -> st.SearchStrategy[list[Row]]:
    return st.integers(min_size, max_size).flatmap(
        lambda n: st.tuples(*(machine(f"m{start + i:02d}") for i in range(n))).map(list)
    )


def operations(
    min_size: int = 0, max_size: int = 20, start: int = 1
) -> st.SearchStrategy[list[Row]]:
    return st.integers(min_size, max_size).flatmap(
        lambda n: st.tuples(*(operation(start + i) for i in range(n))).map(list)
    )


# -- writing the data ------------------------------------------------------------------------


def insert(conn: sqlite3.Connection, table: str, rows: Sequence[Row]) -> None:
    columns = {
        "machines": MACHINE_COLUMNS,
        "operations": OPERATION_COLUMNS,
        "terminal_sessions": SESSION_COLUMNS,
        "scripts": SCRIPT_COLUMNS,
        "terminal_workspaces": WORKSPACE_COLUMNS,
        "terminal_panes": PANE_COLUMNS,
    }[table]
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    conn.executemany(sql, [tuple(row[c] for c in columns) for row in rows])


def reset(conn: sqlite3.Connection) -> None:
    for table in (
        "operation_logs",
        "operations",
        "machines",
        "terminal_sessions",
        "scripts",
        "terminal_panes",
        "terminal_workspaces",
    ):
        conn.execute(f"DELETE FROM {table}")


# -- the expected table rows, derived in Python ---------------------------------------------


def link_row(m: Row) -> Row:
    row = {c.name: m.get(c.name) for c in TABLES["tbl_links"].columns}
    row["enrollment_id"] = m["client_id"]
    return row


def _result_count(result: str, key: str) -> int | None:
    try:
        value = json.loads(result).get(key)
    except ValueError:
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def operation_row(op: Row) -> Row:
    row = {c.name: op.get(c.name) for c in TABLES["tbl_operations"].columns}
    row["succeeded"] = _result_count(op["result"], "success")
    row["failed"] = _result_count(op["result"], "failed")
    return row


def infrastructure_rows(ms: Sequence[Row]) -> list[Row]:
    groups: dict[str, Row] = {}
    for m in ms:
        g = groups.setdefault(
            m["type"],
            {"type": m["type"], "total": 0, "enrolled": 0, "online": 0, "offline": 0, "unknown": 0},
        )
        g["total"] += 1
        g["enrolled"] += int(m["enrolled"])
        status = m["status"] if m["status"] in ("online", "offline") else "unknown"
        g[status] += 1
    return list(groups.values())


def table_rows(table: str, data: Dataset) -> list[Row]:
    ms, ops, sessions = data.machines, data.operations, data.sessions
    if table == "tbl_links":
        return [link_row(m) for m in ms]
    if table == "tbl_link_health":
        names = [c.name for c in TABLES[table].columns]
        return [{n: m[n] for n in names} for m in ms]
    if table == "tbl_infrastructure":
        return infrastructure_rows(ms)
    if table == "tbl_operations":
        return [operation_row(o) for o in ops if o["status"] in ("queued", "running")]
    if table == "tbl_operations_history":
        return [operation_row(o) for o in ops if o["status"] not in ("queued", "running")]
    if table == "tbl_terminal_sessions":
        return [dict(s) for s in sessions]
    if table == "tbl_scripts":
        names = [c.name for c in TABLES[table].columns]
        return [{n: s[n] for n in names} for s in data.scripts]
    if table == "tbl_terminal_panes":
        return [
            {
                **{k: p[k] for k in PANE_COLUMNS},
                "owner": ws["owner"],
                "layout": ws["layout"],
                "workspace_closed_at": ws["closed_at"],
            }
            for ws, panes in data.workspaces
            for p in panes
        ]
    if table == "tbl_recent_activity":
        newest = sorted(ops, key=lambda o: (o["created_at"], o["seq"]), reverse=True)
        latest = sorted(sessions, key=lambda s: (s["opened_at"], s["id"]), reverse=True)
        return [
            {
                "kind": "operation",
                "ref": o["id"],
                "status": o["status"],
                "actor": o["triggered_by"],
                "target": o["targets"],
                "detail": o["scripts"],
                "at": o["created_at"],
                "ended_at": o["ended_at"],
            }
            for o in newest[:RECENT_WINDOW]
        ] + [
            {
                "kind": "terminal",
                "ref": str(s["id"]),
                "status": "open" if s["closed_at"] is None else "closed",
                "actor": s["username"],
                "target": s["target"],
                "detail": f"{s['workspace_id']}/{s['pane']}",
                "at": s["opened_at"],
                "ended_at": s["closed_at"],
            }
            for s in latest[:RECENT_WINDOW]
        ]
    raise AssertionError(f"no model for {table}")


MODELLED_TABLES = (
    "tbl_links",
    "tbl_link_health",
    "tbl_infrastructure",
    "tbl_operations",
    "tbl_operations_history",
    "tbl_recent_activity",
    "tbl_terminal_sessions",
    "tbl_scripts",
    "tbl_terminal_panes",
)


# -- evaluating a query ----------------------------------------------------------------------


def _compare(x: Any, y: Any) -> int:
    # NULL is the smallest value; everything else compares natively (same type per column).
    if x is None or y is None:
        return (x is not None) - (y is not None)
    return int((x > y) - (x < y))


def full_order(table: str, sort: Sequence[Row] | None) -> list[tuple[str, str]]:
    spec = TABLES[table]
    terms = [(s["col"], s.get("dir", "asc")) for s in sort or []]
    if not terms:
        terms = [(t.column, t.dir) for t in spec.default_sort]
    named = {c for c, _ in terms}
    terms += [(k, terms[-1][1]) for k in spec.key if k not in named]
    return terms


def row_compare(order: Sequence[tuple[str, str]]) -> Callable[[Row, Row], int]:
    def compare(a: Row, b: Row) -> int:
        for col, direction in order:
            c = _compare(a[col], b[col])
            if c:
                return c if direction == "asc" else -c
        return 0

    return compare


def matches(row: Row, filters: Sequence[Row]) -> bool:
    for f in filters:
        value, op, want = row[f["col"]], f["op"], f["val"]
        if op == "eq" and want is None:
            ok = value is None
        elif op == "in":
            ok = (value is None and None in want) or (
                value is not None and any(w is not None and value == w for w in want)
            )
        elif value is None:
            ok = False
        else:
            ok = {
                "eq": value == want,
                "gt": value > want,
                "lt": value < want,
                "gte": value >= want,
                "lte": value <= want,
            }[op]
        if not ok:
            return False
    return True


def evaluate(
    rows: Sequence[Row], filters: Sequence[Row], order: Sequence[tuple[str, str]]
) -> list[Row]:
    """The full answer of a query, in order (filters take normalized values)."""
    kept = [r for r in rows if matches(r, filters)]
    return sorted(kept, key=functools.cmp_to_key(row_compare(order)))


def after(rows: Sequence[Row], position: Row | None, order: Sequence[tuple[str, str]]) -> list[Row]:
    if position is None:
        return list(rows)
    compare = row_compare(order)
    return [r for r in rows if compare(r, position) > 0]


def project(rows: Sequence[Row], columns: Sequence[str]) -> list[Row]:
    return [{c: r[c] for c in columns} for r in rows]


# -- the model's own semantics ---------------------------------------------------------------


def test_model_sorts_null_smallest_and_ties_follow_last_direction() -> None:
    rows: list[Row] = [
        {"id": "b", "latency_ms": None},
        {"id": "a", "latency_ms": 2.0},
        {"id": "c", "latency_ms": None},
        {"id": "d", "latency_ms": 2.0},
    ]
    order = full_order("tbl_links", [{"col": "latency_ms", "dir": "desc"}])
    assert order == [("latency_ms", "desc"), ("id", "desc")]
    assert [r["id"] for r in evaluate(rows, [], order)] == ["d", "a", "c", "b"]
    asc = full_order("tbl_links", [{"col": "latency_ms", "dir": "asc"}])
    assert [r["id"] for r in evaluate(rows, [], asc)] == ["b", "c", "a", "d"]
    assert [r["id"] for r in after(evaluate(rows, [], asc), rows[2], asc)] == ["a", "d"]


def test_model_filters_null_only_with_eq_and_in() -> None:
    rows: list[Row] = [{"x": None}, {"x": 1}, {"x": 2}]
    assert matches(rows[0], [{"col": "x", "op": "eq", "val": None}])
    assert not matches(rows[0], [{"col": "x", "op": "lt", "val": 5}])
    assert [matches(r, [{"col": "x", "op": "in", "val": [None, 2]}]) for r in rows] == [
        True,
        False,
        True,
    ]
