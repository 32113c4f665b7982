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
from linkops.operations.groups import UNFINISHED, Grouping, from_rows, normalise
from linkops.operations.requests import (
    HISTORY_DEFAULT_LIMIT,
    HISTORY_MAX_LIMIT,
    HISTORY_MAX_PAGE,
)
from linkops.operations.status import OPERATION_STATUSES
from linkops.timeutil import parse_iso, to_iso

DEFAULT_LIMIT = HISTORY_DEFAULT_LIMIT
MAX_LIMIT = HISTORY_MAX_LIMIT

LOG_FIELDS = ("target", "script", "position", "status", "exit_code", "stdout_head",
              "stderr_head", "stdout_bytes", "stderr_bytes", "output_truncated", "duration",
              "started_at", "ended_at", "error", "remote_killed")
# The operation view carries each log's head, not its output (SPEC §10.3): the heads of all
# logs together get about this many characters (each stream between the two bounds below),
# so a 500-task view stays well under 200 KB; the whole output is paged from
# GET …/tasks/{target}/{script}/output.
VIEW_HEAD_BUDGET = 32_000
VIEW_HEAD_MIN = 32
VIEW_HEAD_MAX = 2048


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
        "parent": row["parent"],
        "children": loads(row["children"], []) if "children" in row.keys() else [],
    }


def _log(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "target": row["target"],
        "script": row["script"],
        "position": row["position"],
        "status": row["status"],
        "exit_code": row["exit_code"],
        "stdout_head": row["stdout_head"],
        "stderr_head": row["stderr_head"],
        "stdout_bytes": row["stdout_bytes"],
        "stderr_bytes": row["stderr_bytes"],
        "output_truncated": bool(row["output_truncated"]),
        "duration": row["duration"],
        "started": row["started_at"],
        "ended": row["ended_at"],
        "error": row["error"],
        "remote_killed": None if row["remote_killed"] is None else bool(row["remote_killed"]),
    }


# The reruns of an operation, oldest first (the inner alias keeps `operations` the outer row).
_CHILDREN = ("(SELECT json_group_array(c.id) FROM (SELECT k.id FROM operations AS k "
             "WHERE k.parent = operations.id ORDER BY k.seq) AS c) AS children")


def _operation_row(conn: sqlite3.Connection, op_id: str) -> Any:
    row = conn.execute(f"SELECT *, {_CHILDREN} FROM operations WHERE id = ?",
                       (op_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"no operation {op_id}", code="OPERATION_NOT_FOUND",
                            details={"operation_id": op_id})
    return row


def view_head_chars(logs: int) -> int:
    """Characters of head per stream and log in the operation view (see VIEW_HEAD_BUDGET)."""
    return max(VIEW_HEAD_MIN, min(VIEW_HEAD_MAX, VIEW_HEAD_BUDGET // max(2 * logs, 1)))


def operation_detail(conn: sqlite3.Connection, op_id: str, *,
                     full_output: bool = False) -> dict[str, Any]:
    """One operation with every log row (target order, then script), ``parent``,
    ``children`` and the ``plan`` it was confirmed with.

    Each log carries ``stdout_head``/``stderr_head`` (at most :func:`view_head_chars`
    characters) and the kept sizes ``stdout_bytes``/``stderr_bytes`` (UTF-8); with
    ``full_output`` (internal callers: replay, tests) also the whole kept ``stdout`` and
    ``stderr``.

    *Errors*: :class:`NotFoundError` (``OPERATION_NOT_FOUND``).
    """
    row = _operation_row(conn, op_id)
    view = _summary(row)
    view["plan"] = loads(row["plan"])
    targets = view["targets"]
    order = {t: i for i, t in enumerate(targets)}
    count = conn.execute("SELECT count(*) FROM operation_logs WHERE operation_id = ?",
                         (op_id,)).fetchone()[0]
    head = view_head_chars(int(count))
    extra = ", l.stdout, l.stderr" if full_output else ""
    rows = conn.execute(
        "SELECT l.target, l.script, l.position, l.status, l.exit_code, l.output_truncated, "
        "l.duration, l.started_at, l.ended_at, l.error, l.remote_killed, "
        # Rows from before migration 0006 (or not ended yet) have no stored head/size.
        "substr(COALESCE(o.stdout_head, l.stdout), 1, ?) AS stdout_head, "
        "substr(COALESCE(o.stderr_head, l.stderr), 1, ?) AS stderr_head, "
        "COALESCE(o.stdout_bytes, length(CAST(l.stdout AS BLOB))) AS stdout_bytes, "
        f"COALESCE(o.stderr_bytes, length(CAST(l.stderr AS BLOB))) AS stderr_bytes"
        f"{extra} "
        "FROM operation_logs AS l LEFT JOIN operation_task_outputs AS o ON o.log_id = l.id "
        "WHERE l.operation_id = ?", (head, head, op_id))
    logs = []
    for r in rows:
        log = _log(r)
        if full_output:
            log["stdout"], log["stderr"] = r["stdout"], r["stderr"]
        logs.append(log)
    logs.sort(key=lambda log: (order.get(log["target"], len(order)), log["position"]))
    view["logs"] = logs
    return view


# -- output groups (SPEC §10.3) ---------------------------------------------------------------

def operation_groups(conn: sqlite3.Connection, op_id: str) -> tuple[
        dict[str, Any], Grouping, list[dict[str, Any]]]:
    """``(summary, grouping, unfinished)`` from the stored fingerprints (no outputs read,
    except for finished rows that have none: see :func:`groups.from_rows`)."""
    row = _operation_row(conn, op_id)
    summary = _summary(row)
    # From the covering index operation_logs_tasks and the small fingerprint rows: no output
    # is read, except for ended rows without a fingerprint (from before migration 0006).
    rows = [dict(r) for r in conn.execute(
        "SELECT l.id, l.target, l.script, l.position, l.status, l.exit_code, o.output_hash, "
        "o.norm_stdout_head, o.norm_stderr_head "
        "FROM operation_logs AS l INDEXED BY operation_logs_tasks "
        "LEFT JOIN operation_task_outputs AS o ON o.log_id = l.id "
        "WHERE l.operation_id = ?", (op_id,))]
    bare = [r["id"] for r in rows if r["output_hash"] is None and r["status"] not in UNFINISHED]
    if bare:
        outputs: dict[int, sqlite3.Row] = {}
        for chunk in range(0, len(bare), 500):
            ids = bare[chunk:chunk + 500]
            outputs.update((r["id"], r) for r in conn.execute(
                f"SELECT id, stdout, stderr FROM operation_logs "
                f"WHERE id IN ({','.join('?' * len(ids))})", ids))
        for r in rows:
            found = outputs.get(r["id"])
            if found is not None:
                r["stdout"], r["stderr"] = found["stdout"], found["stderr"]
    hosts: dict[str, str] = {}
    if bare:
        hosts = {r["id"]: r["host"] for r in conn.execute("SELECT id, host FROM machines")}
    grouping, unfinished = from_rows(rows, summary["targets"], hosts)
    return summary, grouping, unfinished


def _task_not_found(op_id: str, target: str, script: str) -> NotFoundError:
    return NotFoundError(f"no task {target}/{script} in {op_id}", code="TASK_NOT_FOUND",
                         details={"operation_id": op_id, "target": target, "script": script})


def task_output(conn: sqlite3.Connection, op_id: str, target: str,
                script: str) -> dict[str, Any]:
    """One task's whole kept output, normalised for grouping (for the diff)."""
    row = conn.execute(
        "SELECT l.stdout, l.stderr, l.status, m.host FROM operation_logs AS l "
        "LEFT JOIN machines AS m ON m.id = l.target "
        "WHERE l.operation_id = ? AND l.target = ? AND l.script = ?",
        (op_id, target, script)).fetchone()
    if row is None:
        raise _task_not_found(op_id, target, script)
    host = row["host"] or ""
    return {"stdout": normalise(row["stdout"], target, host),
            "stderr": normalise(row["stderr"], target, host)}


def _char_len(lead: int) -> int:
    return 2 if lead >> 5 == 0b110 else 3 if lead >> 4 == 0b1110 else \
        4 if lead >> 3 == 0b11110 else 1


def _page(read: Any, size: int, offset: int, limit: int, truncated: bool) -> dict[str, Any]:
    """A page of ``size`` bytes of UTF-8 read by ``read(offset, n)``: it starts on the first
    character boundary at or after ``offset`` and ends on one, holding at most ``limit`` bytes
    (or one whole character when ``limit`` is smaller than it)."""
    if offset >= size:
        return {"data": "", "offset": size, "next_offset": None, "total": size,
                "truncated": truncated}
    raw: bytes = read(offset, min(limit + 4, size - offset))
    start = 0
    while start < min(len(raw), 3) and raw[start] & 0xC0 == 0x80:
        start += 1  # inside a character: begin at the next one
    end = min(start + limit, len(raw))
    if offset + end < size:
        # Back off to the start of the character the cut would split.
        cut = end
        while cut > start and raw[cut] & 0xC0 == 0x80:
            cut -= 1
        end = cut if cut > start else min(start + _char_len(raw[start]), len(raw))
    body = raw[start:end]
    stop = offset + end
    return {"data": body.decode("utf-8", "replace"), "offset": offset + start,
            "next_offset": stop if stop < size else None, "total": size,
            "truncated": truncated}


def output_page(conn: sqlite3.Connection, op_id: str, target: str, script: str,
                stream: str, offset: int, limit: int) -> dict[str, Any] | None:
    """A page of a finished task's kept output, read with SQLite incremental blob I/O (only
    the page is read, however large the output). Offsets are UTF-8 byte offsets into the kept
    text; a page starts and ends on character boundaries (``offset`` in the answer is where it
    really starts). None while the task runs (the caller serves it from memory).

    *Errors*: :class:`NotFoundError` (``OPERATION_NOT_FOUND``, ``TASK_NOT_FOUND``).
    """
    if stream not in ("stdout", "stderr"):
        raise ValueError(stream)
    if conn.execute("SELECT 1 FROM operations WHERE id = ?", (op_id,)).fetchone() is None:
        raise NotFoundError(f"no operation {op_id}", code="OPERATION_NOT_FOUND",
                            details={"operation_id": op_id})
    row = conn.execute(
        "SELECT id, status, output_truncated "
        "FROM operation_logs WHERE operation_id = ? AND target = ? AND script = ?",
        (op_id, target, script)).fetchone()
    if row is None:
        raise _task_not_found(op_id, target, script)
    if row["status"] == "running":
        return None
    truncated = bool(row["output_truncated"])
    with conn.blobopen("operation_logs", stream, int(row["id"]), readonly=True) as blob:
        size = len(blob)

        def read(at: int, n: int) -> bytes:
            blob.seek(at)
            return blob.read(n)
        return _page(read, size, offset, limit, truncated)


def page_text(text: str, offset: int, limit: int, truncated: bool) -> dict[str, Any]:
    """The same page over text held in memory (a running task's output so far)."""
    raw = text.encode("utf-8", "surrogatepass")
    return _page(lambda o, n: raw[o:o + n], len(raw), offset, limit, truncated)


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


def _int_param(name: str, raw: str | int | None, default: int, low: int, high: int) -> int:
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


def list_operations(conn: sqlite3.Connection,
                    params: Mapping[str, str | int | None]) -> dict[str, Any]:
    """``{operations: [...], page: {limit, next_cursor, page?}}`` (see module docstring)."""
    def text(name: str) -> str | None:
        value = params.get(name)
        return None if value is None else str(value)

    statuses = parse_statuses(text("status"))
    start = _iso_param("from", text("from"))
    end = _iso_param("to", text("to"))
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
    cursor = text("cursor")
    page_number: int | None = None
    offset = 0
    if cursor:
        created_at, seq = _decode_cursor(cursor)
        where.append("(created_at < ? OR (created_at = ? AND seq < ?))")
        args.extend([created_at, created_at, seq])
    elif params.get("page") is not None:
        page_number = _int_param("page", params.get("page"), 1, 1, HISTORY_MAX_PAGE)
        offset = (page_number - 1) * limit
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(
        f"SELECT *, {_CHILDREN} FROM operations {clause} ORDER BY created_at DESC, seq DESC "
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
