"""A hypothesis state machine over one workspace on real sshd: random connect / stdin /
resize / shell exit / disconnect / socket reconnect sequences never raise out of the terminal
service (its nursery would take the test down), every REST answer is a structured one, and
the service stays healthy (a fresh pane still echoes at the end)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from trio_websocket import ConnectionClosed

from tests.fixtures_terminal import TermEnv, TermSocket
from tests.strategies import call, run_property

pytestmark = pytest.mark.usefixtures("sandbox_fleet")

PANES = ("A", "B")


class _Socket:
    """The workspace's socket, drained by a task of its own (so the panes never block on an
    unread socket) and replaceable from the hypothesis thread."""

    def __init__(self, env: TermEnv, ws_id: str, nursery: trio.Nursery) -> None:
        self.env, self.ws_id, self.nursery = env, ws_id, nursery
        self.sock: TermSocket | None = None
        self._scope: trio.CancelScope | None = None
        self._done = trio.Event()

    async def open(self) -> None:
        await self.close()
        scope, ready, done = trio.CancelScope(), trio.Event(), trio.Event()
        self._scope, self._done = scope, done

        async def run() -> None:
            try:
                with scope:
                    async with self.env.socket(self.ws_id) as sock:
                        self.sock = sock
                        ready.set()
                        while True:
                            await sock.pump_one()
            except ConnectionClosed:
                pass  # replaced or closed by the server: a reconnect rule opens another
            finally:
                self.sock = None
                ready.set()
                done.set()

        self.nursery.start_soon(run)
        await ready.wait()

    async def close(self) -> None:
        if self._scope is not None:
            self._scope.cancel()
            await self._done.wait()
            self._scope = None

    async def send(self, message: dict[str, Any]) -> None:
        sock = self.sock
        if sock is None:
            return
        try:
            await sock.send(message)
        except ConnectionClosed:
            pass


def _structured(response: Any) -> None:
    assert response.status_code != 500, response.text
    if response.status_code >= 400:
        assert set(response.json()["error"]) >= {"code", "message"}, response.text


class _Crashes(logging.Handler):
    """``terminal.session_crashed`` lines: the per-pane guard keeps the service up after a
    bug, so "the service stayed healthy" alone would hide one; any such line fails."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "terminal.session_crashed":
            self.seen.append(repr(getattr(record, "context", {})))


async def test_workspace_state_machine_never_breaks_the_service(
        term_env: TermEnv, nursery: trio.Nursery) -> None:
    crashes = _Crashes()
    logging.getLogger("linkops").addHandler(crashes)
    try:
        await _state_machine(term_env, nursery, crashes)
    finally:
        logging.getLogger("linkops").removeHandler(crashes)
    assert crashes.seen == [], crashes.seen


async def _state_machine(term_env: TermEnv, nursery: trio.Nursery, crashes: _Crashes) -> None:
    ws_id = await term_env.workspace("grid2x1", A="sbx-01", B="sbx-02")
    sock = _Socket(term_env, ws_id, nursery)
    with trio.fail_after(30):
        await sock.open()
    terminal = term_env.running.services.terminal

    class Workspace(RuleBasedStateMachine):
        @rule(pane=st.sampled_from(PANES))
        def connect(self, pane: str) -> None:
            _structured(call(term_env.connect, ws_id, pane))

        @rule(pane=st.sampled_from(PANES))
        def disconnect(self, pane: str) -> None:
            _structured(call(term_env.http.post,
                             f"/api/terminal/workspaces/{ws_id}/panes/{pane}/disconnect"))

        @rule(pane=st.sampled_from(PANES),
              data=st.sampled_from(["echo hi\r", "printf '\\033[2J'\r", "\x03", "ls /\r",
                                    "é€\U0001f600\r", "cat\r", "\x04"]))
        def stdin(self, pane: str, data: str) -> None:
            call(sock.send, {"pane": pane, "type": "stdin", "data": data})

        @rule(pane=st.sampled_from(PANES), cols=st.integers(-5, 600), rows=st.integers(-5, 300))
        def resize(self, pane: str, cols: int, rows: int) -> None:
            call(sock.send, {"pane": pane, "type": "resize", "cols": cols, "rows": rows})

        @rule(pane=st.sampled_from(PANES), resize_after=st.booleans())
        def exit_shell(self, pane: str, resize_after: bool) -> None:
            call(sock.send, {"pane": pane, "type": "stdin", "data": "exit\r"})
            if resize_after:  # the race the issue found: a resize right behind the exit
                call(sock.send, {"pane": pane, "type": "resize", "cols": 100, "rows": 30})

        @rule()
        def reconnect_socket(self) -> None:
            call(sock.open)

        @rule(seconds=st.sampled_from([0.0, 0.05, 0.3]))
        def wait(self, seconds: float) -> None:
            call(trio.sleep, seconds)

        @invariant()
        def healthy(self) -> None:
            assert terminal._nursery is not None  # the service nursery is alive
            assert crashes.seen == [], crashes.seen  # found at the step that caused it
            r = call(term_env.http.get, f"/api/terminal/workspaces/{ws_id}")
            assert r.status_code == 200, r.text

    def machine() -> None:
        run_state_machine_as_test(Workspace, settings=settings(
            max_examples=6, stateful_step_count=12, deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]))

    await run_property(machine, timeout=400)

    # Still healthy: a clean pane connects and echoes.
    with trio.fail_after(60):
        await sock.close()
        for pane in PANES:
            r = await term_env.http.post(
                f"/api/terminal/workspaces/{ws_id}/panes/{pane}/disconnect")
            _structured(r)
        assert (await term_env.connect(ws_id, "A")).status_code == 200
        async with term_env.socket(ws_id) as fresh:
            await fresh.until_status("A", "connected")
            await fresh.stdin("A", "echo alive-$((20+22))\r")
            await fresh.until_output("A", "alive-42")
