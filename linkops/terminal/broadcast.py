"""Broadcast input: one ``{"type": "broadcast", "panes": [...], "data": …}`` message writes
the same keystrokes to each listed pane of the socket's own workspace (SPEC §10.4).

Pane names are resolved against the socket's workspace only (protocol.py already refused
names that are not this workspace's), so no pane of another workspace can be named.
All or nothing: when a listed pane has no live session, or its input queue is full, an error
status (``PANE_NOT_CONNECTED`` / ``INPUT_OVERFLOW``) comes back on the socket and nothing is
written to any pane — a broadcast that reaches only some servers is how fleets drift apart.
Every broadcast is audited in ``terminal_audit`` (who, which panes, how many bytes; never the
keystrokes themselves, which may be a password).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from linkops.db import Database, dumps
from linkops.terminal import protocol
from linkops.terminal.buffers import Attachment
from linkops.timeutil import now_iso

if TYPE_CHECKING:
    from linkops.terminal.service import TerminalService

log = logging.getLogger("linkops.terminal")


class Broadcaster:
    def __init__(self, db: Database, service: TerminalService) -> None:
        self.db = db
        self.service = service

    async def send(self, attachment: Attachment, message: protocol.Broadcast) -> None:
        sessions = [self.service.session(attachment.workspace_id, p) for p in message.panes]
        missing = [p for p, s in zip(message.panes, sessions, strict=True) if s is None]
        if missing:
            attachment.send_control(protocol.status(
                None, "error", f"pane(s) {', '.join(missing)} not connected; nothing was sent",
                code="PANE_NOT_CONNECTED", panes=missing))
            return
        size = len(message.data.encode("utf-8", "surrogatepass"))
        refused = [s.pane for s in sessions if s is not None and not s.can_accept(size)]
        if refused:
            attachment.send_control(protocol.status(
                None, "error", f"pane(s) {', '.join(refused)} not reading their input; "
                "nothing was sent", code="INPUT_OVERFLOW", panes=refused))
            return
        for session in sessions:
            assert session is not None
            session.write(message.data)
        await self.db.execute(
            "INSERT INTO terminal_audit (at, username, action, details) VALUES (?,?,?,?)",
            (now_iso(), attachment.username, "terminal.broadcast",
             dumps({"workspace_id": attachment.workspace_id, "panes": list(message.panes),
                    "targets": [s.target for s in sessions if s is not None],
                    "bytes": size})))
        log.info("terminal.broadcast", extra={"context": {
            "workspace": attachment.workspace_id, "user": attachment.username,
            "panes": list(message.panes), "bytes": size}})
