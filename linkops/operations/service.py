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

import difflib
import logging
import time
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import trio

from linkops.api_types import RunRequest
from linkops.config import Settings
from linkops.converters import structure_request
from linkops.db import Database, loads
from linkops.errors import ConflictError, NotFoundError, UnavailableError, ValidationError
from linkops.operations import history, planning, store
from linkops.operations.event_types import OperationState
from linkops.operations.events import Event, EventHub, follow, replay
from linkops.operations.groups import Group, Grouping
from linkops.operations.orchestrator import OperationRun
from linkops.operations.remote import kill_group
from linkops.operations.requests import Confirmation, OutputQuery, RerunBody, parse
from linkops.operations.status import FINISHED_STATUSES, result_counts
from linkops.operations.validate import Plan, Request, build_plan, parse_request, read_rows
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


# The diff compares at most this many lines of each stream of each side (`cut` says so).
DIFF_MAX_LINES = 20_000


def _unified(base: Mapping[str, str], changed: Mapping[str, str], label_a: str,
             label_b: str) -> dict[str, Any]:
    parts: dict[str, str] = {}
    text = []
    cut = False
    for stream in ("stdout", "stderr"):
        old = base[stream].splitlines(keepends=True)
        new = changed[stream].splitlines(keepends=True)
        cut = cut or len(old) > DIFF_MAX_LINES or len(new) > DIFF_MAX_LINES
        lines = difflib.unified_diff(old[:DIFF_MAX_LINES], new[:DIFF_MAX_LINES],
                                     fromfile=f"{stream} of {label_a}",
                                     tofile=f"{stream} of {label_b}")
        parts[stream] = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
        text.append(f"=== {stream} ===\n" + (parts[stream] or "(identical)\n"))
    return {"stdout": parts["stdout"], "stderr": parts["stderr"], "diff": "".join(text),
            "cut": cut}


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

    async def _validated(self, body: RunRequest | Mapping[str, Any]) -> tuple[
            Request, Plan, dict[str, Any], dict[str, Any], str | None]:
        """The run path's validation (shape, scripts, flags, hashes, enrollment)."""
        request = parse_request(body, self.settings)
        scripts, machines = await self.db.read(lambda c: read_rows(c, request))
        plan = build_plan(request, scripts, machines, self.settings)
        commit = await self.db.read(store.latest_commit)
        return request, plan, scripts, machines, commit

    async def submit(self, body: RunRequest | Mapping[str, Any], triggered_by: str | None, *,
                     parent: str | None = None) -> str:
        """Validate, check the plan and confirmation, record ``queued`` and start; returns
        the operation id. ``parent``: the operation this one reruns.

        *Errors*: see :mod:`linkops.operations.validate` and
        :mod:`linkops.operations.planning`; :class:`UnavailableError`
        (``SERVICE_SHUTTING_DOWN``) when the service is not running operations.
        """
        typed = body if isinstance(body, RunRequest) else structure_request(body, RunRequest)
        confirm = Confirmation(plan_id=typed.plan_id, confirm=typed.confirm)
        request, plan, _, _, commit = await self._validated(typed)
        confirmed: dict[str, Any] | None = None
        if confirm.plan_id is not None:
            plan_id = confirm.plan_id
            stored = await self.db.read(lambda c: c.execute(
                "SELECT request, plan FROM operation_plans WHERE id = ?", (plan_id,)
            ).fetchone())
            confirmed = planning.check_plan(
                None if stored is None else {"request": loads(stored["request"]),
                                             "plan": loads(stored["plan"])},
                plan_id, request, plan, commit)
        planning.check_confirmation(planning.confirmation(plan, self.settings),
                                    confirm.plan_id, confirm.confirm)
        nursery = self._nursery
        if nursery is None or self._closing:
            raise UnavailableError("the service is not accepting operations now",
                                   code="SERVICE_SHUTTING_DOWN")
        links = await load_links(self.db)
        op_id = await self.db.write(lambda c: store.insert_operation(
            c, plan, triggered_by, parent=parent, confirmed_plan=confirmed))
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

    async def detail(self, op_id: str, *, full_output: bool = False) -> dict[str, Any]:
        """The operation view (heads and sizes of each log; the whole kept output too with
        ``full_output``); for a running task, the output so far (from memory).

        *Errors*: 404 ``OPERATION_NOT_FOUND``.
        """
        view = await self.db.read(
            lambda c: history.operation_detail(c, op_id, full_output=full_output))
        op = self._running.get(op_id)
        if op is not None:
            view["result"] = result_counts(op.statuses)  # so far
            head = history.view_head_chars(len(view["logs"]))
            for log in view["logs"]:
                live = op.live.get((log["target"], log["position"]))
                if live is not None and log["status"] == "running":
                    for stream in ("stdout", "stderr"):
                        text = live.text(stream)
                        log[f"{stream}_head"] = text[:head]
                        log[f"{stream}_bytes"] = len(text.encode("utf-8", "surrogatepass"))
                        if full_output:
                            log[stream] = text
                    log["output_truncated"] = live.truncated
        return view

    # -- SPEC §10.3: groups, diff, paged output, rerun, plan ---------------------------------

    async def groups(self, op_id: str) -> dict[str, Any]:
        """``{operation_id, status, finished, total, script_groups, unfinished}`` from the
        fingerprints stored at each task's end. *Errors*: 404 ``OPERATION_NOT_FOUND``."""
        summary, grouping, unfinished = await self.db.read(
            lambda c: history.operation_groups(c, op_id))
        return {"operation_id": op_id, "status": summary["status"],
                "finished": len(grouping), "total": len(grouping) + len(unfinished),
                "script_groups": grouping.view(), "unfinished": unfinished}

    async def diff(self, op_id: str, key: str, against: str) -> dict[str, Any]:
        """Unified diff of two groups' normalised output (one representative task each).

        ``against``: ``majority`` (the majority of the group's script) or a group key.
        *Errors*: 404 ``OPERATION_NOT_FOUND`` / ``GROUP_NOT_FOUND``; 409 ``NO_MAJORITY``.
        """
        _, grouping, _ = await self.db.read(lambda c: history.operation_groups(c, op_id))
        group = self._group(grouping, op_id, key)
        if against == "majority":
            other = grouping.majority(group.script)
            if other is None:
                raise ConflictError(f"script {group.script} has no successful group",
                                    code="NO_MAJORITY",
                                    details={"operation_id": op_id, "script": group.script})
        else:
            other = self._group(grouping, op_id, against)
        mine = grouping.ordered_targets(group)[0]
        theirs = grouping.ordered_targets(other)[0]

        def read(c: Any) -> tuple[dict[str, Any], dict[str, Any]]:
            return (history.task_output(c, op_id, theirs, other.script),
                    history.task_output(c, op_id, mine, group.script))

        base, changed = await self.db.read(read)
        label_a = f"{other.key} ({other.count} × {other.status}, e.g. {theirs})"
        label_b = f"{group.key} ({group.count} × {group.status}, e.g. {mine})"
        # difflib is CPU-bound (and superlinear on long, different texts): a worker thread,
        # on at most DIFF_MAX_LINES lines of each side.
        result = await trio.to_thread.run_sync(_unified, base, changed, label_a, label_b)
        return {"operation_id": op_id, "group": group.key, "against": other.key,
                "script": group.script, **result}

    @staticmethod
    def _group(grouping: Grouping, op_id: str, key: str) -> Group:
        group = grouping.get(key)
        if group is None:
            raise NotFoundError(f"no group {key} in {op_id}", code="GROUP_NOT_FOUND",
                                details={"operation_id": op_id, "group": key[:64]})
        return group

    async def output(self, op_id: str, target: str, script: str,
                     query: OutputQuery) -> dict[str, Any]:
        """A page of one task's kept output (see ``history.output_page``)."""
        page = await self.db.read(lambda c: history.output_page(
            c, op_id, target, script, query.stream, query.offset, query.page_size))
        if page is None:  # running: from memory (what the database gets at its end)
            op = self._running.get(op_id)
            positions = [] if op is None else [
                i for i, s in enumerate(op.plan.scripts) if s.id == script]
            live = op.live.get((target, positions[0])) if op and positions else None
            text = live.text(query.stream) if live else ""
            page = history.page_text(text, query.offset, query.page_size,
                                     bool(live and live.truncated))
        return {"operation_id": op_id, "target": target, "script": script,
                "stream": query.stream, "limit": query.page_size, **page}

    async def rerun(self, op_id: str, body: RerunBody | Mapping[str, Any],
                    triggered_by: str | None) -> dict[str, Any]:
        """A new operation of the same scripts and flags on the chosen targets of ``op_id``
        (``failed``: a task failed or timed out; ``unfinished``: a task did not succeed —
        failed, timeout, stopped, skipped (never started), interrupted; ``group``: the
        targets of one output group). Validated, enrollment-checked and confirmed exactly
        like ``run``. *Errors*: 404 ``OPERATION_NOT_FOUND`` / ``GROUP_NOT_FOUND``; 409
        ``OPERATION_RUNNING``, ``NOTHING_TO_RERUN``; 400 ``VALIDATION_ERROR``; all of run's.
        """
        req = body if isinstance(body, RerunBody) else parse(body, RerunBody)
        if (req.which == "group") != (req.group is not None):
            raise ValidationError("group is required with which=group, and only then",
                                  code="VALIDATION_ERROR",
                                  details={"errors": [{
                                      "path": "$.group",
                                      "message": "required with which=group, and only then"}],
                                      "error_count": 1})
        summary, grouping, _ = await self.db.read(lambda c: history.operation_groups(c, op_id))
        if summary["status"] not in FINISHED_STATUSES or op_id in self._running:
            raise ConflictError(f"operation {op_id} is still {summary['status']}",
                                code="OPERATION_RUNNING",
                                details={"operation_id": op_id, "status": summary["status"]})
        rows = await self.db.read(lambda c: c.execute(
            "SELECT target, status FROM operation_logs WHERE operation_id = ?",
            (op_id,)).fetchall())
        chosen: set[str]
        if req.which == "group":
            assert req.group is not None
            chosen = set(self._group(grouping, op_id, req.group).targets)
        else:
            bad = {"failed", "timeout"} if req.which == "failed" else \
                {"failed", "timeout", "stopped", "skipped", "interrupted", "pending", "running"}
            chosen = {r["target"] for r in rows if r["status"] in bad}
        targets = [t for t in summary["targets"] if t in chosen]
        if not targets:
            raise ConflictError(f"operation {op_id} has no {req.which} targets to rerun",
                                code="NOTHING_TO_RERUN",
                                details={"operation_id": op_id, "which": req.which})
        run_body: dict[str, Any] = {
            "scripts": summary["scripts"], "targets": targets, "flags": summary["flags"],
            "concurrency": req.concurrency or min(summary["concurrency"], len(targets)),
            "require_enrollment": summary["require_enrollment"],
        }
        for key in ("plan_id", "confirm"):
            value = getattr(req, key)
            if value is not None:
                run_body[key] = value
        try:
            new_id = await self.submit(run_body, triggered_by, parent=op_id)
        except ConflictError as exc:
            if exc.code == "CONFIRMATION_REQUIRED":  # say what to plan
                exc.details["run"] = {k: v for k, v in run_body.items()
                                      if k not in ("plan_id", "confirm")}
            raise
        log.info("operation.rerun", extra={"context": {
            "operation": new_id, "parent": op_id, "which": req.which, "targets": targets}})
        return {"operation_id": new_id, "parent": op_id, "targets": targets}

    async def plan(self, body: RunRequest | Mapping[str, Any],
                   created_by: str | None) -> dict[str, Any]:
        """``POST /api/operations/plan``: validate the run body exactly as ``run`` does and
        answer what it would do (see :mod:`linkops.operations.planning`); the plan is kept
        for :data:`planning.PLAN_TTL`."""
        typed = body if isinstance(body, RunRequest) else structure_request(body, RunRequest)
        if typed.plan_id is not None or typed.confirm is not None:
            raise ValidationError("a plan takes the body of run, without plan_id or confirm",
                                  details={"errors": [
                                      {"path": f"$.{name}", "message": "not allowed in a plan"}
                                      for name in ("plan_id", "confirm")
                                      if getattr(typed, name) is not None]})
        request, plan, scripts, machines, commit = await self._validated(typed)
        known = self.ssh.known_hosts

        def host_key_known(host: str, port: int) -> bool:
            return bool(known.known_keys(host, port))

        plan_id = planning.new_plan_id()
        view = await trio.to_thread.run_sync(lambda: planning.plan_view(
            plan_id, plan, machines, scripts, commit, host_key_known, self.settings))
        await self.db.write(store.insert_plan(plan_id, created_by, view["expires_at"],
                                              planning.canonical_request(request), view))
        return view

    async def history(self, params: Mapping[str, str | int | None]) -> dict[str, Any]:
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
        view = await self.detail(op_id, full_output=True)  # raises 404
        if view["status"] not in FINISHED_STATUSES:
            # Known to the database but not running here (e.g. recovered just now).
            view["status"] = "interrupted"
        names = await self.db.read(lambda c: history.script_names(c, view["scripts"]))
        return replay(list(history.replay_events(view, names)), after)
