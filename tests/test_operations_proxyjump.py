"""Operations on hosts reachable only through a ProxyJump bastion (network namespaces of the
shared sandbox fleet): the script runs there, and a stop kills it there."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from linkops import config
from tests.fixtures_core import write_config
from tests.fixtures_operations import OpsHarness, no_process, open_harness, seed_links, seed_script
from tests.fixtures_sandbox import SshEnv

BASH = "#!/bin/bash\n"


@pytest.fixture
async def jump_ops(ssh_env: SshEnv, tmp_path: Path,
                   nursery: trio.Nursery) -> AsyncIterator[OpsHarness]:
    settings = config.load(write_config(tmp_path, ssh={
        "keys_directory": ssh_env.keys_dir, "known_hosts_path": ssh_env.known_hosts,
        "default_key": "sandbox_ed25519", "connection_timeout": 10, "max_retries": 1}))
    async with open_harness(settings, ssh_env, nursery) as harness:
        yield harness


async def test_runs_and_stops_behind_a_bastion(jump_ops: OpsHarness) -> None:
    inner = [h for h in jump_ops.env.links if "inner" in h]
    assert inner, "the shared fleet has network-namespace hosts when run as root"
    marker = f"600.{secrets.randbelow(10**6)}"
    with trio.fail_after(90):
        seed_links(jump_ops.db, jump_ops.env)  # the bastion row is needed to resolve jumps
        seed_script(jump_ops.db, "where", BASH + 'echo "on $LINKOPS_SANDBOX_HOST"\n'
                    "cat /etc/linkops/client_id\n")
        _, view = await jump_ops.run({"scripts": ["where"], "targets": inner})
        assert view["status"] == "success", view["logs"]
        for log in view["logs"]:
            link = jump_ops.env.links[log["target"]]
            assert link.ssh.proxyJump
            assert log["stdout"] == f"on {log['target']}\n{link.enrollment.clientId}\n"

        seed_script(jump_ops.db, "long", BASH + f"echo up\nsleep {marker}\n")
        op_id = await jump_ops.submit({"scripts": ["long"], "targets": inner[:1]})
        hub = jump_ops.service.hub(op_id)
        assert hub is not None
        while not any(e.kind == "output" for e in hub.subscribe(0).backlog):
            await trio.sleep(0.05)
        await jump_ops.service.stop(op_id)
        assert await jump_ops.service.wait(op_id) == "stopped"
        log = (await jump_ops.service.detail(op_id, full_output=True))["logs"][0]
        assert log["remote_killed"] is True
        assert await no_process(jump_ops, inner[0], marker)
