"""Rerun (SPEC §10.3) on the real fleet: failed, unfinished after a stop, one group; the
parent/children links in both views and in history; hostile bodies."""

from __future__ import annotations

from typing import Any

import httpx
import trio

from linkops.db import Database
from tests.fixtures_operations import seed_links, seed_script
from tests.fixtures_sandbox import SshEnv

BASH = "#!/bin/bash\n"
FLAKY = BASH + r"""echo "checking $LINKOPS_SANDBOX_HOST"
case "$LINKOPS_SANDBOX_HOST" in
  ops-08) echo "bad disk" >&2; exit 2 ;;
  ops-09) echo "slightly different" ;;
esac
"""


async def _wait(http: httpx.AsyncClient, op_id: str, timeout: float = 60) -> dict[str, Any]:
    with trio.fail_after(timeout):
        while True:
            view: dict[str, Any] = (await http.get(f"/api/operations/{op_id}")).json()
            if view["status"] not in ("queued", "running"):
                return view
            await trio.sleep(0.05)


async def _run(http: httpx.AsyncClient, body: dict[str, Any]) -> str:
    r = await http.post("/api/operations/run", json=body)
    assert r.status_code == 202, r.text
    return str(r.json()["operation_id"])


async def test_rerun_failed_and_one_group_link_parent_and_children(
        ops_client: httpx.AsyncClient, ops_server_db: Database, ops_ssh_env: SshEnv) -> None:
    hosts = ["ops-07", "ops-08", "ops-09", "ops-10"]
    seed_links(ops_server_db, ops_ssh_env, hosts)
    seed_script(ops_server_db, "flaky", FLAKY, ["--mode=fast"])
    with trio.fail_after(120):
        parent = await _run(ops_client, {"scripts": ["flaky"], "targets": hosts,
                                         "flags": {"flaky": ["--mode"]}, "concurrency": 4})
        assert (await _wait(ops_client, parent))["status"] == "partial"
        r = await ops_client.post(f"/api/operations/{parent}/rerun", json={"which": "failed"})
        assert r.status_code == 202, r.text
        body = r.json()
        assert body["parent"] == parent and body["targets"] == ["ops-08"]
        child = await _wait(ops_client, body["operation_id"])
        assert child["parent"] == parent and child["targets"] == ["ops-08"]
        assert child["flags"] == {"flaky": ["--mode=fast"]}  # the parent's flags
        assert child["status"] == "failed" and child["triggered_by"] == "admin"
        # one group: the odd one out
        groups = (await ops_client.get(f"/api/operations/{parent}/groups")).json()
        odd = next(g for g in groups["script_groups"][0]["groups"]
                   if g["targets"] == ["ops-09"])
        r = await ops_client.post(f"/api/operations/{parent}/rerun",
                                  json={"which": "group", "group": odd["key"],
                                        "concurrency": 1})
        assert r.status_code == 202, r.text
        second = r.json()
        assert second["targets"] == ["ops-09"]
        view = await _wait(ops_client, second["operation_id"])
        assert view["concurrency"] == 1 and view["status"] == "success"
        # both views and history show the links
        parent_view = (await ops_client.get(f"/api/operations/{parent}")).json()
        assert parent_view["children"] == [body["operation_id"], second["operation_id"]]
        assert parent_view["parent"] is None
        listed = {o["id"]: o for o in (await ops_client.get("/api/operations")).json()[
            "operations"]}
        assert listed[parent]["children"] == parent_view["children"]
        assert listed[second["operation_id"]]["parent"] == parent
        # a rerun of a rerun chains
        r = await ops_client.post(f"/api/operations/{body['operation_id']}/rerun",
                                  json={"which": "unfinished"})
        assert r.status_code == 202 and r.json()["parent"] == body["operation_id"]
        await _wait(ops_client, r.json()["operation_id"])
        # nothing failed in the group rerun
        r = await ops_client.post(f"/api/operations/{second['operation_id']}/rerun",
                                  json={"which": "failed"})
        assert r.status_code == 409 and r.json()["error"]["code"] == "NOTHING_TO_RERUN"


async def test_rerun_unfinished_after_a_stop_takes_stopped_and_never_started(
        ops_client: httpx.AsyncClient, ops_server_db: Database, ops_ssh_env: SshEnv) -> None:
    hosts = ["ops-11", "ops-12", "ops-13", "ops-14"]
    seed_links(ops_server_db, ops_ssh_env, hosts)
    seed_script(ops_server_db, "slow", BASH + "echo begin\nsleep 30\n")
    with trio.fail_after(120):
        parent = await _run(ops_client, {"scripts": ["slow"], "targets": hosts,
                                         "concurrency": 2})
        while True:
            view = (await ops_client.get(f"/api/operations/{parent}")).json()
            if sum(log["status"] == "running" for log in view["logs"]) == 2:
                break
            await trio.sleep(0.05)
        r = await ops_client.post(f"/api/operations/{parent}/rerun", json={"which": "failed"})
        assert r.status_code == 409 and r.json()["error"]["code"] == "OPERATION_RUNNING"
        assert (await ops_client.post(f"/api/operations/{parent}/stop")).status_code == 200
        view = await _wait(ops_client, parent)
        statuses = sorted(log["status"] for log in view["logs"])
        assert statuses == ["skipped", "skipped", "stopped", "stopped"]
        # the stopped and the never-started ones are grouped too
        groups = (await ops_client.get(f"/api/operations/{parent}/groups")).json()
        assert sorted(g["status"] for g in groups["script_groups"][0]["groups"]) == [
            "skipped", "stopped"]
        r = await ops_client.post(f"/api/operations/{parent}/rerun",
                                  json={"which": "unfinished"})
        assert r.status_code == 202, r.text
        assert r.json()["targets"] == hosts  # in the parent's order
        child = r.json()["operation_id"]
        r = await ops_client.post(f"/api/operations/{parent}/rerun", json={"which": "failed"})
        assert r.status_code == 409 and r.json()["error"]["code"] == "NOTHING_TO_RERUN"
        await ops_client.post(f"/api/operations/{child}/stop")
        assert (await _wait(ops_client, child))["status"] == "stopped"


async def test_rerun_refuses_bad_bodies_and_checks_enrollment_like_run(
        ops_client: httpx.AsyncClient, ops_server_db: Database, ops_ssh_env: SshEnv) -> None:
    seed_links(ops_server_db, ops_ssh_env, ["ops-15", "ops-16"])
    seed_script(ops_server_db, "flaky", FLAKY)
    seed_script(ops_server_db, "fail", BASH + "exit 1\n")
    with trio.fail_after(60):
        parent = await _run(ops_client, {"scripts": ["fail"], "targets": ["ops-15", "ops-16"]})
        await _wait(ops_client, parent)
        url = f"/api/operations/{parent}/rerun"
        for body in ({}, {"which": "everything"}, {"which": "group"},
                     {"which": "failed", "group": "abc"}, {"which": "failed", "extra": 1},
                     {"which": "failed", "concurrency": "2"},
                     {"which": "failed", "concurrency": 0},
                     {"which": "failed", "concurrency": True}, {"which": 7},
                     {"which": "group", "group": "x" * 500}, {"which": None}):
            r = await ops_client.post(url, json=body)
            assert r.status_code == 400, (body, r.text)
            assert r.json()["error"]["code"] == "VALIDATION_ERROR", body
        for raw in (b"[]", b"\"failed\"", b"{", b"\xff\xfe"):
            r = await ops_client.post(url, content=raw,
                                      headers={"Content-Type": "application/json"})
            assert r.status_code == 400, raw
        r = await ops_client.post(url, json={"which": "group", "group": "0" * 16})
        assert r.status_code == 404 and r.json()["error"]["code"] == "GROUP_NOT_FOUND"
        r = await ops_client.post("/api/operations/OP-99999/rerun", json={"which": "failed"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "OPERATION_NOT_FOUND"
        # the run path's checks apply: a target that lost its enrollment is refused
        await ops_server_db.execute("UPDATE machines SET enrolled = 0 WHERE id = 'ops-16'")
        r = await ops_client.post(url, json={"which": "failed"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "ENROLLMENT_REQUIRED"
        assert r.json()["error"]["details"]["targets"] == ["ops-16"]
        # and a deleted script
        await ops_server_db.execute("DELETE FROM scripts WHERE id = 'fail'")
        r = await ops_client.post(url, json={"which": "unfinished"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "SCRIPT_NOT_FOUND"
        view = (await ops_client.get(f"/api/operations/{parent}")).json()
        assert view["children"] == []  # nothing was started
