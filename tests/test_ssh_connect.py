"""Connections against real sshd: keys, host-key policy, pins, ProxyJump, timeouts, loss."""

from __future__ import annotations

import os
import time
from pathlib import Path

import attrs
import pytest
import trio

from linkops.errors import ExecutionTimeoutError
from linkops.models import Link
from linkops.sandbox import Sandbox, Tarpit
from linkops.ssh import (
    HostKeyMismatchError,
    HostKeyUnknownError,
    SshAuthError,
    SshError,
    SshKeyError,
)
from linkops.ssh.keys import HostKeyPin
from tests.fixtures_sandbox import SshEnv, fleet_links, make_ssh_env

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


async def test_run_collects_stdout_stderr_exit_code(ssh_env: SshEnv) -> None:
    link = ssh_env.links["sbx-01"]
    manager = ssh_env.manager()
    with trio.fail_after(20):
        async with manager.connection(link, ssh_env.links) as conn:
            result = await conn.run("echo out; echo err >&2; exit 7")
            echoed = await conn.run("cat", stdin=b"hello\n")
    await manager.aclose()
    assert (result.exit_code, result.stdout, result.stderr) == (7, b"out\n", b"err\n")
    assert result.duration > 0
    assert echoed.stdout == b"hello\n"


async def test_sandbox_shell_is_lean(ssh_env: SshEnv) -> None:
    """The sandbox HOME keeps bash from reading root's ~/.bashrc (pyenv init)."""
    link = ssh_env.links["sbx-01"]
    manager = ssh_env.manager()
    with trio.fail_after(20):
        async with manager.connection(link, ssh_env.links) as conn:
            home = await conn.run("echo $HOME")
            best = min([(await conn.run("true")).duration for _ in range(5)])
    await manager.aclose()
    assert home.stdout.decode().strip().endswith("/hosts/sbx-01/home")
    # Generous bound (the machine is shared); test_sandbox compares against a pyenv shell.
    assert best < 0.25, f"`true` took {best:.3f} s: the target shell is not lean"


async def test_pool_reuses_a_healthy_connection(ssh_env: SshEnv) -> None:
    link = ssh_env.links["sbx-02"]
    manager = ssh_env.manager()
    with trio.fail_after(20):
        async with manager.connection(link, ssh_env.links) as first:
            pass
        async with manager.connection(link, ssh_env.links) as second:
            assert second is first
            assert (await second.run("echo again")).stdout == b"again\n"
        await first.aclose()  # broken on purpose: the pool must notice
        async with manager.connection(link, ssh_env.links) as third:
            assert third is not first
            assert (await third.run("true")).exit_code == 0
    assert manager.pooled_count() == 1
    await manager.aclose()
    assert manager.pooled_count() == 0


async def test_key_with_mode_644_is_refused_naming_the_file(ssh_env: SshEnv) -> None:
    key = ssh_env.keys_dir / "sandbox_ed25519"
    key.chmod(0o644)
    manager = ssh_env.manager()
    with trio.fail_after(20), pytest.raises(SshKeyError) as info:
        await manager.connect(ssh_env.links["sbx-01"], ssh_env.links)
    assert str(key) in info.value.message and "0644" in info.value.message
    assert info.value.code == "SSH_KEY_INVALID" and info.value.status == 503


async def test_key_ref_cannot_leave_the_keys_directory(ssh_env: SshEnv) -> None:
    link = ssh_env.links["sbx-01"]
    bad = attrs.evolve(link, ssh=attrs.evolve(link.ssh, keyRef="../known_hosts"))
    with pytest.raises(SshKeyError):
        await ssh_env.manager().connect(bad, ssh_env.links)


async def test_unauthorized_key_is_an_auth_error(ssh_env: SshEnv, tmp_path: Path) -> None:
    from linkops.sandbox import _keypair

    private, _public = _keypair()
    other = ssh_env.keys_dir / "other"
    other.write_bytes(private)
    other.chmod(0o600)
    link = ssh_env.links["sbx-01"]
    stranger = attrs.evolve(link, ssh=attrs.evolve(link.ssh, keyRef="other"))
    with trio.fail_after(20), pytest.raises(SshAuthError) as info:
        await ssh_env.manager(max_retries=3).connect(stranger, ssh_env.links)
    assert info.value.reason == "auth"
    assert "attempts" not in info.value.details  # permanent: not retried


async def test_unknown_host_accept_new_records_the_key(sandbox_fleet: Sandbox,
                                                       tmp_path: Path) -> None:
    env = make_ssh_env(sandbox_fleet, tmp_path, known=False)
    manager = env.manager(host_key_policy="accept-new")
    with trio.fail_after(20):
        conn = await manager.connect(env.links["sbx-02"], env.links)
        await conn.aclose()
    host = sandbox_fleet.host("sbx-02")
    assert env.known_hosts.read_text() == host.known_hosts_line() + "\n"
    # Recorded now: the same key is accepted again, also under strict.
    strict = env.manager(host_key_policy="strict")
    with trio.fail_after(20):
        await (await strict.connect(env.links["sbx-02"], env.links)).aclose()


async def test_unknown_host_strict_is_refused(sandbox_fleet: Sandbox, tmp_path: Path) -> None:
    env = make_ssh_env(sandbox_fleet, tmp_path, known=False)
    manager = env.manager(host_key_policy="strict")
    with trio.fail_after(20), pytest.raises(HostKeyUnknownError) as info:
        await manager.connect(env.links["sbx-03"], env.links)
    assert info.value.code == "HOST_KEY_UNKNOWN"
    assert env.known_hosts.read_text() == ""


async def test_pinned_key_accepted_and_wrong_pin_refused(sandbox_fleet: Sandbox,
                                                         tmp_path: Path) -> None:
    env = make_ssh_env(sandbox_fleet, tmp_path, known=False)
    pinned = fleet_links(sandbox_fleet, pin=True)
    manager = env.manager(host_key_policy="strict")
    with trio.fail_after(20):
        conn = await manager.connect(pinned["sbx-01"], pinned)
        assert (await conn.run("echo pinned")).stdout == b"pinned\n"
        await conn.aclose()
        # A fingerprint pin works the same way.
        line = sandbox_fleet.host("sbx-01").host_key_line
        by_fp = attrs.evolve(pinned["sbx-01"], ssh=attrs.evolve(
            pinned["sbx-01"].ssh, hostKey=HostKeyPin.parse(line).fingerprint))
        await (await manager.connect(by_fp, pinned)).aclose()
        # sbx-02's key pinned on sbx-01: refused, whatever known_hosts says.
        wrong = attrs.evolve(pinned["sbx-01"], ssh=attrs.evolve(
            pinned["sbx-01"].ssh, hostKey=sandbox_fleet.host("sbx-02").host_key_line))
        env.known_hosts.write_text(sandbox_fleet.known_hosts_text())
        with pytest.raises(HostKeyMismatchError) as info:
            await env.manager().connect(wrong, pinned)
    assert info.value.code == "HOST_KEY_MISMATCH"
    assert env.known_hosts.read_text() == sandbox_fleet.known_hosts_text()


async def test_changed_host_key_refused_before_authentication(private_fleet: Sandbox,
                                                              tmp_path: Path) -> None:
    env = make_ssh_env(private_fleet, tmp_path)  # records the current keys
    private_fleet.rotate_host_key("prv-02")
    host = private_fleet.host("prv-02")
    links = fleet_links(private_fleet)
    log_before = len(host.log_text())
    for policy in ("accept-new", "strict"):
        manager = env.manager(host_key_policy=policy, max_retries=2)
        with trio.fail_after(20), pytest.raises(HostKeyMismatchError) as info:
            await manager.connect(links["prv-02"], links)
        assert info.value.code == "HOST_KEY_MISMATCH" and info.value.status == 503
        assert "CHANGED" in info.value.message
    await trio.sleep(0.3)  # let sshd flush its log
    log = host.log_text()[log_before:]
    assert "Connection from 127.0.0.1" in log  # the connections did reach this server
    for marker in ("publickey", "Accepted", "Failed", "Postponed", "userauth", "Invalid user"):
        assert marker not in log, f"{marker!r} in sshd log: an authentication was attempted"
    # The key file was not touched: the old key is still the only one recorded.
    assert host.host_key_line not in env.known_hosts.read_text()


async def test_proxyjump_through_the_bastion(ssh_env: SshEnv) -> None:
    assert os.geteuid() == 0, "ProxyJump tests need root for network namespaces"
    inner = ssh_env.links["sbx-inner-01"]
    assert inner.ssh.proxyJump == "sbx-bastion"
    manager = ssh_env.manager(host_key_policy="strict")
    with trio.fail_after(30):
        conn = await manager.connect(inner, ssh_env.links)
        result = await conn.run("hostname -I; cat /etc/linkops/client_id")
        await conn.aclose()
    assert inner.host in result.stdout.decode()
    assert inner.enrollment.clientId in result.stdout.decode()
    # The inner host is not reachable without the bastion.
    direct = attrs.evolve(inner, ssh=attrs.evolve(inner.ssh, proxyJump=None))
    with trio.fail_after(30), pytest.raises(SshError) as info:
        await ssh_env.manager(max_retries=0, connection_timeout=3.0).connect(direct,
                                                                             ssh_env.links)
    assert info.value.reason in ("connect", "timeout")


async def test_proxyjump_checks_every_hops_host_key(ssh_env: SshEnv) -> None:
    assert os.geteuid() == 0, "ProxyJump tests need root for network namespaces"
    bastion = ssh_env.fleet.host("sbx-bastion")
    # Record a wrong key for the bastion only: the chain must stop at the first hop.
    lines = [ln for ln in ssh_env.fleet.known_hosts_text().splitlines()
             if not ln.startswith(f"{bastion.address} ")]
    lines.append(f"{bastion.address} {ssh_env.fleet.host('sbx-01').host_key_line}")
    ssh_env.known_hosts.write_text("\n".join(lines) + "\n")
    with trio.fail_after(30), pytest.raises(HostKeyMismatchError) as info:
        await ssh_env.manager().connect(ssh_env.links["sbx-inner-02"], ssh_env.links)
    assert info.value.details["hop"] == "sbx-bastion"
    assert info.value.details["target"] == "sbx-inner-02"


async def test_proxyjump_cycle_and_unknown_hop_are_refused(ssh_env: SshEnv) -> None:
    a = ssh_env.links["sbx-01"]
    looped = {"sbx-01": attrs.evolve(a, ssh=attrs.evolve(a.ssh, proxyJump="sbx-02")),
              "sbx-02": attrs.evolve(ssh_env.links["sbx-02"], ssh=attrs.evolve(
                  ssh_env.links["sbx-02"].ssh, proxyJump="sbx-01"))}
    with pytest.raises(SshError, match="loops"):
        await ssh_env.manager().connect(looped["sbx-01"], looped)
    orphan = attrs.evolve(a, ssh=attrs.evolve(a.ssh, proxyJump="nowhere"))
    with pytest.raises(SshError, match="nowhere"):
        await ssh_env.manager().connect(orphan, {"sbx-01": orphan})


async def test_tarpit_fails_within_the_connect_timeout(ssh_env: SshEnv) -> None:
    base = ssh_env.links["sbx-01"]
    with Tarpit() as tarpit:
        link: Link = attrs.evolve(base, port=tarpit.port)
        manager = ssh_env.manager(connection_timeout=1.0, max_retries=0)
        started = time.monotonic()
        with trio.fail_after(10), pytest.raises(SshError) as info:
            await manager.connect(link, {})
        elapsed = time.monotonic() - started
        assert info.value.reason == "timeout", info.value.message
        assert 0.9 <= elapsed < 2.5
        # With retries: every attempt times out, backoff 0.5 s + 1 s in between.
        manager = ssh_env.manager(connection_timeout=1.0, max_retries=2)
        started = time.monotonic()
        with trio.fail_after(15), pytest.raises(SshError) as info:
            await manager.connect(link, {})
        elapsed = time.monotonic() - started
        assert info.value.details["attempts"] == 3
        assert 4.4 <= elapsed < 7.0


async def test_cancelled_connect_returns_at_once(ssh_env: SshEnv) -> None:
    with Tarpit() as tarpit:
        link = attrs.evolve(ssh_env.links["sbx-01"], port=tarpit.port)
        manager = ssh_env.manager(connection_timeout=5.0, max_retries=0)
        started = time.monotonic()
        with trio.move_on_after(0.3) as scope:
            await manager.connect(link, {})
        assert scope.cancelled_caught
        assert time.monotonic() - started < 1.0


async def test_command_timeout_is_execution_timeout(ssh_env: SshEnv) -> None:
    manager = ssh_env.manager()
    with trio.fail_after(20):
        async with manager.connection(ssh_env.links["sbx-03"], ssh_env.links) as conn:
            with pytest.raises(ExecutionTimeoutError) as info:
                await conn.run("sleep 5", timeout=0.5)
            assert info.value.code == "EXECUTION_TIMEOUT"
            assert (await conn.run("echo still usable")).exit_code == 0
    await manager.aclose()


async def test_host_going_away_mid_session(private_fleet: Sandbox, tmp_path: Path) -> None:
    env = make_ssh_env(private_fleet, tmp_path)
    links = fleet_links(private_fleet)
    manager = env.manager()
    with trio.fail_after(30):
        conn = await manager.connect(links["prv-01"], links)
        stream = await conn.open_exec("echo started; sleep 30")
        assert await stream.receive() == ("stdout", b"started\n")
        private_fleet.stop_host("prv-01")
        assert await stream.receive() is None
        with pytest.raises(SshError) as info:
            await stream.wait_exit()
        assert info.value.reason == "closed"
        assert not conn.is_healthy()
        with pytest.raises(SshError):
            await conn.run("true")
        await stream.aclose()
        await conn.aclose()
        private_fleet.start_host("prv-01")
        # Back: a new connection works (known_hosts still matches the same host key).
        async with manager.connection(links["prv-01"], links) as again:
            assert (await again.run("echo back")).stdout == b"back\n"
    await manager.aclose()


async def test_silently_vanished_host_is_detected_by_keepalive(tmp_path: Path) -> None:
    """The network path disappears (no FIN, no RST): keepalives notice within seconds."""
    import subprocess

    assert os.geteuid() == 0, "needs root for network namespaces"
    with Sandbox(tmp_path / "fleet", hosts=0, netns_inner=1, prefix="gone") as fleet:
        env = make_ssh_env(fleet, tmp_path / "ssh")
        links = fleet_links(fleet)
        manager = env.manager(keepalive_interval=1)
        with trio.fail_after(30):
            conn = await manager.connect(links["gone-bastion"], links)
            stream = await conn.open_exec("echo started; sleep 60")
            assert await stream.receive() == ("stdout", b"started\n")
            subprocess.run(["ip", "link", "set", f"lk{fleet.tag}a0", "down"], check=True)
            started = time.monotonic()
            assert await stream.receive() is None
            with pytest.raises(SshError) as info:
                await stream.wait_exit()
            elapsed = time.monotonic() - started
            await stream.aclose()
            await conn.aclose()
        assert info.value.reason == "closed"
        assert elapsed < 8.0


async def test_reaper_closes_idle_pooled_connections(ssh_env: SshEnv) -> None:
    manager = ssh_env.manager()
    manager.idle_timeout = 0.2
    with trio.fail_after(20):
        async with manager.connection(ssh_env.links["sbx-01"], ssh_env.links) as conn:
            assert conn.is_healthy()
        assert manager.pooled_count() == 1
        async with trio.open_nursery() as nursery:
            await nursery.start(lambda task_status: manager.run(task_status=task_status,
                                                                interval=0.1))
            while manager.pooled_count():
                await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
    assert not conn.is_healthy()
    await manager.aclose()


async def test_three_hop_chain_over_loopback(ssh_env: SshEnv) -> None:
    """sbx-03 through sbx-02 through sbx-01: every hop tunnels through the previous one."""
    links = dict(ssh_env.links)
    links["sbx-02"] = attrs.evolve(links["sbx-02"], ssh=attrs.evolve(links["sbx-02"].ssh,
                                                                     proxyJump="sbx-01"))
    links["sbx-03"] = attrs.evolve(links["sbx-03"], ssh=attrs.evolve(links["sbx-03"].ssh,
                                                                     proxyJump="sbx-02"))
    manager = ssh_env.manager(host_key_policy="strict")
    with trio.fail_after(30):
        conn = await manager.connect(links["sbx-03"], links)
        result = await conn.run("echo $LINKOPS_SANDBOX_HOST")
        await conn.aclose()
    assert [h.link_id for h in conn.hops] == ["sbx-01", "sbx-02", "sbx-03"]
    assert result.stdout == b"sbx-03\n"


async def test_small_thread_limit_does_not_starve_streams(ssh_env: SshEnv) -> None:
    """Long-lived pumps do not hold the short-call limiter: 2 threads serve 6 streams."""
    manager = ssh_env.manager(max_threads=2)
    names = ["sbx-01", "sbx-02", "sbx-03"]
    outputs: list[bytes] = []

    async def user(i: int) -> None:
        link = ssh_env.links[names[i % 3]]
        async with manager.connection(link, ssh_env.links) as conn:
            async with await conn.open_exec(f"sleep 0.3; echo {i}") as stream:
                while (item := await stream.receive()) is not None:
                    outputs.append(item[1])
                assert await stream.wait_exit() == 0

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for i in range(6):
                nursery.start_soon(user, i)
    assert sorted(outputs) == [f"{i}\n".encode() for i in range(6)]
    await manager.aclose()
