"""Live revocation (SPEC §10.2): logout, a password change, a role change, revoking an API
token (through the API, or from another process) and expiry end the
session's live terminal WebSocket (close 4401) and its SSE stream within
``[api] session_recheck_seconds`` (0.5 s here); a password change also closes the user's
shells. Hypothesis picks the event and the moment. Real sshd (the sandbox fleet), real
service, real sockets."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import attrs
import httpx
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    WebSocketConnection,
    open_websocket_url,
)

from linkops import auth, config, server
from linkops.sandbox import Sandbox
from linkops.timeutil import utcnow
from tests.fixtures_core import ADMIN_PASSWORD, add_admin, base_url, start_service, write_config
from tests.fixtures_operations import seed_script
from tests.fixtures_sandbox import fleet_links, insert_machines, make_ssh_env
from tests.strategies import call, run_property

ROOT = Path(__file__).resolve().parents[1]
RECHECK = 0.5
CAROL = "carol"
# Generous: the recheck interval plus a loaded CI machine's scheduling.
ENDS_WITHIN = RECHECK + 5
EVENTS = ["logout", "password", "role", "expiry", "token", "token_cli"]


@attrs.define
class Env:
    running: server.Running
    http: httpx.AsyncClient  # the admin's, used to set things up
    op_id: str
    password: str = ADMIN_PASSWORD
    token_id: str = ""

    @property
    def base(self) -> str:
        return base_url(self.running)


@pytest.fixture
async def env(sandbox_fleet: Sandbox, tmp_path: Path, nursery: trio.Nursery
              ) -> AsyncIterator[Env]:
    ssh_env = make_ssh_env(sandbox_fleet, tmp_path / "sshenv")
    path = write_config(
        tmp_path,
        api={"session_recheck_seconds": RECHECK},
        ssh={"keys_directory": ssh_env.keys_dir, "known_hosts_path": ssh_env.known_hosts,
             "default_key": sandbox_fleet.key_path.name, "connection_timeout": 10,
             "max_retries": 1},
        security={"login_rate_per_minute": 1000, "login_rate_global_per_minute": 1000},
        operations={"script_timeout": 300},
        terminal={"max_workspaces": 50},
    )
    cfg = config.load(path)
    add_admin(cfg)
    add_admin(cfg, CAROL, ADMIN_PASSWORD)
    from linkops.db import Database
    db = Database(cfg.database.path)
    try:
        links = fleet_links(sandbox_fleet)
        insert_machines(db, [links["sbx-01"]])
        db.write_sync(lambda c: c.execute("UPDATE machines SET enrolled = 1"))
        seed_script(db, "sleeper", "#!/bin/bash\necho started\nsleep 240\n")
    finally:
        db.close()
    running = await start_service(nursery, cfg)
    async with httpx.AsyncClient(base_url=base_url(running), timeout=20) as http:
        r = await http.post("/api/auth/login", json={"username": "admin",
                                                     "password": ADMIN_PASSWORD})
        http.headers["Authorization"] = f"Bearer {r.json()['token']}"
        http.cookies.clear()
        r = await http.post("/api/operations/run",
                            json={"scripts": ["sleeper"], "targets": ["sbx-01"]})
        assert r.status_code == 202, r.text
        op_id = r.json()["operation_id"]
        yield Env(running=running, http=http, op_id=op_id)
        await http.post(f"/api/operations/{op_id}/stop")
    running.stop.set()


async def _carol_token(env: Env, expires_in: float | None = None, api: bool = False) -> str:
    if api:
        # An API token (lkp_…) minted by carol.
        headers = {"Authorization": f"Bearer {await _carol_token(env)}"}
        async with httpx.AsyncClient(base_url=env.base, timeout=20, headers=headers) as http:
            r = await http.post("/api/auth/tokens", json={"name": "live", "expires_in_days": 1})
            assert r.status_code == 201, r.text
            env.token_id = str(r.json()["id"])
            return str(r.json()["token"])
    if expires_in is not None:
        # A token issued so that it expires ``expires_in`` seconds from now.
        svc = env.running.services.auth
        user = await svc.authenticate(await _carol_token(env))
        hours = svc.api.jwt_expiration_hours
        issued = utcnow() - timedelta(hours=hours) + timedelta(seconds=expires_in)
        return svc.issue_token(user.user, now=issued).token
    async with httpx.AsyncClient(base_url=env.base, timeout=20) as http:
        r = await http.post("/api/auth/login", json={"username": CAROL, "password": env.password})
        assert r.status_code == 200, r.text
        return str(r.json()["token"])


async def _open_terminal(env: Env, token: str) -> str:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=env.base, timeout=20, headers=headers) as http:
        r = await http.post("/api/terminal/workspaces", json={"layout": "single"})
        assert r.status_code == 201, r.text
        ws_id = str(r.json()["workspace_id"])
        r = await http.put(f"/api/terminal/workspaces/{ws_id}/panes",
                           json={"panes": [{"pane": "A", "target": "sbx-01"}]})
        assert r.status_code == 200, r.text
        r = await http.post(f"/api/terminal/workspaces/{ws_id}/connect-all")
        assert r.status_code == 200 and r.json()["panes"][0]["status"] == "connected", r.text
    return ws_id


async def _ws_close_code(ws: WebSocketConnection) -> int:
    """Read until the server closes; its close code."""
    try:
        while True:
            await ws.get_message()
    except ConnectionClosed as closed:
        return int(closed.reason.code or 0)


async def _sse_until_end(env: Env, token: str, started: trio.Event) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=env.base, timeout=60, headers=headers) as http, \
            http.stream("GET", f"/api/operations/{env.op_id}/events") as resp:
        assert resp.status_code == 200
        async for _ in resp.aiter_bytes():
            started.set()
    # The server ended the stream (the operation itself is still running).


async def _apply(env: Env, event: str, token: str) -> None:
    svc = env.running.services
    if event == "logout":
        async with httpx.AsyncClient(base_url=env.base, timeout=20) as http:
            r = await http.post("/api/auth/logout", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200, r.text
    elif event == "password":
        # What `linkops user passwd` does, from the database side.
        env.password = f"changed-{os.urandom(4).hex()}"
        await svc.db.write(lambda c: auth.change_password(c, CAROL, env.password))
    elif event == "token":
        r = await env.http.delete(f"/api/auth/tokens/{env.token_id}")
        assert r.status_code == 200, r.text
    elif event == "token_cli":
        # Revoked by another process: only the recheck can notice.
        await svc.db.write(lambda c: c.execute(
            "UPDATE api_tokens SET revoked_at = '2026-01-01T00:00:00Z' WHERE id = ?",
            (env.token_id,)))
    elif event == "role":
        await svc.db.write(lambda c: auth.set_role(c, CAROL, "operator"))
    # "expiry": nothing to do, the token runs out by itself.


async def _one_case(env: Env, event: str, moment: float) -> None:
    # Expiry: the token runs out a little after the streams are up (setup takes a moment).
    expires = moment + 4 if event == "expiry" else None
    token = await _carol_token(env, expires_in=expires, api=event.startswith("token"))
    ws_id = await _open_terminal(env, token)
    url = env.base.replace("http://", "ws://") + f"/api/terminal/workspaces/{ws_id}/ws"
    headers = [(b"Authorization", f"Bearer {token}".encode())]
    terminal = env.running.services.terminal
    async with open_websocket_url(url, extra_headers=headers) as ws, \
            trio.open_nursery() as nursery:
        sse_started = trio.Event()
        sse_done = trio.Event()

        async def sse() -> None:
            await _sse_until_end(env, token, sse_started)
            sse_done.set()

        nursery.start_soon(sse)
        with trio.fail_after(20):
            await sse_started.wait()
        await trio.sleep(moment)
        await _apply(env, event, token)
        with trio.fail_after(ENDS_WITHIN + (expires or 0)):
            code = await _ws_close_code(ws)
            await sse_done.wait()
        assert code == 4401
    if event == "password":
        with trio.fail_after(10):
            while terminal.live_panes(ws_id):
                await trio.sleep(0.05)
    # Put carol back for the next example.
    await env.running.services.db.write(lambda c: auth.set_role(c, CAROL, "admin"))


async def test_each_event_ends_the_live_socket_and_stream(env: Env) -> None:
    """Hypothesis picks the event and the moment (after the streams are open)."""

    @settings(max_examples=10, deadline=None)
    @given(event=st.sampled_from(EVENTS),
           moment=st.floats(min_value=0, max_value=1.0))
    def prop(event: str, moment: float) -> None:
        call(_one_case, env, event, moment)

    await run_property(prop, timeout=240)


@pytest.mark.parametrize("event", EVENTS)
async def test_every_event_once(env: Env, event: str) -> None:
    """Each event at least once, whatever hypothesis drew above."""
    with trio.fail_after(60):
        await _one_case(env, event, 0.2)


async def test_password_change_from_the_cli_closes_the_shell(env: Env) -> None:
    """`linkops user passwd` runs in another process: the recheck notices it."""
    token = await _carol_token(env)
    ws_id = await _open_terminal(env, token)
    url = env.base.replace("http://", "ws://") + f"/api/terminal/workspaces/{ws_id}/ws"
    source = env.running.services.settings.source
    async with open_websocket_url(
            url, extra_headers=[(b"Authorization", f"Bearer {token}".encode())]) as ws:
        done = await trio.to_thread.run_sync(lambda: subprocess.run(
            [sys.executable, "-m", "linkops", "user", "passwd", CAROL, "--password-stdin",
             "--config", str(source)], input="yet-another-password\n", capture_output=True,
            text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60))
        assert done.returncode == 0, done.stderr
        with trio.fail_after(ENDS_WITHIN):
            assert await _ws_close_code(ws) == 4401
    with trio.fail_after(10):
        while env.running.services.terminal.live_panes(ws_id):
            await trio.sleep(0.05)
    # The old token is refused at the handshake from now on.
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(
                url, extra_headers=[(b"Authorization", f"Bearer {token}".encode())]) as ws:
            await ws.get_message()
    assert rejected.value.status_code == 401
