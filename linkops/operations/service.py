"""``OperationsService``: accepts, runs, stops and reports operations.

Construct with ``OperationsService(db, settings, ssh_manager)``; the root nursery runs
:meth:`run` (``await nursery.start(service.run)``) and calls :meth:`shutdown` on SIGTERM.

- :meth:`submit` validates a request (:mod:`.validate`), records it ``queued`` and starts it in
  the service's own nursery (never the request's), returning ``OP-<n>`` at once;
- :meth:`stop` cancels a running operation (its remote processes are killed);
- :meth:`detail`, :meth:`history` read the database (:mod:`.history`);
- :meth:`events` gives the event stream: live from the operation's :class:`EventHub` (kept for
  :data:`HUB_RETENTION` seconds after the end so reconnects resume exactly), else rebuilt from
  the database (a finished operation, also after a restart).

*Start-up*: operations left ``queued``/``running`` by a crash become ``interrupted``; tasks that
had a remote process group recorded get it killed in the background when the host is reachable
(``remote_killed`` is updated).

*Shutdown*: :meth:`shutdown` stops every running operation and waits (at most
:data:`SHUTDOWN_WAIT` seconds) until each has recorded ``stopped``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import trio

from linkops.api_types import RunRequest
from linkops.config import Settings
from linkops.db import Database
from linkops.errors import ConflictError, NotFoundError, UnavailableError
from linkops.operations import history, store
from linkops.operations.event_types import OperationState
from linkops.operations.events import Event, EventHub, follow, replay
from linkops.operations.orchestrator import OperationRun
from linkops.operations.remote import kill_group
from linkops.operations.status import FINISHED_STATUSES, result_counts
from linkops.operations.validate import build_plan, parse_request, read_rows
from linkops.ssh.bridge import SshConnection, SshManager
from linkops.ssh.machines import load_links
from linkops.timeutil import now_iso

log = logging.getLogger("linkops.operations")

HUB_RETENTION = 600.0
MAX_RETAINED_HUBS = 32
# Finished hubs are evicted (oldest first) beyond this much retained output; their streams
# are then rebuilt from the database.
RETAINED_OUTPUT_BUDGET = 64 * 1024 * 1024
SHUTDOWN_WAIT = 6.0
# Replay log budget for one whole operation's output (each task also has its own budget).
TOTAL_REPLAY_OUTPUT = 8 * 1024 * 1024


class OperationsService:
    """See the module docstring."""

    def __init__(self, db: Database, settings: Settings, ssh: SshManager) -> None:
        self.db = db
        self.settings = settings
        self.ssh = ssh
        self._nursery: trio.Nursery | None = None
        self._running: dict[str, OperationRun] = {}
        self._finished_hubs: dict[str, tuple[float, EventHub]] = {}
        self._closing = False

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Recover after a crash, then host operations until cancelled."""
        orphans = await self.db.write(store.recover_interrupted)
        if orphans:
            log.warning("operations.interrupted", extra={"context": {"tasks": len(orphans)}})
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if orphans:
                nursery.start_soon(self._kill_orphans, orphans)
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None

    async def shutdown(self) -> None:
        """Stop every running operation and wait (bounded) for them to record ``stopped``."""
        self._closing = True
        runs = list(self._running.values())
        for op in runs:
            op.stop("stopped: the service is shutting down")
        with trio.move_on_after(SHUTDOWN_WAIT):
            for op in runs:
                await op.done.wait()

    async def _kill_orphans(self, orphans: list[dict[str, Any]]) -> None:
        links = await load_links(self.db)
        async with trio.open_nursery() as nursery:
            for orphan in orphans:
                nursery.start_soon(self._kill_orphan, orphan, links)

    async def _kill_orphan(self, orphan: dict[str, Any], links: Mapping[str, Any]) -> None:
        link = links.get(orphan["target"])
        if link is None:
            return

        async def reconnect() -> SshConnection:
            return await self.ssh.connect(link, links)

        with trio.move_on_after(60):
            killed = await kill_group(None, reconnect, int(orphan["remote_pgid"]))
            await self.db.write(store.task_finished(
                orphan["operation_id"], orphan["target"], int(orphan["position"]),
                {"remote_killed": int(killed)}))
            log.info("operations.orphan_cleanup", extra={"context": {**orphan,
                                                                     "killed": killed}})

    # -- commands --------------------------------------------------------------------------

    async def submit(self, body: RunRequest | Mapping[str, Any], triggered_by: str | None
                     ) -> str:
        """Validate, record ``queued`` and start; returns the operation id.

        *Errors*: see :mod:`linkops.operations.validate`; :class:`UnavailableError`
        (``SERVICE_SHUTTING_DOWN``) when the service is not running operations.
        """
        request = parse_request(body, self.settings)
        scripts, machines = await self.db.read(lambda c: read_rows(c, request))
        plan = build_plan(request, scripts, machines, self.settings)
        nursery = self._nursery
        if nursery is None or self._closing:
            raise UnavailableError("the service is not accepting operations now",
                                   code="SERVICE_SHUTTING_DOWN")
        links = await load_links(self.db)
        op_id = await self.db.write(lambda c: store.insert_operation(c, plan, triggered_by))
        nursery = self._nursery
        if nursery is None or self._closing:
            # Shutdown began while we were recording: never start it, say so in the record.
            now = now_iso()
            await self.db.write(store.finish_operation(
                op_id, "stopped", {}, now, 0.0, "stopped: the service is shutting down"))
            raise UnavailableError("the service is shutting down",
                                   code="SERVICE_SHUTTING_DOWN", details={"operation_id": op_id})
        limit = self.settings.operations.output_buffer_size
        hub = EventHub(task_output_limit=limit,
                       total_output_limit=max(TOTAL_REPLAY_OUTPUT, 2 * limit))
        hub.emit(OperationState(
            operation_id=op_id, status="queued", scripts=[s.id for s in plan.scripts],
            targets=[t.id for t in plan.targets], flags=plan.flags,
            concurrency=plan.concurrency, triggered_by=triggered_by,
        ))
        op = OperationRun(op_id, plan, db=self.db, settings=self.settings, ssh=self.ssh,
                          hub=hub, links=links, triggered_by=triggered_by)
        self._running[op_id] = op
        log.info("operation.queued", extra={"context": {
            "operation": op_id, "scripts": [s.id for s in plan.scripts],
            "targets": [t.id for t in plan.targets], "concurrency": plan.concurrency,
            "triggered_by": triggered_by}})
        nursery.start_soon(self._run_op, op)
        return op_id

    async def _run_op(self, op: OperationRun) -> None:
        try:
            await op.run()
        finally:
            self._running.pop(op.id, None)
            self._retain(op.id, op.hub)

    def _retain(self, op_id: str, hub: EventHub) -> None:
        now = time.monotonic()
        self._finished_hubs[op_id] = (now + HUB_RETENTION, hub)
        for key, (expires, _) in list(self._finished_hubs.items()):
            if expires < now:
                del self._finished_hubs[key]
        def retained() -> int:
            return sum(h.retained_output_bytes for _, h in self._finished_hubs.values())

        while len(self._finished_hubs) > MAX_RETAINED_HUBS or (
                len(self._finished_hubs) > 1 and retained() > RETAINED_OUTPUT_BUDGET):
            del self._finished_hubs[next(iter(self._finished_hubs))]

    async def stop(self, op_id: str, by: str | None = None) -> None:
        """Stop a queued or running operation (``by`` is recorded as the reason).

        *Errors*: 404 ``OPERATION_NOT_FOUND``; 409 ``OPERATION_FINISHED``.
        """
        op = self._running.get(op_id)
        if op is None:
            status = await self.db.read(lambda c: history.operation_status(c, op_id))
            if status is None:
                raise NotFoundError(f"no operation {op_id}", code="OPERATION_NOT_FOUND",
                                    details={"operation_id": op_id})
            raise ConflictError(f"operation {op_id} already finished ({status})",
                                code="OPERATION_FINISHED",
                                details={"operation_id": op_id, "status": status})
        op.stop(f"stopped by {by}" if by else "stopped by user")
        log.info("operation.stop", extra={"context": {"operation": op_id, "by": by}})

    # -- reads -----------------------------------------------------------------------------

    async def detail(self, op_id: str) -> dict[str, Any]:
        """The operation view; for a running task, the output so far (from memory).

        *Errors*: 404 ``OPERATION_NOT_FOUND``.
        """
        view = await self.db.read(lambda c: history.operation_detail(c, op_id))
        op = self._running.get(op_id)
        if op is not None:
            view["result"] = result_counts(op.statuses)  # so far
            for log in view["logs"]:
                live = op.live.get((log["target"], log["position"]))
                if live is not None and log["status"] == "running":
                    log["stdout"], log["stderr"] = live.text("stdout"), live.text("stderr")
                    log["output_truncated"] = live.truncated
        return view

    async def history(self, params: Mapping[str, str | None]) -> dict[str, Any]:
        return await self.db.read(lambda c: history.list_operations(c, params))

    async def wait(self, op_id: str) -> str:
        """Wait until ``op_id`` is no longer running here; returns its recorded status."""
        op = self._running.get(op_id)
        if op is not None:
            await op.done.wait()
        status = await self.db.read(lambda c: history.operation_status(c, op_id))
        if status is None:
            raise NotFoundError(f"no operation {op_id}", code="OPERATION_NOT_FOUND",
                                details={"operation_id": op_id})
        return status

    def running(self) -> list[str]:
        return list(self._running)

    def hub(self, op_id: str) -> EventHub | None:
        op = self._running.get(op_id)
        if op is not None:
            return op.hub
        retained = self._finished_hubs.get(op_id)
        return None if retained is None else retained[1]

    async def events(self, op_id: str, after: int = 0, *,
                     closing: trio.Event | None = None) -> AsyncGenerator[Event, None]:
        """The event stream of ``op_id`` after event ``after`` (see the module docstring).

        *Errors*: 404 ``OPERATION_NOT_FOUND`` — raised here, before any event is produced.
        """
        hub = self.hub(op_id)
        if hub is not None:
            return follow(hub, after, closing=closing)
        view = await self.detail(op_id)  # raises 404
        if view["status"] not in FINISHED_STATUSES:
            # Known to the database but not running here (e.g. recovered just now).
            view["status"] = "interrupted"
        names = await self.db.read(lambda c: history.script_names(c, view["scripts"]))
        return replay(list(history.replay_events(view, names)), after)
