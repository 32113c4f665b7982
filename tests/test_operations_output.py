"""Paged output and the small operation view (SPEC §10.3): 50 MB paged back exactly, hostile
offset/limit values, a 500-task view under 200 KB."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import attrs
import httpx
import pytest
import trio

from linkops.db import Database
from linkops.operations import store
from linkops.operations.groups import task_columns
from linkops.operations.validate import Plan, PlannedScript
from linkops.timeutil import now_iso
from tests.fixtures_operations import seed_links, seed_script
from tests.fixtures_sandbox import SshEnv

BASH = "#!/bin/bash\n"
FIFTY_MB = 50 * 1024 * 1024
LINE = "zeile €uro 0123456789 abcdefghij\n"  # 34 bytes, one 3-byte character


@pytest.fixture
def ops_overrides() -> dict[str, dict[str, object]]:
    # Keep 50 MB of stdout (a stream keeps a head and a tail of a quarter each).
    return {"operations": {"output_buffer_size": 256 * 1024 * 1024, "script_timeout": 120}}


async def _wait(http: httpx.AsyncClient, op_id: str, timeout: float) -> dict[str, Any]:
    with trio.fail_after(timeout):
        while True:
            view: dict[str, Any] = (await http.get(f"/api/operations/{op_id}")).json()
            if view["status"] not in ("queued", "running"):
                return view
            await trio.sleep(0.1)


async def test_paging_through_50_mb_of_output(
        ops_client: httpx.AsyncClient, ops_server_db: Database, ops_ssh_env: SshEnv) -> None:
    seed_links(ops_server_db, ops_ssh_env, ["ops-18"])
    seed_script(ops_server_db, "big", BASH + f"yes '{LINE[:-1]}' | head -c {FIFTY_MB}\n"
                "echo 'done' >&2\n")
    expected = (LINE.encode() * (FIFTY_MB // len(LINE.encode()) + 1))[:FIFTY_MB]
    with trio.fail_after(300):
        r = await ops_client.post("/api/operations/run",
                                  json={"scripts": ["big"], "targets": ["ops-18"]})
        assert r.status_code == 202, r.text
        op_id = r.json()["operation_id"]
        view = await _wait(ops_client, op_id, 240)
        (log,) = view["logs"]
        assert log["status"] == "success", log["error"]
        assert log["stdout_bytes"] == FIFTY_MB and log["output_truncated"] is False
        assert len(json.dumps(view)) < 20_000  # heads, not 50 MB
        url = f"/api/operations/{op_id}/tasks/ops-18/big/output"
        digest = hashlib.sha256()
        offset: int | None = 0
        pages = 0
        while offset is not None:
            r = await ops_client.get(url, params={"offset": offset, "limit": 10**9})
            assert r.status_code == 200, r.text
            page = r.json()
            assert page["offset"] == offset and page["total"] == FIFTY_MB
            assert page["limit"] == 1_048_576  # capped
            raw = page["data"].encode()
            assert len(raw) <= 1_048_576
            digest.update(raw)
            offset = page["next_offset"]
            assert offset is None or offset == page["offset"] + len(raw)
            pages += 1
        assert pages == 50 + (1 if FIFTY_MB % 1_048_576 else 0) or pages >= 50
        # head -c cut the last line inside the euro sign? then it was stored as U+FFFD
        stored = expected.decode("utf-8", "replace").encode()
        assert digest.hexdigest() == hashlib.sha256(stored).hexdigest()
        # an offset inside the 3-byte character starts at the next character
        inside = LINE.encode().index("€".encode()) + 1
        page = (await ops_client.get(url, params={"offset": inside, "limit": 10})).json()
        assert page["offset"] == inside + 2 and page["data"] == "uro 012345"
        # a limit smaller than a character still advances by one whole character
        at = LINE.encode().index("€".encode())
        page = (await ops_client.get(url, params={"offset": at, "limit": 1})).json()
        assert page["data"] == "€" and page["next_offset"] == at + 3
        page = (await ops_client.get(url, params={"stream": "stderr"})).json()
        assert page == {"operation_id": op_id, "target": "ops-18", "script": "big",
                        "stream": "stderr", "limit": 65536, "data": "done\n", "offset": 0,
                        "next_offset": None, "total": 5, "truncated": False}
        page = (await ops_client.get(url, params={"offset": FIFTY_MB + 7})).json()
        assert page["data"] == "" and page["next_offset"] is None


async def test_hostile_offset_and_limit_are_refused(
        ops_client: httpx.AsyncClient, ops_server_db: Database, ops_ssh_env: SshEnv) -> None:
    seed_links(ops_server_db, ops_ssh_env, ["ops-19"])
    seed_script(ops_server_db, "hi", BASH + "echo hi\n")
    with trio.fail_after(60):
        r = await ops_client.post("/api/operations/run",
                                  json={"scripts": ["hi"], "targets": ["ops-19"]})
        op_id = r.json()["operation_id"]
        await _wait(ops_client, op_id, 30)
        url = f"/api/operations/{op_id}/tasks/ops-19/hi/output"
        hostile = [{"offset": "-1"}, {"offset": "1.5"}, {"offset": "abc"}, {"offset": "1e3"},
                   {"offset": "0x10"}, {"offset": "+1"}, {"offset": " 1"}, {"offset": ""},
                   {"offset": "9" * 400}, {"offset": str(2**31 + 1)}, {"limit": "0"},
                   {"limit": "-5"}, {"limit": "NaN"}, {"limit": "inf"}, {"limit": "2.0"},
                   {"limit": "99999999999"}, {"stream": "stdin"}, {"stream": "../etc"},
                   {"bogus": "1"}, {"offset": "١٢"}]
        for params in hostile:
            r = await ops_client.get(url, params=params)
            assert r.status_code == 400, (params, r.text)
            error = r.json()["error"]
            assert error["code"] == "VALIDATION_ERROR" and error["message"], params
        r = await ops_client.get(url + "?offset=1&offset=2")
        assert r.status_code == 400
        r = await ops_client.get(f"/api/operations/{op_id}/tasks/ops-01/hi/output")
        assert r.status_code == 404 and r.json()["error"]["code"] == "TASK_NOT_FOUND"
        r = await ops_client.get(f"/api/operations/{op_id}/tasks/ops-19/nope/output")
        assert r.status_code == 404 and r.json()["error"]["code"] == "TASK_NOT_FOUND"
        r = await ops_client.get("/api/operations/OP-1/tasks/ops-19/hi/output")
        assert r.status_code == 404 and r.json()["error"]["code"] == "OPERATION_NOT_FOUND"
        r = await ops_client.get(url, params={"offset": "1", "limit": "2"})
        assert r.status_code == 200 and r.json()["data"] == "i\n"


async def test_view_of_a_500_task_operation_stays_under_200_kb(
        ops_client: httpx.AsyncClient, ops_server_db: Database, ops_ssh_env: SshEnv) -> None:
    """Rows written as the orchestrator writes them (store functions), 20 KB each."""
    template = ops_ssh_env.links["ops-01"]
    targets = tuple(attrs.evolve(template, id=f"web-{i:03d}", host=f"10.1.{i // 250}.{i % 250}")
                    for i in range(500))
    plan = Plan(scripts=(PlannedScript("report", "report", BASH, "0" * 64, ()),),
                targets=targets, flags={}, concurrency=50, require_enrollment=False)
    op_id = ops_server_db.write_sync(lambda c: store.insert_operation(c, plan, "tester"))
    for link in targets:
        stdout = f"report of {link.id} ({link.host})\n" + "x" * 100 + "\n" * 200 \
            + "all good\n" * 2000
        _, columns = task_columns(stdout, "", link.id, link.host)
        now = now_iso()
        ops_server_db.write_sync(store.task_finished(op_id, link.id, 0, {
            "status": "success", "exit_code": 0, "stdout": stdout, "stderr": "",
            "output_truncated": 0, "duration": 0.5, "started_at": now, "ended_at": now,
            "error": None, "remote_killed": None, **columns}))
    ops_server_db.write_sync(store.finish_operation(op_id, "success", {"targets": 500},
                                                    now_iso(), 1.0))
    with trio.fail_after(60):
        r = await ops_client.get(f"/api/operations/{op_id}")
        assert r.status_code == 200
        assert len(r.content) < 200_000, len(r.content)
        view = r.json()
        assert len(view["logs"]) == 500
        log = view["logs"][7]
        assert log["target"] == "web-007" and log["stdout_head"].startswith("report of web-007")
        assert log["stdout_bytes"] == len(("report of web-007 (10.1.0.7)\n" + "x" * 100
                                           + "\n" * 200 + "all good\n" * 2000).encode())
        r = await ops_client.get(f"/api/operations/{op_id}/groups")
        groups = r.json()
        (script,) = groups["script_groups"]
        assert [g["count"] for g in script["groups"]] == [500]  # id and address folded
        assert script["groups"][0]["stdout_head"].startswith("report of {link} ({host})\n")
        assert len(r.content) < 30_000
        page = (await ops_client.get(
            f"/api/operations/{op_id}/tasks/web-499/report/output")).json()
        assert page["data"].startswith("report of web-499 (10.1.1.249)")


async def test_rows_without_a_fingerprint_are_grouped_from_their_output(
        ops_client: httpx.AsyncClient, ops_server_db: Database, ops_ssh_env: SshEnv) -> None:
    """Operations recorded before migration 0006 have no stored fingerprint: their groups
    (and the view's heads and sizes) come from the stored output itself."""
    seed_links(ops_server_db, ops_ssh_env, ["ops-01", "ops-02", "ops-03"])
    links = tuple(ops_ssh_env.links[t] for t in ("ops-01", "ops-02", "ops-03"))
    plan = Plan(scripts=(PlannedScript("old", "old", BASH, "0" * 64, ()),), targets=links,
                flags={}, concurrency=3, require_enrollment=False)
    op_id = ops_server_db.write_sync(lambda c: store.insert_operation(c, plan, "tester"))
    for link in links:
        text = "same\n" if link.id != "ops-03" else "other\n"
        ops_server_db.write_sync(store.task_finished(op_id, link.id, 0, {
            "status": "success", "exit_code": 0, "stdout": f"{link.id}: {text}",
            "stderr": "", "ended_at": now_iso()}))
    ops_server_db.write_sync(store.finish_operation(op_id, "success", {}, now_iso(), 1.0))
    with trio.fail_after(30):
        body = (await ops_client.get(f"/api/operations/{op_id}/groups")).json()
        (script,) = body["script_groups"]
        assert [(g["count"], g["targets"]) for g in script["groups"]] == [
            (2, ["ops-01", "ops-02"]), (1, ["ops-03"])]
        assert script["groups"][0]["stdout_head"] == "{link}: same\n"
        view = (await ops_client.get(f"/api/operations/{op_id}")).json()
        assert view["logs"][0]["stdout_head"] == "ops-01: same\n"
        assert view["logs"][0]["stdout_bytes"] == len("ops-01: same\n")
