"""Properties 21-24 of SPEC §9: workspace ids, enrollment for pane assignment, the WebSocket's
pane routing, and disconnect freeing the session (real DB; real sshd for 23 and 24)."""

from __future__ import annotations

import os
import re
from typing import Any

import trio
from hypothesis import given
from hypothesis import strategies as st

from linkops.config import TerminalSettings
from linkops.db import Database
from linkops.errors import ForbiddenError
from linkops.models import LAYOUT_PANES, PANES, Enrollment, Link
from linkops.ssh.machines import insert_links_sync
from linkops.terminal.workspaces import Assignment, WorkspaceStore
from tests.fixtures_terminal import ENROLLED, TermEnv, TermSocket
from tests.strategies import PROP, call, run_property

ID_RE = re.compile(r"^ws-[A-Za-z0-9_-]{16}$")


def _store(database: Database, *, enrollment_required: bool = True) -> WorkspaceStore:
    return WorkspaceStore(database, TerminalSettings(max_workspaces=1_000_000),
                          enrollment_required=enrollment_required)


async def test_property_21_workspace_ids_are_unique(database: Database) -> None:
    """Property 21: workspace ids are unique (and shaped ``ws-<random>``), across users,
    layouts and deletions."""
    store = _store(database)
    seen: set[str] = set()

    @PROP
    @given(batch=st.lists(st.tuples(st.sampled_from(["alice", "bob", "carol"]),
                                    st.sampled_from(sorted(LAYOUT_PANES)), st.booleans()),
                          min_size=1, max_size=8))
    def prop(batch: list[tuple[str, str, bool]]) -> None:
        for owner, layout, delete in batch:
            workspace = call(store.create, owner, layout, None)
            assert ID_RE.match(workspace.id), workspace.id
            assert workspace.id not in seen
            seen.add(workspace.id)
            assert workspace.layout == layout and workspace.owner == owner
            if delete:
                call(store.close, owner, workspace.id)

    await run_property(prop)
    rows = await database.fetchall("SELECT id FROM terminal_workspaces")
    assert len(rows) == len(seen) == len({r["id"] for r in rows})


def _fake_links(n: int) -> list[Link]:
    # Rows only: assignment never connects, so these hosts need not exist.
    return [Link(id=f"host-{i}", type="VPS", host="192.0.2.1", port=22, user="ops",
                 enrollment=Enrollment(clientId=f"LINKOPS-{i}")) for i in range(n)]


async def test_property_22_pane_assignment_requires_enrollment(database: Database) -> None:
    """Property 22: pane assignment requires enrollment — it succeeds iff every target is
    enrolled or needs no enrollment (neither ``[security] enrollment_required`` nor its entry
    asks for it: the one rule of linkops.ssh.enrollment); otherwise 403
    ENROLLMENT_REQUIRED names exactly the offending targets and nothing changes."""
    links = _fake_links(6)
    await database.write(lambda c: insert_links_sync(c, links))
    store = _store(database)
    workspace = await store.create("alice", "grid2x2", None)

    @PROP
    @given(
        enrolled=st.lists(st.booleans(), min_size=6, max_size=6),
        required=st.lists(st.booleans(), min_size=6, max_size=6),
        wanted=st.dictionaries(st.sampled_from(PANES), st.integers(0, 5), min_size=1),
        global_required=st.booleans(),
    )
    def prop(enrolled: list[bool], required: list[bool], wanted: dict[str, int],
             global_required: bool) -> None:
        store = _store(database, enrollment_required=global_required)
        def set_flags(conn: Any) -> None:
            for i in range(6):
                conn.execute("UPDATE machines SET enrolled = ?, enrollment_required = ? "
                             "WHERE id = ?", (int(enrolled[i]), int(required[i]), f"host-{i}"))

        call(database.write, set_flags)
        before = call(store.get, "alice", workspace.id)
        assignments = [Assignment(pane=p, target=f"host-{i}") for p, i in wanted.items()]
        offending = sorted({f"host-{i}" for i in wanted.values()
                            if (global_required or required[i]) and not enrolled[i]})

        async def attempt() -> Exception | None:
            try:
                await store.assign("alice", workspace.id, assignments, live=())
            except ForbiddenError as exc:
                return exc
            return None

        error = call(attempt)
        after = call(store.get, "alice", workspace.id)
        if offending:
            assert isinstance(error, ForbiddenError)
            assert error.code == "ENROLLMENT_REQUIRED"
            assert error.details["targets"] == offending
            assert after.panes == before.panes
        else:
            assert error is None
            for pane, i in wanted.items():
                assert after.pane(pane).target == f"host-{i}"

    await run_property(prop)


async def _raw_cat(sock: TermSocket, pane: str) -> None:
    """Turn the pane's shell into an exact echo: raw PTY, no local echo, ``cat``."""
    await sock.stdin(pane, "stty raw -echo; echo READY-$((20+3)); exec cat\r")
    await sock.until_output(pane, "READY-23")
    sock.take(pane)


async def test_property_23_websocket_routes_input_and_output_by_pane(term_env: TermEnv) -> None:
    """Property 23: the WebSocket carries input to, and output from, the right pane — text
    typed into pane P comes back (through that pane's own shell on its own host) on P and only
    on P, character for character (UTF-8 included)."""
    with trio.fail_after(30):
        ws_id = await term_env.workspace("grid1x3", A="sbx-01", B="sbx-02", C="sbx-03")
        await term_env.connect_all(ws_id)
    async with term_env.socket(ws_id) as sock:
        with trio.fail_after(30):
            for pane in "ABC":
                await sock.until_status(pane, "connected")
                await _raw_cat(sock, pane)

        async def round_trip(pane: str, text: str) -> dict[str | None, str]:
            with trio.fail_after(15):
                sock.out.clear()
                await sock.stdin(pane, text)
                await sock.until_output(pane, text)
                # Let any misrouted copy arrive too before judging.
                await sock.stdin(pane, "\u2402")
                await sock.until_output(pane, "\u2402")
                return dict(sock.out)

        text = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1,
                       max_size=40).filter(lambda t: "\u2402" not in t)

        @PROP
        @given(pane=st.sampled_from("ABC"), text=text)
        def prop(pane: str, text: str) -> None:
            out = call(round_trip, pane, text)
            assert out[pane] == text + "\u2402"
            assert all(not out.get(other) for other in "ABC" if other != pane)

        await run_property(prop)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_property_24_disconnecting_a_pane_frees_its_session(term_env: TermEnv) -> None:
    """Property 24: disconnecting a pane frees its session — the remote shell ends, the SSH
    connection and its pump thread are released, the pane reads ``closed``, the audit row is
    closed with reason ``disconnect``, and the other panes keep working."""
    service = term_env.running.services.terminal
    limiter = term_env.running.services.ssh.stream_limiter
    ws_id = await term_env.workspace("grid2x1", A="sbx-01", B="sbx-02")
    async with term_env.socket(ws_id) as sock:
        with trio.fail_after(20):
            assert (await term_env.connect(ws_id, "B")).status_code == 200
            await sock.until_status("B", "connected")
            # Only B's shell pump holds a stream slot once B's client-ID check has finished.
            while limiter.borrowed_tokens > 1:
                await trio.sleep(0.01)
        baseline = limiter.borrowed_tokens

        async def cycle(target: str, keystrokes: str) -> None:
            with trio.fail_after(20):
                url = f"/api/terminal/workspaces/{ws_id}/panes"
                r = await term_env.http.put(url, json={"panes": [{"pane": "A",
                                                                  "target": target}]})
                assert r.status_code == 200, r.text
                r = await term_env.connect(ws_id, "A")
                assert r.status_code == 200 and r.json()["status"] == "connected", r.text
                assert limiter.borrowed_tokens > baseline
                sock.take("A")
                await sock.stdin("A", keystrokes + '\x15echo "P""ID=$$="\r')
                pid = int((await sock.until_match("A", r"PID=(\d+)=")).group(1))
                audit = await term_env.db.fetchone(
                    "SELECT id FROM terminal_sessions WHERE workspace_id = ? AND pane = 'A' "
                    "AND closed_at IS NULL", (ws_id,))
                assert audit is not None
                r = await term_env.http.post(
                    f"/api/terminal/workspaces/{ws_id}/panes/A/disconnect")
                assert r.status_code == 200 and r.json()["status"] == "closed"
                assert service.session(ws_id, "A") is None
                row = await term_env.db.fetchone(
                    "SELECT close_reason, closed_at FROM terminal_sessions WHERE id = ?",
                    (audit["id"],))
                assert row is not None and row["close_reason"] == "disconnect"
                assert row["closed_at"] is not None
                while _alive(pid) or limiter.borrowed_tokens > baseline:
                    await trio.sleep(0.01)
                # B is unaffected.
                sock.take("B")
                await sock.stdin("B", "echo b-$((7*6))\r")
                await sock.until_output("B", "b-42")

        @PROP
        @given(target=st.sampled_from(ENROLLED),
               keystrokes=st.text(st.characters(min_codepoint=32, max_codepoint=126),
                                  max_size=20))
        def prop(target: str, keystrokes: str) -> None:
            call(cycle, target, keystrokes)

        await run_property(prop)
    open_rows = await term_env.db.fetchall(
        "SELECT pane FROM terminal_sessions WHERE workspace_id = ? AND closed_at IS NULL",
        (ws_id,))
    assert [r["pane"] for r in open_rows] == ["B"]

