"""Enrollment against real sshd: the client ID file read over SSH, results stored in SQLite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
import trio

from linkops.db import Database
from linkops.errors import NotFoundError
from linkops.models import Link
from linkops.sandbox import Sandbox, Tarpit
from linkops.ssh.enrollment import EnrollmentService, verify_link
from tests.fixtures_sandbox import SshEnv, fleet_links, insert_machines, make_ssh_env


@pytest.fixture
def env(private_fleet: Sandbox, tmp_path: Path) -> Iterator[SshEnv]:
    yield make_ssh_env(private_fleet, tmp_path)
    # Leave the module's fleet as we found it.
    for host in private_fleet.hosts.values():
        private_fleet.write_client_id(host.name, (host.client_id + "\n").encode())


async def _verify(env: SshEnv, link: Link, **settings: object):  # type: ignore[no-untyped-def]
    manager = env.manager(**settings)
    try:
        with trio.fail_after(30):
            return await verify_link(manager, link, env.links, timeout=10)
    finally:
        await manager.aclose()


@pytest.mark.parametrize("content", [
    "{id}", "{id}\n", "{id}\r\n", "\ufeff{id}\r\n", "  {id}\t\n\n", "\ufeff  {id}  ",
])
async def test_enrolled_when_the_file_matches(env: SshEnv, content: str) -> None:
    host = env.fleet.host("prv-01")
    env.fleet.write_client_id("prv-01", content.format(id=host.client_id).encode())
    result = await _verify(env, env.links["prv-01"])
    assert (result.enrolled, result.client_id_found, result.client_id_matches) == (True,) * 3
    assert result.error is None and result.reason is None
    assert result.to_dict()["verified_at"].endswith("Z")
    assert set(result.to_dict()) >= {"enrolled", "client_id_found", "client_id_matches",
                                     "error", "verified_at"}


@pytest.mark.parametrize("content", [
    "LINKOPS-00000000-0000-0000-0000-000000000000\n", "{id}x", "x{id}", "{id} extra",
    "{lower}", "", "\n", "{id}\n" * 20,
])
async def test_mismatch_is_found_but_not_enrolled(env: SshEnv, content: str) -> None:
    host = env.fleet.host("prv-01")
    env.fleet.write_client_id("prv-01", content.format(
        id=host.client_id, lower=host.client_id.lower()).encode())
    result = await _verify(env, env.links["prv-01"])
    assert (result.enrolled, result.client_id_found, result.client_id_matches) == (
        False, True, False)
    assert result.reason == "mismatch" and result.error


async def test_missing_file(env: SshEnv) -> None:
    env.fleet.write_client_id("prv-01", None)
    result = await _verify(env, env.links["prv-01"])
    assert (result.enrolled, result.client_id_found, result.reason) == (False, False, "missing")
    assert "not found" in (result.error or "")


async def test_unreadable_file(env: SshEnv) -> None:
    env.fleet.make_client_id_unreadable("prv-01")
    result = await _verify(env, env.links["prv-01"])
    assert (result.enrolled, result.client_id_found, result.reason) == (
        False, False, "unreadable")
    assert "Is a directory" in (result.error or "")


async def test_path_cannot_inject_shell(env: SshEnv, tmp_path: Path) -> None:
    pwned = tmp_path / "pwned"
    link = env.links["prv-01"]
    evil = f"/nonexistent; touch {pwned}; echo $(touch {pwned}) `touch {pwned}`"
    result = await _verify(env, attrs.evolve(link, enrollment=attrs.evolve(
        link.enrollment, clientIdPath=evil)))
    assert result.reason == "missing"
    assert not pwned.exists()


async def test_dash_path_is_a_path_not_an_option(env: SshEnv) -> None:
    link = env.links["prv-01"]
    result = await _verify(env, attrs.evolve(link, enrollment=attrs.evolve(
        link.enrollment, clientIdPath="--version")))
    assert result.reason == "missing"


async def test_connection_failures_carry_their_reason(env: SshEnv) -> None:
    link = env.links["prv-02"]
    wrong_pin = attrs.evolve(link, ssh=attrs.evolve(
        link.ssh, hostKey=env.fleet.host("prv-01").host_key_line))
    result = await _verify(env, wrong_pin)
    assert (result.enrolled, result.reason) == (False, "host_key")
    assert "HOST_KEY_MISMATCH" not in (result.error or "") and "pins" in (result.error or "")

    (env.keys_dir / "sandbox_ed25519").chmod(0o640)
    result = await _verify(env, link)
    assert (result.enrolled, result.reason) == (False, "key")
    assert str(env.keys_dir / "sandbox_ed25519") in (result.error or "")
    (env.keys_dir / "sandbox_ed25519").chmod(0o600)

    with Tarpit() as tarpit:
        result = await _verify(env, attrs.evolve(link, port=tarpit.port),
                               connection_timeout=0.5, max_retries=0)
    assert (result.enrolled, result.reason) == (False, "timeout")

    other = attrs.evolve(link, user="nobody")
    result = await _verify(env, other)
    assert (result.enrolled, result.reason) == (False, "auth")


async def test_service_verifies_many_concurrently_and_stores(
        env: SshEnv, tmp_path: Path) -> None:
    db = Database(tmp_path / "linkops.db")
    links = fleet_links(env.fleet)
    insert_machines(db, links.values())
    env.fleet.write_client_id("prv-02", b"LINKOPS-not-this-one\n")
    manager = env.manager()
    service = EnrollmentService(db, manager, concurrency=2)
    with trio.fail_after(30):
        results = await service.verify_many()
        with pytest.raises(NotFoundError) as info:
            await service.verify_many(["prv-01", "ghost"])
    assert info.value.details["targets"] == ["ghost"]
    assert [r.target for r in results] == ["prv-01", "prv-02"]
    rows = {r["id"]: r for r in db.read_sync(
        lambda c: c.execute("SELECT * FROM machines").fetchall())}
    assert rows["prv-01"]["enrolled"] == 1 and rows["prv-01"]["enrollment_error"] is None
    assert rows["prv-02"]["enrolled"] == 0
    assert "does not match" in rows["prv-02"]["enrollment_error"]
    assert rows["prv-01"]["enrollment_verified_at"] == results[0].verified_at
    # Fixed: verify one again and the row follows.
    env.fleet.write_client_id("prv-02", env.fleet.host("prv-02").client_id.encode())
    with trio.fail_after(30):
        again = await service.verify("prv-02")
    assert again.enrolled
    row = db.read_sync(lambda c: c.execute(
        "SELECT enrolled, enrollment_error FROM machines WHERE id='prv-02'").fetchone())
    assert (row["enrolled"], row["enrollment_error"]) == (1, None)
    await manager.aclose()
    db.close()


async def test_inner_host_behind_bastion_at_the_default_path(ssh_env: SshEnv) -> None:
    assert os.geteuid() == 0, "network-namespace hosts need root"
    inner = ssh_env.links["sbx-inner-02"]
    assert inner.enrollment.clientIdPath == "/etc/linkops/client_id"
    manager = ssh_env.manager()
    with trio.fail_after(30):
        result = await verify_link(manager, inner, ssh_env.links)
    await manager.aclose()
    assert result.enrolled, result.error
