"""Operations on the real sandbox fleet, through the service (no HTTP): execution, order,
skipping, concurrency measured on the hosts, injection, stop, timeout, bounded memory."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import pytest
import trio

from linkops.errors import ForbiddenError, ValidationError
from linkops.sandbox import Sandbox
from tests.fixtures_operations import OpsHarness, no_process, seed_links, seed_script

BASH = "#!/bin/bash\n"


async def test_runs_scripts_in_order_and_captures_everything(ops: OpsHarness) -> None:
    with trio.fail_after(60):
        seed_links(ops.db, ops.env, ["ops-01", "ops-02"])
        seed_script(ops.db, "first", BASH + 'echo "one $1"\necho "warn" >&2\nexit 0\n',
                    ["--name=world"])
        seed_script(ops.db, "second", BASH + "printf 'h\\xc3\\xa9llo'\nexit 0\n")
        op_id, view = await ops.run({"scripts": ["first", "second"],
                                     "targets": ["ops-01", "ops-02"],
                                     "flags": {"first": ["--name"]}})
        assert op_id.startswith("OP-") and int(op_id[3:]) > 10000
        assert view["status"] == "success"
        assert view["triggered_by"] == "tester"
        assert view["result"]["success"] == 2 and view["result"]["failed"] == 0
        assert len(view["logs"]) == 4
        for log in view["logs"]:
            assert log["status"] == "success" and log["exit_code"] == 0
            assert log["duration"] is not None and log["duration"] >= 0
            assert log["started"] <= log["ended"]
        first = [g for g in view["logs"] if g["script"] == "first"]
        assert all(g["stdout"] == "one --name=world\n" and g["stderr"] == "warn\n"
                   for g in first)
        second = [g for g in view["logs"] if g["script"] == "second"]
        assert all(g["stdout"] == "héllo" for g in second)
        # first ran before second on each host
        for target in ("ops-01", "ops-02"):
            a, b = [g for g in view["logs"] if g["target"] == target]
            assert a["script"] == "first" and a["ended"] <= b["started"]


async def test_failure_skips_rest_and_mixed_results_are_partial(ops: OpsHarness) -> None:
    with trio.fail_after(60):
        seed_links(ops.db, ops.env, ["ops-01", "ops-02", "ops-03"])
        seed_script(ops.db, "maybe",
                    BASH + '[ "$LINKOPS_SANDBOX_HOST" = ops-02 ] && exit 7\necho ok\n')
        seed_script(ops.db, "after", BASH + "echo after\n")
        _, view = await ops.run({"scripts": ["maybe", "after"],
                                 "targets": ["ops-01", "ops-02", "ops-03"]})
        assert view["status"] == "partial"
        by = {(g["target"], g["script"]): g for g in view["logs"]}
        assert by[("ops-02", "maybe")]["status"] == "failed"
        assert by[("ops-02", "maybe")]["exit_code"] == 7
        assert by[("ops-02", "after")]["status"] == "skipped"
        assert by[("ops-01", "after")]["status"] == "success"
        assert view["result"] == {**view["result"], "success": 2, "failed": 1}
        _, all_bad = await ops.run({"scripts": ["maybe"], "targets": ["ops-02"]})
        assert all_bad["status"] == "failed"


async def test_flag_values_cannot_inject_shell(ops: OpsHarness, tmp_path: Path) -> None:
    canary = tmp_path / f"pwned-{secrets.token_hex(4)}"
    hostile = [f"x; touch {canary}", f"$(touch {canary})", f"`touch {canary}`",
               f"' ; touch {canary}; '", f'" && touch {canary} #']
    with trio.fail_after(60):
        seed_links(ops.db, ops.env, ["ops-04"])
        seed_script(ops.db, "echoargs", BASH + 'for a in "$@"; do printf "<%s>\\n" "$a"; done\n',
                    [f"--v{i}=REQUIRED" for i in range(len(hostile))])
        _, view = await ops.run({
            "scripts": ["echoargs"], "targets": ["ops-04"],
            "flags": {"echoargs": [f"--v{i}={v}" for i, v in enumerate(hostile)]}})
        assert view["status"] == "success"
        expected = "".join(f"<--v{i}={v}>\n" for i, v in enumerate(hostile))
        assert view["logs"][0]["stdout"] == expected
        assert not canary.exists()


async def test_non_bash_script_refused_at_run_time(ops: OpsHarness) -> None:
    seed_links(ops.db, ops.env, ["ops-01"])
    seed_script(ops.db, "py", "#!/usr/bin/python3\nprint('hi')\n")
    with pytest.raises(ValidationError) as info:
        await ops.submit({"scripts": ["py"], "targets": ["ops-01"]})
    assert info.value.code == "NON_BASH_SCRIPT"
    assert info.value.details["scripts"] == ["py"]
    assert await ops.db.fetchone("SELECT 1 FROM operations") is None


async def test_unenrolled_targets_rejected_listing_all(ops: OpsHarness) -> None:
    seed_links(ops.db, ops.env, ["ops-01"])
    seed_links(ops.db, ops.env, ["ops-02", "ops-03"], enrolled=False)
    seed_script(ops.db, "ok", BASH + "true\n")
    with pytest.raises(ForbiddenError) as info:
        await ops.submit({"scripts": ["ok"], "targets": ["ops-01", "ops-02", "ops-03"],
                          "require_enrollment": False})
    assert info.value.code == "ENROLLMENT_REQUIRED"
    assert info.value.details["targets"] == ["ops-02", "ops-03"]


async def test_client_id_rechecked_over_the_connection(ops: OpsHarness) -> None:
    """The DB says enrolled, but the host's file does not match: the task fails."""
    with trio.fail_after(60):
        seed_links(ops.db, ops.env, ["ops-05"])
        await ops.db.execute("UPDATE machines SET client_id = 'LINKOPS-not-this-one' "
                             "WHERE id = 'ops-05'")
        seed_script(ops.db, "ok", BASH + "echo ran\n")
        _, view = await ops.run({"scripts": ["ok"],
                                 "targets": ["ops-05"]})
        assert view["status"] == "failed"
        assert view["logs"][0]["status"] == "failed"
        assert "CLIENT_ID_MISMATCH" in view["logs"][0]["error"]
        assert view["logs"][0]["stdout"] == ""
        row = await ops.db.fetchone("SELECT enrolled FROM machines WHERE id = 'ops-05'")
        assert row is not None and row[0] == 0


async def test_stop_kills_remote_process_group(ops: OpsHarness) -> None:
    marker = f"600.{secrets.randbelow(10**6)}"
    with trio.fail_after(60):
        seed_links(ops.db, ops.env, ["ops-06", "ops-07"])
        # A child process too: the whole group must go, not just bash.
        seed_script(ops.db, "long", BASH + f"echo started\nsleep {marker} &\nsleep {marker}\n")
        seed_script(ops.db, "never", BASH + "echo never\n")
        op_id = await ops.submit({"scripts": ["long", "never"],
                                  "targets": ["ops-06", "ops-07"]})
        hub = ops.service.hub(op_id)
        assert hub is not None
        while sum(1 for e in hub.subscribe(0).backlog
                  if e.kind == "output" and "started" in e.data["data"]) < 2:
            await trio.sleep(0.05)
        assert not await no_process(ops, "ops-06", marker)
        running = await ops.service.detail(op_id, full_output=True)
        assert running["status"] == "running"
        assert [g["stdout"] for g in running["logs"] if g["script"] == "long"] == ["started\n"] * 2
        t0 = time.monotonic()
        await ops.service.stop(op_id)
        status = await ops.service.wait(op_id)
        assert time.monotonic() - t0 < 5
        assert status == "stopped"
        view = await ops.service.detail(op_id, full_output=True)
        for log in view["logs"]:
            if log["script"] == "long":
                assert log["status"] == "stopped", repr(log)
                assert log["exit_code"] is None
                assert log["remote_killed"] is True
            else:
                assert log["status"] == "skipped"
        for host in ("ops-06", "ops-07"):
            assert await no_process(ops, host, marker)


async def test_twenty_hosts_concurrency_five_measured_on_hosts(ops: OpsHarness,
                                                               tmp_path: Path) -> None:
    """Every host records start/end under flock in one shared file (all sandbox hosts are on
    this machine); the running count read from that file never exceeds 5."""
    shared = tmp_path / "inflight"
    shared.mkdir()
    script = BASH + """d="${1#--dir=}"
exec 9>>"$d/lock"
flock 9; n=$(( $(cat "$d/count" 2>/dev/null || echo 0) + 1 )); echo $n > "$d/count"
echo "start $n" >> "$d/log"; flock -u 9
sleep 0.3
flock 9; n=$(( $(cat "$d/count") - 1 )); echo $n > "$d/count"; echo "end $n" >> "$d/log"
flock -u 9
"""
    with trio.fail_after(120):
        hosts = seed_links(ops.db, ops.env)
        assert len(hosts) == 20
        seed_script(ops.db, "count", script, ["--dir=REQUIRED"])
        _, view = await ops.run({"scripts": ["count"], "targets": hosts, "concurrency": 5,
                                 "flags": {"count": [f"--dir={shared}"]}})
        assert view["status"] == "success", view
        lines = (shared / "log").read_text().split()
        starts = [int(n) for kind, n in zip(lines[::2], lines[1::2], strict=True)
                  if kind == "start"]
        assert len(starts) == 20
        assert max(starts) <= 5
        assert max(starts) >= 2  # they really ran in parallel
        assert (shared / "count").read_text().strip() == "0"


async def test_stop_escalates_to_kill_when_term_is_ignored(ops: OpsHarness) -> None:
    """The script (and its child, which inherits the ignored disposition) ignores SIGTERM:
    after the grace period the group gets SIGKILL, and the kill is confirmed."""
    marker = f"600.{secrets.randbelow(10**6)}"
    with trio.fail_after(60):
        seed_links(ops.db, ops.env, ["ops-03"])
        seed_script(ops.db, "stubborn", BASH + f"trap '' TERM\necho armed\nsleep {marker}\n")
        op_id = await ops.submit({"scripts": ["stubborn"], "targets": ["ops-03"]})
        hub = ops.service.hub(op_id)
        assert hub is not None
        while not any(e.kind == "output" for e in hub.subscribe(0).backlog):
            await trio.sleep(0.05)
        t0 = time.monotonic()
        await ops.service.stop(op_id)
        assert await ops.service.wait(op_id) == "stopped"
        elapsed = time.monotonic() - t0
        assert 1.5 <= elapsed < 6, elapsed  # TERM ignored: the grace period passed, then KILL
        log = (await ops.service.detail(op_id, full_output=True))["logs"][0]
        assert log["status"] == "stopped" and log["remote_killed"] is True
        assert await no_process(ops, "ops-03", marker)


async def test_background_jobs_end_with_the_script(ops: OpsHarness) -> None:
    """A background job that keeps stdout open does not hold the task: when the script exits,
    the rest of its process group is ended and the task succeeds at once."""
    marker = f"600.{secrets.randbelow(10**6)}"
    with trio.fail_after(30):
        seed_links(ops.db, ops.env, ["ops-02"])
        seed_script(ops.db, "bg", BASH + f"sleep {marker} &\necho spawned\nexit 0\n")
        _, view = await ops.run({"scripts": ["bg"], "targets": ["ops-02"]})
        log = view["logs"][0]
        assert log["status"] == "success" and log["exit_code"] == 0
        assert log["stdout"] == "spawned\n" and log["duration"] < 3
        assert await no_process(ops, "ops-02", marker)


async def test_host_lost_mid_script_fails_the_task(ops: OpsHarness, ops_fleet: Sandbox) -> None:
    """The host's sshd (and its sessions) die while the script runs: the task fails with the
    SSH error, the other host is unaffected, and the operation ends partial — promptly."""
    with trio.fail_after(60):
        seed_links(ops.db, ops.env, ["ops-18", "ops-17"])
        seed_script(ops.db, "nap", BASH + 'echo up\nsleep 3\necho "done $LINKOPS_SANDBOX_HOST"\n')
        op_id = await ops.submit({"scripts": ["nap"], "targets": ["ops-18", "ops-17"]})
        hub = ops.service.hub(op_id)
        assert hub is not None
        while sum(e.kind == "output" for e in hub.subscribe(0).backlog) < 2:
            await trio.sleep(0.05)
        try:
            await trio.to_thread.run_sync(ops_fleet.stop_host, "ops-18")
            status = await ops.service.wait(op_id)
        finally:
            await trio.to_thread.run_sync(ops_fleet.start_host, "ops-18")
        assert status == "partial"
        by = {g["target"]: g for g in (await ops.service.detail(op_id, full_output=True))["logs"]}
        assert by["ops-17"]["status"] == "success"
        lost = by["ops-18"]
        assert lost["status"] == "failed" and lost["stdout"].startswith("up\n")
        assert lost["error"], lost
