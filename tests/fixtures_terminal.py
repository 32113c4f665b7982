"""Fixtures for the terminal area: a running service wired to the sandbox fleet, two users,
and a small WebSocket client that sorts frames by pane.

- ``term_env``: the real service (``server.run``) whose SSH settings point at the shared
  sandbox fleet, ``machines`` rows for ``sbx-01..03`` (enrolled), ``sbx-unenrolled`` (a real
  host, ``enrolled = 0``) and ``sbx-wrongid`` (a real host whose inventory client ID differs
  from the file: ``enrolled = 1`` in the DB, so only the fresh check at connect catches it);
  users ``admin`` and ``bob`` with bearer-token httpx clients. The fleet's bastion and inner
  hosts (ProxyJump only) are enrolled too when the fleet has them.
- :class:`TermSocket`: ``open_websocket_url`` plus per-pane output buffers and statuses.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from linkops import config, server
from linkops.config import Settings
from linkops.db import Database
from linkops.sandbox import Sandbox
from tests.fixtures_core import (
    ADMIN_PASSWORD,
    add_admin,
    authed_client,
    base_url,
    start_service,
    write_config,
)
from tests.fixtures_sandbox import fleet_links, insert_machines, make_ssh_env

BOB = "bob"
ENROLLED = ("sbx-01", "sbx-02", "sbx-03")


@attrs.define
class TermEnv:
    running: server.Running
    http: httpx.AsyncClient
    bob: httpx.AsyncClient
    token: str
    bob_token: str
    tmp: Path

    @property
    def db(self) -> Database:
        return self.running.services.db

    @property
    def base(self) -> str:
        return base_url(self.running)

    def ws_url(self, workspace_id: str) -> str:
        return self.base.replace("http://", "ws://") + f"/api/terminal/workspaces/{workspace_id}/ws"

    async def workspace(self, layout: str = "grid2x1", **panes: str) -> str:
        """Create a workspace and assign ``pane=target`` pairs; returns its id."""
        r = await self.http.post("/api/terminal/workspaces", json={"layout": layout})
        assert r.status_code == 201, r.text
        workspace_id = str(r.json()["workspace_id"])
        if panes:
            r = await self.http.put(
                f"/api/terminal/workspaces/{workspace_id}/panes",
                json={"panes": [{"pane": p, "target": t} for p, t in panes.items()]})
            assert r.status_code == 200, r.text
        return workspace_id

    async def connect_all(self, workspace_id: str) -> None:
        """``connect-all``; every assigned pane must come back ``connected``."""
        r = await self.http.post(f"/api/terminal/workspaces/{workspace_id}/connect-all")
        assert r.status_code == 200, r.text
        panes = r.json()["panes"]
        assert panes and all(p["status"] == "connected" for p in panes), r.text

    async def connect(self, workspace_id: str, pane: str) -> httpx.Response:
        return await self.http.post(
            f"/api/terminal/workspaces/{workspace_id}/panes/{pane}/connect")

    @asynccontextmanager
    async def socket(self, workspace_id: str, token: str | None = None
                     ) -> AsyncIterator[TermSocket]:
        headers = [(b"Authorization", f"Bearer {token or self.token}".encode())]
        async with open_websocket_url(self.ws_url(workspace_id), extra_headers=headers,
                                      max_message_size=16 * 1024 * 1024) as ws:
            yield TermSocket(ws)


@attrs.define
class TermSocket:
    """Reads frames and keeps, per pane, all stdout text and every status seen."""

    ws: WebSocketConnection
    out: dict[str | None, str] = attrs.field(factory=dict)
    statuses: dict[str | None, list[dict[str, Any]]] = attrs.field(factory=dict)
    frames: int = 0

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_message(json.dumps(message))

    async def stdin(self, pane: str, data: str) -> None:
        await self.send({"pane": pane, "type": "stdin", "data": data})

    async def pump_one(self) -> dict[str, Any]:
        raw = await self.ws.get_message()
        message: dict[str, Any] = json.loads(raw)
        self.frames += 1
        pane = message.get("pane")
        if message.get("type") == "stdout":
            self.out[pane] = self.out.get(pane, "") + message["data"]
        else:
            self.statuses.setdefault(pane, []).append(message)
        return message

    async def until_output(self, pane: str, needle: str) -> str:
        """Read frames until ``needle`` appears in ``pane``'s output; returns that output."""
        while needle not in self.out.get(pane, ""):
            await self.pump_one()
        return self.out[pane]

    async def until_match(self, pane: str, pattern: str) -> re.Match[str]:
        """Read frames until ``pattern`` matches ``pane``'s output."""
        compiled = re.compile(pattern)
        while (match := compiled.search(self.out.get(pane, ""))) is None:
            await self.pump_one()
        return match

    async def until_status(self, pane: str | None, state: str) -> dict[str, Any]:
        seen = 0
        while True:
            for message in self.statuses.get(pane, [])[seen:]:
                if message.get("data") == state:
                    return message
            seen = len(self.statuses.get(pane, []))
            await self.pump_one()

    def take(self, pane: str) -> str:
        return self.out.pop(pane, "")


def _machines(fleet: Sandbox) -> list[Any]:
    links = fleet_links(fleet)
    chosen = [links[name] for name in ENROLLED]
    # The bastion and the hosts behind it (network namespaces; present when running as root).
    chosen.extend(link for name, link in links.items() if name not in ENROLLED)
    chosen.append(attrs.evolve(links["sbx-03"], id="sbx-unenrolled", name="sbx-unenrolled"))
    chosen.append(attrs.evolve(
        links["sbx-02"], id="sbx-wrongid", name="sbx-wrongid",
        enrollment=attrs.evolve(links["sbx-02"].enrollment,
                                clientId="LINKOPS-00000000-0000-4000-8000-000000000000")))
    return chosen


def terminal_settings(fleet: Sandbox, tmp_path: Path, **terminal: Any) -> Settings:
    """Config and database for the service on ``fleet``: the admin and BOB, every machine
    enrolled but ``sbx-unenrolled``; ``terminal`` overrides ``[terminal]`` keys."""
    ssh_env = make_ssh_env(fleet, tmp_path / "sshenv")
    path = write_config(
        tmp_path,
        ssh={"keys_directory": ssh_env.keys_dir, "known_hosts_path": ssh_env.known_hosts,
             "default_key": fleet.key_path.name, "connection_timeout": 10,
             "max_retries": 1},
        terminal={"reattach_grace_seconds": 30, "websocket_timeout": 120,
                  "max_workspaces": 50, **terminal},
    )
    settings = config.load(path)
    add_admin(settings)
    add_admin(settings, BOB, ADMIN_PASSWORD)
    db = Database(settings.database.path)
    try:
        insert_machines(db, _machines(fleet))
        db.write_sync(lambda c: c.execute(
            "UPDATE machines SET enrolled = CASE WHEN id = 'sbx-unenrolled' THEN 0 ELSE 1 END"))
    finally:
        db.close()
    return settings


@pytest.fixture
async def term_env(sandbox_fleet: Sandbox, tmp_path: Path,
                   nursery: trio.Nursery) -> AsyncIterator[TermEnv]:
    settings = terminal_settings(sandbox_fleet, tmp_path)
    running = await start_service(nursery, settings)
    async with authed_client(running) as http, \
            authed_client(running, BOB, ADMIN_PASSWORD) as bob:
        token = http.headers["Authorization"].removeprefix("Bearer ")
        bob_token = bob.headers["Authorization"].removeprefix("Bearer ")
        yield TermEnv(running=running, http=http, bob=bob, token=token, bob_token=bob_token,
                      tmp=tmp_path)
    running.stop.set()
