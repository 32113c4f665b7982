"""Stop during launch, with real latency: real sshd behind 100 ms of added latency (a
delaying TCP forwarder, :class:`~tests.fixtures_hostile.DelayProxy`: this kernel has no
``sch_netem`` for ``tc qdisc … netem delay``; 50 ms each way).

Whenever the stop lands (0–300 ms after the submit: while connecting, opening the channel,
reading the client ID, sending the script, or once it runs), nothing is left running on the
host 5 s later or more (checked once after the last stop; every script sleeps for thousands of
seconds, so one an abandoned launch started late is still there), and the task's recorded
status says what happened:
``skipped`` only when the script provably never started (it writes a marker file first
thing, which must not exist), otherwise ``stopped`` with the kill confirmed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from linkops import config
from linkops.sandbox import Sandbox
from linkops.ssh.machines import insert_links_sync
from tests.fixtures_core import write_config
from tests.fixtures_hostile import DelayProxy
from tests.fixtures_operations import OpsHarness, no_process, open_harness, seed_script
from tests.fixtures_sandbox import SshEnv, fleet_links, make_ssh_env
from tests.strategies import call, run_property

HOST = "slw-slow"
NOGATE = "slw-nogate"  # the same machine, enrollment not required: no client-ID gate


@pytest.fixture(scope="module")
def slow_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    root = tmp_path_factory.mktemp("slow-fleet")
    with Sandbox(root, hosts=1, prefix="slw") as fleet:
        yield fleet


@pytest.fixture(scope="module")
def slow_proxy(slow_fleet: Sandbox) -> Iterator[DelayProxy]:
    host = slow_fleet.host("slw-01")
    with DelayProxy((host.address, host.port), 0.05) as proxy:
        yield proxy


@pytest.fixture
async def slow_ops(slow_fleet: Sandbox, slow_proxy: DelayProxy, tmp_path: Path,
                   nursery: trio.Nursery) -> Any:
    env: SshEnv = make_ssh_env(slow_fleet, tmp_path / "ssh")
    direct = fleet_links(slow_fleet, pin=True)["slw-01"]  # pinned: the proxy's port is new
    gated = attrs.evolve(direct, id=HOST, name=HOST, port=slow_proxy.port)
    env.links[HOST] = gated
    nogate = attrs.evolve(gated, id=NOGATE, name=NOGATE,
                          enrollment=attrs.evolve(gated.enrollment, required=False))
    env.links[NOGATE] = nogate
    settings = config.load(write_config(
        tmp_path,
        ssh={"keys_directory": env.keys_dir, "known_hosts_path": env.known_hosts,
             "default_key": "sandbox_ed25519", "connection_timeout": 10, "max_retries": 0},
        operations={"script_timeout": 60},
        security={"enrollment_required": "false"}))
    async with open_harness(settings, env, nursery) as harness:
        harness.db.write_sync(lambda c: insert_links_sync(c, [gated, nogate]))
        harness.db.write_sync(lambda c: c.execute("UPDATE machines SET enrolled = 1"))
        yield harness


@attrs.frozen
class Stopped:
    op_id: str
    marker: int
    flag: str


async def _one(ops: OpsHarness, target: str, stop_ms: int, marker: int,
               stopped: list[Stopped]) -> None:
    flag = f"/tmp/linkops-launch-{marker}"
    seed_script(ops.db, f"s{marker}", f"#!/bin/bash\n: > {flag}\nsleep {marker}\n")
    op_id = await ops.submit({"scripts": [f"s{marker}"], "targets": [target],
                              "require_enrollment": False})
    await trio.sleep(stop_ms / 1000)
    await ops.service.stop(op_id)
    assert await ops.service.wait(op_id) == "stopped"
    stopped.append(Stopped(op_id, marker, flag))


async def _check(ops: OpsHarness, stop: Stopped) -> str:
    """What the host shows now (≥ 5 s after the stop): no ``sleep <marker>`` left, and the
    task's status agrees with whether the script ever started (its flag file)."""
    assert await no_process(ops, HOST, str(stop.marker)), f"sleep {stop.marker} left running"
    task = (await ops.service.detail(stop.op_id))["logs"][0]
    started = (await ops.remote(HOST, f"test -e {stop.flag} && echo yes || echo no")).strip()
    if task["status"] == "skipped":
        assert started == "no", task  # "never started" must be true
        assert task["remote_killed"] is None
    else:
        assert task["status"] == "stopped", task
        assert task["remote_killed"] is True, task
    await ops.remote(HOST, f"rm -f {stop.flag}")
    return str(task["status"])


async def test_stop_during_launch_leaves_nothing_running(slow_ops: OpsHarness) -> None:
    markers = iter(range(7100, 7200))
    stopped: list[Stopped] = []

    @settings(max_examples=10, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow])
    @given(stop_ms=st.integers(0, 300), target=st.sampled_from([HOST, NOGATE]))
    @example(stop_ms=1500, target=NOGATE)  # after the launch: killed, confirmed
    @example(stop_ms=1500, target=HOST)
    def prop(stop_ms: int, target: str) -> None:
        call(_one, slow_ops, target, stop_ms, next(markers), stopped)

    await run_property(prop, timeout=600)
    # Checked once, 5 s after the last stop (longer after the earlier ones): each script
    # sleeps for thousands of seconds, so one that started late is still there to be found.
    await trio.sleep(5)
    with trio.fail_after(120):
        seen = [await _check(slow_ops, stop) for stop in stopped]
    # Which side of the launch each stop landed on depends on the machine's load (on an idle
    # one both occur within 0-300 ms); the explicit late examples make "stopped" likely.
    assert seen and set(seen) <= {"skipped", "stopped"}, seen
