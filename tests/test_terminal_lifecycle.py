"""Workspace REST rules and session lifecycle: enrollment, conflicts, disconnect, delete, grace
period, idle timeout, socket takeover, remote exit, shutdown — against real sshd hosts."""

from __future__ import annotations

import os
import sqlite3
from typing import Any

import attrs
import pytest
import trio
from trio_websocket import ConnectionClosed

from linkops.config import TerminalSettings
from linkops.db import Database
from linkops.sandbox import Tarpit
from linkops.terminal.workspaces import Assignment, WorkspaceStore
from tests.fixtures_terminal import TermEnv, TermSocket

pytestmark = pytest.mark.usefixtures("sandbox_fleet")


async def _closed_code(sock: TermSocket) -> int:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await sock.pump_one()
    assert closed.value.reason is not None
    return int(closed.value.reason.code)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def _shell_pid(sock: TermSocket, pane: str) -> int:
    sock.take(pane)
    # Quoted so that the echoed command line itself cannot match.
    await sock.stdin(pane, 'echo "shell""pid=$$="\r')
    return int((await sock.until_match(pane, r"shellpid=(\d+)=")).group(1))


async def _closed_sessions(term_env: TermEnv, workspace_id: str | None, count: int,
                           db: Database | None = None) -> list[sqlite3.Row]:
    """The audit rows once ``count`` of them are closed (call under a deadline).

    A pane's shell and its socket status go away a moment *before* its audit row is written
    (the row is the last step of closing), so a test that saw them go waits for the row."""
    db = db or term_env.db
    while True:
        rows = await db.fetchall(
            "SELECT * FROM terminal_sessions WHERE closed_at IS NOT NULL"
            " AND (? IS NULL OR workspace_id = ?) ORDER BY pane", (workspace_id, workspace_id))
        if len(rows) >= count:
            return rows
        await trio.sleep(0.02)


async def test_create_validation_and_limits(term_env: TermEnv) -> None:
    with trio.fail_after(20):
        http = term_env.http
        for body in ({"layout": "grid3x3"}, {}, {"layout": "grid2x2", "max_panes": 2},
                     {"layout": "single", "max_panes": 5}, {"layout": "single", "max_panes": "2"}):
            r = await http.post("/api/terminal/workspaces", json=body)
            assert r.status_code == 400, body
            assert r.json()["error"]["code"] == "VALIDATION_ERROR"
        r = await http.post("/api/terminal/workspaces", json={"layout": "grid1x3", "max_panes": 3})
        assert r.status_code == 201
        body = r.json()
        assert body["workspace_id"].startswith("ws-") and body["layout"] == "grid1x3"
        assert [p["pane"] for p in body["panes"]] == ["A", "B", "C"]
        assert all(p["status"] == "idle" and p["target"] is None for p in body["panes"])
        # The layout may change within the capacity.
        r = await http.patch(f"/api/terminal/workspaces/{body['workspace_id']}",
                             json={"layout": "grid2x2"})
        assert r.status_code == 400
        r = await http.patch(f"/api/terminal/workspaces/{body['workspace_id']}",
                             json={"layout": "single"})
        assert r.status_code == 200 and r.json()["layout"] == "single"
        # Per-user limit (the fixture allows 50; lower it for this test). There is one
        # workspace already (grid1x3, idle).
        service = term_env.running.services.terminal
        service.store.settings = attrs.evolve(service.store.settings, max_workspaces=3)
        first = body["workspace_id"]
        ids = [(await http.post("/api/terminal/workspaces", json={"layout": "single"}))
               .json()["workspace_id"] for _ in range(2)]
        async with term_env.socket(ids[0]), term_env.socket(ids[1]):
            # At the limit, the oldest idle workspace (no shell, no socket) makes room ...
            r = await http.post("/api/terminal/workspaces", json={"layout": "single"})
            assert r.status_code == 201
            ids.append(r.json()["workspace_id"])
            assert (await http.get(f"/api/terminal/workspaces/{first}")).status_code == 404
            async with term_env.socket(ids[2]):
                # ... and when every workspace is in use, creating one more is refused.
                r = await http.post("/api/terminal/workspaces", json={"layout": "single"})
                assert r.status_code == 409
                assert r.json()["error"]["code"] == "WORKSPACE_LIMIT_REACHED"
        # Bob has his own quota and sees only his own workspaces.
        assert (await term_env.bob.post("/api/terminal/workspaces",
                                        json={"layout": "single"})).status_code == 201
        mine = (await http.get("/api/terminal/workspaces")).json()["workspaces"]
        assert sorted(w["workspace_id"] for w in mine) == sorted(ids)
        assert all(w["owner"] == "admin" for w in mine)


async def test_assignment_rules(term_env: TermEnv) -> None:
    with trio.fail_after(30):
        ws_id = await term_env.workspace("grid2x1")
        url = f"/api/terminal/workspaces/{ws_id}/panes"
        r = await term_env.http.put(url, json={"panes": [{"pane": "A", "target": "sbx-01"},
                                                         {"pane": "B",
                                                          "target": "sbx-unenrolled"}]})
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "ENROLLMENT_REQUIRED"
        assert r.json()["error"]["details"]["targets"] == ["sbx-unenrolled"]
        # All-or-nothing: A was not assigned either.
        state = (await term_env.http.get(f"/api/terminal/workspaces/{ws_id}")).json()
        assert state["panes"][0]["target"] is None
        r = await term_env.http.put(url, json={"panes": [{"pane": "A", "target": "nope"}]})
        assert r.status_code == 404 and r.json()["error"]["code"] == "LINK_NOT_FOUND"
        bad: dict[str, Any]
        for bad in ({"panes": []}, {"panes": [{"pane": "Q", "target": "sbx-01"}]},
                    {"panes": [{"pane": "A", "target": "sbx-01"},
                               {"pane": "A", "target": "sbx-02"}]}):
            assert (await term_env.http.put(url, json=bad)).status_code == 400
        # Connecting an unassigned pane is a client error.
        r = await term_env.connect(ws_id, "B")
        assert r.status_code == 400 and r.json()["error"]["code"] == "PANE_NOT_ASSIGNED"
        assert (await term_env.http.put(url, json={"panes": [{"pane": "A",
                                                              "target": "sbx-01"}]})).is_success
        # An idle pane may be re-bound freely.
        assert (await term_env.http.put(url, json={"panes": [{"pane": "A",
                                                              "target": "sbx-02"}]})).is_success
        assert (await term_env.connect(ws_id, "A")).status_code == 200
        # A connected pane keeps its target until it is disconnected (409); the same target
        # is a no-op.
        r = await term_env.http.put(url, json={"panes": [{"pane": "A", "target": "sbx-01"}]})
        assert r.status_code == 409 and r.json()["error"]["code"] == "PANE_ALREADY_ASSIGNED"
        r = await term_env.http.put(url, json={"panes": [{"pane": "A", "target": "sbx-02"}]})
        assert r.status_code == 200 and r.json()["panes"][0]["status"] == "connected"
        await term_env.http.post(f"/api/terminal/workspaces/{ws_id}/panes/A/disconnect")
        r = await term_env.http.put(url, json={"panes": [{"pane": "A", "target": "sbx-01"}]})
        assert r.status_code == 200 and r.json()["panes"][0]["target"] == "sbx-01"


async def test_client_id_is_checked_again_at_connect(term_env: TermEnv) -> None:
    with trio.fail_after(30):
        # The DB says enrolled, the host's file says otherwise.
        ws_id = await term_env.workspace("single", A="sbx-wrongid")
        async with term_env.socket(ws_id) as sock:
            await sock.until_status("A", "closed")
            r = await term_env.connect(ws_id, "A")
            assert r.status_code == 403
            assert r.json()["error"]["code"] == "CLIENT_ID_MISMATCH"
            await sock.until_status("A", "connecting")
            err = await sock.until_status("A", "error")
            assert err["code"] == "CLIENT_ID_MISMATCH"
            assert not any(m["data"] == "connected" for m in sock.statuses["A"][1:])
        state = (await term_env.http.get(f"/api/terminal/workspaces/{ws_id}")).json()
        assert state["panes"][0]["status"] == "error"
        assert "does not match" in state["panes"][0]["error"]
        row = await term_env.db.fetchone("SELECT enrolled FROM machines WHERE id='sbx-wrongid'")
        assert row is not None and row["enrolled"] == 0
        assert await term_env.db.fetchall("SELECT * FROM terminal_sessions") == []
        assert term_env.running.services.terminal.session_count() == 0


async def test_disconnect_delete_and_audit_trail(term_env: TermEnv) -> None:
    with trio.fail_after(40):
        ws_id = await term_env.workspace("grid2x1", A="sbx-01", B="sbx-02")
        await term_env.connect_all(ws_id)
        service = term_env.running.services.terminal
        async with term_env.socket(ws_id) as sock:
            pid_a = await _shell_pid(sock, "A")
            pid_b = await _shell_pid(sock, "B")
            assert _alive(pid_a) and _alive(pid_b)
            r = await term_env.http.post(f"/api/terminal/workspaces/{ws_id}/panes/A/disconnect")
            assert r.status_code == 200 and r.json()["status"] == "closed"
            closed = await sock.until_status("A", "closed")
            assert closed["reason"] == "disconnect"
            assert service.session(ws_id, "A") is None
            while _alive(pid_a):  # sshd hangs up the shell once the channel is closed
                await trio.sleep(0.05)
            # B is untouched.
            await sock.stdin("B", "echo b-still-$((1+1))\r")
            await sock.until_output("B", "b-still-2")
            r = await term_env.http.delete(f"/api/terminal/workspaces/{ws_id}")
            assert r.status_code == 200
            assert await _closed_code(sock) == 4004
        while _alive(pid_b):
            await trio.sleep(0.05)
        assert service.session_count() == 0
        assert (await term_env.http.get(f"/api/terminal/workspaces/{ws_id}")).status_code == 404
        rows = await _closed_sessions(term_env, ws_id, 2)
        assert [(r["pane"], r["target"], r["username"], r["close_reason"]) for r in rows] == [
            ("A", "sbx-01", "admin", "disconnect"), ("B", "sbx-02", "admin", "workspace_deleted")]
        assert all(r["opened_at"] <= r["closed_at"] for r in rows)
        # Reconnecting a disconnected pane opens a new session.


async def test_grace_period_expires_and_idle_sockets_close(term_env: TermEnv) -> None:
    with trio.fail_after(40):
        service = term_env.running.services.terminal
        service.terminal = attrs.evolve(service.terminal, reattach_grace_seconds=1.5,
                                        websocket_timeout=1.0)
        ws_id = await term_env.workspace("single", A="sbx-01")
        assert (await term_env.connect(ws_id, "A")).status_code == 200
        async with term_env.socket(ws_id) as sock:
            await sock.until_status("A", "connected")
            # No client message for websocket_timeout: closed with 4000, shell kept.
            assert await _closed_code(sock) == 4000
        assert service.session(ws_id, "A") is not None
        async with term_env.socket(ws_id) as sock:  # re-attach within the grace period
            await sock.send({"type": "ping"})
            await sock.until_status("A", "connected")
        # Now nobody re-attaches: the shell is closed after the grace period.
        session = service.session(ws_id, "A")
        assert session is not None
        await session.finished.wait()
        row = await term_env.db.fetchone(
            "SELECT close_reason FROM terminal_sessions WHERE workspace_id = ?", (ws_id,))
        assert row is not None and row["close_reason"] == "grace_expired"


async def test_second_socket_takes_over_and_remote_exit_is_reported(term_env: TermEnv) -> None:
    with trio.fail_after(30):
        ws_id = await term_env.workspace("single", A="sbx-02")
        assert (await term_env.connect(ws_id, "A")).status_code == 200
        async with term_env.socket(ws_id) as first, term_env.socket(ws_id) as second:
            assert await _closed_code(first) == 4001
            await second.until_status("A", "connected")
            # UTF-8 split across reads stays whole; invalid bytes become U+FFFD.
            await second.stdin("A", "printf 'x\\342\\202'; sleep 0.3; printf '\\254y\\377z\\n'\r")
            await second.until_output("A", "x€y\ufffdz")
            await second.stdin("A", "exit 3\r")
            closed = await second.until_status("A", "closed")
            assert closed["reason"] == "remote_exit"
        row = await term_env.db.fetchone(
            "SELECT close_reason, closed_at FROM terminal_sessions WHERE workspace_id = ?",
            (ws_id,))
        assert row is not None and row["close_reason"] == "remote_exit" and row["closed_at"]
        state = (await term_env.http.get(f"/api/terminal/workspaces/{ws_id}")).json()
        assert state["panes"][0]["status"] == "closed"
        # The pane can be connected again.
        assert (await term_env.connect(ws_id, "A")).json()["status"] == "connected"


async def test_shutdown_closes_sockets_with_1001_and_records_sessions(term_env: TermEnv) -> None:
    with trio.fail_after(30):
        ws_id = await term_env.workspace("single", A="sbx-03")
        assert (await term_env.connect(ws_id, "A")).status_code == 200
        async with term_env.socket(ws_id) as sock:
            pid = await _shell_pid(sock, "A")
            term_env.running.stop.set()
            assert await _closed_code(sock) == 1001
        while _alive(pid):
            await trio.sleep(0.05)
        # The shell dies when its channel closes, a moment *before* the audit row is written:
        # wait for the row (within the deadline above), then check why it was closed.
        db = Database(term_env.running.services.settings.database.path)
        try:
            rows = await _closed_sessions(term_env, None, 1, db)
        finally:
            db.close()
        assert rows[0]["close_reason"] == "shutdown"


async def test_connect_in_progress_is_cancelled_by_disconnect_and_delete(
        term_env: TermEnv) -> None:
    """A host that never answers: disconnecting the pane (or deleting the workspace) ends the
    pending connect at once, and nothing is left open or recorded as a session."""
    with Tarpit() as tarpit, trio.fail_after(30):
        await term_env.db.execute(
            "INSERT INTO machines (id, name, type, host, port, user, client_id, enrolled, "
            "created_at, updated_at) VALUES ('tarpit', 'tarpit', 'VPS', '127.0.0.1', ?, 'x', "
            "'LINKOPS-x', 1, 'now', 'now')", (tarpit.port,))
        service = term_env.running.services.terminal
        for how in ("disconnect", "delete"):
            ws_id = await term_env.workspace("single", A="tarpit")
            result: list[int] = []
            async with trio.open_nursery() as nursery:
                async def connect(ws_id: str, result: list[int]) -> None:
                    result.append((await term_env.connect(ws_id, "A")).status_code)

                nursery.start_soon(connect, ws_id, result)
                while "A" not in service.live_panes(ws_id):
                    await trio.sleep(0.01)
                if how == "disconnect":
                    r = await term_env.http.post(
                        f"/api/terminal/workspaces/{ws_id}/panes/A/disconnect")
                else:
                    r = await term_env.http.delete(f"/api/terminal/workspaces/{ws_id}")
                assert r.status_code == 200
                assert service.live_panes(ws_id) == set()
            assert result == [409]  # PANE_DISCONNECTED: the connect was called off
        assert service.session_count() == 0
        assert await term_env.db.fetchall("SELECT * FROM terminal_sessions") == []


async def test_sessions_left_open_by_a_dead_process_are_closed_at_start(
        database: Database) -> None:
    """After a crash the audit rows and pane states of shells that cannot exist any more are
    closed when the service starts (reason ``service_restart``)."""
    store = WorkspaceStore(database, TerminalSettings())
    workspace = await store.create("admin", "grid2x1", None)
    await database.execute(
        "INSERT INTO machines (id, name, type, host, port, user, client_id, enrolled, "
        "created_at, updated_at) VALUES ('h', 'h', 'VPS', '192.0.2.1', 22, 'x', 'LINKOPS-x', 1,"
        " 'now', 'now')")
    await store.assign("admin", workspace.id, [Assignment("A", "h")], live=())
    audit = await store.open_session(workspace.id, "A", "h", "admin")
    assert (await store.get("admin", workspace.id)).pane("A").status == "connected"
    assert await store.recover_after_restart() == 1
    row = await database.fetchone("SELECT closed_at, close_reason FROM terminal_sessions "
                                  "WHERE id = ?", (audit,))
    assert row is not None and row["closed_at"] and row["close_reason"] == "service_restart"
    assert (await store.get("admin", workspace.id)).pane("A").status == "closed"
    assert await store.recover_after_restart() == 0
