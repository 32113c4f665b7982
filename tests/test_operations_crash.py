"""``linkops serve`` killed with SIGKILL mid-operation, then restarted: the operation ends
``interrupted``, the orphaned remote process group is killed by the new instance (its PGID was
recorded), and the database passes ``PRAGMA integrity_check``."""

from __future__ import annotations

import os
import secrets
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio

from linkops.config import Settings
from linkops.db import Database
from tests.fixtures_core import add_admin, login, wait_healthy
from tests.fixtures_operations import seed_links, seed_script
from tests.fixtures_sandbox import SshEnv

ROOT = Path(__file__).resolve().parents[1]


class Serve:
    """One ``python -m linkops serve`` subprocess, ended by its PID."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "linkops", "serve", "--config", str(self.config)],
                cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": str(ROOT)})

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signum)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def serve(ops_settings: Settings, tmp_path: Path) -> Iterator[Serve]:
    assert ops_settings.source is not None
    process = Serve(ops_settings.source, tmp_path / "serve.out")
    yield process
    process.stop()


async def _remote(env: SshEnv, host: str, command: str) -> str:
    ssh = env.manager()
    try:
        async with ssh.connection(env.links[host], env.links) as conn:
            return (await conn.run(command, timeout=20)).stdout.decode()
    finally:
        await ssh.aclose()


async def test_sigkill_then_restart_marks_interrupted_and_cleans_up(
        ops_settings: Settings, ops_ssh_env: SshEnv, serve: Serve) -> None:
    marker = f"600.{secrets.randbelow(10**6)}"
    db = Database(ops_settings.database.path)
    try:
        seed_links(db, ops_ssh_env, ["ops-20"])
        seed_script(db, "long", f"#!/bin/bash\necho up\nsleep {marker}\n")
    finally:
        db.close()
    add_admin(ops_settings)
    base = f"http://{ops_settings.api.host}:{ops_settings.api.port}"
    with trio.fail_after(120):
        serve.start()
        await wait_healthy(base)
        async with httpx.AsyncClient(base_url=base, timeout=20) as http:
            http.headers["Authorization"] = f"Bearer {await login(http)}"
            r = await http.post("/api/operations/run",
                                json={"scripts": ["long"], "targets": ["ops-20"]})
            assert r.status_code == 202, r.text
            op_id = r.json()["operation_id"]
            while not await _pgid_recorded(ops_settings, op_id):
                await trio.sleep(0.1)

        serve.signal(signal.SIGKILL)
        serve.wait(10)
        # The script outlived the service (nothing killed it).
        assert (await _remote(ops_ssh_env, "ops-20", f"pgrep -f '[s]leep {marker}' || echo none")
                ).strip() != "none"

        serve.start()
        await wait_healthy(base)
        async with httpx.AsyncClient(base_url=base, timeout=20) as http:
            http.headers["Authorization"] = f"Bearer {await login(http)}"
            view = (await http.get(f"/api/operations/{op_id}")).json()
            assert view["status"] == "interrupted"
            assert view["logs"][0]["status"] == "interrupted"
            while view["logs"][0]["remote_killed"] is None:
                await trio.sleep(0.2)
                view = (await http.get(f"/api/operations/{op_id}")).json()
            assert view["logs"][0]["remote_killed"] is True
            # A finished operation's stream replays from the database and ends.
            async with http.stream("GET", f"/api/operations/{op_id}/events") as resp:
                body = (await resp.aread()).decode()
            assert body.rstrip().splitlines()[-1].startswith("data: ")
            assert "event: operation_end" in body and '"status":"interrupted"' in body
        assert (await _remote(ops_ssh_env, "ops-20", f"pgrep -f '[s]leep {marker}' || echo none")
                ).strip() == "none"

        serve.signal(signal.SIGTERM)
        assert await trio.to_thread.run_sync(serve.wait, 20) == 0

    with sqlite3.connect(ops_settings.database.path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


async def _pgid_recorded(settings: Settings, op_id: str) -> bool:
    def read() -> bool:
        with sqlite3.connect(settings.database.path, timeout=10) as conn:
            row = conn.execute("SELECT remote_pgid FROM operation_logs WHERE operation_id = ?",
                               (op_id,)).fetchone()
        return row is not None and row[0] is not None
    return await trio.to_thread.run_sync(read)
