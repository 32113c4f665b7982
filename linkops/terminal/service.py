"""TerminalService: owns every live pane session, socket attachment and grace period.

Constructor (wired by ``linkops.server.build_services`` as ``services.terminal``)::

    TerminalService(db: Database, settings: Settings, ssh: SshManager)
    await nursery.start(service.run)      # background service: sessions live in its nursery
    await service.shutdown()              # SIGTERM: sockets closed 1001, shells closed, audited

Shape::

    TerminalService
      ├─ WorkspaceStore (workspaces.py)     the three terminal tables
      ├─ _Runtime per workspace in use      sessions {pane: PaneSession}, connecting panes,
      │                                     the attached socket (Attachment) or detached_since
      └─ run(): nursery for PaneSession.run  + a reaper that ends sessions whose workspace has
                                               had no socket for [terminal] reattach_grace_seconds

Connecting a pane (REST ``connect``/``connect-all``): the target must be enrolled (403
``ENROLLMENT_REQUIRED``); a dedicated SSH connection is opened, the client ID is read again over
that same connection and compared (403 ``CLIENT_ID_MISMATCH``), then a PTY shell
(``xterm-256color``, the pane's size) is opened and the session is recorded in
``terminal_sessions``. Status messages ``connecting → enrolled → connected`` (or ``error``) go to
the attached socket as they happen.

Sockets: :meth:`attach` checks ownership (404 for anyone else, before anything else happens),
replaces an older socket of the same workspace (closed with 4001), replays each pane's status
and scrollback. :meth:`detach` keeps the shells running for the grace period so that a page
reload re-attaches to the same shells.

*Cancellation*: a cancelled connect closes whatever it opened (shielded) and marks the pane
``error``. Session shutdown is shielded with deadlines (see session.py).

*Errors*: LinkOps errors from workspaces.py and the SSH layer (503 ``SSH_CONNECTION_FAILED`` …)
pass through to the routes unchanged.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import attrs
import trio

from linkops.config import Settings
from linkops.db import Database
from linkops.errors import (
    ConflictError,
    ForbiddenError,
    LinkOpsError,
    UnavailableError,
    ValidationError,
)
from linkops.models import Link
from linkops.ssh.bridge import SshConnection, SshManager
from linkops.ssh.enrollment import check_client_id
from linkops.terminal import protocol
from linkops.terminal.broadcast import Broadcaster
from linkops.terminal.buffers import Attachment
from linkops.terminal.recording import Recordings
from linkops.terminal.session import PaneSession
from linkops.terminal.workspaces import (
    Assignment,
    PaneState,
    Workspace,
    WorkspaceStore,
    clamp_size,
)

log = logging.getLogger("linkops.terminal")

TERM: Final = "xterm-256color"
REAP_INTERVAL: Final = 1.0
CLOSE_WAIT_SECONDS: Final = 6.0


@attrs.define(eq=False)
class _Connecting:
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    done: trio.Event = attrs.field(factory=trio.Event)


@attrs.define(eq=False)
class _Runtime:
    """The live state of one workspace (absent while nothing is live)."""

    id: str
    owner: str
    sessions: dict[str, PaneSession] = attrs.field(factory=dict)
    connecting: dict[str, _Connecting] = attrs.field(factory=dict)
    attachment: Attachment | None = None
    detached_since: float | None = None
    deleted: bool = False
    # Pane sizes known to be in the database (saves a write per repeated resize).
    stored_sizes: dict[str, tuple[int, int]] = attrs.field(factory=dict)

    def idle(self) -> bool:
        return not self.sessions and not self.connecting and self.attachment is None


class TerminalService:
    """See the module docstring."""

    def __init__(self, db: Database, settings: Settings, ssh: SshManager) -> None:
        self.settings = settings
        self.terminal = settings.terminal
        self.store = WorkspaceStore(db, settings.terminal,
                                    enrollment_required=settings.security.enrollment_required)
        self.ssh = ssh
        self.recordings = Recordings(db, settings)
        self.broadcast = Broadcaster(db, self)
        self._runtimes: dict[str, _Runtime] = {}
        self._nursery: trio.Nursery | None = None
        self._closing = False

    # -- background service ----------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        recovered = await self.store.recover_after_restart()
        if recovered:
            log.info("terminal.recovered", extra={"context": {"closed_sessions": recovered}})
        async with trio.open_nursery() as nursery:
            await nursery.start(self.recordings.run)
            self._nursery = nursery
            task_status.started()
            try:
                while True:
                    await trio.sleep(REAP_INTERVAL)
                    self._reap()
            finally:
                self._nursery = None
                # Cancelled: every session in the nursery is being cancelled with us; their
                # shielded cleanup records the close.
                for runtime in self._runtimes.values():
                    for session in runtime.sessions.values():
                        session.close("shutdown")

    def _reap(self) -> None:
        now = trio.current_time()
        grace = self.terminal.reattach_grace_seconds
        for runtime in list(self._runtimes.values()):
            if (runtime.attachment is None and runtime.detached_since is not None
                    and now - runtime.detached_since >= grace):
                for session in list(runtime.sessions.values()):
                    session.close("grace_expired")
                for connecting in runtime.connecting.values():
                    connecting.scope.cancel()
                runtime.detached_since = None
            if runtime.idle():
                self._runtimes.pop(runtime.id, None)

    async def shutdown(self) -> None:
        """Close every socket (1001) and every shell; bounded by :data:`CLOSE_WAIT_SECONDS`."""
        self._closing = True
        sessions: list[PaneSession] = []
        for runtime in list(self._runtimes.values()):
            if runtime.attachment is not None:
                runtime.attachment.close(protocol.CLOSE_GOING_AWAY, "server shutting down")
            for connecting in runtime.connecting.values():
                connecting.scope.cancel()
            for session in list(runtime.sessions.values()):
                session.close("shutdown")
                sessions.append(session)
        with trio.move_on_after(CLOSE_WAIT_SECONDS):
            for session in sessions:
                await session.finished.wait()

    # -- helpers ----------------------------------------------------------------------------

    def _runtime(self, workspace: Workspace) -> _Runtime:
        runtime = self._runtimes.get(workspace.id)
        if runtime is None:
            runtime = self._runtimes[workspace.id] = _Runtime(id=workspace.id,
                                                              owner=workspace.owner)
        return runtime

    def live_panes(self, workspace_id: str) -> set[str]:
        runtime = self._runtimes.get(workspace_id)
        if runtime is None:
            return set()
        return set(runtime.sessions) | set(runtime.connecting)

    def session(self, workspace_id: str, pane: str) -> PaneSession | None:
        runtime = self._runtimes.get(workspace_id)
        return None if runtime is None else runtime.sessions.get(pane)

    def session_count(self) -> int:
        return sum(len(r.sessions) for r in self._runtimes.values())

    def _notify(self, runtime: _Runtime, pane: str, message: dict[str, Any]) -> None:
        if runtime.attachment is not None:
            box = runtime.attachment.outboxes.get(pane)
            if box is not None:
                box.put_message(message)

    # -- REST-level operations ----------------------------------------------------------------

    async def create_workspace(self, owner: str, layout: Any, max_panes: Any) -> Workspace:
        busy = [r.id for r in self._runtimes.values() if not r.idle()]
        return await self.store.create(owner, layout, max_panes, busy=busy)

    async def get_workspace(self, owner: str, workspace_id: str) -> Workspace:
        return await self.store.get(owner, workspace_id)

    async def list_workspaces(self, owner: str) -> list[Workspace]:
        return await self.store.list(owner)

    async def set_layout(self, owner: str, workspace_id: str, layout: Any) -> Workspace:
        return await self.store.set_layout(owner, workspace_id, layout)

    async def assign_panes(self, owner: str, workspace_id: str,
                           assignments: list[Assignment]) -> Workspace:
        return await self.store.assign(owner, workspace_id, assignments,
                                       self.live_panes(workspace_id))

    async def delete_workspace(self, owner: str, workspace_id: str) -> None:
        runtime = self._runtimes.get(workspace_id)
        if runtime is not None and runtime.owner == owner:
            # From here on a connect that is still running closes what it opens.
            runtime.deleted = True
        # Closed in the database first: no request can start anything in it any more.
        await self.store.close(owner, workspace_id)
        if runtime is not None and runtime.owner == owner:
            await self._end_sessions(runtime, list(runtime.sessions) + list(runtime.connecting),
                                     "workspace_deleted")
            if runtime.attachment is not None:
                runtime.attachment.close(protocol.CLOSE_WORKSPACE_GONE, "workspace deleted")
            self._runtimes.pop(workspace_id, None)

    async def disconnect_pane(self, owner: str, workspace_id: str, pane: str) -> PaneState:
        workspace = await self.store.get(owner, workspace_id)
        workspace.pane(pane)
        runtime = self._runtimes.get(workspace.id)
        if runtime is not None:
            await self._end_sessions(runtime, [pane], "disconnect")
        return (await self.store.get(owner, workspace_id)).pane(pane)

    async def _end_sessions(self, runtime: _Runtime, panes: list[str], reason: str) -> None:
        ending: list[PaneSession] = []
        connects: list[_Connecting] = []
        for pane in panes:
            connecting = runtime.connecting.get(pane)
            if connecting is not None:
                connecting.scope.cancel()
                connects.append(connecting)
            session = runtime.sessions.get(pane)
            if session is not None:
                session.close(reason)
                ending.append(session)
        with trio.move_on_after(CLOSE_WAIT_SECONDS):
            for session in ending:
                await session.finished.wait()
            for connecting in connects:
                await connecting.done.wait()

    async def connect_all(self, owner: str, workspace_id: str) -> list[dict[str, Any]]:
        """Connect every assigned pane concurrently; one pane's failure does not stop the
        others. Returns each pane's outcome (``status`` and ``error``)."""
        workspace = await self.store.get(owner, workspace_id)
        results: dict[str, dict[str, Any]] = {}

        async def one(state: PaneState) -> None:
            try:
                await self.connect_pane(owner, workspace_id, state.pane)
                results[state.pane] = {"pane": state.pane, "target": state.target,
                                       "status": "connected", "error": None}
            except LinkOpsError as exc:
                results[state.pane] = {"pane": state.pane, "target": state.target,
                                       "status": "error", "error": exc.message,
                                       "code": exc.code}

        async with trio.open_nursery() as nursery:
            for state in workspace.panes:
                if state.target and state.pane in workspace.visible_panes:
                    nursery.start_soon(one, state)
        return [results[p] for p in sorted(results)]

    async def connect_pane(self, owner: str, workspace_id: str, pane: str) -> PaneState:
        """Open the pane's shell (idempotent while it is connected). See the module docstring.

        *Errors*: 400 ``PANE_NOT_ASSIGNED``, 403 ``ENROLLMENT_REQUIRED`` /
        ``CLIENT_ID_MISMATCH``, 409 ``PANE_BUSY`` (a connect is already running), 503 SSH.
        """
        if self._closing or self._nursery is None:
            raise UnavailableError("the terminal service is not running", code="SHUTTING_DOWN")
        workspace = await self.store.get(owner, workspace_id)
        state = workspace.pane(pane)
        runtime = self._runtime(workspace)
        if pane in runtime.sessions:
            return state
        if pane in runtime.connecting:
            raise ConflictError(f"pane {pane} is already connecting", code="PANE_BUSY",
                                details={"pane": pane})
        if not state.target:
            raise ValidationError(f"pane {pane} has no target; assign one first",
                                  code="PANE_NOT_ASSIGNED", details={"pane": pane})
        connecting = runtime.connecting[pane] = _Connecting()
        try:
            with connecting.scope:
                await self._open(runtime, workspace, state, owner)
            if connecting.scope.cancelled_caught:
                raise ConflictError(f"connecting pane {pane} was cancelled",
                                    code="PANE_DISCONNECTED", details={"pane": pane})
        finally:
            runtime.connecting.pop(pane, None)
            connecting.done.set()
            if runtime.attachment is None and runtime.detached_since is None:
                runtime.detached_since = trio.current_time()
        return (await self.store.get(owner, workspace_id)).pane(pane)

    async def _open(self, runtime: _Runtime, workspace: Workspace, state: PaneState,
                    owner: str) -> None:
        pane, target = state.pane, state.target
        assert target is not None
        self._notify(runtime, pane, protocol.status(pane, "connecting",
                                                    f"connecting to {target}", target=target))
        conn: SshConnection | None = None
        shell = None
        try:
            link, must_be_enrolled = await self.store.target_link(target)
            await self.store.set_pane(workspace.id, pane, status="connecting", error=None)
            conn = await self.ssh.connect(link, await self.store.resolver_links())
            if must_be_enrolled:
                await self._check_client_id(conn, link)
                self._notify(runtime, pane, protocol.status(
                    pane, "enrolled", f"{target}: client ID verified", target=target))
            shell = await conn.open_shell(term=TERM, cols=state.cols, rows=state.rows)
            audit_id = await self.store.open_session(workspace.id, pane, target, owner)
        except BaseException as exc:
            with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_WAIT_SECONDS):
                if shell is not None:
                    await shell.aclose()
                if conn is not None:
                    await conn.aclose()
                message = exc.message if isinstance(exc, LinkOpsError) else (
                    "connection cancelled" if isinstance(exc, trio.Cancelled)
                    else "internal error")
                await self.store.set_pane(workspace.id, pane, status="error", error=message)
                self._notify(runtime, pane, protocol.status(
                    pane, "error", message, target=target,
                    code=getattr(exc, "code", "INTERNAL_ERROR")))
                log.warning("terminal.connect_failed", extra={"context": {
                    "workspace": workspace.id, "pane": pane, "target": target,
                    "error": message}})
            raise
        session = PaneSession(
            workspace_id=workspace.id, pane=pane, target=target, username=owner,
            connection=conn, shell=shell, audit_id=audit_id, cols=state.cols, rows=state.rows,
            scrollback_chars=self.terminal.scrollback_bytes, on_closed=self._session_closed)
        session.recorder = self.recordings.start(
            link=link, workspace_id=workspace.id, pane=pane, username=owner,
            session_id=audit_id, cols=state.cols, rows=state.rows)
        runtime.sessions[pane] = session
        log.info("terminal.session_open", extra={"context": {
            "workspace": workspace.id, "pane": pane, "target": target, "user": owner}})
        assert self._nursery is not None
        self._nursery.start_soon(self._guarded, session)
        if runtime.deleted or self._closing:
            session.close("workspace_deleted" if runtime.deleted else "shutdown")
        elif runtime.attachment is not None:
            session.attach(runtime.attachment.outboxes[pane])

    @staticmethod
    async def _guarded(session: PaneSession) -> None:
        """One pane's life in the service nursery: whatever goes wrong in it (a bug in its
        cleanup, a database error while recording its end) ends this pane with one log line,
        never the nursery, its other panes or the service."""
        try:
            await session.run()
        except Exception as exc:
            log.error("terminal.session_crashed", extra={"context": {
                "workspace": session.workspace_id, "pane": session.pane,
                "target": session.target, "error": repr(exc)}})
            session.notify(protocol.status(session.pane, "error",
                                           f"internal error ({type(exc).__name__})",
                                           target=session.target, code="INTERNAL_ERROR"))

    async def _check_client_id(self, conn: SshConnection, link: Link) -> None:
        """Read the client ID over ``conn`` (the shell's own connection) and compare.

        A mismatch also marks the link not enrolled, as a verification would.

        *Errors*: 403 ``CLIENT_ID_MISMATCH`` (missing, unreadable or different ID).
        """
        result = await check_client_id(conn, link, timeout=self.settings.ssh.command_timeout)
        if not result.enrolled:
            await self.store.record_enrollment_failure(link.id, result.verified_at,
                                                       result.error)
            raise ForbiddenError(
                result.error or f"{link.id}: client ID check failed", code="CLIENT_ID_MISMATCH",
                details={"target": link.id, "client_id_found": result.client_id_found,
                         "reason": result.reason})

    async def _session_closed(self, session: PaneSession, reason: str,
                              error: str | None) -> None:
        runtime = self._runtimes.get(session.workspace_id)
        if runtime is not None and runtime.sessions.get(session.pane) is session:
            del runtime.sessions[session.pane]
        if session.recorder is not None:
            session.recorder.close()
        # Recorded before it is reported: whoever sees "closed" finds the audit row closed.
        try:
            await self.store.close_session(session.audit_id, session.workspace_id,
                                           session.pane, reason, error)
        finally:
            state = "error" if error else "closed"
            session.notify(protocol.status(session.pane, state,
                                           error or f"session closed ({reason})",
                                           target=session.target, reason=reason))
            log.info("terminal.session_close", extra={"context": {
                "workspace": session.workspace_id, "pane": session.pane,
                "target": session.target, "reason": reason, "error": error}})

    # -- sockets ----------------------------------------------------------------------------

    async def attach(self, owner: str, workspace_id: str) -> Attachment:
        """A new socket for the owner's workspace (see the module docstring).

        *Errors*: 404 when the workspace is missing or not ``owner``'s; 503 when shutting down.
        """
        if self._closing:
            raise UnavailableError("the terminal service is shutting down", code="SHUTTING_DOWN")
        workspace = await self.store.get(owner, workspace_id)
        runtime = self._runtime(workspace)
        old = runtime.attachment
        if old is not None:
            old.close(protocol.CLOSE_REPLACED, "workspace attached from another socket")
            self.detach(old)
        attachment = Attachment(workspace.id, owner, [p.pane for p in workspace.panes])
        runtime.attachment = attachment
        runtime.detached_since = None
        for state in workspace.panes:
            box = attachment.outboxes[state.pane]
            session = runtime.sessions.get(state.pane)
            if session is not None:
                session.attach(box)
            elif state.pane in runtime.connecting:
                box.put_message(protocol.status(state.pane, "connecting",
                                                f"connecting to {state.target}",
                                                target=state.target))
            else:
                kind = "error" if state.status == "error" else "closed"
                box.put_message(protocol.status(state.pane, kind, state.error or "not connected",
                                                target=state.target, cols=state.cols,
                                                rows=state.rows))
        return attachment

    def detach(self, attachment: Attachment) -> None:
        """The socket is gone: stop feeding it; shells live on for the grace period."""
        runtime = self._runtimes.get(attachment.workspace_id)
        if runtime is not None and runtime.attachment is attachment:
            runtime.attachment = None
            runtime.detached_since = trio.current_time()
            for pane, box in attachment.outboxes.items():
                session = runtime.sessions.get(pane)
                if session is not None:
                    session.detach(box)
        attachment.close(protocol.CLOSE_NORMAL, "detached")

    async def handle(self, attachment: Attachment, message: protocol.ClientMessage) -> None:
        """One decoded client message (stdin, resize, ping, flow, ack)."""
        if isinstance(message, protocol.Ping):
            attachment.send_control(protocol.pong())
            return
        if isinstance(message, protocol.Flow):
            attachment.enable_flow(message.window)
            return
        if isinstance(message, protocol.Ack):
            attachment.ack(message.chars)
            return
        if isinstance(message, protocol.Broadcast):
            await self.broadcast.send(attachment, message)
            return
        runtime = self._runtimes.get(attachment.workspace_id)
        session = None if runtime is None else runtime.sessions.get(message.pane)
        if isinstance(message, protocol.Resize):
            cols, rows = clamp_size(message.cols, message.rows)
            if session is not None and (session.cols, session.rows) != (cols, rows):
                session.resize(cols, rows)
            # The stored size is used by the next connect of this pane; written only when it
            # changes (browsers repeat resizes; the database has one writer for everyone).
            sizes = runtime.stored_sizes if runtime is not None else {}
            if sizes.get(message.pane) != (cols, rows):
                await self.store.set_pane(attachment.workspace_id, message.pane, cols=cols,
                                          rows=rows)
                sizes[message.pane] = (cols, rows)
            return
        if session is None:
            attachment.send_control(protocol.status(
                message.pane, "error", f"pane {message.pane} is not connected",
                code="PANE_NOT_CONNECTED"))
        elif not session.write(message.data):
            attachment.send_control(protocol.status(
                message.pane, "error", f"pane {message.pane} is not reading its input; "
                "keystrokes dropped", code="INPUT_OVERFLOW"))
