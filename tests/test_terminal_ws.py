"""Terminal workspaces end to end: the real service, real sshd hosts, a real WebSocket client."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from linkops.sandbox import Sandbox, netns_available
from tests.fixtures_terminal import TermEnv
from tests.strategies import PROP, call, run_property

pytestmark = pytest.mark.usefixtures("sandbox_fleet")


async def test_typed_input_reaches_the_pane_and_output_comes_back(term_env: TermEnv) -> None:
    with trio.fail_after(40):
        ws_id = await term_env.workspace("grid2x1", A="sbx-01", B="sbx-02")
        await term_env.connect_all(ws_id)
        async with term_env.socket(ws_id) as sock:
            await sock.until_status("A", "connected")
            await sock.until_status("B", "connected")
            await sock.stdin("A", "echo $((6*7))-A; tty\r")
            out_a = await sock.until_output("A", "42-A\r\n/dev/pts/")
            await sock.stdin("B", "echo $LINKOPS_X$((5*5))-B\r")
            await sock.until_output("B", "25-B")
            assert "42-A" not in sock.out.get("B", "")
            assert "25-B" not in out_a
            # Resize: the remote PTY sees the new size.
            await sock.send({"pane": "A", "type": "resize", "cols": 133, "rows": 41})
            await sock.stdin("A", "stty size\r")
            await sock.until_output("A", "41 133")
            # Full-screen programs get what they need: the terminal type and its size.
            await sock.stdin("A", 'echo "term=$TERM cols=$(tput cols)"\r')
            await sock.until_output("A", "term=xterm-256color cols=133")
            # Out-of-bounds sizes are clamped, not refused.
            await sock.send({"pane": "B", "type": "resize", "cols": 100000, "rows": 0})
            await sock.stdin("B", "stty size\r")
            await sock.until_output("B", "1 500")
        r = await term_env.http.get(f"/api/terminal/workspaces/{ws_id}")
        panes = {p["pane"]: p for p in r.json()["panes"]}
        assert (panes["A"]["cols"], panes["A"]["rows"]) == (133, 41)
        assert panes["A"]["status"] == "connected" and panes["A"]["target"] == "sbx-01"


async def test_flooding_pane_does_not_starve_another(term_env: TermEnv) -> None:
    with trio.fail_after(60):
        ws_id = await term_env.workspace("grid2x1", A="sbx-01", B="sbx-02")
        await term_env.connect_all(ws_id)
        async with term_env.socket(ws_id) as sock:
            await sock.until_status("B", "connected")
            await sock.stdin("A", "cat /dev/urandom | base64\r")
            # Let the flood get going (several frames of A) before asking B.
            while len(sock.out.get("A", "")) < 200_000:
                await sock.pump_one()
            for i in range(3):
                sock.take("B")
                with trio.fail_after(10):
                    await sock.stdin("B", f"echo pong-$((40+{i}))\r")
                    await sock.until_output("B", f"pong-{40 + i}")
            assert len(sock.out.get("A", "")) > 200_000
            # The event loop is not starved either: HTTP answers while A floods at full speed.
            async with trio.open_nursery() as nursery:
                async def drain() -> None:
                    while True:
                        await sock.pump_one()

                nursery.start_soon(drain)
                before = len(sock.out.get("A", ""))
                with trio.fail_after(5):
                    r = await term_env.http.get("/api/health")
                assert r.status_code == 200
                while len(sock.out.get("A", "")) < before + 100_000:  # still flowing
                    await trio.sleep(0.01)
                nursery.cancel_scope.cancel()
            await sock.stdin("A", "\x03")


async def test_slow_reader_is_bounded_and_recovers(term_env: TermEnv) -> None:
    """A socket that stops reading does not make the service buffer without bound."""
    with trio.fail_after(60):
        ws_id = await term_env.workspace("single", A="sbx-01")
        await term_env.connect(ws_id, "A")
        async with term_env.socket(ws_id) as sock:
            await sock.until_status("A", "connected")
            await sock.stdin("A", "cat /dev/urandom | base64\r")
            await sock.until_output("A", "\n")
            session = term_env.running.services.terminal.session(ws_id, "A")
            assert session is not None
            # Stop reading for a while: the remote must be throttled, not buffered.
            before = session.bytes_out
            await trio.sleep(1.5)
            mid = session.bytes_out
            await trio.sleep(1.5)
            after = session.bytes_out
            # Output stalls: at most the socket/kernel buffers' worth moved meanwhile.
            assert after - mid < 4 * 1024 * 1024, (before, mid, after)
            box = term_env.running.services.terminal._runtimes[ws_id].attachment
            assert box is not None
            assert box.outboxes["A"].pending_chars <= box.outboxes["A"].capacity + 32 * 1024
            # Reading again resumes the flow.
            sock.take("A")
            while len(sock.out.get("A", "")) < 100_000:
                await sock.pump_one()
            await sock.stdin("A", "\x03")


async def test_reload_reattaches_to_the_same_shell_with_scrollback(term_env: TermEnv) -> None:
    with trio.fail_after(40):
        ws_id = await term_env.workspace("single", A="sbx-03")
        assert (await term_env.connect(ws_id, "A")).status_code == 200
        async with term_env.socket(ws_id) as sock:
            await sock.until_status("A", "connected")
            await sock.stdin("A", "export MARK=reload-$((1000+337)); echo $MARK pid=$$=\r")
            pid = (await sock.until_match("A", r"reload-1337 pid=(\d+)=")).group(1)
        # The socket is gone; the shell is not.
        assert term_env.running.services.terminal.session(ws_id, "A") is not None
        async with term_env.socket(ws_id) as sock:
            status = await sock.until_status("A", "connected")
            assert status["target"] == "sbx-03"
            await sock.until_output("A", "reload-1337 pid=")  # replayed scrollback
            sock.take("A")
            await sock.stdin("A", "echo again-$MARK-$$-\r")
            # Same shell process, same environment.
            await sock.until_output("A", f"again-reload-1337-{pid}-")


async def test_other_users_workspace_and_bad_origin_are_refused(term_env: TermEnv) -> None:
    with trio.fail_after(30):
        ws_id = await term_env.workspace("single", A="sbx-01")
        # REST: another user's workspace does not exist for them.
        for method, path in (("GET", ""), ("DELETE", ""), ("POST", "/connect-all"),
                             ("POST", "/panes/A/connect"), ("POST", "/panes/A/disconnect")):
            r = await term_env.bob.request(method, f"/api/terminal/workspaces/{ws_id}{path}")
            assert r.status_code == 404, (method, path, r.text)
            assert r.json()["error"]["code"] == "NOT_FOUND"
        r = await term_env.bob.put(f"/api/terminal/workspaces/{ws_id}/panes",
                                   json={"panes": [{"pane": "A", "target": "sbx-02"}]})
        assert r.status_code == 404
        assert (await term_env.bob.get("/api/terminal/workspaces")).json()["workspaces"] == []
        # WebSocket: bob's handshake is refused before anything is attached or connected.
        with pytest.raises(ConnectionRejected) as rejected:
            async with term_env.socket(ws_id, token=term_env.bob_token):
                pass
        assert rejected.value.status_code == 404
        # A cookie from another origin is refused (403), and so is no credential at all (401).
        with pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(
                term_env.ws_url(ws_id),
                extra_headers=[(b"Cookie", f"linkops_session={term_env.token}".encode()),
                               (b"Origin", b"https://evil.example")]):
                pass
        assert rejected.value.status_code == 403
        assert b"ORIGIN_NOT_ALLOWED" in (rejected.value.body or b"")
        with pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(term_env.ws_url(ws_id)):
                pass
        assert rejected.value.status_code in (401, 403)
        # Same-origin cookie works.
        host = term_env.base.removeprefix("http://")
        async with open_websocket_url(
            term_env.ws_url(ws_id),
            extra_headers=[(b"Cookie", f"linkops_session={term_env.token}".encode()),
                           (b"Origin", f"http://{host}".encode())]) as ws:
            first = json.loads(await ws.get_message())
            assert first["pane"] == "A" and first["type"] == "status"
        rows = await term_env.db.fetchall("SELECT * FROM terminal_sessions")
        assert rows == []  # nothing was ever connected by any of this


async def test_malformed_frames_get_errors_and_the_server_stays_healthy(
        term_env: TermEnv) -> None:
    with trio.fail_after(40):
        ws_id = await term_env.workspace("grid2x1", A="sbx-01")
        assert (await term_env.connect(ws_id, "A")).status_code == 200
        async with term_env.socket(ws_id) as sock:
            await sock.until_status("A", "connected")
            bad: list[tuple[str, str]] = [
                ("{not json", "MALFORMED_MESSAGE"),
                ("[1, 2]", "MALFORMED_MESSAGE"),
                (json.dumps({"pane": "A", "type": "launch", "data": "x"}), "UNKNOWN_TYPE"),
                (json.dumps({"pane": "Z", "type": "stdin", "data": "x"}), "UNKNOWN_PANE"),
                (json.dumps({"pane": "E", "type": "stdin", "data": "x"}), "UNKNOWN_PANE"),
                (json.dumps({"pane": "A", "type": "stdin", "data": 5}), "INVALID_MESSAGE"),
                (json.dumps({"pane": "A", "type": "resize", "cols": "x", "rows": 3}),
                 "INVALID_MESSAGE"),
                (json.dumps({"pane": "B", "type": "stdin", "data": "x"}), "PANE_NOT_CONNECTED"),
            ]
            for raw, code in bad:
                await sock.ws.send_message(raw)
                while True:
                    msg = await sock.pump_one()
                    if msg.get("type") == "status" and msg.get("data") == "error":
                        break
                assert msg["code"] == code, (raw, msg)
            await sock.send({"type": "ping"})
            while (await sock.pump_one()).get("type") != "pong":
                pass
            # The pane still works after all that.
            await sock.stdin("A", "echo still-$((2+2))\r")
            await sock.until_output("A", "still-4")
        # An oversized frame closes the socket with 1009; a binary one with 1003.
        cases: list[tuple[str | bytes, int]] = [("x" * (70 * 1024), 1009), (b"\x00\x01", 1003)]
        for payload, close_code in cases:
            async with term_env.socket(ws_id) as sock:
                await sock.until_status("A", "connected")
                await sock.ws.send_message(payload)
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        await sock.pump_one()
                assert closed.value.reason is not None
                assert closed.value.reason.code == close_code
        r = await term_env.http.get("/api/health")
        assert r.status_code == 200 and r.json()["status"] == "ok"
        # And the shell survived the closed sockets.
        async with term_env.socket(ws_id) as sock:
            await sock.stdin("A", "echo alive-$((3+4))\r")
            await sock.until_output("A", "alive-7")


async def test_pane_that_does_not_read_input_refuses_it_without_blocking_others(
        term_env: TermEnv) -> None:
    """Input is bounded too: a remote that stops reading gets INPUT_OVERFLOW errors while the
    other pane keeps answering."""
    with trio.fail_after(60):
        ws_id = await term_env.workspace("grid2x1", A="sbx-01", B="sbx-02")
        await term_env.connect_all(ws_id)
        async with term_env.socket(ws_id) as sock:
            await sock.until_status("B", "connected")
            # Raw mode: the tty stops taking input once its buffer is full (canonical mode
            # would silently discard it instead), so sshd stops reading the channel.
            await sock.stdin("A", "stty raw -echo; echo sleep-$((2*3)); sleep 600\r")
            await sock.until_output("A", "sleep-6")
            chunk = "x" * 60_000

            def overflowed() -> bool:
                return any(m.get("code") == "INPUT_OVERFLOW" for m in sock.statuses.get("A", []))

            async with trio.open_nursery() as nursery:
                async def read_all() -> None:
                    while True:
                        await sock.pump_one()

                nursery.start_soon(read_all)
                for _ in range(200):
                    await sock.stdin("A", chunk)
                    await trio.sleep(0.005)
                    if overflowed():
                        break
                nursery.cancel_scope.cancel()
            assert overflowed()
            sock.take("B")
            await sock.stdin("B", "echo b-ok-$((9*9))\r")
            await sock.until_output("B", "b-ok-81")


async def test_panes_on_hosts_behind_a_bastion(term_env: TermEnv,
                                               sandbox_fleet: Sandbox) -> None:
    """Two panes on two inner hosts reachable only through the bastion (ProxyJump), each with
    its own client ID file at the real default path, stay independent."""
    assert netns_available(), "this test needs root (network namespaces for the inner hosts)"
    with trio.fail_after(40):
        ws_id = await term_env.workspace("grid2x1", A="sbx-inner-01", B="sbx-inner-02")
        await term_env.connect_all(ws_id)
        async with term_env.socket(ws_id) as sock:
            for pane in "AB":
                await sock.until_status(pane, "connected")
                await sock.stdin(pane, 'echo "id=$(cat /etc/linkops/client_id)"\r')
            a = await sock.until_match("A", r"id=(LINKOPS-[0-9a-f-]+)")
            b = await sock.until_match("B", r"id=(LINKOPS-[0-9a-f-]+)")
            assert a.group(1) == sandbox_fleet.host("sbx-inner-01").client_id
            assert b.group(1) == sandbox_fleet.host("sbx-inner-02").client_id


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12)
frames = st.one_of(
    st.text(max_size=200),
    json_values.map(json.dumps),
    st.fixed_dictionaries({"pane": st.sampled_from(["A", "B", "E", "", None, 1]),
                           "type": st.sampled_from(["stdin", "resize", "ping", "x", None]),
                           "data": json_values, "cols": json_values,
                           "rows": json_values}).map(json.dumps),
)


async def test_arbitrary_frames_never_break_the_socket(term_env: TermEnv) -> None:
    """Whatever text frame (under the size limit) a client sends, it gets an error status or
    is handled, and the socket keeps answering pings."""
    ws_id = await term_env.workspace("grid2x1")
    async with term_env.socket(ws_id) as sock:

        async def exchange(raw: str) -> list[dict[str, Any]]:
            with trio.fail_after(10):
                await sock.ws.send_message(raw)
                await sock.send({"type": "ping"})
                replies = []
                while (msg := await sock.pump_one()).get("type") != "pong":
                    replies.append(msg)
                return replies

        @PROP
        @given(raw=frames)
        def prop(raw: str) -> None:
            for msg in call(exchange, raw):
                assert msg["type"] == "status", msg
                if msg["data"] == "error":
                    assert msg["code"] and msg["message"]

        await run_property(prop)
    r = await term_env.http.get("/api/health")
    assert r.status_code == 200


async def test_opt_in_flow_control_bounds_output_in_flight(term_env: TermEnv) -> None:
    """With ``flow``, output stops once ``window`` characters are unacknowledged and resumes
    with acks; an acking client gets a neighbour's echo promptly while one pane floods."""
    with trio.fail_after(60):
        ws_id = await term_env.workspace("grid2x1", A="sbx-01", B="sbx-02")
        await term_env.connect_all(ws_id)
        async with term_env.socket(ws_id) as sock:
            await sock.until_status("A", "connected")
            await sock.until_status("B", "connected")
            window = 64 * 1024
            await sock.send({"type": "flow", "window": window})
            received = sum(len(v) for v in sock.out.values())  # replayed before `flow`
            sock.out.clear()
            await sock.stdin("A", "cat /dev/urandom | base64\r")
            # Without acks the server stops after about one window (plus one round).
            while True:
                with trio.move_on_after(1.0) as idle:
                    await sock.pump_one()
                if idle.cancelled_caught:
                    break
            sent = sum(len(v) for v in sock.out.values())
            assert window <= sent <= window + 2 * 32 * 1024, sent
            # Acks open the window again.
            await sock.send({"type": "ack", "chars": sent + received})
            while sum(len(v) for v in sock.out.values()) < sent + window:
                await sock.pump_one()

            # An acking reader (what a browser does from xterm.js's write callback) sees B's
            # echo promptly while A floods.
            async def read_and_ack() -> None:
                while True:
                    msg = await sock.pump_one()
                    if msg.get("type") == "stdout":
                        await sock.send({"type": "ack", "chars": len(msg["data"])})

            # Acknowledge everything read so far (acks beyond what was sent just empty the
            # count), then ack each frame as it arrives.
            await sock.send({"type": "ack", "chars": 10 * window})
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_and_ack)
                for i in range(5):
                    sock.out.pop("B", None)
                    with trio.fail_after(5):
                        await sock.stdin("B", f"echo fc-$((50+{i}))\r")
                        while f"fc-{50 + i}" not in sock.out.get("B", ""):
                            await trio.sleep(0.005)
                nursery.cancel_scope.cancel()
            await sock.stdin("A", "\x03")
