"""The health monitor against real sshd: online/offline, latency, timestamps, the loop."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import attrs
import pytest
import trio

from linkops.config import HealthSettings
from linkops.db import Database
from linkops.errors import NotFoundError
from linkops.sandbox import Sandbox, Tarpit, free_port
from linkops.ssh.health import HealthMonitor
from tests.fixtures_sandbox import fleet_links, insert_machines, make_ssh_env


def _rows(db: Database) -> dict[str, sqlite3.Row]:
    return {r["id"]: r for r in db.read_sync(
        lambda c: c.execute("SELECT * FROM machines").fetchall())}


async def test_check_now_sets_online_and_offline(private_fleet: Sandbox, tmp_path: Path) -> None:
    env = make_ssh_env(private_fleet, tmp_path)
    db = Database(tmp_path / "linkops.db")
    links = fleet_links(private_fleet)
    refused = attrs.evolve(links["prv-02"], id="refused", port=free_port())
    with Tarpit() as tarpit:
        silent = attrs.evolve(links["prv-02"], id="silent", port=tarpit.port)
        insert_machines(db, [*links.values(), refused, silent])
        manager = env.manager(connection_timeout=0.5, max_retries=0)
        monitor = HealthMonitor(db, manager, HealthSettings(check_timeout=3.0, concurrency=4))
        with trio.fail_after(30):
            results = {r.target: r for r in await monitor.check_now()}
    rows = _rows(db)
    for name in ("prv-01", "prv-02"):
        assert results[name].online, results[name].error
        row = rows[name]
        assert (row["status"], row["reachable"], row["health_error"]) == ("online", 1, None)
        assert 0 <= row["latency_ms"] < 1000
        assert row["last_seen"] == row["last_check"] == results[name].checked_at
    for name, reason in (("refused", "connect"), ("silent", "timeout")):
        assert not results[name].online and results[name].reason == reason
        row = rows[name]
        assert (row["status"], row["reachable"], row["latency_ms"]) == ("offline", 0, None)
        assert row["last_seen"] is None and row["last_check"] == results[name].checked_at
        assert row["health_error"]
    with pytest.raises(NotFoundError):
        await monitor.check_now(["ghost"])
    await manager.aclose()
    db.close()


async def test_offline_keeps_last_seen(private_fleet: Sandbox, tmp_path: Path) -> None:
    env = make_ssh_env(private_fleet, tmp_path)
    db = Database(tmp_path / "linkops.db")
    insert_machines(db, fleet_links(private_fleet).values())
    manager = env.manager(connection_timeout=2.0, max_retries=0)
    monitor = HealthMonitor(db, manager, HealthSettings(check_timeout=5.0))
    with trio.fail_after(30):
        await monitor.check_now(["prv-01"])
        seen = _rows(db)["prv-01"]["last_seen"]
        assert seen
        private_fleet.stop_host("prv-01")
        try:
            [down] = await monitor.check_now(["prv-01"])
        finally:
            private_fleet.start_host("prv-01")
        row = _rows(db)["prv-01"]
        assert not down.online and row["status"] == "offline" and row["reachable"] == 0
        assert row["last_seen"] == seen and row["last_check"] > seen
        [up] = await monitor.check_now(["prv-01"])
    row = _rows(db)["prv-01"]
    assert up.online and row["status"] == "online" and row["last_seen"] > seen
    await manager.aclose()
    db.close()


async def test_run_checks_every_interval_until_cancelled(private_fleet: Sandbox,
                                                         tmp_path: Path) -> None:
    env = make_ssh_env(private_fleet, tmp_path)
    db = Database(tmp_path / "linkops.db")
    insert_machines(db, fleet_links(private_fleet).values())
    manager = env.manager()
    monitor = HealthMonitor(db, manager, HealthSettings(check_interval_minutes=0.005))
    checks: list[str] = []
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(monitor.run)
            while monitor.rounds < 3:
                await trio.sleep(0.05)
                row = _rows(db)["prv-02"]
                if row["last_check"] and (not checks or checks[-1] != row["last_check"]):
                    checks.append(row["last_check"])
            nursery.cancel_scope.cancel()
    assert len(checks) >= 2 and checks == sorted(checks)
    assert _rows(db)["prv-02"]["status"] == "online"
    await manager.aclose()
    db.close()
