"""The hardened SSH boundary: one exception mapping, deadlines, per-link shares, shutdown —
against real sshd (the healthy side) and the hostile paramiko server (the faults)."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
import trio

from linkops.sandbox import Sandbox
from linkops.ssh.boundary import Lane, LinkLimiter, map_ssh_errors
from linkops.ssh.bridge import SshManager
from linkops.ssh.enrollment import check_client_id
from linkops.ssh.errors import SshError
from tests.fixtures_core import require_root
from tests.fixtures_hostile import HostileFactory
from tests.fixtures_sandbox import SshEnv, make_ssh_env

DEADLINE = 2.0


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _settle(threads: int, fds: int, *, slack: int = 2) -> None:
    """Wait (bounded by the caller) until threads and descriptors are back near a baseline."""
    while threading.active_count() > threads + slack or _fds() > fds + slack:
        await trio.sleep(0.1)


def _manager(ssh_env: SshEnv, **overrides: object) -> SshManager:
    values: dict[str, object] = {"connection_timeout": DEADLINE, "max_retries": 0,
                                 "max_threads": 12, "max_per_link": 3}
    values.update(overrides)
    return ssh_env.manager(**values)


def test_every_exception_is_mapped_to_ssh_error() -> None:
    for raised, reason in [(paramiko.SSHException("Channel is not open"), "closed"),
                           (EOFError(), "closed"), (TimeoutError("timed out"), "timeout"),
                           (ConnectionResetError("reset by peer"), "connect"),
                           (AttributeError("'NoneType' object has no attribute 'send'"),
                            "connect")]:
        with pytest.raises(SshError) as caught, map_ssh_errors("web-1", "a write"):
            raise raised
        assert caught.value.reason == reason
        assert caught.value.details["target"] == "web-1"
        assert caught.value.__cause__ is raised


async def test_lane_deadline_aborts_only_started_calls() -> None:
    aborted: list[str] = []
    gate = threading.Event()
    limiter = LinkLimiter(trio.CapacityLimiter(1), trio.CapacityLimiter(4))
    lane = Lane("mute", limiter, 0.5, lambda: aborted.append("abort"))
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            errors: list[SshError] = []

            async def one() -> None:
                try:
                    await lane.call(gate.wait, 30, what="an exec request")
                except SshError as exc:
                    errors.append(exc)

            nursery.start_soon(one)
            await trio.sleep(0.1)
            nursery.start_soon(one)  # queued behind the first: "busy", aborts nothing
        gate.set()
    assert sorted(e.message.split(" ")[1] for e in errors) == ["did", "is"]
    assert all(e.reason == "timeout" for e in errors)
    assert aborted == ["abort"]
    # The abandoned thread returns (the gate opened) and gives both slots back.
    with trio.fail_after(5):
        while limiter.link.borrowed_tokens or limiter.shared.borrowed_tokens:
            await trio.sleep(0.02)


async def test_resize_after_the_shell_exited_is_an_ssh_error(ssh_env: SshEnv) -> None:
    manager = _manager(ssh_env)
    try:
        with trio.fail_after(30):
            conn = await manager.connect(ssh_env.links["sbx-01"], ssh_env.links)
            shell = await conn.open_shell(cols=80, rows=24)
            await shell.send(b"exit 0\n")
            while await shell.receive_some():
                pass
            assert await shell.wait_exit() == 0
            # The channel's CLOSE may trail its EOF and exit status by a moment; the shell has
            # ended all the same, so a window-change and keystrokes are refused at once, alike
            # (CI once saw the resize refused and the keystrokes still accepted in that gap).
            with pytest.raises(SshError) as caught:
                await shell.resize(100, 30)
            assert caught.value.reason == "closed"
            with pytest.raises(SshError) as caught:
                await shell.send(b"echo too late\n")
            assert caught.value.reason == "closed"
            await shell.aclose()
            await conn.aclose()
    finally:
        await manager.aclose()


async def test_mute_host_answers_within_its_deadline_and_starves_nobody(
        ssh_env: SshEnv, hostile: HostileFactory) -> None:
    """Many requests to a host that never answers a channel request, while a healthy link
    keeps running commands: every mute request fails within its deadline (plus queueing of
    its own link), the healthy link never waits for them, and nothing is left behind."""
    mute = hostile("mute")
    mute_link = mute.link("mute-1")
    links = {**ssh_env.links, mute_link.id: mute_link}
    threads, fds = threading.active_count(), _fds()
    manager = _manager(ssh_env)
    failures: list[tuple[float, SshError]] = []
    healthy_times: list[float] = []
    try:
        with trio.fail_after(60):
            async def mute_one(i: int) -> None:
                t0 = trio.current_time()
                try:
                    if i % 2:
                        async with manager.connection(mute_link, links) as conn:
                            await conn.run("true")
                    else:
                        conn = await manager.connect(mute_link, links)
                        try:
                            await conn.open_shell()
                        finally:
                            await conn.aclose()
                except SshError as exc:
                    failures.append((trio.current_time() - t0, exc))

            async def healthy() -> None:
                async with manager.connection(ssh_env.links["sbx-02"], links) as conn:
                    for _ in range(10):
                        t0 = trio.current_time()
                        result = await conn.run("echo healthy")
                        assert result.stdout == b"healthy\n"
                        healthy_times.append(trio.current_time() - t0)

            async with trio.open_nursery() as nursery:
                for i in range(24):
                    nursery.start_soon(mute_one, i)
                await trio.sleep(0.3)  # the mute link holds all of its share now
                nursery.start_soon(healthy)
        assert len(failures) == 24
        assert all(exc.reason == "timeout" for _, exc in failures), failures
        # Connect (handshake answers) + one request deadline; queueing is inside the deadline.
        assert max(t for t, _ in failures) < 3 * DEADLINE + 2, failures
        assert len(healthy_times) == 10 and max(healthy_times) < DEADLINE, healthy_times
    finally:
        await manager.aclose()
    mute.close()  # its own parked threads are not ours to count
    # trio's idle worker threads linger up to 10 s before they exit.
    with trio.fail_after(30):
        await _settle(threads, fds)


async def test_client_id_read_answers_but_pty_never_does(
        ssh_env: SshEnv, hostile: HostileFactory) -> None:
    host = hostile("mute_pty")
    link = host.link("mute-pty")
    manager = _manager(ssh_env)
    try:
        with trio.fail_after(30):
            conn = await manager.connect(link, {link.id: link})
            result = await check_client_id(conn, link)
            assert result.enrolled, result
            t0 = trio.current_time()
            with pytest.raises(SshError) as caught:
                await conn.open_shell()
            assert caught.value.reason == "timeout"
            assert trio.current_time() - t0 < DEADLINE + 1.5
            assert not conn.is_healthy()  # closed: its other waiters woke up too
            await conn.aclose()
    finally:
        await manager.aclose()


async def test_a_dropped_connection_ends_the_stream_with_an_ssh_error(
        ssh_env: SshEnv, hostile: HostileFactory) -> None:
    host = hostile("drop")
    link = host.link("dropper")
    manager = _manager(ssh_env)
    try:
        with trio.fail_after(30):
            conn = await manager.connect(link, {link.id: link})
            stream = await conn.open_exec("anything")
            seen = b""
            while (item := await stream.receive()) is not None:
                seen += item[1]
            assert seen == b"partial output\n"
            with pytest.raises(SshError) as caught:
                await stream.wait_exit()
            assert caught.value.reason == "closed"
            await stream.aclose()
            await conn.aclose()
    finally:
        await manager.aclose()


async def test_manager_aclose_closes_borrowed_healthy_connections(ssh_env: SshEnv) -> None:
    manager = _manager(ssh_env)
    with trio.fail_after(30):
        async with manager.connection(ssh_env.links["sbx-01"], ssh_env.links) as conn:
            owned = await manager.connect(ssh_env.links["sbx-03"], ssh_env.links)
            assert conn.is_healthy() and owned.is_healthy()
            await manager.aclose()
            assert not conn.is_healthy() and not owned.is_healthy()
            while conn.transport.is_active() or owned.transport.is_active():
                await trio.sleep(0.05)
            with pytest.raises(SshError):
                await conn.run("true")
        await owned.aclose()


@pytest.fixture(scope="module")
def netns_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A real sshd in a network namespace whose link this module may take down."""
    require_root("a network namespace whose veth is set down")
    with Sandbox(tmp_path_factory.mktemp("half-open"), hosts=0, netns_inner=1,
                 prefix="hlf") as fleet:
        yield fleet


async def test_half_open_connection_is_detected_and_bounded(netns_host: Sandbox,
                                                            tmp_path: Path) -> None:
    """The link to a connected host goes down (no FIN, no RST: half-open). A new request
    fails at its deadline, the open shell ends with an error once the keepalives go
    unanswered, and nothing waits longer than that."""
    env = make_ssh_env(netns_host, tmp_path / "ssh")
    manager = env.manager(connection_timeout=DEADLINE, keepalive_interval=1, max_retries=0)
    link = env.links["hlf-bastion"]
    veth = f"lk{netns_host.tag}a0"  # the host's veth in the root namespace
    try:
        with trio.fail_after(30):
            conn = await manager.connect(link, env.links)
            shell = await conn.open_shell()
            subprocess.run(["ip", "link", "set", veth, "down"], check=True)
            t0 = trio.current_time()
            with pytest.raises(SshError) as caught:
                await conn.run("true")
            assert caught.value.reason == "timeout"
            assert trio.current_time() - t0 < DEADLINE + 1.5
            # The shell's connection is gone too (closed on that deadline): it ends.
            while await shell.receive_some():
                pass
            await shell.aclose()
            await conn.aclose()
            # And a fresh connect fails within its own deadline.
            t0 = trio.current_time()
            with pytest.raises(SshError):
                await manager.connect(link, env.links)
            assert trio.current_time() - t0 < DEADLINE + 1.5
    finally:
        subprocess.run(["ip", "link", "set", veth, "up"], check=False)
        await manager.aclose()
