"""The per-pane and per-host guards (issue #20): a bug inside one pane session or one host's
tasks ends that pane or those tasks with one log line and a structured error, never the
service nursery, the other panes or the other hosts.

A bug cannot be produced on demand by a real part, so these tests plant one: the pane
session's ``run`` (or the host body of an operation) raises for one chosen pane or host. Every
other part is real: the service, sshd, SQLite and the WebSocket.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import trio

from linkops.operations.orchestrator import OperationRun
from linkops.terminal.session import PaneSession
from tests.fixtures_operations import OpsHarness, seed_links, seed_script
from tests.fixtures_terminal import TermEnv


class PlantedBug(RuntimeError):
    """The bug these tests plant (named, so the messages can be told from any other)."""


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def named(self, message: str) -> list[dict[str, Any]]:
        return [getattr(r, "context", {}) for r in self.records if r.getMessage() == message]


@pytest.fixture
def errors() -> Iterator[_Records]:
    handler = _Records()
    logger = logging.getLogger("linkops")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@pytest.mark.usefixtures("sandbox_fleet")
async def test_a_crashing_pane_ends_alone(term_env: TermEnv, errors: _Records,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    real_run = PaneSession.run

    async def run(self: PaneSession) -> None:
        if self.pane == "A":
            raise PlantedBug("planted in pane A")
        await real_run(self)

    monkeypatch.setattr(PaneSession, "run", run)
    with trio.fail_after(60):
        ws_id = await term_env.workspace("grid2x1", A="sbx-01", B="sbx-02")
        async with term_env.socket(ws_id) as sock:
            await term_env.connect(ws_id, "A")
            await term_env.connect(ws_id, "B")
            error = await sock.until_status("A", "error")
            assert error["code"] == "INTERNAL_ERROR", error
            assert "PlantedBug" in error["message"], error
            await sock.until_status("B", "connected")
            await sock.stdin("B", "echo still-$((40+2))\r")
            await sock.until_output("B", "still-42")
        r = await term_env.http.get(f"/api/terminal/workspaces/{ws_id}")
        assert r.status_code == 200, r.text
        assert term_env.running.services.terminal._nursery is not None
    crashed = errors.named("terminal.session_crashed")
    assert [(c["pane"], c["target"]) for c in crashed] == [("A", "sbx-01")], crashed
    assert "planted in pane A" in crashed[0]["error"]


BASH = "#!/bin/bash\n"


async def test_a_crashing_host_fails_its_tasks_only(ops: OpsHarness, errors: _Records,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    real_body = OperationRun._host_body

    async def body(self: OperationRun, target: Any) -> None:
        if target.id == "ops-01":
            raise PlantedBug("planted for ops-01")
        await real_body(self, target)

    monkeypatch.setattr(OperationRun, "_host_body", body)
    with trio.fail_after(60):
        seed_links(ops.db, ops.env, ["ops-01", "ops-02"])
        seed_script(ops.db, "hello", BASH + "echo hello\n")
        seed_script(ops.db, "bye", BASH + "echo bye\n")
        op_id, view = await ops.run({"scripts": ["hello", "bye"],
                                     "targets": ["ops-01", "ops-02"]})
    logs = {(log["target"], log["script"]): log for log in view["logs"]}
    # The host's first task carries the error; the ones after it never ran (as after any
    # failed task of a host: its scripts run in order).
    broken = logs[("ops-01", "hello")]
    assert broken["status"] == "failed", broken
    assert "internal error" in broken["error"] and "PlantedBug" in broken["error"], broken
    assert logs[("ops-01", "bye")]["status"] == "skipped", logs[("ops-01", "bye")]
    for script in ("hello", "bye"):
        healthy = logs[("ops-02", script)]
        assert healthy["status"] == "success", healthy
        assert healthy["stdout"] == f"{script}\n"
    assert view["status"] in ("partial", "failed"), view["status"]
    host_errors = errors.named("operation.host_error")
    assert [(c["operation"], c["target"]) for c in host_errors] == [(op_id, "ops-01")]
    # The service took the next operation as if nothing had happened.
    with trio.fail_after(60):
        _, again = await ops.run({"scripts": ["hello"], "targets": ["ops-02"]})
    assert [log["status"] for log in again["logs"]] == ["success"]
