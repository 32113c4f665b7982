"""Terminal workspaces as stored in SQLite: layouts, panes, owners, limits and the audit trail.

This module owns the *persistent* half of the terminal feature (the live SSH sessions are in
:mod:`linkops.terminal.session`, the coordination in :mod:`linkops.terminal.service`):

- ``terminal_workspaces``: one row per workspace (``ws-<random>``, owner, layout, capacity).
  Deleting a workspace sets ``closed_at`` (the row stays, so ids are never reused and the audit
  trail keeps its context); closed workspaces are invisible to the API.
- ``terminal_panes``: one row per pane ``A``… of the workspace's capacity, with its target,
  size and last status (``idle``, ``connecting``, ``connected``, ``closed``, ``error``).
- ``terminal_sessions``: every SSH shell opened, with who, where, when and why it closed.

Decisions (see also docs in the service module):
- ``max_panes`` is the workspace's capacity (default ``[terminal] max_panes_per_workspace``,
  at most that); the layout needs ``LAYOUT_PANES[layout] <= max_panes`` panes. Panes ``A``…
  up to the capacity exist from the start, so a later layout change never loses assignments.
- Another user's workspace is reported exactly like a missing one (404 ``NOT_FOUND``).
- ``[terminal] max_workspaces`` counts a user's open workspaces; at the limit the least
  recently updated one without a live shell or socket is closed to make room, and only when
  all are in use is the create refused (409 ``WORKSPACE_LIMIT_REACHED``). Count, eviction and
  insert run in one write transaction, so concurrent creates cannot exceed the limit.

*Errors*: :class:`~linkops.errors.ValidationError`, :class:`~linkops.errors.NotFoundError`,
:class:`~linkops.errors.ConflictError` — never a raw sqlite error for bad input.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any, Final

import attrs

from linkops.api_types import AssignPanesRequest
from linkops.config import TerminalSettings
from linkops.converters import structure_request, validation_error
from linkops.db import Database
from linkops.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from linkops.models import LAYOUT_PANES, PANES, Link
from linkops.ssh.enrollment import enrollment_required
from linkops.ssh.machines import link_from_row, load_links, machine_row, store_enrollment
from linkops.timeutil import now_iso

WORKSPACE_PREFIX: Final = "ws-"
# Sizes a client may ask for; anything outside is clamped (a 0x0 or 10^6-column PTY is
# either useless or a way to make the remote allocate huge screen buffers).
MIN_COLS, MAX_COLS = 2, 500
MIN_ROWS, MAX_ROWS = 1, 200
DEFAULT_COLS, DEFAULT_ROWS = 80, 24
PANE_STATUSES: Final = ("idle", "connecting", "connected", "closed", "error")
LIVE_STATUSES: Final = frozenset({"connecting", "connected"})


def new_workspace_id() -> str:
    """``ws-`` + 16 random URL-safe characters (96 bits): unguessable and collision-free in
    practice; the primary key makes a collision an IntegrityError that :meth:`create` retries."""
    return WORKSPACE_PREFIX + secrets.token_urlsafe(12)


def clamp_size(cols: int, rows: int) -> tuple[int, int]:
    return (min(max(cols, MIN_COLS), MAX_COLS), min(max(rows, MIN_ROWS), MAX_ROWS))


@attrs.frozen
class PaneState:
    pane: str
    target: str | None
    status: str
    cols: int
    rows: int
    error: str | None = None
    connected_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"pane": self.pane, "target": self.target, "status": self.status,
                "cols": self.cols, "rows": self.rows, "error": self.error,
                "connected_at": self.connected_at}


@attrs.frozen
class Workspace:
    id: str
    owner: str
    layout: str
    max_panes: int
    created_at: str
    updated_at: str
    panes: tuple[PaneState, ...]

    @property
    def visible_panes(self) -> tuple[str, ...]:
        """The panes the layout shows (``A``… ``LAYOUT_PANES[layout]``)."""
        return PANES[: LAYOUT_PANES[self.layout]]

    def pane(self, name: str) -> PaneState:
        for state in self.panes:
            if state.pane == name:
                return state
        raise NotFoundError(f"workspace {self.id} has no pane {name!r}", code="PANE_NOT_FOUND",
                            details={"workspace_id": self.id, "pane": name,
                                     "panes": [p.pane for p in self.panes]})

    def to_json(self) -> dict[str, Any]:
        return {"workspace_id": self.id, "layout": self.layout, "max_panes": self.max_panes,
                "owner": self.owner, "created_at": self.created_at,
                "updated_at": self.updated_at, "panes": [p.to_json() for p in self.panes]}


@attrs.frozen
class Assignment:
    pane: str
    target: str


def validate_layout(layout: Any, max_panes: Any, settings: TerminalSettings) -> tuple[str, int]:
    """Check ``{layout, max_panes}`` of a create request; returns the capacity to store."""
    if not isinstance(layout, str) or layout not in LAYOUT_PANES:
        raise ValidationError(
            f"layout must be one of {', '.join(LAYOUT_PANES)}",
            details={"field": "layout", "allowed": list(LAYOUT_PANES)},
        )
    limit = settings.max_panes_per_workspace
    if max_panes is None:
        capacity = max(limit, LAYOUT_PANES[layout])
    elif isinstance(max_panes, bool) or not isinstance(max_panes, int):
        raise ValidationError("max_panes must be an integer", details={"field": "max_panes"})
    else:
        capacity = max_panes
    if not 1 <= capacity <= limit:
        raise ValidationError(
            f"max_panes must be between 1 and {limit} ([terminal] max_panes_per_workspace)",
            details={"field": "max_panes", "max": limit},
        )
    if LAYOUT_PANES[layout] > capacity:
        raise ValidationError(
            f"layout {layout} needs {LAYOUT_PANES[layout]} panes but max_panes is {capacity}",
            details={"field": "layout", "needs": LAYOUT_PANES[layout], "max_panes": capacity},
        )
    return layout, capacity


def parse_assignments(body: Any) -> list[Assignment]:
    """``{panes: [{pane: "A", target: "vps-01"}, …]}`` → assignments (``target`` null clears).

    The shape is :class:`linkops.api_types.AssignPanesRequest` (the strict converter; every
    problem with its path in ``details.errors``); a pane listed twice is refused here."""
    typed = body if isinstance(body, AssignPanesRequest) else structure_request(
        body, AssignPanesRequest)
    seen: set[str] = set()
    result: list[Assignment] = []
    for index, item in enumerate(typed.panes):
        if item.pane in seen:
            raise validation_error([(("panes", index), f"pane {item.pane} is listed twice")])
        if item.target == "":
            raise validation_error([(("panes", index, "target"), "must be a link id or null")])
        seen.add(item.pane)
        result.append(Assignment(pane=item.pane, target=item.target or ""))
    return result


def _pane_from_row(row: sqlite3.Row) -> PaneState:
    return PaneState(pane=row["pane"], target=row["target"], status=row["status"],
                     cols=row["cols"], rows=row["rows"], error=row["error"],
                     connected_at=row["connected_at"])


def _load(conn: sqlite3.Connection, owner: str, workspace_id: str) -> Workspace:
    row = conn.execute(
        "SELECT * FROM terminal_workspaces WHERE id = ? AND closed_at IS NULL",
        (workspace_id,),
    ).fetchone()
    # Same answer for "missing" and "someone else's": existence is not revealed.
    if row is None or row["owner"] != owner:
        raise NotFoundError(f"workspace {workspace_id} not found",
                            details={"workspace_id": workspace_id})
    panes = conn.execute(
        "SELECT * FROM terminal_panes WHERE workspace_id = ? ORDER BY pane", (workspace_id,)
    ).fetchall()
    return Workspace(id=row["id"], owner=row["owner"], layout=row["layout"],
                     max_panes=row["max_panes"], created_at=row["created_at"],
                     updated_at=row["updated_at"],
                     panes=tuple(_pane_from_row(p) for p in panes))


def _close(conn: sqlite3.Connection, workspace_id: str, now: str) -> None:
    conn.execute("UPDATE terminal_workspaces SET closed_at = ?, updated_at = ? WHERE id = ?",
                 (now, now, workspace_id))
    conn.execute("UPDATE terminal_panes SET status = 'closed', disconnected_at = "
                 "COALESCE(disconnected_at, ?) WHERE workspace_id = ?", (now, workspace_id))


class WorkspaceStore:
    """Reads and writes of the three terminal tables (all through :class:`Database`)."""

    def __init__(self, db: Database, settings: TerminalSettings, *,
                 enrollment_required: bool = True) -> None:
        self.db = db
        self.settings = settings
        # [security] enrollment_required (the rule: linkops.ssh.enrollment.enrollment_required)
        self.enrollment_required = enrollment_required

    async def create(self, owner: str, layout: Any, max_panes: Any,
                     busy: Iterable[str] = ()) -> Workspace:
        """A new workspace for ``owner``.

        At ``[terminal] max_workspaces`` the owner's least recently updated workspace that is
        not ``busy`` (no live shell, no attached socket) is closed to make room: browsers
        start a new workspace per tab, and a limit that only abandoned workspaces fill would
        lock the user out. With every workspace busy: 409 ``WORKSPACE_LIMIT_REACHED``.
        """
        layout, capacity = validate_layout(layout, max_panes, self.settings)
        in_use = set(busy)

        def write(conn: sqlite3.Connection) -> Workspace:
            rows = conn.execute(
                "SELECT id FROM terminal_workspaces WHERE owner = ? AND closed_at IS NULL "
                "ORDER BY updated_at, id", (owner,)).fetchall()
            idle = [r["id"] for r in rows if r["id"] not in in_use]
            excess = len(rows) - self.settings.max_workspaces + 1
            if excess > len(idle):
                raise ConflictError(
                    f"user {owner} already has {len(rows)} workspaces in use "
                    f"([terminal] max_workspaces = {self.settings.max_workspaces})",
                    code="WORKSPACE_LIMIT_REACHED",
                    details={"max_workspaces": self.settings.max_workspaces},
                )
            for evicted in idle[:max(excess, 0)]:
                _close(conn, evicted, now_iso())
            now = now_iso()
            for _ in range(5):
                workspace_id = new_workspace_id()
                try:
                    conn.execute(
                        "INSERT INTO terminal_workspaces (id, owner, layout, max_panes, "
                        "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                        (workspace_id, owner, layout, capacity, now, now),
                    )
                    break
                except sqlite3.IntegrityError:
                    continue
            else:  # pragma: no cover - 96 random bits colliding five times
                raise RuntimeError("could not allocate a unique workspace id")
            conn.executemany(
                "INSERT INTO terminal_panes (workspace_id, pane, status, cols, rows) "
                "VALUES (?, ?, 'idle', ?, ?)",
                [(workspace_id, p, DEFAULT_COLS, DEFAULT_ROWS) for p in PANES[:capacity]],
            )
            return _load(conn, owner, workspace_id)

        return await self.db.write(write)

    async def get(self, owner: str, workspace_id: str) -> Workspace:
        return await self.db.read(lambda c: _load(c, owner, workspace_id))

    async def list(self, owner: str) -> list[Workspace]:
        def read(conn: sqlite3.Connection) -> list[Workspace]:
            ids = [r[0] for r in conn.execute(
                "SELECT id FROM terminal_workspaces WHERE owner = ? AND closed_at IS NULL "
                "ORDER BY created_at, id", (owner,))]
            return [_load(conn, owner, i) for i in ids]

        return await self.db.read(read)

    async def set_layout(self, owner: str, workspace_id: str, layout: Any) -> Workspace:
        def write(conn: sqlite3.Connection) -> Workspace:
            current = _load(conn, owner, workspace_id)
            validate_layout(layout, current.max_panes, self.settings)
            conn.execute("UPDATE terminal_workspaces SET layout = ?, updated_at = ? WHERE id = ?",
                         (layout, now_iso(), workspace_id))
            return _load(conn, owner, workspace_id)

        return await self.db.write(write)

    async def close(self, owner: str, workspace_id: str) -> None:
        def write(conn: sqlite3.Connection) -> None:
            _load(conn, owner, workspace_id)
            _close(conn, workspace_id, now_iso())

        await self.db.write(write)

    async def assign(self, owner: str, workspace_id: str, assignments: Sequence[Assignment],
                     live: Iterable[str]) -> Workspace:
        """Bind panes to targets after checking enrollment, in one transaction.

        ``live`` names the panes that have an SSH session right now. Rules: an unknown target
        is 404 ``LINK_NOT_FOUND``; a target that is not enrolled (and requires enrollment) is
        403 ``ENROLLMENT_REQUIRED`` listing every such target; a live pane may only be
        "re-assigned" to the target it is already connected to (anything else is 409
        ``PANE_ALREADY_ASSIGNED``: disconnect it first). Idle panes are simply rebound.
        Nothing is written unless every assignment is valid.
        """
        live_panes = set(live)

        def write(conn: sqlite3.Connection) -> Workspace:
            current = _load(conn, owner, workspace_id)
            capacity = {p.pane for p in current.panes}
            not_enrolled: list[str] = []
            missing: list[str] = []
            for a in assignments:
                if a.pane not in capacity:
                    raise ValidationError(
                        f"pane {a.pane} is beyond this workspace's {current.max_panes} panes",
                        details={"pane": a.pane, "max_panes": current.max_panes})
                if not a.target:
                    continue
                row = machine_row(conn, a.target)
                if row is None:
                    missing.append(a.target)
                elif self._needs_enrollment(row) and not row["enrolled"]:
                    not_enrolled.append(a.target)
            if missing:
                raise NotFoundError(f"unknown target(s): {', '.join(sorted(set(missing)))}",
                                    code="LINK_NOT_FOUND",
                                    details={"targets": sorted(set(missing))})
            if not_enrolled:
                raise _enrollment_required(sorted(set(not_enrolled)))
            for a in assignments:
                state = current.pane(a.pane)
                if a.pane in live_panes and state.target != (a.target or None):
                    raise ConflictError(
                        f"pane {a.pane} is connected to {state.target}; disconnect it first",
                        code="PANE_ALREADY_ASSIGNED",
                        details={"pane": a.pane, "target": state.target})
            now = now_iso()
            for a in assignments:
                if a.pane in live_panes:
                    continue  # same target, already connected: nothing to change
                conn.execute(
                    "UPDATE terminal_panes SET target = ?, status = 'idle', error = NULL "
                    "WHERE workspace_id = ? AND pane = ?",
                    (a.target or None, workspace_id, a.pane))
            conn.execute("UPDATE terminal_workspaces SET updated_at = ? WHERE id = ?",
                         (now, workspace_id))
            return _load(conn, owner, workspace_id)

        return await self.db.write(write)

    def _needs_enrollment(self, row: sqlite3.Row) -> bool:
        return enrollment_required(global_required=self.enrollment_required,
                                   link_required=bool(row["enrollment_required"]))

    async def target_link(self, target: str) -> tuple[Link, bool]:
        """The link for ``target`` and whether it must be (and is) enrolled to be used."""
        row = await self.db.read(lambda c: machine_row(c, target))
        if row is None:
            raise NotFoundError(f"unknown target {target}", code="LINK_NOT_FOUND",
                                details={"targets": [target]})
        link = link_from_row(row)
        if self._needs_enrollment(row) and not row["enrolled"]:
            raise _enrollment_required([target])
        return link, self._needs_enrollment(row)

    async def resolver_links(self) -> dict[str, Link]:
        """Every link by id (for ProxyJump chains)."""
        return await load_links(self.db)

    async def record_enrollment_failure(self, target: str, verified_at: str,
                                        error: str | None) -> None:
        """A connect found a wrong client ID: the link is no longer enrolled (SPEC §1)."""
        await self.db.write(lambda c: store_enrollment(c, target, False, verified_at, error))

    async def set_pane(self, workspace_id: str, pane: str, **fields: Any) -> None:
        allowed = {"status", "error", "cols", "rows", "connected_at", "disconnected_at",
                   "target"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"unknown pane fields {unknown}")
        columns = ", ".join(f"{name} = ?" for name in fields)
        await self.db.execute(
            f"UPDATE terminal_panes SET {columns} WHERE workspace_id = ? AND pane = ?",
            (*fields.values(), workspace_id, pane))

    async def open_session(self, workspace_id: str, pane: str, target: str,
                           username: str) -> int:
        """Audit: a shell was opened; returns the ``terminal_sessions`` row id."""
        now = now_iso()

        def write(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "INSERT INTO terminal_sessions (workspace_id, pane, target, username, opened_at)"
                " VALUES (?, ?, ?, ?, ?)", (workspace_id, pane, target, username, now))
            conn.execute("UPDATE terminal_panes SET status = 'connected', connected_at = ?, "
                         "disconnected_at = NULL, error = NULL WHERE workspace_id = ? AND "
                         "pane = ?", (now, workspace_id, pane))
            return int(cur.lastrowid or 0)

        return await self.db.write(write)

    async def close_session(self, session_id: int, workspace_id: str, pane: str, reason: str,
                            error: str | None = None) -> None:
        """Audit: the shell ended (``reason`` says why); the pane becomes ``closed``/``error``."""
        now = now_iso()
        status = "error" if error else "closed"

        def write(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE terminal_sessions SET closed_at = ?, close_reason = ? "
                         "WHERE id = ? AND closed_at IS NULL", (now, reason, session_id))
            conn.execute("UPDATE terminal_panes SET status = CASE WHEN status = 'closed' THEN "
                         "status ELSE ? END, error = ?, disconnected_at = ? "
                         "WHERE workspace_id = ? AND pane = ?",
                         (status, error, now, workspace_id, pane))

        await self.db.write(write)

    async def recover_after_restart(self) -> int:
        """Sessions the previous process left open can no longer exist: close them."""
        now = now_iso()

        def write(conn: sqlite3.Connection) -> int:
            changed = conn.execute(
                "UPDATE terminal_sessions SET closed_at = ?, close_reason = 'service_restart' "
                "WHERE closed_at IS NULL", (now,)).rowcount
            conn.execute("UPDATE terminal_panes SET status = 'closed', disconnected_at = ? "
                         "WHERE status IN ('connecting', 'connected')", (now,))
            return int(changed)

        return await self.db.write(write)


def _enrollment_required(targets: list[str]) -> ForbiddenError:
    return ForbiddenError(
        f"target(s) not enrolled: {', '.join(targets)}; verify enrollment first",
        code="ENROLLMENT_REQUIRED",
        details={"targets": targets},
    )
