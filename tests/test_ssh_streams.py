"""Streaming channels on real sshd: concurrency, backpressure, stdin, PTY shells, cleanup."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import paramiko
import pytest
import trio

from linkops.ssh import ExecStream, SshConnection
from linkops.ssh.bridge import SshManager
from tests.fixtures_sandbox import SshEnv


async def _drain(stream: ExecStream) -> dict[str, bytes]:
    out = {"stdout": b"", "stderr": b""}
    while (item := await stream.receive()) is not None:
        out[item[0]] += item[1]
    return out


async def _conn(env: SshEnv, name: str = "sbx-01") -> tuple[SshManager, SshConnection]:
    manager = env.manager()
    return manager, await manager.connect(env.links[name], env.links)


async def test_stdout_and_stderr_flood_concurrently_without_deadlock(ssh_env: SshEnv) -> None:
    _manager, conn = await _conn(ssh_env)
    with trio.fail_after(30):
        # 3 MB on each stream at once: more than paramiko's 2 MB window per channel.
        result = await conn.run("head -c 3000000 /dev/zero >&2 & head -c 3000000 /dev/zero; "
                                "wait", max_output=10_000_000)
    await conn.aclose()
    assert result.exit_code == 0
    assert len(result.stdout) == 3_000_000 and len(result.stderr) == 3_000_000


async def test_streams_interleave_in_order_per_stream(ssh_env: SshEnv) -> None:
    _manager, conn = await _conn(ssh_env)
    with trio.fail_after(20):
        async with await conn.open_exec(
            "for i in 1 2 3; do echo out$i; echo err$i >&2; sleep 0.05; done; exit 3"
        ) as stream:
            out = await _drain(stream)
            code = await stream.wait_exit()
    await conn.aclose()
    assert out == {"stdout": b"out1\nout2\nout3\n", "stderr": b"err1\nerr2\nerr3\n"}
    assert code == 3


async def test_many_exec_channels_run_concurrently_on_one_connection(ssh_env: SshEnv) -> None:
    _manager, conn = await _conn(ssh_env)
    outputs: dict[int, bytes] = {}

    async def one(i: int) -> None:
        async with await conn.open_exec(f"sleep 0.6; echo {i}") as stream:
            outputs[i] = (await _drain(stream))["stdout"]
            assert await stream.wait_exit() == 0

    started = time.monotonic()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            for i in range(6):
                nursery.start_soon(one, i)
    elapsed = time.monotonic() - started
    await conn.aclose()
    assert outputs == {i: f"{i}\n".encode() for i in range(6)}
    assert elapsed < 2.0, f"channels ran one after another ({elapsed:.2f} s)"


async def test_backpressure_blocks_the_remote_writer(ssh_env: SshEnv, tmp_path: Path) -> None:
    marker = tmp_path / "writer-finished"
    _manager, conn = await _conn(ssh_env)
    with trio.fail_after(60):
        stream = await conn.open_exec(f"head -c 20000000 /dev/zero; touch {marker}")
        await trio.sleep(1.5)  # nobody reads: SSH window + our buffer fill, the writer blocks
        assert not marker.exists()
        out = await _drain(stream)
        total = len(out["stdout"])
        assert await stream.wait_exit() == 0
        await stream.aclose()
    await conn.aclose()
    assert total == 20_000_000
    assert marker.exists()


async def test_stdin_is_delivered_and_closed(ssh_env: SshEnv) -> None:
    _manager, conn = await _conn(ssh_env)
    with trio.fail_after(20):
        async with await conn.open_exec("wc -c; echo done") as stream:
            await stream.send_stdin(b"x" * 100_000)
            await stream.close_stdin()
            out = await _drain(stream)
            assert await stream.wait_exit() == 0
    await conn.aclose()
    assert out["stdout"].split() == [b"100000", b"done"]


async def test_exec_with_pty(ssh_env: SshEnv) -> None:
    _manager, conn = await _conn(ssh_env)
    with trio.fail_after(20):
        async with await conn.open_exec("tty; echo to-stderr >&2", pty=True) as stream:
            out = await _drain(stream)
            assert await stream.wait_exit() == 0
    await conn.aclose()
    assert b"/dev/pts/" in out["stdout"]
    assert b"to-stderr" in out["stdout"]  # a PTY merges stderr
    assert out["stderr"] == b""


async def test_shell_runs_resizes_and_ends(ssh_env: SshEnv) -> None:
    _manager, conn = await _conn(ssh_env)
    seen = b""

    async def read_until(needle: bytes) -> None:
        nonlocal seen
        while needle not in seen:
            chunk = await shell.receive_some()
            assert chunk, f"shell ended before {needle!r}: {seen!r}"
            seen += chunk

    with trio.fail_after(20):
        shell = await conn.open_shell(cols=100, rows=30)
        await shell.send(b"echo T=$TERM; stty size\n")
        await read_until(b"T=xterm-256color")
        await read_until(b"30 100")
        await shell.resize(132, 43)
        await shell.send(b"stty size\n")
        await read_until(b"43 132")
        await shell.send(b"exit 5\n")
        while await shell.receive_some():
            pass
        assert await shell.wait_exit() == 5
        await shell.aclose()
    await conn.aclose()
    assert b"sbx-01" in seen  # the sandbox prompt, from the sandbox HOME's .bashrc


async def test_aclose_of_an_unread_flood_frees_thread_and_limiter(ssh_env: SshEnv) -> None:
    _manager, conn = await _conn(ssh_env)
    with trio.fail_after(20):
        stream = await conn.open_exec("yes")
        assert (await stream.receive()) is not None
        assert _manager.stream_limiter.borrowed_tokens >= 1
        await stream.aclose()
        assert await stream.receive() is None
        while _manager.stream_limiter.borrowed_tokens:
            await trio.sleep(0.05)
        # The connection is still fine for other channels.
        assert (await conn.run("echo ok")).stdout == b"ok\n"
    await conn.aclose()


def _transports() -> int:
    return sum(isinstance(t, paramiko.Transport) and t.is_alive() for t in threading.enumerate())


async def test_connection_finished_after_cancel_is_closed(ssh_env: SshEnv) -> None:
    before = _transports()
    manager = ssh_env.manager()
    link = ssh_env.links["sbx-02"]
    with trio.fail_after(20):
        for delay in (0.0, 0.005, 0.01, 0.02, 0.04):
            with trio.move_on_after(delay):
                conn = await manager.connect(link, ssh_env.links)
                await conn.aclose()
        # The abandoned attempts finish in their threads and close what they opened.
        while _transports() > before:
            await trio.sleep(0.05)
    assert _transports() <= before


@pytest.mark.parametrize("policy", ["accept-new"])
async def test_pool_shares_one_connection_between_concurrent_users(
        ssh_env: SshEnv, policy: str) -> None:
    manager = ssh_env.manager(host_key_policy=policy)
    link = ssh_env.links["sbx-03"]
    seen: set[int] = set()

    async def user() -> None:
        async with manager.connection(link, ssh_env.links) as conn:
            seen.add(id(conn))
            assert (await conn.run("sleep 0.2; echo hi")).stdout == b"hi\n"

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(user)
    assert len(seen) == 1
    assert manager.pooled_count() == 1
    await manager.aclose()


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_streams_leave_no_descriptors_or_threads_behind(ssh_env: SshEnv) -> None:
    _manager, conn = await _conn(ssh_env)
    with trio.fail_after(30):
        await conn.run("true")  # warm up
        fds, threads = _fds(), threading.active_count()
        for i in range(20):
            stream = await conn.open_exec("yes" if i % 2 else "echo done")
            await stream.receive()
            await stream.aclose()  # half of them closed while the pump is mid-flood
        # Channels close in worker threads (fire-and-forget): wait for them, within the
        # deadline above.
        while (_manager.stream_limiter.borrowed_tokens or threading.active_count() > threads
               or _fds() > fds):
            await trio.sleep(0.05)
    assert _fds() <= fds
    await conn.aclose()


async def test_signal_killed_command_reports_128_plus_signal(ssh_env: SshEnv) -> None:
    _manager, conn = await _conn(ssh_env)
    with trio.fail_after(20):
        async with await conn.open_exec("echo $$; exec sleep 30") as stream:
            item = await stream.receive()
            assert item is not None
            pid = int(item[1])
            killed = await conn.run(f"kill -TERM {pid}")
            assert killed.exit_code == 0
            assert await stream.receive() is None
            assert await stream.wait_exit() == 143
            assert stream.exit_signal == "TERM"
        async with await conn.open_exec("exit 0") as stream:
            assert await stream.receive() is None
            assert await stream.wait_exit() == 0 and stream.exit_signal is None
    await conn.aclose()
