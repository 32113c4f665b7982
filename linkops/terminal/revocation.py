"""A user whose password changed loses their terminal shells (SPEC §10.2).

Called by :class:`linkops.live_sessions.LiveSessions` when a recheck finds a live session
ended by a password change: whoever held the old password must not keep a root shell that
survives the change (not even for the reattach grace period). Uses only the public API of
:class:`~linkops.terminal.service.TerminalService`.
"""

from __future__ import annotations

import logging

from linkops.errors import LinkOpsError
from linkops.terminal.service import TerminalService

log = logging.getLogger("linkops.terminal")


async def close_user_shells(terminal: TerminalService, username: str) -> int:
    """Disconnect every live pane of ``username``'s workspaces; returns how many."""
    closed = 0
    for workspace in await terminal.list_workspaces(username):
        for pane in sorted(terminal.live_panes(workspace.id)):
            try:
                await terminal.disconnect_pane(username, workspace.id, pane)
            except LinkOpsError:  # gone meanwhile
                continue
            closed += 1
    if closed:
        log.info("terminal.shells_closed_after_password_change",
                 extra={"context": {"user": username, "panes": closed}})
    return closed
