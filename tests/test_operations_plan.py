"""Plan and confirm before a run (SPEC §10.3) against the real service and fleet."""

from __future__ import annotations

from typing import Any

import attrs
import httpx
import trio

from linkops import auth, config, server
from linkops.db import Database
from linkops.models import Enrollment, Link
from linkops.operations.planning import confirmation
from linkops.operations.validate import Plan
from tests.fixtures_core import base_url, login
from tests.fixtures_operations import seed_links, seed_script
from tests.fixtures_sandbox import SshEnv

BASH = "#!/bin/bash\n"
COMMIT_A = "a" * 40
COMMIT_B = "b" * 40


async def _synced(db: Database, commit: str) -> None:
    await db.execute(
        "INSERT INTO git_sync_history (started_at, ended_at, status, commit_hash) "
        "VALUES ('2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:01.000000Z', 'success', ?)",
        (commit,))


async def _wait(http: httpx.AsyncClient, op_id: str) -> dict[str, Any]:
    with trio.fail_after(60):
        while True:
            view: dict[str, Any] = (await http.get(f"/api/operations/{op_id}")).json()
            if view["status"] not in ("queued", "running"):
                return view
            await trio.sleep(0.05)


def _code(r: httpx.Response) -> str:
    return str(r.json()["error"]["code"])


async def test_plan_confirm_run_for_a_prod_target(
        ops_client: httpx.AsyncClient, ops_server_db: Database, ops_ssh_env: SshEnv) -> None:
    seed_links(ops_server_db, ops_ssh_env, ["ops-10", "ops-11", "ops-12"])
    await ops_server_db.execute("UPDATE machines SET tags = '[\"prod\",\"web\"]' "
                                "WHERE id = 'ops-10'")
    await ops_server_db.execute("UPDATE machines SET host_key = 'SHA256:pinnedpinned' "
                                "WHERE id = 'ops-12'")
    seed_script(ops_server_db, "deploy", BASH + 'echo "deploy $1"\n', ["--env=REQUIRED"])
    await _synced(ops_server_db, COMMIT_A)
    body = {"scripts": ["deploy"], "targets": ["ops-10", "ops-11"],
            "flags": {"deploy": ["--env=live"]}}
    with trio.fail_after(60):
        r = await ops_client.post("/api/operations/run", json=body)
        assert r.status_code == 409 and _code(r) == "CONFIRMATION_REQUIRED"
        assert r.json()["error"]["details"]["plan_required"] is True
        r = await ops_client.post("/api/operations/plan", json=body)
        assert r.status_code == 200, r.text
        plan = r.json()
        assert plan["plan_id"].startswith("PLAN-") and plan["inventory_commit"] == COMMIT_A
        assert plan["expires_at"] > plan["created"]
        assert [t["id"] for t in plan["targets"]] == ["ops-10", "ops-11"]
        first = plan["targets"][0]
        assert first["enrolled"] is True and first["verified_at"]
        assert first["host_key"] == "known" and first["tags"] == ["prod", "web"]
        assert "status" in first
        (script,) = plan["scripts"]
        assert script["id"] == "deploy" and script["path"] == "scripts/deploy.sh"
        assert len(script["sha256"]) == 64 and script["flags"] == ["--env=live"]
        confirm = plan["confirm"]
        assert confirm["phrase"] == "run on 2 targets" and "prod" in confirm["reason"]
        assert "ops-10" in confirm["reason"]
        # a plan alone, a wrong phrase, or no phrase is not enough
        for extra in ({"plan_id": plan["plan_id"]},
                      {"plan_id": plan["plan_id"], "confirm": "run on 3 targets"},
                      {"plan_id": plan["plan_id"], "confirm": ""},
                      {"plan_id": plan["plan_id"], "confirm": " run on 2 targets"},
                      {"confirm": confirm["phrase"]}):
            r = await ops_client.post("/api/operations/run", json={**body, **extra})
            assert r.status_code == 409, (extra, r.text)
            assert _code(r) == "CONFIRMATION_REQUIRED"
        for extra in ({"plan_id": 5, "confirm": "x"}, {"plan_id": "x" * 500},
                      {"plan_id": plan["plan_id"], "confirm": ["run on 2 targets"]}):
            r = await ops_client.post("/api/operations/run", json={**body, **extra})
            assert r.status_code == 400 and _code(r) == "VALIDATION_ERROR", extra
        r = await ops_client.post("/api/operations/run", json={
            **body, "plan_id": "PLAN-0000", "confirm": confirm["phrase"]})
        assert r.status_code == 404 and _code(r) == "PLAN_NOT_FOUND"
        # the plan is for exactly this request
        r = await ops_client.post("/api/operations/run", json={
            **body, "targets": ["ops-10"], "plan_id": plan["plan_id"],
            "confirm": "run on 1 target"})
        assert r.status_code == 409 and _code(r) == "PLAN_MISMATCH"
        assert (await ops_client.get("/api/operations")).json()["operations"] == []
        # confirmed
        r = await ops_client.post("/api/operations/run", json={
            **body, "plan_id": plan["plan_id"], "confirm": confirm["phrase"]})
        assert r.status_code == 202, r.text
        view = await _wait(ops_client, r.json()["operation_id"])
        assert view["status"] == "success"
        assert view["plan"] == plan  # stored with the operation, shown in its view
        # host key states: pinned in the inventory / in known_hosts / nowhere
        await ops_server_db.execute("UPDATE machines SET port = 1 WHERE id = 'ops-11'")
        r = await ops_client.post("/api/operations/plan", json={
            "scripts": ["deploy"], "targets": ["ops-11", "ops-12"],
            "flags": {"deploy": ["--env=x"]}})
        assert r.status_code == 200, r.text
        assert [t["host_key"] for t in r.json()["targets"]] == ["unknown", "pinned"]
        assert r.json()["confirm"] is None  # no prod tag, two targets


async def test_a_plan_made_before_a_script_changed_is_stale(
        ops_client: httpx.AsyncClient, ops_server_db: Database, ops_ssh_env: SshEnv) -> None:
    seed_links(ops_server_db, ops_ssh_env, ["ops-13"])
    await ops_server_db.execute("UPDATE machines SET tags = '[\"prod\"]' WHERE id = 'ops-13'")
    seed_script(ops_server_db, "deploy", BASH + "echo v1\n")
    await _synced(ops_server_db, COMMIT_A)
    body = {"scripts": ["deploy"], "targets": ["ops-13"]}
    with trio.fail_after(60):
        plan = (await ops_client.post("/api/operations/plan", json=body)).json()
        phrase = plan["confirm"]["phrase"]
        assert phrase == "run on 1 target"
        # a new commit synced, with the script edited
        seed_script(ops_server_db, "deploy", BASH + "echo v2\n")
        await _synced(ops_server_db, COMMIT_B)
        r = await ops_client.post("/api/operations/run",
                                  json={**body, "plan_id": plan["plan_id"], "confirm": phrase})
        assert r.status_code == 409 and _code(r) == "PLAN_STALE", r.text
        changed = r.json()["error"]["details"]["changed"]
        assert {c["what"] for c in changed} == {"inventory_commit", "script"}
        assert next(c for c in changed if c["what"] == "script")["script"] == "deploy"
        # a fresh plan runs the new text
        plan = (await ops_client.post("/api/operations/plan", json=body)).json()
        assert plan["inventory_commit"] == COMMIT_B
        r = await ops_client.post("/api/operations/run",
                                  json={**body, "plan_id": plan["plan_id"], "confirm": phrase})
        assert r.status_code == 202, r.text
        view = await _wait(ops_client, r.json()["operation_id"])
        assert view["logs"][0]["stdout_head"] == "v2\n"
        # only a new commit (same script text) is stale as well
        await _synced(ops_server_db, "c" * 40)
        r = await ops_client.post("/api/operations/run",
                                  json={**body, "plan_id": plan["plan_id"], "confirm": phrase})
        assert r.status_code == 409 and _code(r) == "PLAN_STALE"
        assert [c["what"] for c in r.json()["error"]["details"]["changed"]] == [
            "inventory_commit"]


async def test_plan_validates_like_run(
        ops_client: httpx.AsyncClient, ops_server_db: Database, ops_ssh_env: SshEnv) -> None:
    seed_links(ops_server_db, ops_ssh_env, ["ops-14"], enrolled=False)
    seed_script(ops_server_db, "hi", BASH + "echo hi\n")
    with trio.fail_after(30):
        for body, status, code in (
                ({"scripts": ["hi"], "targets": ["ops-14"]}, 403, "ENROLLMENT_REQUIRED"),
                ({"scripts": ["nope"], "targets": ["ops-14"]}, 404, "SCRIPT_NOT_FOUND"),
                ({"scripts": ["hi"], "targets": ["ops-99"]}, 404, "LINK_NOT_FOUND"),
                ({"scripts": ["hi"], "targets": ["ops-14"], "plan_id": "x"}, 400,
                 "VALIDATION_ERROR"),
                ({"scripts": "hi", "targets": ["ops-14"]}, 400, "VALIDATION_ERROR")):
            r = await ops_client.post("/api/operations/plan", json=body)
            assert r.status_code == status and _code(r) == code, (body, r.text)


def test_confirmation_rule_tags_and_count() -> None:
    """Pure: a listed tag or more than confirm_over targets asks for the phrase."""
    def plan(n: int, tags: tuple[str, ...] = ()) -> Plan:
        links = tuple(Link(id=f"l{i}", type="vps", host="h", port=22, user="u",
                           enrollment=Enrollment(clientId="c"), tags=tags if i == 0 else ())
                      for i in range(n))
        return Plan(scripts=(), targets=links, flags={}, concurrency=1,
                    require_enrollment=True)

    settings = config.Settings()
    assert confirmation(plan(50), settings) is None
    assert confirmation(plan(51), settings) == {
        "phrase": "run on 51 targets", "reason": "51 targets (more than 50)"}
    assert confirmation(plan(1, ("prod",)), settings) == {
        "phrase": "run on 1 target", "reason": "targets tagged prod: l0"}
    assert confirmation(plan(2, ("staging",)), settings) is None
    none = attrs.evolve(settings, operations=attrs.evolve(settings.operations,
                                                          confirm_tags=(), confirm_over=0))
    assert confirmation(plan(1, ("prod",)), none) == {
        "phrase": "run on 1 target", "reason": "1 target (more than 0)"}


async def test_a_viewer_may_read_groups_and_output_but_not_plan_or_rerun(
        ops_server: server.Running, ops_client: httpx.AsyncClient, ops_server_db: Database,
        ops_ssh_env: SshEnv) -> None:
    seed_links(ops_server_db, ops_ssh_env, ["ops-15"])
    seed_script(ops_server_db, "fail", BASH + "echo no\nexit 1\n")
    await ops_server.services.db.write(
        lambda c: auth.add_user(c, "watcher", "viewer-password", role="viewer"))
    with trio.fail_after(60):
        r = await ops_client.post("/api/operations/run",
                                  json={"scripts": ["fail"], "targets": ["ops-15"]})
        op_id = r.json()["operation_id"]
        await _wait(ops_client, op_id)
        async with httpx.AsyncClient(base_url=base_url(ops_server), timeout=20) as http:
            token = await login(http, "watcher", "viewer-password")
            http.cookies.clear()
            http.headers["Authorization"] = f"Bearer {token}"
            for path in (f"/api/operations/{op_id}/groups",
                         f"/api/operations/{op_id}/tasks/ops-15/fail/output"):
                assert (await http.get(path)).status_code == 200, path
            for path, payload in (
                    ("/api/operations/plan", {"scripts": ["fail"], "targets": ["ops-15"]}),
                    (f"/api/operations/{op_id}/rerun", {"which": "failed"})):
                r = await http.post(path, json=payload)
                assert r.status_code == 403 and _code(r) == "FORBIDDEN", (path, r.text)
        assert (await ops_client.get(f"/api/operations/{op_id}")).json()["children"] == []


async def test_a_rerun_on_a_prod_target_is_planned_and_confirmed_too(
        ops_client: httpx.AsyncClient, ops_server_db: Database, ops_ssh_env: SshEnv) -> None:
    seed_links(ops_server_db, ops_ssh_env, ["ops-16", "ops-17"])
    seed_script(ops_server_db, "flaky", BASH + '[ "$LINKOPS_SANDBOX_HOST" = ops-17 ] && exit 9'
                "\necho fine\n")
    with trio.fail_after(60):
        r = await ops_client.post("/api/operations/run",
                                  json={"scripts": ["flaky"], "targets": ["ops-16", "ops-17"]})
        parent = r.json()["operation_id"]
        await _wait(ops_client, parent)
        # ops-17 is production now
        await ops_server_db.execute("UPDATE machines SET tags = '[\"prod\"]' "
                                    "WHERE id = 'ops-17'")
        url = f"/api/operations/{parent}/rerun"
        r = await ops_client.post(url, json={"which": "failed"})
        assert r.status_code == 409 and _code(r) == "CONFIRMATION_REQUIRED"
        run = r.json()["error"]["details"]["run"]
        assert run["targets"] == ["ops-17"]
        plan = (await ops_client.post("/api/operations/plan", json=run)).json()
        r = await ops_client.post(url, json={"which": "failed", "plan_id": plan["plan_id"],
                                             "confirm": "run on 2 targets"})
        assert r.status_code == 409 and _code(r) == "CONFIRMATION_REQUIRED"
        r = await ops_client.post(url, json={"which": "failed", "plan_id": plan["plan_id"],
                                             "confirm": plan["confirm"]["phrase"]})
        assert r.status_code == 202, r.text
        child = await _wait(ops_client, r.json()["operation_id"])
        assert child["parent"] == parent and child["plan"]["plan_id"] == plan["plan_id"]
