"""The service container: every long-lived object the routes and the root nursery share.

Built once by :func:`build_services`; routes reach it through
``linkops.web.common.services()``. Services never import Quart.
"""

from __future__ import annotations

from functools import partial

import attrs
import trio

from linkops.auth import AuthService
from linkops.config import Settings
from linkops.db import Database
from linkops.frontend_assets import missing_assets
from linkops.inventory.sync import InventoryService
from linkops.operations.service import OperationsService
from linkops.ssh.bridge import SshManager
from linkops.ssh.enrollment import EnrollmentService
from linkops.ssh.health import HealthMonitor
from linkops.tables.service import TableService
from linkops.terminal.revocation import close_user_shells
from linkops.terminal.service import TerminalService


@attrs.define
class Services:
    settings: Settings
    db: Database
    auth: AuthService
    ssh: SshManager
    inventory: InventoryService
    enrollment: EnrollmentService
    health: HealthMonitor
    operations: OperationsService
    terminal: TerminalService
    tables: TableService
    # Set when the service begins to shut down: SSE streams and terminal sockets watch it and
    # end cleanly instead of being cut off by the server's graceful-shutdown deadline.
    closing: trio.Event = attrs.field(factory=trio.Event)
    # Frontend files missing at start (linkops.frontend_assets); GET /api/health reports them.
    frontend_missing: list[str] = attrs.field(factory=list)


def build_services(settings: Settings, db: Database) -> Services:
    ssh = SshManager(settings.ssh)
    built = Services(
        settings=settings,
        db=db,
        auth=AuthService(db, settings.api, settings.security),
        ssh=ssh,
        inventory=InventoryService(settings, db),
        enrollment=EnrollmentService(db, ssh, concurrency=settings.health.concurrency),
        health=HealthMonitor(db, ssh, settings.health),
        operations=OperationsService(db, settings, ssh),
        terminal=TerminalService(db, settings, ssh),
        tables=TableService(db, settings.api.jwt_secret.encode()),
        frontend_missing=missing_assets(),
    )
    # A password change closes that user's shells, not only their sockets (SPEC §10.2).
    terminal = built.terminal
    built.auth.live.on_password_changed = partial(close_user_shells, terminal)
    return built
