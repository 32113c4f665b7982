"""Issue #19's writer stall, replayed against a real ``linkops serve`` subprocess.

40 clients post logins with random user names for ~20 s (most behind a trusted proxy with a
random ``X-Forwarded-For``, some straight from the loopback address). Meanwhile: an operation
on a real sshd host and a terminal echo are timed against their idle figures, and
``linkops user passwd`` runs. Shown: 429 ``RATE_LIMITED`` with ``Retry-After`` comes back, no
5xx, the operation and the echo stay near their idle latency (printed; asserted generously, as
the CI machine is shared), ``user passwd`` succeeds, the attempts table holds no more than the
attempts that got past the rate limits, and afterwards the admin logs in with the new password.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

from linkops.config import Settings
from linkops.db import Database
from tests.fixtures_core import ADMIN, ADMIN_PASSWORD, add_admin, login, wait_healthy
from tests.fixtures_operations import seed_links, seed_script
from tests.fixtures_sandbox import SshEnv

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = 40
ATTACK_SECONDS = 20.0
NEW_PASSWORD = "a-brand-new-password-19"


@pytest.fixture
def ops_overrides() -> dict[str, dict[str, Any]]:
    # The test is the trusted proxy: it picks each attacker's X-Forwarded-For.
    return {"api": {"trusted_proxies": "127.0.0.1/32"}}


@pytest.fixture
def serve(ops_settings: Settings, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    assert ops_settings.source is not None
    with (tmp_path / "serve.out").open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "linkops", "serve", "--config", str(ops_settings.source)],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


async def _operation_seconds(http: httpx.AsyncClient) -> float:
    """Submit → finished, for one quick script on one host."""
    start = time.monotonic()
    r = await http.post("/api/operations/run", json={"scripts": ["hello"], "targets": ["ops-01"]})
    assert r.status_code == 202, r.text
    op_id = r.json()["operation_id"]
    while True:
        view = (await http.get(f"/api/operations/{op_id}")).json()
        if view["status"] not in ("queued", "running"):
            assert view["status"] == "success", view
            return time.monotonic() - start
        await trio.sleep(0.01)


class Echo:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.out = ""

    async def until(self, needle: str) -> None:
        while needle not in self.out:
            message = json.loads(await self.ws.get_message())
            if message.get("type") == "stdout":
                self.out += message["data"]

    async def seconds(self) -> float:
        mark = f"echo-{secrets.token_hex(4)}"
        start = time.monotonic()
        await self.ws.send_message(json.dumps({"pane": "A", "type": "stdin",
                                               "data": f"echo {mark}\r"}))
        await self.until(f"{mark}\r\n")
        return time.monotonic() - start


async def _figures(http: httpx.AsyncClient, echo: Echo, rounds: int) -> tuple[float, float]:
    ops = [await _operation_seconds(http) for _ in range(rounds)]
    echoes = [await echo.seconds() for _ in range(rounds)]
    return statistics.median(ops), statistics.median(echoes)


async def _attacker(http: httpx.AsyncClient, index: int, until: float,
                    statuses: Counter[int], retry_after: list[str]) -> None:
    while time.monotonic() < until:
        headers = {}
        if index % 8:  # 7 of 8 behind the proxy, each try from a new address
            headers["X-Forwarded-For"] = f"203.0.{secrets.randbelow(256)}.{secrets.randbelow(256)}"
        try:
            r = await http.post("/api/auth/login", headers=headers,
                                json={"username": f"u{secrets.token_hex(6)}",
                                      "password": "not-the-password"})
        except httpx.TransportError:
            statuses[0] += 1
            continue
        statuses[r.status_code] += 1
        if r.status_code == 429:
            retry_after.append(r.headers.get("Retry-After", ""))
            assert r.json()["error"]["code"] == "RATE_LIMITED"


def _attempt_rows(settings: Settings) -> int:
    with sqlite3.connect(settings.database.path, timeout=10) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM auth_attempts").fetchone()[0])


async def test_login_flood_does_not_stall_the_writer(
        ops_settings: Settings, ops_ssh_env: SshEnv,
        serve: subprocess.Popen[bytes], tmp_path: Path) -> None:
    db = Database(ops_settings.database.path)
    try:
        seed_links(db, ops_ssh_env, ["ops-01"])
        seed_script(db, "hello", "#!/bin/bash\necho hello\n")
    finally:
        db.close()
    add_admin(ops_settings)
    base = f"http://{ops_settings.api.host}:{ops_settings.api.port}"
    limits = httpx.Limits(max_connections=CLIENTS + 10, max_keepalive_connections=CLIENTS + 10)
    with trio.fail_after(180):
        async with httpx.AsyncClient(base_url=base, timeout=30) as http, \
                httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as flood:
            await wait_healthy(base)
            token = await login(http)
            http.headers["Authorization"] = f"Bearer {token}"
            http.cookies.clear()
            r = await http.post("/api/terminal/workspaces", json={"layout": "single"})
            assert r.status_code == 201, r.text
            ws_id = r.json()["workspace_id"]
            r = await http.put(f"/api/terminal/workspaces/{ws_id}/panes",
                               json={"panes": [{"pane": "A", "target": "ops-01"}]})
            assert r.status_code == 200, r.text
            r = await http.post(f"/api/terminal/workspaces/{ws_id}/connect-all")
            assert r.status_code == 200 and r.json()["panes"][0]["status"] == "connected", r.text
            url = base.replace("http://", "ws://") + f"/api/terminal/workspaces/{ws_id}/ws"
            async with open_websocket_url(
                    url, extra_headers=[(b"Authorization", f"Bearer {token}".encode())]) as ws:
                echo = Echo(ws)
                await echo.seconds()  # the prompt and the first round trip
                idle_op, idle_echo = await _figures(http, echo, 5)

                statuses: Counter[int] = Counter()
                retry_after: list[str] = []
                until = time.monotonic() + ATTACK_SECONDS
                async with trio.open_nursery() as nursery:
                    for i in range(CLIENTS):
                        nursery.start_soon(_attacker, flood, i, until, statuses, retry_after)
                    await trio.sleep(3)  # the flood is at full strength
                    busy_op, busy_echo = await _figures(http, echo, 5)
                    passwd = await trio.to_thread.run_sync(lambda: subprocess.run(
                        [sys.executable, "-m", "linkops", "user", "passwd", ADMIN,
                         "--password-stdin", "--config", str(ops_settings.source)],
                        input=f"{NEW_PASSWORD}\n", capture_output=True, text=True, cwd=ROOT,
                        env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60))
                    rows_during = await trio.to_thread.run_sync(_attempt_rows, ops_settings)

        print(f"\nidle: operation {idle_op * 1000:.0f} ms, echo {idle_echo * 1000:.1f} ms; "
              f"under the flood: operation {busy_op * 1000:.0f} ms, echo "
              f"{busy_echo * 1000:.1f} ms; statuses {dict(statuses)}")
        assert passwd.returncode == 0, passwd.stderr
        assert statuses[429] > 0 and statuses[401] > 0
        assert not [s for s in statuses if s >= 500 or s == 0], statuses
        assert retry_after and all(v.isdigit() and int(v) >= 1 for v in retry_after)
        # The 2x goal is measured and printed above (quiet machine: 48 → 52 ms, 9.5 → 7.5 ms);
        # the assertion leaves room for a shared, overloaded 2-core CI machine so that it
        # cannot flake, and still catches the stall of issue #19 (seconds, "database is locked").
        assert busy_op <= 4 * idle_op + 2.0
        assert busy_echo <= 4 * idle_echo + 1.0
        # Only attempts that got past the limits were stored (the admin's own logins too).
        rows_after = await trio.to_thread.run_sync(_attempt_rows, ops_settings)
        assert rows_during <= rows_after <= statuses[401] + 5
        # 120/min global: at most the bucket plus its refill over the attack.
        assert rows_after <= 120 + 120 * (ATTACK_SECONDS + 30) / 60 + 5
        # Thousands of refusals, a handful of log lines (one per 10 s, counting the rest):
        # being refused cannot fill the log's disk.
        refused = [json.loads(line)["context"]
                   for line in (tmp_path / "serve.out").read_text().splitlines()
                   if '"api.error"' in line and '"status": 429' in line]
        assert 1 <= len(refused) <= ATTACK_SECONDS / 10 + 2, len(refused)
        assert sum(r["left_out"] for r in refused) + len(refused) <= statuses[429]
        assert sum(r["left_out"] for r in refused) > 0

        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            with trio.fail_after(60):
                while True:
                    r = await http.post("/api/auth/login",
                                        json={"username": ADMIN, "password": NEW_PASSWORD})
                    if r.status_code != 429:
                        break
                    await trio.sleep(int(r.headers["Retry-After"]))
            assert r.status_code == 200, r.text
            old = await http.post("/api/auth/login",
                                  json={"username": ADMIN, "password": ADMIN_PASSWORD})
            assert old.status_code in (401, 429)
