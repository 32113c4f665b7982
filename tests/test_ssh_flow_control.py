"""Flow control is enforced: a peer that sends past the window we advertised is cut off
(channel and connection), with "peer ignored flow control" as the error, and the service's
memory does not follow what it sends."""

from __future__ import annotations

import pytest
import trio

from linkops.ssh.bridge import SshManager
from linkops.ssh.errors import SshError
from linkops.ssh.machines import insert_links_sync
from linkops.ssh.streams import CHUNK
from linkops.timeutil import now_iso
from tests.fixtures_hostile import CLIENT_ID, HostileFactory
from tests.fixtures_operations import OpsHarness, seed_links, seed_script
from tests.fixtures_sandbox import SshEnv
from tests.fixtures_terminal import TermEnv

OFFERED = 2 << 30  # what the flooding server is willing to send: 2 GiB
RSS_BOUND = 100 << 20


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _manager(ssh_env: SshEnv) -> SshManager:
    return ssh_env.manager(connection_timeout=5.0, max_retries=0)


@pytest.mark.parametrize("kind", ["exec", "shell"])
async def test_flood_past_the_window_is_cut_off_and_memory_stays_bounded(
        ssh_env: SshEnv, hostile: HostileFactory, kind: str) -> None:
    """The server offers 2 GiB while nobody reads: the connection is closed as soon as the
    window (2 MiB) plus one packet is exceeded, so it can only ever deliver a few MiB; RSS
    growth stays far below 100 MiB. Buffered data is still delivered, then the error."""
    server = hostile("flood_" + kind, flood_bytes=OFFERED)
    link = server.link("flooder")
    manager = _manager(ssh_env)
    try:
        with trio.fail_after(60):
            before = _rss()
            conn = await manager.connect(link, {link.id: link})
            stream = await (conn.open_exec("yes") if kind == "exec" else conn.open_shell())
            while conn.transport.is_active():  # the client reads nothing meanwhile
                await trio.sleep(0.05)
            grown = _rss() - before
            assert grown < RSS_BOUND, grown
            assert server.flooded < 64 << 20, server.flooded  # far from the 2 GiB offered
            received = 0
            with pytest.raises(SshError) as caught:
                if kind == "exec":
                    while (item := await stream.receive()) is not None:
                        received += len(item[1])
                    await stream.wait_exit()  # type: ignore[union-attr]
                else:
                    while chunk := await stream.receive_some():  # type: ignore[union-attr]
                        received += len(chunk)
            assert "peer ignored flow control" in caught.value.message
            assert caught.value.reason == "protocol"
            window = conn.transport.default_window_size + conn.transport.default_max_packet_size
            assert 0 < received <= window + CHUNK
            await stream.aclose()
            await conn.aclose()
            # Others unaffected: a healthy link works on the same manager.
            async with manager.connection(ssh_env.links["sbx-01"], ssh_env.links) as healthy:
                assert (await healthy.run("echo fine")).stdout == b"fine\n"
    finally:
        await manager.aclose()


async def test_a_flooding_pane_ends_with_the_protocol_error(
        term_env: TermEnv, hostile: HostileFactory) -> None:
    server = hostile("flood_shell", flood_bytes=OFFERED)
    link = server.link("flood-pane", key_ref="sandbox_ed25519", required=True)
    db = term_env.db
    await db.write(lambda c: insert_links_sync(c, [link]))
    await db.write(lambda c: c.execute("UPDATE machines SET enrolled = 1 WHERE id = ?",
                                       (link.id,)))
    with trio.fail_after(60):
        ws_id = await term_env.workspace("grid2x1", A="flood-pane", B="sbx-01")
        async with term_env.socket(ws_id) as sock:
            # The socket is attached but this test reads nothing while the flood arrives.
            await term_env.connect_all(ws_id)
            while True:
                state = (await term_env.http.get(f"/api/terminal/workspaces/{ws_id}")).json()
                pane = {p["pane"]: p for p in state["panes"]}["A"]
                if pane["status"] == "error":
                    break
                await trio.sleep(0.1)
            assert "peer ignored flow control" in pane["error"], pane
            row = await db.fetchone(
                "SELECT close_reason FROM terminal_sessions WHERE workspace_id = ? "
                "AND pane = 'A' AND closed_at IS NOT NULL", (ws_id,))
            assert row is not None and row["close_reason"] == "error"
            # The healthy pane next to it is unaffected.
            await sock.stdin("B", "echo still-$((6*7))\r")
            await sock.until_output("B", "still-42")
    assert CLIENT_ID  # the hostile host passed the client-ID check before the shell opened


async def test_a_flooding_host_fails_its_task_with_the_protocol_error(
        ops: OpsHarness, hostile: HostileFactory) -> None:
    """An operation's task on a host that floods past the window ends ``failed`` with the
    protocol error; the healthy host in the same operation succeeds."""
    server = hostile("flood_script", flood_bytes=OFFERED)
    link = server.link("flood-task", key_ref="sandbox_ed25519")
    ops.db.write_sync(lambda c: insert_links_sync(c, [link]))
    ops.db.write_sync(lambda c: c.execute(
        "UPDATE machines SET enrolled = 1, enrollment_verified_at = ? WHERE id = ?",
        (now_iso(), link.id)))
    seed_links(ops.db, ops.env, ["ops-01"])
    seed_script(ops.db, "hello", "#!/bin/bash\necho hello\n")
    before = _rss()
    _, view = await ops.run({"scripts": ["hello"], "targets": ["flood-task", "ops-01"]},
                            timeout=60)
    assert _rss() - before < RSS_BOUND
    # Here the client reads (the task streams its output), so the flood only gets past the
    # window once it outruns the reader; then the connection is closed, far from the 2 GiB.
    assert server.flooded < 512 << 20, server.flooded
    logs = {log["target"]: log for log in view["logs"]}
    assert logs["flood-task"]["status"] == "failed", logs["flood-task"]
    assert "peer ignored flow control" in logs["flood-task"]["error"], logs["flood-task"]
    assert logs["ops-01"]["status"] == "success" and logs["ops-01"]["stdout"] == "hello\n"
