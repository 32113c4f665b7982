"""``/api/operations*`` over HTTP against the real service and the sandbox fleet."""

from __future__ import annotations

import secrets
import time
from typing import Any

import httpx
import trio

from linkops import server
from linkops.db import Database
from tests.fixtures_operations import seed_links, seed_script
from tests.fixtures_sandbox import SshEnv

BASH = "#!/bin/bash\n"


async def _wait_status(http: httpx.AsyncClient, op_id: str,
                       timeout: float = 30) -> dict[str, Any]:
    with trio.fail_after(timeout):
        while True:
            view = (await http.get(f"/api/operations/{op_id}")).json()
            if view["status"] not in ("queued", "running"):
                return dict(view)
            await trio.sleep(0.05)


async def test_run_returns_202_and_view_has_every_log(
        ops_client: httpx.AsyncClient, ops_server_db: Database, ops_ssh_env: SshEnv) -> None:
    with trio.fail_after(60):
        seed_links(ops_server_db, ops_ssh_env, ["ops-01", "ops-02"])
        seed_script(ops_server_db, "hello", BASH + 'echo "hi $1"\n', ["--who=REQUIRED"])
        seed_script(ops_server_db, "bye", BASH + "echo bye >&2\nexit 4\n")
        commit = "c0ffee" * 6 + "abcd"
        for status, sha in (("success", commit), ("failed", "f" * 40)):
            await ops_server_db.execute(
                "INSERT INTO git_sync_history (started_at, ended_at, status, commit_hash) "
                "VALUES ('2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:01.000000Z', ?, ?)",
                (status, sha))
        r = await ops_client.post("/api/operations/run", json={
            "scripts": ["hello", "bye"], "targets": ["ops-01", "ops-02"],
            "flags": {"hello": ["--who=you"]}, "concurrency": 2})
        assert r.status_code == 202, r.text
        body = r.json()
        assert body["status"] == "queued" and body["operation_id"].startswith("OP-")
        view = await _wait_status(ops_client, body["operation_id"])
        assert view["status"] == "failed"
        assert view["id"] == body["operation_id"]
        assert view["scripts"] == ["hello", "bye"] and view["targets"] == ["ops-01", "ops-02"]
        assert view["flags"] == {"hello": ["--who=you"]} and view["concurrency"] == 2
        assert view["triggered_by"] == "admin"
        assert set(view["script_hashes"]) == {"hello", "bye"}
        assert view["commit_hash"] == commit  # the last *successful* sync
        assert view["started"] and view["ended"] and view["duration"] >= 0
        assert len(view["logs"]) == 4
        keys = {"target", "script", "status", "exit_code", "stdout_head", "stderr_head",
                "stdout_bytes", "stderr_bytes", "duration", "started", "ended", "error",
                "remote_killed"}
        assert all(keys <= set(log) for log in view["logs"])
        # heads and sizes only: the whole output is paged (SPEC §10.3)
        assert not any({"stdout", "stderr"} & set(log) for log in view["logs"])
        assert view["parent"] is None and view["children"] == [] and view["plan"] is None
        hello = [g for g in view["logs"] if g["script"] == "hello"]
        assert all(g["stdout_head"] == "hi --who=you\n" for g in hello)
        bye = [g for g in view["logs"] if g["script"] == "bye"]
        assert all(g["exit_code"] == 4 and g["stderr_head"] == "bye\n" for g in bye)
        # finished: stop is a conflict
        r = await ops_client.post(f"/api/operations/{view['id']}/stop")
        assert r.status_code == 409 and r.json()["error"]["code"] == "OPERATION_FINISHED"
        # history lists it
        r = await ops_client.get("/api/operations", params={"status": "failed"})
        assert r.status_code == 200
        assert [o["id"] for o in r.json()["operations"]] == [view["id"]]
        assert "page" in r.json()


async def test_errors_are_structured(ops_client: httpx.AsyncClient, ops_server_db: Database,
                                     ops_ssh_env: SshEnv) -> None:
    seed_links(ops_server_db, ops_ssh_env, ["ops-01"])
    seed_links(ops_server_db, ops_ssh_env, ["ops-02", "ops-03"], enrolled=False)
    seed_script(ops_server_db, "ok", BASH + "true\n", ["--dry-run"])
    seed_script(ops_server_db, "py", "#!/usr/bin/python3\nprint(1)\n")
    cases = [
        ({"scripts": ["ok"], "targets": ["ops-01", "ops-02", "ops-03"]}, 403,
         "ENROLLMENT_REQUIRED"),
        ({"scripts": ["py"], "targets": ["ops-01"]}, 400, "NON_BASH_SCRIPT"),
        ({"scripts": ["nope"], "targets": ["ops-01"]}, 404, "SCRIPT_NOT_FOUND"),
        ({"scripts": ["ok"], "targets": ["ghost"]}, 404, "LINK_NOT_FOUND"),
        ({"scripts": ["ok"], "targets": ["ops-01"], "flags": {"ok": ["--dry-run=1"]}}, 400,
         "INVALID_FLAG"),
        ({"scripts": ["ok"], "targets": ["ops-01"], "concurrency": 999}, 400,
         "VALIDATION_ERROR"),
    ]
    for body, status, code in cases:
        r = await ops_client.post("/api/operations/run", json=body)
        assert r.status_code == status, (body, r.text)
        err = r.json()["error"]
        assert err["code"] == code and err["message"] and err["timestamp"]
        if code == "ENROLLMENT_REQUIRED":
            assert err["details"]["targets"] == ["ops-02", "ops-03"]
    assert (await ops_client.get("/api/operations/OP-1")).status_code == 404
    assert (await ops_client.post("/api/operations/OP-1/stop")).status_code == 404
    r = await ops_client.get("/api/operations", params={"status": "bogus"})
    assert r.status_code == 400
    r = await ops_client.get("/api/operations", params={"from": "not-a-date"})
    assert r.status_code == 400
    assert await ops_server_db.fetchone("SELECT 1 FROM operations") is None


async def test_requires_auth(ops_server: server.Running) -> None:
    from tests.fixtures_core import base_url
    async with httpx.AsyncClient(base_url=base_url(ops_server)) as anon:
        for method, path in [("POST", "/api/operations/run"), ("GET", "/api/operations"),
                             ("GET", "/api/operations/OP-10001"),
                             ("GET", "/api/operations/OP-10001/events"),
                             ("POST", "/api/operations/OP-10001/stop")]:
            r = await anon.request(method, path, json={} if method == "POST" else None)
            assert r.status_code == 401, (method, path)


async def test_stop_over_http_and_shutdown_stops_running(
        ops_client: httpx.AsyncClient, ops_server: server.Running, ops_server_db: Database,
        ops_ssh_env: SshEnv) -> None:
    marker = f"600.{secrets.randbelow(10**6)}"
    seed_links(ops_server_db, ops_ssh_env, ["ops-10", "ops-11"])
    seed_script(ops_server_db, "long", BASH + f"echo up\nsleep {marker}\n")
    with trio.fail_after(60):
        first = (await ops_client.post("/api/operations/run", json={
            "scripts": ["long"], "targets": ["ops-10"]})).json()["operation_id"]
        second = (await ops_client.post("/api/operations/run", json={
            "scripts": ["long"], "targets": ["ops-11"]})).json()["operation_id"]
        await trio.sleep(1.0)
        r = await ops_client.post(f"/api/operations/{first}/stop")
        assert r.status_code == 200 and r.json()["success"] is True
        view = await _wait_status(ops_client, first)
        assert view["status"] == "stopped" and view["error"] == "stopped by admin"
        assert view["logs"][0]["remote_killed"] is True
        # SIGTERM path: the service shuts down while `second` runs.
        t0 = time.monotonic()
        ops_server.stop.set()
        while True:
            row = await ops_server_db.fetchone("SELECT status FROM operations WHERE id = ?",
                                               (second,))
            if row is not None and row[0] not in ("queued", "running"):
                break
            await trio.sleep(0.05)
        assert time.monotonic() - t0 < 6
        assert row[0] == "stopped"
        log = await ops_server_db.fetchone(
            "SELECT status, remote_killed FROM operation_logs WHERE operation_id = ?", (second,))
        assert log is not None and tuple(log) == ("stopped", 1)
        # nothing left on either host
        ssh = ops_ssh_env.manager()
        try:
            for host in ("ops-10", "ops-11"):
                async with ssh.connection(ops_ssh_env.links[host], ops_ssh_env.links) as conn:
                    out = await conn.run(f"pgrep -f '[s]leep {marker}' || echo none")
                assert out.stdout.strip() == b"none"
        finally:
            await ssh.aclose()


async def test_viewers_cannot_run_or_stop(ops_server: server.Running, ops_settings: Any,
                                          ops_server_db: Database, ops_ssh_env: SshEnv) -> None:
    from linkops import auth
    from tests.fixtures_core import base_url, login
    ops_server_db.write_sync(lambda c: auth.add_user(c, "watcher", "a-long-password-1",
                                                     role="viewer"))
    seed_links(ops_server_db, ops_ssh_env, ["ops-01"])
    seed_script(ops_server_db, "ok", BASH + "true\n")
    async with httpx.AsyncClient(base_url=base_url(ops_server), timeout=20) as http:
        token = await login(http, "watcher", "a-long-password-1")
        http.headers["Authorization"] = f"Bearer {token}"
        http.cookies.clear()
        r = await http.post("/api/operations/run", json={"scripts": ["ok"],
                                                         "targets": ["ops-01"]})
        assert r.status_code == 403 and r.json()["error"]["code"] == "FORBIDDEN"
        r = await http.post("/api/operations/OP-10001/stop")
        assert r.status_code == 403
        assert (await http.get("/api/operations")).status_code == 200  # reading is fine
    assert await ops_server_db.fetchone("SELECT 1 FROM operations") is None
