"""Reading operations back: the history list, one operation's view, and its replay events.

*History order*: newest first by start. An operation's start key is ``created_at`` — the
moment it was accepted and queued (it begins running milliseconds later; a queued operation
must sort with the rest, and the key must exist for every row). Ties break on ``seq``
(descending), so the order is total and stable.

*Filters*: ``status`` (one or a comma-separated list), ``from`` and ``to`` (ISO-8601, both
inclusive, compared with the start key). *Pagination*: ``limit`` (1–:data:`MAX_LIMIT`,
default :data:`DEFAULT_LIMIT`) and either ``cursor`` (opaque keyset cursor from
``page.next_cursor``, stable under inserts) or ``page`` (1-based page number).
"""

from __future__ import annotations

import base64
import binascii
import json
import sqlite3
from collections.abc import Iterator, Mapping
from typing import Any

from linkops.db import loads
from linkops.errors import NotFoundError, ValidationError
from linkops.operations.event_types import (
    OperationEnd,
    OperationState,
    Output,
    TaskEnd,
    TaskStart,
    payload,
)
from linkops.operations.events import Event
from linkops.operations.status import OPERATION_STATUSES
from linkops.timeutil import parse_iso, to_iso

DEFAULT_LIMIT = 50
MAX_LIMIT = 200

LOG_FIELDS = ("target", "script", "position", "status", "exit_code", "stdout", "stderr",
              "output_truncated", "duration", "started_at", "ended_at", "error",
              "remote_killed")


def _summary(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "status": row["status"],
        "scripts": loads(row["scripts"], []),
        "targets": loads(row["targets"], []),
        "flags": loads(row["flags"], {}),
        "concurrency": row["concurrency"],
        "require_enrollment": bool(row["require_enrollment"]),
        "triggered_by": row["triggered_by"],
        "commit_hash": row["commit_hash"],
        "script_hashes": loads(row["script_hashes"], {}),
        "created": row["created_at"],
        "started": row["started_at"],
        "ended": row["ended_at"],
        "duration": row["duration"],
        "result": loads(row["result"], {}),
        "error": row["error"],
    }


def _log(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "target": row["target"],
        "script": row["script"],
        "position": row["position"],
        "status": row["status"],
        "exit_code": row["exit_code"],
        "stdout": row["stdout"],
        "stderr": row["stderr"],
        "output_truncated": bool(row["output_truncated"]),
        "duration": row["duration"],
        "started": row["started_at"],
        "ended": row["ended_at"],
        "error": row["error"],
        "remote_killed": None if row["remote_killed"] is None else bool(row["remote_killed"]),
    }


def operation_detail(conn: sqlite3.Connection, op_id: str) -> dict[str, Any]:
    """The full view of one operation, every log row included (target order, then script).

    *Errors*: :class:`NotFoundError` (``OPERATION_NOT_FOUND``).
    """
    row = conn.execute("SELECT * FROM operations WHERE id = ?", (op_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"no operation {op_id}", code="OPERATION_NOT_FOUND",
                            details={"operation_id": op_id})
    view = _summary(row)
    targets = view["targets"]
    order = {t: i for i, t in enumerate(targets)}
    logs = [_log(r) for r in conn.execute(
        "SELECT * FROM operation_logs WHERE operation_id = ?", (op_id,))]
    logs.sort(key=lambda log: (order.get(log["target"], len(order)), log["position"]))
    view["logs"] = logs
    return view


def operation_status(conn: sqlite3.Connection, op_id: str) -> str | None:
    row = conn.execute("SELECT status FROM operations WHERE id = ?", (op_id,)).fetchone()
    return None if row is None else str(row[0])


# -- history list ---------------------------------------------------------------------------

def _encode_cursor(created_at: str, seq: int) -> str:
    raw = json.dumps([created_at, seq], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[str, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, seq = json.loads(raw)
        if not isinstance(created_at, str) or not isinstance(seq, int):
            raise ValueError
        return created_at, seq
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ValidationError("invalid cursor", code="INVALID_CURSOR",
                              details={"cursor": cursor[:100]}) from None


def _iso_param(name: str, raw: str | None) -> str | None:
    if raw is None:
        return None
    try:
        return to_iso(parse_iso(raw))
    except ValueError:
        raise ValidationError(f"{name} must be an ISO-8601 time, got {raw[:40]!r}",
                              details={"field": name}) from None


def _int_param(name: str, raw: str | None, default: int, low: int, high: int) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError(f"{name} must be an integer", details={"field": name}) from None
    if not low <= value <= high:
        raise ValidationError(f"{name} must be between {low} and {high}",
                              details={"field": name})
    return value


def parse_statuses(raw: str | None) -> list[str]:
    if raw is None:
        return []
    statuses = [s.strip() for s in raw.split(",") if s.strip()]
    bad = [s for s in statuses if s not in OPERATION_STATUSES]
    if bad:
        raise ValidationError(f"unknown status {', '.join(bad)}",
                              details={"field": "status", "allowed": list(OPERATION_STATUSES)})
    return statuses


def list_operations(conn: sqlite3.Connection, params: Mapping[str, str | None]) -> dict[str, Any]:
    """``{operations: [...], page: {limit, next_cursor, page?}}`` (see module docstring)."""
    statuses = parse_statuses(params.get("status"))
    start = _iso_param("from", params.get("from"))
    end = _iso_param("to", params.get("to"))
    limit = _int_param("limit", params.get("limit"), DEFAULT_LIMIT, 1, MAX_LIMIT)
    where: list[str] = []
    args: list[Any] = []
    if statuses:
        where.append(f"status IN ({','.join('?' * len(statuses))})")
        args.extend(statuses)
    if start is not None:
        where.append("created_at >= ?")
        args.append(start)
    if end is not None:
        where.append("created_at <= ?")
        args.append(end)
    cursor = params.get("cursor")
    page_number: int | None = None
    offset = 0
    if cursor:
        created_at, seq = _decode_cursor(cursor)
        where.append("(created_at < ? OR (created_at = ? AND seq < ?))")
        args.extend([created_at, created_at, seq])
    elif params.get("page") is not None:
        page_number = _int_param("page", params.get("page"), 1, 1, 1_000_000)
        offset = (page_number - 1) * limit
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(
        f"SELECT * FROM operations {clause} ORDER BY created_at DESC, seq DESC "
        "LIMIT ? OFFSET ?",
        [*args, limit + 1, offset],
    ).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    page: dict[str, Any] = {
        "limit": limit,
        "next_cursor": _encode_cursor(rows[-1]["created_at"], rows[-1]["seq"])
        if more and rows else None,
    }
    if page_number is not None:
        page["page"] = page_number
    return {"operations": [_summary(r) for r in rows], "page": page}


# -- replay of a finished operation ---------------------------------------------------------

def script_names(conn: sqlite3.Connection, ids: list[str]) -> dict[str, str]:
    """Display names of the scripts still in the catalogue (for a replay's ``task_start``)."""
    marks = ",".join("?" * len(ids))
    rows = conn.execute(f"SELECT id, name FROM scripts WHERE id IN ({marks})", ids)
    return {row["id"]: row["name"] for row in rows}


def replay_events(view: Mapping[str, Any], names: Mapping[str, str] | None = None
                  ) -> Iterator[Event]:
    """A finished operation as the event sequence a live subscriber would have seen, built
    with the live stream's constructors (:mod:`linkops.operations.event_types`, which says
    what legitimately differs); ids numbered from 1 in this order."""
    names = names or {}
    counter = iter(range(1, 1_000_000_000))

    def event(value: Any) -> Event:
        return Event(next(counter), value.kind, payload(value))

    yield event(OperationState(
        operation_id=view["id"], status=view["status"], scripts=view["scripts"],
        targets=view["targets"], flags=view["flags"], concurrency=view["concurrency"],
        triggered_by=view["triggered_by"], started=view["started"], replayed=True))
    for log in view["logs"]:
        base = {"target": log["target"], "script": log["script"], "position": log["position"]}
        if log["started"] is not None:
            yield event(TaskStart(**base, name=names.get(log["script"]),
                                  started=log["started"]))
        for stream in ("stdout", "stderr"):
            if log[stream]:
                yield event(Output(**base, stream=stream, data=log[stream]))
        yield event(TaskEnd(
            **base, status=log["status"], exit_code=log["exit_code"],
            duration=log["duration"], ended=log["ended"], error=log["error"],
            remote_killed=log["remote_killed"], output_truncated=log["output_truncated"]))
    yield event(OperationEnd(
        operation_id=view["id"], status=view["status"], result=view["result"],
        ended=view["ended"], duration=view["duration"], error=view["error"]))
