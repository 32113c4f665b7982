"""Reading recordings: list, search (SQLite FTS5 over the plain-text lines), fetch a file.

Access (SPEC §10.4): a user sees their own recordings, an admin everyone's; a viewer none
(the routes refuse viewers before calling here). Someone else's recording is *not found*
(404), so ids do not reveal whose sessions exist. Every file read and every search is written
to ``terminal_audit``.

*Search*: the text the user typed is never passed to FTS5 as query syntax. It is split into
words and each word becomes a quoted FTS5 string (``"…"`` with inner quotes doubled), all of
which must occur in the line, in any order; a trailing ``*`` on a word is the only syntax kept
(prefix search). So ``"``, ``NEAR(``, ``AND`` or ``col:`` in ``q`` are words, never operators.
Hits come newest line first from the index (``ORDER BY rowid DESC``), without reading files.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any, Final

import attrs
import trio

from linkops.db import Database, dumps
from linkops.errors import NotFoundError, ValidationError
from linkops.terminal.recording import Recordings
from linkops.timeutil import now_iso, parse_iso, to_iso

MAX_QUERY_CHARS: Final = 256
MAX_QUERY_WORDS: Final = 16
SEARCH_LIMIT: Final = 100
PAGE_SIZE: Final = 50
# Word characters as FTS5's unicode61 tokenizer sees them (roughly): anything else separates.
_WORDS: Final = re.compile(r"[\w]+\*?", re.UNICODE)


@attrs.frozen
class Viewer:
    username: str
    admin: bool


def fts_query(text: str) -> str:
    """User text → a safe FTS5 MATCH expression (see the module docstring).

    *Errors*: 400 ``INVALID_QUERY`` when it is empty, too long or has no words.
    """
    if len(text) > MAX_QUERY_CHARS:
        raise ValidationError(f"q is limited to {MAX_QUERY_CHARS} characters",
                              code="INVALID_QUERY", details={"max": MAX_QUERY_CHARS})
    words = _WORDS.findall(text)[:MAX_QUERY_WORDS]
    terms = []
    for word in words:
        prefix = word.endswith("*")
        core = word.rstrip("*")
        if core:
            quoted = '"' + core.replace('"', '""') + '"'
            terms.append(quoted + ("*" if prefix else ""))
    if not terms:
        raise ValidationError("q must contain at least one word", code="INVALID_QUERY")
    return " ".join(terms)


def _row_json(row: sqlite3.Row) -> dict[str, Any]:
    return {"id": row["id"], "workspace_id": row["workspace_id"], "pane": row["pane"],
            "target": row["target"], "user": row["username"], "started": row["started_at"],
            "ended": row["ended_at"], "duration": row["duration"], "bytes": row["bytes"],
            "width": row["width"], "height": row["height"], "cut_reason": row["cut_reason"]}


def _time_arg(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    try:
        return to_iso(parse_iso(value))
    except ValueError:
        raise ValidationError(f"{name} must be an ISO-8601 time", code="VALIDATION_ERROR",
                              details={"field": name}) from None


class RecordingIndex:
    """Queries over ``terminal_recordings`` and its FTS5 index."""

    def __init__(self, db: Database, recordings: Recordings) -> None:
        self.db = db
        self.recordings = recordings

    async def audit(self, username: str, action: str, details: dict[str, Any]) -> None:
        await self.db.execute(
            "INSERT INTO terminal_audit (at, username, action, details) VALUES (?,?,?,?)",
            (now_iso(), username, action, dumps(details)))

    async def list(self, viewer: Viewer, *, target: str | None = None, user: str | None = None,
                   start: str | None = None, end: str | None = None,
                   cursor: str | None = None) -> dict[str, Any]:
        """One page, newest first. *Errors*: 400 for a bad time or cursor."""
        where, params = ["1 = 1"], []
        if not viewer.admin:
            where.append("username = ?")
            params.append(viewer.username)
        if user is not None:
            where.append("username = ?")
            params.append(user.strip().lower())
        if target is not None:
            where.append("target = ?")
            params.append(target)
        if (since := _time_arg(start, "from")) is not None:
            where.append("started_at >= ?")
            params.append(since)
        if (until := _time_arg(end, "to")) is not None:
            where.append("started_at <= ?")
            params.append(until)
        if cursor is not None:
            if not cursor.isdigit() or len(cursor) > 18:
                raise ValidationError("cursor is not valid", code="INVALID_CURSOR")
            where.append("id < ?")
            params.append(cursor)
        rows = await self.db.fetchall(
            f"SELECT * FROM terminal_recordings WHERE {' AND '.join(where)}"
            f" ORDER BY id DESC LIMIT {PAGE_SIZE + 1}", params)
        more = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE]
        return {"recordings": [_row_json(r) for r in rows],
                "next_cursor": str(rows[-1]["id"]) if more else None}

    async def search(self, viewer: Viewer, q: str) -> dict[str, Any]:
        """Lines matching ``q``, newest first. *Errors*: 400 ``INVALID_QUERY``."""
        match = fts_query(q)
        owner_clause = "" if viewer.admin else " AND r.username = ?"
        params: list[Any] = [match] + ([] if viewer.admin else [viewer.username])
        rows = await self.db.fetchall(
            "SELECT l.recording_id, l.offset_seconds, l.line, r.target, r.username,"
            " r.started_at FROM terminal_recording_fts f"
            " JOIN terminal_recording_lines l ON l.id = f.rowid"
            " JOIN terminal_recordings r ON r.id = l.recording_id"
            f" WHERE terminal_recording_fts MATCH ?{owner_clause}"
            f" ORDER BY f.rowid DESC LIMIT {SEARCH_LIMIT}", params)
        await self.audit(viewer.username, "recording.search", {"q": q[:MAX_QUERY_CHARS],
                                                               "hits": len(rows)})
        return {"hits": [{"recording_id": r["recording_id"], "target": r["target"],
                          "user": r["username"], "started": r["started_at"],
                          "offset_seconds": r["offset_seconds"], "line": r["line"]}
                         for r in rows]}

    async def read(self, viewer: Viewer, recording_id: int) -> tuple[dict[str, Any], bytes]:
        """The recording's row and its ``.cast`` bytes; audited.

        *Errors*: 404 ``RECORDING_NOT_FOUND`` (missing, someone else's, or its file is gone).
        """
        row = await self.db.fetchone("SELECT * FROM terminal_recordings WHERE id = ?",
                                     (recording_id,))
        if row is None or (not viewer.admin and row["username"] != viewer.username):
            raise NotFoundError(f"recording {recording_id} not found",
                                code="RECORDING_NOT_FOUND", details={"id": recording_id})
        path: Path = self.recordings.file_path(str(row["path"]))
        try:
            data = await trio.to_thread.run_sync(path.read_bytes)
        except FileNotFoundError:
            raise NotFoundError(f"recording {recording_id} has no file any more",
                                code="RECORDING_NOT_FOUND",
                                details={"id": recording_id}) from None
        await self.audit(viewer.username, "recording.read",
                         {"id": recording_id, "target": row["target"],
                          "owner": row["username"]})
        return _row_json(row), data
