"""Helpers for the recordings tests: the real service on the sandbox fleet with chosen
``[terminal]`` recording settings, and users of every role.

:func:`recording_env` is an async context manager (not a fixture) because each test picks its
own settings (recordings on a tiny tmpfs, ``record_input``, a small size cap…).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio

from linkops import auth, config
from linkops.db import Database
from linkops.sandbox import Sandbox
from tests.fixtures_core import (
    ADMIN_PASSWORD,
    authed_client,
    start_service,
)
from tests.fixtures_terminal import BOB, TermEnv, terminal_settings

# Operators (non-admins) and a viewer, each seeing only what SPEC §10.4 allows.
CAROL = "carol"
DAVE = "dave"
VIC = "vic"


@attrs.define
class RecEnv:
    term: TermEnv
    carol: httpx.AsyncClient
    carol_token: str
    dave: httpx.AsyncClient
    vic: httpx.AsyncClient
    recordings: Path


@asynccontextmanager
async def recording_env(fleet: Sandbox, tmp_path: Path, nursery: trio.Nursery,
                        metadata: dict[str, dict[str, Any]] | None = None,
                        before_start: Callable[[Database], object] | None = None,
                        **terminal: Any) -> AsyncIterator[RecEnv]:
    """The service with ``[terminal]`` overrides ``terminal``; ``metadata`` sets a link's
    ``machines.metadata`` (e.g. ``{"sbx-02": {"recording": False}}``); ``before_start`` gets
    the migrated database before the service opens it."""
    settings = terminal_settings(fleet, tmp_path, **terminal)
    db = Database(settings.database.path)
    try:
        for name, role in ((CAROL, "operator"), (DAVE, "operator"), (VIC, "viewer")):
            db.write_sync(lambda c, n=name, r=role: auth.add_user(c, n, ADMIN_PASSWORD, r))
        for link_id, value in (metadata or {}).items():
            db.write_sync(lambda c, i=link_id, v=value: c.execute(
                "UPDATE machines SET metadata = ? WHERE id = ?", (json.dumps(v), i)))
        if before_start is not None:
            before_start(db)
    finally:
        db.close()
    running = await start_service(nursery, settings)
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(authed_client(running, name, ADMIN_PASSWORD))
                   for name in ("admin", BOB, CAROL, DAVE, VIC)]
        http, bob, carol, dave, vic = clients

        def token(c: httpx.AsyncClient) -> str:
            return str(c.headers["Authorization"]).removeprefix("Bearer ")

        term = TermEnv(running=running, http=http, bob=bob, token=token(http),
                       bob_token=token(bob), tmp=tmp_path)
        yield RecEnv(term=term, carol=carol, carol_token=token(carol), dave=dave, vic=vic,
                     recordings=config.recordings_dir(settings))
    running.stop.set()


async def workspace_as(client: httpx.AsyncClient, **panes: str) -> str:
    r = await client.post("/api/terminal/workspaces", json={"layout": "grid2x1"})
    assert r.status_code == 201, r.text
    ws_id = str(r.json()["workspace_id"])
    r = await client.put(f"/api/terminal/workspaces/{ws_id}/panes",
                         json={"panes": [{"pane": p, "target": t} for p, t in panes.items()]})
    assert r.status_code == 200, r.text
    r = await client.post(f"/api/terminal/workspaces/{ws_id}/connect-all")
    assert r.status_code == 200 and all(p["status"] == "connected" for p in r.json()["panes"]), \
        r.text
    return ws_id


async def finished_recordings(db: Database, count: int = 1) -> list[dict[str, Any]]:
    """Wait until ``count`` recordings have ended; their rows, oldest first."""
    while True:
        rows = await db.fetchall("SELECT * FROM terminal_recordings WHERE ended_at IS NOT NULL"
                                 " ORDER BY id")
        if len(rows) >= count:
            return [dict(r) for r in rows]
        await trio.sleep(0.05)


def read_cast(path: Path) -> tuple[dict[str, Any], list[list[Any]]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return json.loads(lines[0]), [json.loads(line) for line in lines[1:]]
