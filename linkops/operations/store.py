"""Every write the operations area makes to ``operations`` and ``operation_logs``.

Each function here is a ``fn(conn)`` for :meth:`linkops.db.Database.write` (one committed
transaction); the orchestrator awaits it before it publishes the matching event, so whatever a
client has seen is on disk.

The operation id is ``OP-<10000 + seq>``: ``seq`` is the table's AUTOINCREMENT key, so ids are
monotonic and never reused, even after deletes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from linkops.db import dumps
from linkops.inventory.store import active_commit
from linkops.operations.validate import Plan
from linkops.timeutil import now_iso

ID_BASE = 10000


def latest_commit(conn: sqlite3.Connection) -> str | None:
    """The commit the inventory's scripts come from (the newest successful Git sync)."""
    return active_commit(conn)


def insert_operation(conn: sqlite3.Connection, plan: Plan, triggered_by: str | None, *,
                     parent: str | None = None,
                     confirmed_plan: dict[str, Any] | None = None) -> str:
    """Record ``plan`` as ``queued`` with one ``pending`` log row per task; returns its id.

    ``parent``: the operation this one reruns; ``confirmed_plan``: the stored plan
    (``POST /api/operations/plan``) the run was made with, kept with the operation.
    """
    now = now_iso()
    cur = conn.execute(
        "INSERT INTO operations (id, status, scripts, targets, flags, concurrency, "
        "require_enrollment, triggered_by, commit_hash, script_hashes, created_at, result, "
        "parent, plan) "
        "VALUES (?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, '{}', ?, ?)",
        (
            f"pending-{now}",
            dumps([s.id for s in plan.scripts]),
            dumps([t.id for t in plan.targets]),
            dumps(plan.flags),
            plan.concurrency,
            int(plan.require_enrollment),
            triggered_by,
            latest_commit(conn),
            dumps(plan.script_hashes),
            now,
            parent,
            None if confirmed_plan is None else dumps(confirmed_plan),
        ),
    )
    seq = int(cur.lastrowid or 0)
    op_id = f"OP-{ID_BASE + seq}"
    conn.execute("UPDATE operations SET id = ? WHERE seq = ?", (op_id, seq))
    conn.executemany(
        "INSERT INTO operation_logs (operation_id, target, script, position, status) "
        "VALUES (?, ?, ?, ?, 'pending')",
        [(op_id, t.id, s.id, pos) for t in plan.targets for pos, s in enumerate(plan.scripts)],
    )
    return op_id


def mark_running(op_id: str, started_at: str) -> Any:
    def fn(conn: sqlite3.Connection) -> None:
        conn.execute(
            "UPDATE operations SET status = 'running', started_at = ? WHERE id = ?",
            (started_at, op_id),
        )
    return fn


def task_started(op_id: str, target: str, position: int, started_at: str) -> Any:
    def fn(conn: sqlite3.Connection) -> None:
        conn.execute(
            "UPDATE operation_logs SET status = 'running', started_at = ? "
            "WHERE operation_id = ? AND target = ? AND position = ?",
            (started_at, op_id, target, position),
        )
    return fn


def task_pgid(op_id: str, target: str, position: int, pgid: int) -> Any:
    """Remember the remote process group so a restarted service can still kill it."""
    def fn(conn: sqlite3.Connection) -> None:
        conn.execute(
            "UPDATE operation_logs SET remote_pgid = ? "
            "WHERE operation_id = ? AND target = ? AND position = ?",
            (pgid, op_id, target, position),
        )
    return fn


# Filled by groups.task_columns at a task's end; kept in operation_task_outputs (0006).
OUTPUT_COLUMNS = ("output_hash", "norm_stdout_head", "norm_stderr_head", "stdout_head",
                  "stderr_head", "stdout_bytes", "stderr_bytes")


def task_finished(op_id: str, target: str, position: int, values: dict[str, Any]) -> Any:
    """``values``: status, exit_code, stdout, stderr, output_truncated, duration, started_at,
    ended_at, error, remote_killed (any subset); with all of :data:`OUTPUT_COLUMNS` also the
    task's output fingerprint, heads and sizes (SPEC §10.3), in the same transaction."""
    allowed = ("status", "exit_code", "stdout", "stderr", "output_truncated", "duration",
               "started_at", "ended_at", "error", "remote_killed")
    keys = [k for k in allowed if k in values]
    fingerprinted = all(k in values for k in OUTPUT_COLUMNS)

    def fn(conn: sqlite3.Connection) -> None:
        sets = ", ".join(f"{k} = ?" for k in keys)
        conn.execute(
            f"UPDATE operation_logs SET {sets} "
            "WHERE operation_id = ? AND target = ? AND position = ?",
            [values[k] for k in keys] + [op_id, target, position],
        )
        if fingerprinted:
            conn.execute(
                f"INSERT OR REPLACE INTO operation_task_outputs (log_id, "
                f"{', '.join(OUTPUT_COLUMNS)}) SELECT id, {', '.join('?' * len(OUTPUT_COLUMNS))} "
                "FROM operation_logs WHERE operation_id = ? AND target = ? AND position = ?",
                [values[k] for k in OUTPUT_COLUMNS] + [op_id, target, position],
            )
    return fn


def skip_tasks(op_id: str, target: str, positions: Sequence[int], reason: str) -> Any:
    def fn(conn: sqlite3.Connection) -> None:
        conn.executemany(
            "UPDATE operation_logs SET status = 'skipped', error = ? "
            "WHERE operation_id = ? AND target = ? AND position = ? AND status = 'pending'",
            [(reason, op_id, target, p) for p in positions],
        )
    return fn


def finish_operation(op_id: str, status: str, result: dict[str, Any], ended_at: str,
                     duration: float | None, error: str | None = None) -> Any:
    def fn(conn: sqlite3.Connection) -> None:
        conn.execute(
            "UPDATE operations SET status = ?, result = ?, ended_at = ?, duration = ?, "
            "error = ?, started_at = COALESCE(started_at, ?) WHERE id = ?",
            (status, dumps(result), ended_at, duration, error, ended_at, op_id),
        )
        # Anything still pending never ran.
        conn.execute(
            "UPDATE operation_logs SET status = 'skipped', "
            "error = COALESCE(error, 'operation ended before this task started') "
            "WHERE operation_id = ? AND status = 'pending'",
            (op_id,),
        )
    return fn


def recover_interrupted(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """At start-up: operations left queued/running by a crash become ``interrupted``.

    Returns the tasks that were running and had a remote process group recorded
    (``operation_id``, ``target``, ``position``, ``remote_pgid``) so they can be killed.
    """
    now = now_iso()
    ops = [row[0] for row in conn.execute(
        "SELECT id FROM operations WHERE status IN ('queued', 'running')")]
    orphans: list[dict[str, Any]] = []
    for op_id in ops:
        orphans.extend(dict(row) for row in conn.execute(
            "SELECT operation_id, target, position, remote_pgid FROM operation_logs "
            "WHERE operation_id = ? AND status = 'running' AND remote_pgid IS NOT NULL",
            (op_id,),
        ))
        conn.execute(
            "UPDATE operation_logs SET status = 'interrupted', ended_at = ?, "
            "error = 'the service stopped while this task ran' "
            "WHERE operation_id = ? AND status = 'running'",
            (now, op_id),
        )
        conn.execute(
            "UPDATE operation_logs SET status = 'skipped', "
            "error = 'the service stopped before this task started' "
            "WHERE operation_id = ? AND status = 'pending'",
            (op_id,),
        )
        conn.execute(
            "UPDATE operations SET status = 'interrupted', ended_at = ?, "
            "error = 'the service stopped while the operation ran', "
            "duration = CASE WHEN started_at IS NULL THEN NULL ELSE "
            "(julianday(?) - julianday(started_at)) * 86400.0 END WHERE id = ?",
            (now, now, op_id),
        )
    return orphans


# -- plans (POST /api/operations/plan) --------------------------------------------------------

def insert_plan(plan_id: str, created_by: str | None, expires_at: str,
                request: dict[str, Any], plan: dict[str, Any]) -> Any:
    """Keep a plan until it expires (expired ones are deleted on the way)."""
    def fn(conn: sqlite3.Connection) -> None:
        now = now_iso()
        conn.execute("DELETE FROM operation_plans WHERE expires_at < ?", (now,))
        conn.execute(
            "INSERT INTO operation_plans (id, created_by, created_at, expires_at, request, "
            "plan) VALUES (?, ?, ?, ?, ?, ?)",
            (plan_id, created_by, now, expires_at, dumps(request), dumps(plan)))
    return fn
