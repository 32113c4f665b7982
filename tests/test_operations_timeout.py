"""Per-script timeout on the real fleet: the remote group is killed, the task ends timeout."""

from __future__ import annotations

import secrets

import pytest
import trio

from tests.fixtures_operations import OpsHarness, no_process, seed_links, seed_script

BASH = "#!/bin/bash\n"


@pytest.fixture
def ops_overrides() -> dict[str, dict[str, object]]:
    return {"operations": {"script_timeout": 1.5}}


async def test_timeout_kills_remote_and_ends_task_timeout(ops: OpsHarness) -> None:
    marker = f"600.{secrets.randbelow(10**6)}"
    with trio.fail_after(60):
        seed_links(ops.db, ops.env, ["ops-08"])
        seed_script(ops.db, "slow", BASH + f"echo begin\nsleep {marker}\n")
        seed_script(ops.db, "next", BASH + "echo next\n")
        _, view = await ops.run({"scripts": ["slow", "next"], "targets": ["ops-08"]})
        assert view["status"] == "failed"
        slow, nxt = view["logs"]
        assert slow["status"] == "timeout" and slow["exit_code"] is None
        assert slow["error"].startswith("EXECUTION_TIMEOUT")
        assert slow["remote_killed"] is True
        assert slow["stdout"] == "begin\n"
        assert 1.4 <= slow["duration"] < 5
        assert nxt["status"] == "skipped"
        assert await no_process(ops, "ops-08", marker)


