"""Broadcast input (SPEC §10.4): the same keystrokes reach exactly the listed panes of the
socket's own workspace; bad requests get a structured error and write nothing; audited."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from linkops.terminal.protocol import Broadcast, ProtocolError, parse_client_message
from tests.fixtures_terminal import TermEnv, TermSocket
from tests.strategies import PROP

pytestmark = pytest.mark.usefixtures("sandbox_fleet")


async def _error(sock: TermSocket) -> dict[str, object]:
    while True:
        message = await sock.pump_one()
        if message.get("type") == "status" and message.get("pane") is None \
                and message.get("data") == "error":
            return message


async def test_broadcast_reaches_exactly_the_listed_panes_of_its_own_workspace(
        term_env: TermEnv) -> None:
    with trio.fail_after(60):
        ws_id = await term_env.workspace("grid2x2", A="sbx-01", B="sbx-02", C="sbx-03")
        other = await term_env.workspace("grid2x1", A="sbx-02", B="sbx-03")
        await term_env.connect_all(ws_id)
        await term_env.connect_all(other)
        async with term_env.socket(ws_id) as sock, term_env.socket(other) as other_sock:
            for pane in "ABC":
                await sock.until_status(pane, "connected")
            await other_sock.until_status("A", "connected")
            await sock.send({"type": "broadcast", "panes": ["A", "C"],
                             "data": "echo bc-$((20+22))-$(hostname)\r"})
            await sock.until_output("A", "bc-42-")
            await sock.until_output("C", "bc-42-")
            # A marker typed into B afterwards arrives, and B never saw the broadcast.
            await sock.stdin("B", "echo b-$((1+1))\r")
            await sock.until_output("B", "b-2")
            assert "bc-" not in sock.out.get("B", "")
            # The other workspace's pane A (same name) was not reached either.
            await other_sock.stdin("A", "echo o-$((2+2))\r")
            await other_sock.until_output("A", "o-4")
            assert "bc-" not in other_sock.out.get("A", "")

            # Bad requests: a structured error on the socket, nothing written anywhere.
            sock.take("A")
            bad: list[dict[str, object]] = [
                {"type": "broadcast", "panes": ["A", "E"], "data": "echo no-1\r"},
                {"type": "broadcast", "panes": ["A", f"{other}:A"], "data": "echo no-2\r"},
                {"type": "broadcast", "panes": [], "data": "echo no-3\r"},
                {"type": "broadcast", "panes": "A", "data": "echo no-4\r"},
                {"type": "broadcast", "panes": ["A", "A"], "data": "echo no-5\r"},
                {"type": "broadcast", "panes": ["A", 1], "data": "echo no-6\r"},
                {"type": "broadcast", "panes": ["A"], "data": 7},
                {"type": "broadcast", "panes": ["A", "D"], "data": "echo no-8\r"},  # not live
            ]
            codes = []
            for message in bad:
                await sock.send(message)
                codes.append((await _error(sock))["code"])
            assert codes == ["UNKNOWN_PANE", "UNKNOWN_PANE", "INVALID_MESSAGE",
                             "INVALID_MESSAGE", "INVALID_MESSAGE", "INVALID_MESSAGE",
                             "INVALID_MESSAGE", "PANE_NOT_CONNECTED"]
            await sock.stdin("A", "echo fence-$((3+4))\r")
            out = await sock.until_output("A", "fence-7")
            assert "no-" not in out
        audit = await term_env.db.fetchall(
            "SELECT username, details FROM terminal_audit WHERE action = 'terminal.broadcast'")
        assert len(audit) == 1 and audit[0]["username"] == "admin"
        details = json.loads(audit[0]["details"])
        assert details["panes"] == ["A", "C"] and details["workspace_id"] == ws_id
        assert details["targets"] == ["sbx-01", "sbx-03"]
        assert details["bytes"] == len("echo bc-$((20+22))-$(hostname)\r")


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=12)


@PROP
@given(panes=st.one_of(_JSON, st.lists(st.sampled_from(["A", "B", "C", "D", "E", "a", ""]),
                                        max_size=6)),
       data=_JSON)
def test_any_broadcast_frame_is_parsed_or_refused_with_a_code(panes: Any, data: Any) -> None:
    """A broadcast frame with any panes/data is either a Broadcast naming distinct panes of the
    workspace with string data, or a ProtocolError with a code — never another exception."""
    frame = json.dumps({"type": "broadcast", "panes": panes, "data": data})
    try:
        message = parse_client_message(frame, ("A", "B", "C"))
    except ProtocolError as exc:
        assert exc.code in ("UNKNOWN_PANE", "INVALID_MESSAGE") and exc.close_code is None
        return
    assert isinstance(message, Broadcast) and isinstance(message.data, str)
    assert message.panes and len(set(message.panes)) == len(message.panes)
    assert set(message.panes) <= {"A", "B", "C"}
