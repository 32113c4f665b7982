"""Terminal rows in the tables are private (SPEC §10.2): a non-admin sees only their own
workspaces, panes and sessions; an admin sees all; cursors do not carry one user's view to
another."""

from __future__ import annotations

import sqlite3

import httpx
import trio

from linkops import auth, server
from linkops.auth import User
from linkops.timeutil import now_iso
from tests.fixtures_core import base_url


async def _seed(running: server.Running) -> None:
    now = now_iso()

    def write(conn: sqlite3.Connection) -> None:
        for name, role in (("olga", "operator"), ("vic", "viewer"), ("o'hara", "operator")):
            auth.add_user(conn, name, "some-password-1", role=role)
        for owner in ("olga", "o'hara", "admin"):
            for i in range(3):
                ws = f"ws-{owner}-{i}"
                conn.execute(
                    "INSERT INTO terminal_workspaces (id, owner, layout, max_panes, created_at,"
                    " updated_at) VALUES (?, ?, 'single', 1, ?, ?)", (ws, owner, now, now))
                conn.execute(
                    "INSERT INTO terminal_panes (workspace_id, pane, target) VALUES (?, 'A', 'x')",
                    (ws,))
                conn.execute(
                    "INSERT INTO terminal_sessions (workspace_id, pane, target, username,"
                    " opened_at) VALUES (?, 'A', 'x', ?, ?)", (ws, owner, now))

    await running.services.db.write(write)


async def _rows(http: httpx.AsyncClient, role: str, name: str, running: server.Running,
                table: str, **extra: object) -> dict[str, object]:
    token = running.services.auth.issue_token(User(name, role, 1)).token
    r = await http.post("/api/tables/query", headers={"Authorization": f"Bearer {token}"},
                        json={"table": table, **extra})
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_non_admins_see_only_their_own_terminal_rows(running: server.Running) -> None:
    await _seed(running)
    with trio.fail_after(60):
        async with httpx.AsyncClient(base_url=base_url(running), timeout=20) as http:
            for role, name in (("operator", "olga"), ("operator", "o'hara"), ("viewer", "vic")):
                panes = await _rows(http, role, name, running, "tbl_terminal_panes")
                assert {r["owner"] for r in panes["rows"]} <= {name}  # type: ignore[union-attr]
                assert len(panes["rows"]) == (0 if role == "viewer" else 3)  # type: ignore[arg-type]
                sessions = await _rows(http, role, name, running, "tbl_terminal_sessions")
                assert {r["username"] for r in sessions["rows"]} <= {name}  # type: ignore[union-attr]
                recent = await _rows(http, role, name, running, "tbl_recent_activity")
                assert {r["actor"] for r in recent["rows"]  # type: ignore[union-attr]
                        if r["kind"] == "terminal"} <= {name}
                # Filters cannot widen the view.
                other = await _rows(http, role, name, running, "tbl_terminal_sessions",
                                    filters=[{"col": "username", "op": "eq", "val": "admin"}])
                assert other["rows"] == []
            everything = await _rows(http, "admin", "admin", running, "tbl_terminal_panes")
            assert len(everything["rows"]) == 9  # type: ignore[arg-type]
            # A cursor from olga's view is refused in the admin's (and vice versa).
            page = await _rows(http, "operator", "olga", running, "tbl_terminal_panes",
                               page={"size": 1})
            cursor = page["page"]["next_cursor"]  # type: ignore[index]
            assert cursor
            token = running.services.auth.issue_token(User("admin", "admin", 1)).token
            r = await http.post("/api/tables/query", headers={"Authorization": f"Bearer {token}"},
                                json={"table": "tbl_terminal_panes",
                                      "page": {"size": 1, "cursor": cursor}})
            assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_CURSOR"
