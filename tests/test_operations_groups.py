"""Output groups on the real fleet (SPEC §10.3): folding, live ``groups`` events, the diff."""

from __future__ import annotations

from typing import Any

import httpx
import trio

from linkops.db import Database
from tests.fixtures_operations import collect_sse, seed_links, seed_script
from tests.fixtures_sandbox import SshEnv

BASH = "#!/bin/bash\n"
# Each host greets with its own link id and address (CRLF, trailing blanks): all must fold.
# ops-05 prints one more line, ops-06 fails.
GREETER = BASH + r"""ip=$(echo "$SSH_CONNECTION" | cut -d' ' -f3)
printf 'hello from %s at %s   \r\n' "$LINKOPS_SANDBOX_HOST" "$ip"
echo "uptime ok"
case "$LINKOPS_SANDBOX_HOST" in
  ops-05) echo "disk almost full" ;;
  ops-06) echo "boom on $LINKOPS_SANDBOX_HOST" >&2; exit 3 ;;
esac
"""
HOSTS = [f"ops-0{i}" for i in range(1, 7)]


async def _finish(http: httpx.AsyncClient, body: dict[str, Any]) -> str:
    r = await http.post("/api/operations/run", json=body)
    assert r.status_code == 202, r.text
    op_id: str = r.json()["operation_id"]
    with trio.fail_after(60):
        while (await http.get(f"/api/operations/{op_id}")).json()["status"] in (
                "queued", "running"):
            await trio.sleep(0.05)
    return op_id


async def test_identical_output_folds_into_one_group_and_diffs_against_the_majority(
        ops_client: httpx.AsyncClient, ops_server_db: Database, ops_ssh_env: SshEnv) -> None:
    seed_links(ops_server_db, ops_ssh_env, HOSTS)
    seed_script(ops_server_db, "greet", GREETER)
    with trio.fail_after(90):
        op_id = await _finish(ops_client, {"scripts": ["greet"], "targets": HOSTS,
                                           "concurrency": 6})
        r = await ops_client.get(f"/api/operations/{op_id}/groups")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["operation_id"] == op_id and body["unfinished"] == []
        assert body["finished"] == body["total"] == 6
        (script,) = body["script_groups"]
        assert script["script"] == "greet"
        groups = script["groups"]
        assert [g["count"] for g in groups] == [4, 1, 1]  # largest first
        same, odd, failed = groups
        assert same["targets"] == HOSTS[:4] and same["status"] == "success"
        assert same["exit_code"] == 0 and same["majority"] is True
        assert script["majority"] == same["key"]
        # the placeholders, CRLF → LF, trailing blanks dropped
        assert same["stdout_head"] == "hello from {link} at {host}\nuptime ok\n"
        assert odd["targets"] == ["ops-05"] and odd["status"] == "success"
        assert odd["majority"] is False
        assert failed["targets"] == ["ops-06"] and failed["status"] == "failed"
        assert failed["exit_code"] == 3 and failed["stderr_head"] == "boom on {link}\n"
        # the view keeps the raw output: only grouping normalises
        view = (await ops_client.get(f"/api/operations/{op_id}")).json()
        raw = {log["target"]: log["stdout_head"] for log in view["logs"]}
        assert raw["ops-02"] == "hello from ops-02 at 127.0.0.1   \r\nuptime ok\n"

        r = await ops_client.get(f"/api/operations/{op_id}/groups/{odd['key']}/diff")
        assert r.status_code == 200, r.text
        diff = r.json()
        assert diff["against"] == same["key"] and diff["group"] == odd["key"]
        assert "+disk almost full\n" in diff["stdout"]
        assert diff["stdout"].startswith(f"--- stdout of {same['key']}")
        assert diff["stderr"] == "" and diff["cut"] is False
        assert "=== stdout ===" in diff["diff"] and "=== stderr ===\n(identical)" in diff["diff"]
        r = await ops_client.get(f"/api/operations/{op_id}/groups/{failed['key']}/diff",
                                 params={"against": odd["key"]})
        assert r.status_code == 200
        assert "-disk almost full\n" in r.json()["stdout"]
        assert "+boom on {link}\n" in r.json()["stderr"]
        for key, against in (("0" * 16, "majority"), (odd["key"], "f" * 16),
                             ("x" * 5000, "majority"), (odd["key"], "\x00'; --")):
            r = await ops_client.get(f"/api/operations/{op_id}/groups/{key}/diff",
                                     params={"against": against})
            assert r.status_code == 404, (key, r.text)
            assert r.json()["error"]["code"] == "GROUP_NOT_FOUND"
        r = await ops_client.get(f"/api/operations/{op_id}/groups/../../etc/diff")
        assert r.status_code == 404 and "error" in r.json()
        r = await ops_client.get("/api/operations/OP-1/groups")
        assert r.status_code == 404 and r.json()["error"]["code"] == "OPERATION_NOT_FOUND"


async def test_no_majority_when_nothing_succeeded(
        ops_client: httpx.AsyncClient, ops_server_db: Database, ops_ssh_env: SshEnv) -> None:
    seed_links(ops_server_db, ops_ssh_env, ["ops-07", "ops-08"])
    seed_script(ops_server_db, "fail", BASH + 'echo "no $LINKOPS_SANDBOX_HOST"; exit 1\n')
    with trio.fail_after(60):
        op_id = await _finish(ops_client, {"scripts": ["fail"], "targets": ["ops-07", "ops-08"]})
        body = (await ops_client.get(f"/api/operations/{op_id}/groups")).json()
        (script,) = body["script_groups"]
        assert script["majority"] is None and [g["count"] for g in script["groups"]] == [2]
        key = script["groups"][0]["key"]
        r = await ops_client.get(f"/api/operations/{op_id}/groups/{key}/diff")
        assert r.status_code == 409 and r.json()["error"]["code"] == "NO_MAJORITY"


async def test_groups_event_after_every_task_end(
        ops_client: httpx.AsyncClient, ops_server_db: Database, ops_ssh_env: SshEnv) -> None:
    hosts = ["ops-03", "ops-04", "ops-05", "ops-06"]
    seed_links(ops_server_db, ops_ssh_env, hosts)
    seed_script(ops_server_db, "greet", GREETER)
    seed_script(ops_server_db, "after", BASH + "echo after\n")
    with trio.fail_after(60):
        r = await ops_client.post("/api/operations/run", json={
            "scripts": ["greet", "after"], "targets": hosts, "concurrency": 2})
        op_id = r.json()["operation_id"]
        events = await collect_sse(ops_client, op_id)
    kinds = [e.event for e in events]
    assert kinds[-1] == "operation_end"
    ends = [i for i, k in enumerate(kinds) if k == "task_end"]
    assert len(ends) == 8  # ops-06 fails greet, so its "after" is skipped (still an end)
    for i in ends:  # each end is followed by the counts that include it
        assert kinds[i + 1] == "groups"
    groups = [e.data for e in events if e.event == "groups"]
    assert [g["finished"] for g in groups] == list(range(1, 9))
    assert all(g["total"] == 8 and g["operation_id"] == op_id for g in groups)
    last = {s["script"]: s for s in groups[-1]["script_groups"]}
    assert [(g["status"], g["count"]) for g in last["greet"]["groups"]] == [
        ("success", 2), ("success", 1), ("failed", 1)]
    assert [(g["status"], g["count"]) for g in last["after"]["groups"]] == [
        ("success", 3), ("skipped", 1)]
    # the final counts are what GET …/groups says
    body = (await ops_client.get(f"/api/operations/{op_id}/groups")).json()
    assert {s["script"]: [(g["key"], g["count"]) for g in s["groups"]]
            for s in body["script_groups"]} == {
        s: [(g["key"], g["count"]) for g in v["groups"]] for s, v in last.items()}
