"""Running one operation: a nursery of per-host tasks under a ``trio.CapacityLimiter``.

Shape::

    OperationRun.run()                 cancel_scope  ← stop() / service shutdown
      └─ nursery
           ├─ host task (target 1)     async with limiter:  (at most `concurrency` hosts)
           │     connect → script 1 (its channel re-checks the client ID first) → script 2 → …
           └─ host task (target N)     a failing script skips the rest on that host

Per script a :class:`~linkops.operations.remote.RemoteScript` runs under its own deadline
(``[operations] script_timeout``): a timeout kills the remote process group and ends the task
``timeout`` (exit code null, error ``EXECUTION_TIMEOUT``). Stop cancels the operation's scope:
every running script kills its remote group (shielded, bounded), records ``stopped``, and the
operation ends ``stopped``.

*Ordering of truth*: each state change is committed to the database before its event is
published, so an event a client saw is always backed by a row.

*Errors*: no exception leaves :meth:`OperationRun.run`: SSH failures become failed tasks, a
bug becomes a failed operation with its message logged.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from contextlib import AsyncExitStack
from typing import Any

import trio

from linkops.config import Settings
from linkops.db import Database
from linkops.errors import LinkOpsError
from linkops.models import Link
from linkops.operations import store
from linkops.operations.event_types import (
    Groups,
    OperationEnd,
    OperationState,
    Output,
    TaskEnd,
    TaskStart,
)
from linkops.operations.events import EventHub
from linkops.operations.groups import EMPTY, Fingerprint, Grouping, TaskResult, task_columns
from linkops.operations.output import TaskOutput
from linkops.operations.remote import LAUNCH_GRACE, RemoteScript
from linkops.operations.status import operation_outcome, result_counts
from linkops.operations.validate import Plan, PlannedScript
from linkops.ssh.bridge import SshConnection, SshManager
from linkops.ssh.enrollment import enrollment_required, evaluate
from linkops.ssh.machines import store_enrollment
from linkops.timeutil import now_iso

log = logging.getLogger("linkops.operations")

CLIENT_ID_TIMEOUT = 15.0
# Fingerprinting more output than this (~1 ms of CPU) at a task's end runs in a thread.
INLINE_FINGERPRINT_CHARS = 256 * 1024


def _cancelled_here() -> bool:
    """True inside a cancelled scope (checked from ``finally`` blocks)."""
    return trio.current_effective_deadline() == -math.inf


class OperationRun:
    """One operation in flight (registry entry of the service)."""

    def __init__(self, op_id: str, plan: Plan, *, db: Database, settings: Settings,
                 ssh: SshManager, hub: EventHub, links: Mapping[str, Link],
                 triggered_by: str | None = None) -> None:
        self.id = op_id
        self.triggered_by = triggered_by
        self.plan = plan
        self.db = db
        self.settings = settings
        self.ssh = ssh
        self.hub = hub
        self.links = links
        self.cancel_scope = trio.CancelScope()
        self.stop_requested = False
        self.stop_reason: str | None = None
        self.done = trio.Event()
        self.status = "queued"
        self.statuses: dict[str, list[str]] = {
            t.id: ["pending"] * len(plan.scripts) for t in plan.targets}
        self.in_flight = 0
        self.max_in_flight = 0
        # Output of the tasks running right now, so a view of a running operation shows it.
        self.live: dict[tuple[str, int], TaskOutput] = {}
        # Output groups so far (SPEC §10.3), folded as each task ends.
        self.grouping = Grouping([t.id for t in plan.targets])

    def stop(self, reason: str = "stopped by user") -> None:
        """Cancel everything (remote processes are killed by the tasks' cleanup)."""
        if not self.stop_requested:
            self.stop_requested = True
            self.stop_reason = reason
        self.cancel_scope.cancel()

    # -- the operation ---------------------------------------------------------------------

    async def run(self) -> None:
        started_at = now_iso()
        t0 = time.monotonic()
        error: str | None = None
        try:
            with self.cancel_scope:
                await self.db.write(store.mark_running(self.id, started_at))
                self.status = "running"
                self.hub.emit(OperationState(
                    operation_id=self.id, status="running",
                    scripts=[s.id for s in self.plan.scripts],
                    targets=[t.id for t in self.plan.targets],
                    flags=self.plan.flags, concurrency=self.plan.concurrency,
                    triggered_by=self.triggered_by, started=started_at,
                ))
                limiter = trio.CapacityLimiter(self.plan.concurrency)
                async with trio.open_nursery() as nursery:
                    for target in self.plan.targets:
                        nursery.start_soon(self._host, target, limiter)
        except Exception as exc:  # a bug, not a host failure: keep the service alive
            error = f"internal error: {exc}"
            log.exception("operation.internal_error", extra={"context": {"operation": self.id}})
        finally:
            if not self.stop_requested and _cancelled_here():
                # Cancelled from outside (the service's nursery is going away): a stop too.
                self.stop_requested = True
                self.stop_reason = "stopped: the service is shutting down"
            with trio.CancelScope(shield=True):
                await self._finish(t0, error)

    async def _finish(self, t0: float, error: str | None) -> None:
        never_started = [(target, position) for target, statuses in self.statuses.items()
                         for position, s in enumerate(statuses) if s == "pending"]
        for statuses in self.statuses.values():  # never started: recorded as skipped
            statuses[:] = ["skipped" if s == "pending" else s for s in statuses]
        status = operation_outcome(self.statuses, stopped=self.stop_requested)
        if error is not None and status != "stopped":
            status = "failed"
        result = result_counts(self.statuses)
        ended_at = now_iso()
        duration = round(time.monotonic() - t0, 3)
        if self.stop_requested:
            error = error or self.stop_reason
        try:
            await self.db.write(store.finish_operation(self.id, status, result, ended_at,
                                                       duration, error))
        except Exception:
            log.exception("operation.record_failed", extra={"context": {"operation": self.id}})
        self.status = status
        if never_started:
            for target_id, position in never_started:
                self.grouping.add(TaskResult(target_id, self.plan.scripts[position].id,
                                             position, "skipped", None))
            self._publish_groups()
        log.info("operation.end", extra={"context": {
            "operation": self.id, "status": status, "duration": duration, "result": result}})
        self.hub.emit(OperationEnd(
            operation_id=self.id, status=status, result=result, ended=ended_at,
            duration=duration, error=error,
        ))
        self.done.set()

    # -- one host --------------------------------------------------------------------------

    async def _host(self, target: Link, limiter: trio.CapacityLimiter) -> None:
        async with limiter:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                await self._host_body(target)
            except Exception as exc:  # the task's guard: a bug ends this host's tasks only
                log.error("operation.host_error", extra={"context": {
                    "operation": self.id, "target": target.id, "error": repr(exc)}})
                statuses = self.statuses[target.id]
                first = next((i for i, s in enumerate(statuses) if s == "pending"), None)
                if first == 0:
                    await self._fail_remaining(target, 0, f"internal error: {exc!r}")
                elif first is not None:  # the task that hit it recorded itself failed
                    await self._skip(target, range(first, len(statuses)),
                                     f"skipped: internal error: {exc!r}")
            finally:
                self.in_flight -= 1

    async def _connect(self, target: Link) -> SshConnection:
        return await self.ssh.connect(target, self.links)

    async def _host_body(self, target: Link) -> None:
        # A pooled connection (the SSH layer shares it with at most a few borrowers): repeated
        # operations on a host skip the handshake; the kill exec is a second channel on it.
        async with AsyncExitStack() as stack:
            try:
                conn = await stack.enter_async_context(self.ssh.connection(target, self.links))
            except LinkOpsError as exc:
                log.warning("operation.ssh_failed", extra={"context": {
                    "operation": self.id, "target": target.id, "error": exc.message}})
                await self._fail_remaining(target, 0, f"{exc.code}: {exc.message}")
                return
            check = enrollment_required(global_required=self.plan.require_enrollment,
                                        link_required=target.enrollment.required)
            for position, script in enumerate(self.plan.scripts):
                status = await self._script(conn, target, position, script,
                                            check_identity=check and position == 0)
                if status != "success":
                    if status is not None:
                        await self._skip(target, range(position + 1, len(self.plan.scripts)),
                                         f"skipped: {script.id} ended {status}")
                    return

    async def _open(self, remote: RemoteScript, target: Link, position: int) -> bool:
        """Open the script's channel and, when asked, check the client ID on it.

        The check rides on the script's own channel (see operations/remote.py): the host
        reports its client ID file and the script starts only after it matched. False when
        the task cannot start (recorded as failed, the rest of the host skipped).
        """
        try:
            report = await remote.open(CLIENT_ID_TIMEOUT)
        except LinkOpsError as exc:
            await remote.aclose()
            prefix = "CLIENT_ID_MISMATCH: cannot read the client ID: " \
                if remote.client_id_path is not None else f"{exc.code}: "
            await self._fail_remaining(target, position, prefix + exc.message)
            return False
        if report is None:
            return True
        result = evaluate(target, report.exit_code, report.content, report.message, now_iso())
        if result.enrolled:
            return True
        await remote.aclose()
        with trio.CancelScope(shield=True):
            await self.db.write(lambda c: store_enrollment(c, target.id, False,
                                                           result.verified_at, result.error))
        await self._fail_remaining(target, position, f"CLIENT_ID_MISMATCH: {result.error}")
        return False

    # -- one script ------------------------------------------------------------------------

    def _base(self, target: Link, position: int, script: PlannedScript) -> dict[str, Any]:
        return {"target": target.id, "script": script.id, "position": position}

    async def _script(self, conn: SshConnection, target: Link, position: int,
                      script: PlannedScript, *, check_identity: bool = False) -> str | None:
        """Run one script on the host; its final status, None when it could not start."""
        base = self._base(target, position, script)
        output = TaskOutput(self.settings.operations.output_buffer_size)

        async def sink(stream: str, chunk: bytes) -> None:
            text = output.feed(stream, chunk)
            if text:
                await self.hub.paced()  # a live viewer far behind: let it catch up (bounded)
                self.hub.emit(Output(**base, stream=stream, data=text))

        async def on_pgid(pgid: int) -> None:
            await self.db.write(store.task_pgid(self.id, target.id, position, pgid))

        remote = RemoteScript(
            conn, lambda: self._connect(target), script.content, script.args, sink=sink,
            on_pgid=on_pgid,
            client_id_path=target.enrollment.clientIdPath if check_identity else None)
        started_at = now_iso()
        t0 = time.monotonic()
        try:
            if not await self._open(remote, target, position):
                return None
            await self.db.write(store.task_started(self.id, target.id, position, started_at))
        except BaseException:
            # Stopped (or failed) while the script was being launched. Not launched: it never
            # runs and the task stays pending (recorded skipped). Launched: killed and
            # recorded stopped, with the kill's confirmation, like a running script.
            launched = remote.launched or remote.unconfirmed
            await remote.abandon()
            if launched:
                await self._record_stopped_launch(target, position, script, remote,
                                                  started_at)
            raise
        self.statuses[target.id][position] = "running"
        self.hub.emit(TaskStart(**base, name=script.name, started=started_at))
        self.live[(target.id, position)] = output
        status: str | None = None
        error: str | None = None
        try:
            outcome = await remote.run(self.settings.operations.script_timeout)
            if outcome.timed_out:
                status = "timeout"
                error = (f"EXECUTION_TIMEOUT: no exit within "
                         f"{self.settings.operations.script_timeout:g} s")
            else:
                status = "success" if outcome.exit_code == 0 else "failed"
                if outcome.exit_code is not None and outcome.exit_code < 0:
                    error = "the remote process ended without an exit status (signal?)"
        except LinkOpsError as exc:
            status = "failed"
            error = f"{exc.code}: {exc.message}"
            log.warning("operation.task_failed", extra={"context": {
                "operation": self.id, "target": target.id, "script": script.id,
                "error": error}})
        finally:
            if status is None:
                # Cancelled (possibly wrapped in an ExceptionGroup by a nursery) or a bug.
                stopped = self.cancel_scope.cancel_called or _cancelled_here()
                status = "stopped" if stopped else "failed"
                error = (self.stop_reason or "stopped") if stopped else "internal error"
            with trio.CancelScope(shield=True):
                for stream, text in output.finish().items():
                    if text:
                        self.hub.emit(Output(**base, stream=stream, data=text))
                outcome = remote.outcome
                ended_at = now_iso()
                duration = round(time.monotonic() - t0, 3)
                stdout, stderr = output.text("stdout"), output.text("stderr")
                fingerprint, columns = await self._fingerprint(target, stdout, stderr)
                values = {
                    "status": status, "exit_code": outcome.exit_code,
                    "stdout": stdout, "stderr": stderr,
                    "output_truncated": int(output.truncated), "duration": duration,
                    "ended_at": ended_at, "error": error or outcome.error,
                    "remote_killed": None if outcome.remote_killed is None
                    else int(outcome.remote_killed),
                    **columns,
                }
                await self.db.write(store.task_finished(self.id, target.id, position, values))
                self.live.pop((target.id, position), None)
                self.statuses[target.id][position] = status
                if status != "success":
                    log.warning("operation.task_end", extra={"context": {
                        "operation": self.id, "target": target.id, "script": script.id,
                        "status": status, "exit_code": outcome.exit_code,
                        "reason": values["error"], "remote_killed": outcome.remote_killed}})
                self.hub.emit(TaskEnd(
                    **base, status=status, exit_code=outcome.exit_code, duration=duration,
                    ended=ended_at, error=error or outcome.error,
                    remote_killed=outcome.remote_killed,
                    output_truncated=output.truncated,
                ))
                self._grouped(target.id, position, status, outcome.exit_code, fingerprint)
        return status

    async def _record_stopped_launch(self, target: Link, position: int,
                                     script: PlannedScript, remote: RemoteScript,
                                     started_at: str) -> None:
        base = self._base(target, position, script)
        outcome = remote.outcome
        error = outcome.error or self.stop_reason or "stopped while the script was launched"
        if remote.unconfirmed:
            outcome.remote_killed = False
            error = (f"{self.stop_reason or 'stopped'} while {target.id} had not confirmed "
                     f"the launch within {LAUNCH_GRACE:g} s: the script may have started; "
                     "its process group is unknown")
        ended_at = now_iso()
        with trio.CancelScope(shield=True):
            await self.db.write(store.task_finished(self.id, target.id, position, {
                "status": "stopped", "exit_code": None, "started_at": started_at,
                "ended_at": ended_at, "duration": 0.0, "error": error,
                "remote_killed": None if outcome.remote_killed is None
                else int(outcome.remote_killed)}))
        self.statuses[target.id][position] = "stopped"
        log.warning("operation.task_end", extra={"context": {
            "operation": self.id, "target": target.id, "script": script.id,
            "status": "stopped", "reason": error, "remote_killed": outcome.remote_killed}})
        self.hub.emit(TaskEnd(**base, status="stopped", exit_code=None, duration=0.0,
                              ended=ended_at, error=error, remote_killed=outcome.remote_killed))
        self._grouped(target.id, position, "stopped", None)

    async def _fail_remaining(self, target: Link, first: int, error: str) -> None:
        """The task at ``first`` failed before running (connection, client ID); skip the rest."""
        script = self.plan.scripts[first]
        base = self._base(target, first, script)
        now = now_iso()
        with trio.CancelScope(shield=True):
            await self.db.write(store.task_finished(self.id, target.id, first, {
                "status": "failed", "error": error, "started_at": now, "ended_at": now,
                "duration": 0.0}))
            self.statuses[target.id][first] = "failed"
            self.hub.emit(TaskEnd(**base, status="failed", exit_code=None, duration=0.0,
                                  ended=now, error=error, remote_killed=None))
            self._grouped(target.id, first, "failed", None)
            await self._skip(target, range(first + 1, len(self.plan.scripts)),
                             f"skipped: {error}")

    async def _skip(self, target: Link, positions: range, reason: str) -> None:
        if not positions:
            return
        with trio.CancelScope(shield=True):
            await self.db.write(store.skip_tasks(self.id, target.id, list(positions), reason))
        for position in positions:
            self.statuses[target.id][position] = "skipped"
            script = self.plan.scripts[position]
            self.hub.emit(TaskEnd(**self._base(target, position, script), status="skipped",
                                  exit_code=None, duration=None, ended=None, error=reason,
                                  remote_killed=None))
            self._grouped(target.id, position, "skipped", None)

    # -- output groups (SPEC §10.3) ----------------------------------------------------------

    async def _fingerprint(self, target: Link, stdout: str,
                           stderr: str) -> tuple[Fingerprint, dict[str, Any]]:
        """``groups.task_columns``; a large output is normalised in a worker thread so the
        event loop (every other operation, every stream) does not wait for it."""
        try:
            if len(stdout) + len(stderr) <= INLINE_FINGERPRINT_CHARS:
                return task_columns(stdout, stderr, target.id, target.host)
            return await trio.to_thread.run_sync(task_columns, stdout, stderr, target.id,
                                                 target.host)
        except Exception:  # a bug here must not lose the task's end: no columns, and
            # GET …/groups fingerprints the row from its stored output instead
            log.exception("operation.fingerprint_failed", extra={"context": {
                "operation": self.id, "target": target.id}})
            return EMPTY, {}

    def _grouped(self, target: str, position: int, status: str, exit_code: int | None,
                 fingerprint: Fingerprint = EMPTY) -> None:
        """A task's end was recorded: fold it into the groups and publish the counts."""
        self.grouping.add(TaskResult(target, self.plan.scripts[position].id, position,
                                     status, exit_code, fingerprint))
        self._publish_groups()

    def _publish_groups(self) -> None:
        total = len(self.plan.targets) * len(self.plan.scripts)
        self.hub.emit(Groups(operation_id=self.id, finished=len(self.grouping), total=total,
                             script_groups=self.grouping.counts()))
