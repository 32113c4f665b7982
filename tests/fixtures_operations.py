"""Fixtures for the operations area: a 20-host fleet, seeded DB rows, the service, a server.

* ``ops_fleet`` (session): 20 loopback sshd hosts ``ops-01..20`` of our own (the shared
  ``sandbox_fleet`` has 3 and must not be disturbed).
* ``ops_settings`` (function): a config in ``tmp_path`` whose SSH keys dir / known_hosts reach
  ``ops_fleet``; short ``script_timeout`` (5 s) unless a test asks otherwise via
  ``ops_overrides`` (a dict of section → keys, override the fixture in a module).
* Seeding helpers (plain functions on a :class:`Database`, what inventory sync would write):
  :func:`seed_links` (machines rows for fleet hosts, enrolled unless told otherwise) and
  :func:`seed_script` (a ``scripts`` row with its content, sha256 and declared flags).
* ``ops`` (function): an :class:`OpsHarness` — database, SSH manager and a running
  :class:`OperationsService` in the test's nursery, no HTTP. ``await ops.run(body)`` submits
  and waits for the end, returning ``(op_id, detail)``.
* ``ops_server`` / ``ops_client``: the real service (``server.run``) on ``ops_settings`` with an
  admin user and an httpx client carrying a bearer token; seed with ``ops_server_db``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio

from linkops import config, server
from linkops.config import Settings
from linkops.db import Database
from linkops.operations.service import OperationsService
from linkops.sandbox import Sandbox
from linkops.ssh.bridge import SshManager
from linkops.ssh.machines import insert_links_sync
from linkops.timeutil import now_iso
from tests.fixtures_core import (
    add_admin,
    authed_client,
    start_service,
    write_config,
)
from tests.fixtures_sandbox import SshEnv, make_ssh_env

OPS_HOSTS = 20


@pytest.fixture(scope="session")
def ops_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    root = tmp_path_factory.mktemp("ops-fleet")
    with Sandbox(root, hosts=OPS_HOSTS, prefix="ops") as fleet:
        yield fleet


@pytest.fixture
def ops_ssh_env(ops_fleet: Sandbox, tmp_path: Path) -> SshEnv:
    return make_ssh_env(ops_fleet, tmp_path / "ops-ssh")


@pytest.fixture
def ops_overrides() -> dict[str, dict[str, Any]]:
    return {}


@pytest.fixture
def ops_settings(tmp_path: Path, ops_ssh_env: SshEnv,
                 ops_overrides: dict[str, dict[str, Any]]) -> Settings:
    sections: dict[str, dict[str, Any]] = {
        "ssh": {
            "keys_directory": ops_ssh_env.keys_dir,
            "known_hosts_path": ops_ssh_env.known_hosts,
            "default_key": "sandbox_ed25519",
            "connection_timeout": 10,
            "max_retries": 1,
        },
        "operations": {"script_timeout": 5, "max_concurrency": 20},
    }
    for name, values in ops_overrides.items():
        sections.setdefault(name, {}).update(values)
    return config.load(write_config(tmp_path, **sections))


def seed_links(db: Database, env: SshEnv, ids: Iterable[str] | None = None, *,
               enrolled: bool = True) -> list[str]:
    """``machines`` rows for fleet hosts (default: all); returns their ids."""
    chosen = list(env.links) if ids is None else list(ids)
    links = [env.links[i] for i in chosen]
    db.write_sync(lambda c: insert_links_sync(c, links))
    now = now_iso()
    db.write_sync(lambda c: c.executemany(
        "UPDATE machines SET enrolled = ?, enrollment_verified_at = ? WHERE id = ?",
        [(int(enrolled), now, i) for i in chosen]))
    return chosen


def seed_script(db: Database, script_id: str, content: str,
                flags: Iterable[str] = (), name: str | None = None) -> None:
    """A ``scripts`` row (what inventory sync writes for one scripts.yaml entry)."""
    digest = hashlib.sha256(content.encode("utf-8")).hexdigest()
    db.write_sync(lambda c: c.execute(
        "INSERT OR REPLACE INTO scripts (id, name, description, path, flags, sha256, content, "
        "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (script_id, name or script_id, f"test script {script_id}", f"scripts/{script_id}.sh",
         json.dumps(list(flags)), digest, content, now_iso())))


@attrs.define
class OpsHarness:
    db: Database
    ssh: SshManager
    service: OperationsService
    env: SshEnv
    settings: Settings

    async def submit(self, body: dict[str, Any], user: str = "tester") -> str:
        return await self.service.submit(body, user)

    async def run(self, body: dict[str, Any], timeout: float = 60) -> tuple[str, dict[str, Any]]:
        with trio.fail_after(timeout):
            op_id = await self.submit(body)
            await self.service.wait(op_id)
            return op_id, await self.service.detail(op_id, full_output=True)

    async def remote(self, host: str, command: str) -> str:
        """Run a shell command on a fleet host (for checks such as pgrep)."""
        link = self.env.links[host]
        async with self.ssh.connection(link, self.env.links) as conn:
            result = await conn.run(command, timeout=20)
        return result.stdout.decode("utf-8", "replace")


async def no_process(ops: OpsHarness, host: str, marker: str) -> bool:
    """True when no process on ``host`` runs ``sleep <marker>`` (checked over SSH)."""
    # The [s] trick keeps pgrep from matching the shell that runs it.
    out = await ops.remote(host, f"pgrep -f '[s]leep {marker}' || echo none")
    return out.strip() == "none"


@asynccontextmanager
async def open_harness(settings: Settings, env: SshEnv,
                       nursery: trio.Nursery) -> AsyncIterator[OpsHarness]:
    """An :class:`OperationsService` (own DB handle and SSH manager) running in ``nursery``
    for the fleet of ``env``; shut down and closed on exit."""
    db = Database(settings.database.path)
    ssh = SshManager(settings.ssh)
    service = OperationsService(db, settings, ssh)
    scope = trio.CancelScope()

    async def host(task_status: trio.TaskStatus[None]) -> None:
        with scope:
            await service.run(task_status=task_status)

    await nursery.start(host)
    try:
        yield OpsHarness(db, ssh, service, env, settings)
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(15):
            await service.shutdown()
            scope.cancel()
            await ssh.aclose()
        db.close()


@pytest.fixture
async def ops(ops_settings: Settings, ops_ssh_env: SshEnv,
              nursery: trio.Nursery) -> AsyncIterator[OpsHarness]:
    async with open_harness(ops_settings, ops_ssh_env, nursery) as harness:
        yield harness


@pytest.fixture
def ops_server_db(ops_settings: Settings) -> Iterator[Database]:
    """A second connection to the server's database, for seeding and checks."""
    db = Database(ops_settings.database.path)
    yield db
    db.close()


@pytest.fixture
async def ops_server(ops_settings: Settings, ops_server_db: Database,
                     nursery: trio.Nursery) -> AsyncIterator[server.Running]:
    add_admin(ops_settings)
    handle = await start_service(nursery, ops_settings)
    yield handle
    handle.stop.set()


@pytest.fixture
async def ops_client(ops_server: server.Running) -> AsyncIterator[httpx.AsyncClient]:
    async with authed_client(ops_server) as http:
        yield http


@attrs.define
class SseEvent:
    id: int | None
    event: str | None
    data: Any
    comments: list[str] = attrs.field(factory=list)


async def read_sse(response: httpx.Response) -> AsyncIterator[SseEvent]:
    """Parse a text/event-stream body (comments are attached to the next event or yielded
    as an event with ``event=None`` when a blank line ends them)."""
    fields: dict[str, list[str]] = {}
    comments: list[str] = []
    async for line in response.aiter_lines():
        if line == "":
            if fields.get("data") is not None or fields.get("event") is not None:
                raw_id = fields.get("id", [None])[-1]
                data = "\n".join(fields.get("data", []))
                yield SseEvent(int(raw_id) if raw_id is not None else None,
                               fields.get("event", [None])[-1],
                               json.loads(data) if data else None, comments)
            elif comments:
                yield SseEvent(None, None, None, comments)
            fields, comments = {}, []
            continue
        if line.startswith(":"):
            comments.append(line[1:].strip())
            continue
        name, _, value = line.partition(":")
        fields.setdefault(name, []).append(value[1:] if value.startswith(" ") else value)


async def collect_sse(http: httpx.AsyncClient, op_id: str, last_event_id: int | None = None,
                      stop_after: int | None = None) -> list[SseEvent]:
    """All events (comments dropped) of one SSE connection, until the server ends it or
    ``stop_after`` events were read."""
    headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
    out: list[SseEvent] = []
    async with http.stream("GET", f"/api/operations/{op_id}/events", headers=headers) as resp:
        assert resp.status_code == 200, await resp.aread()
        assert resp.headers["content-type"].startswith("text/event-stream")
        async for event in read_sse(resp):
            if event.event is None:
                continue
            out.append(event)
            if stop_after is not None and len(out) >= stop_after:
                break
    return out
