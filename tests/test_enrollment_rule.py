"""One enrollment rule for operations and terminals (docs/decisions/enrollment.md).

For every combination of ``[security] enrollment_required``, the request's
``require_enrollment`` and the link's ``enrollment.required`` (and the link enrolled or not),
the operation validator and the terminal's pane assignment and connect decide exactly what
:func:`linkops.ssh.enrollment.blocked_by_enrollment` says — so they decide identically for
the same inputs (terminals have no request flag: theirs is ``false``; with the request flag
``true`` operations are only ever stricter). Property 22 of SPEC §9 for the terminal side.
"""

from __future__ import annotations

import itertools

import attrs
import pytest

from linkops.config import Settings, TerminalSettings
from linkops.db import Database
from linkops.errors import ForbiddenError, UnavailableError
from linkops.models import Enrollment, Link
from linkops.operations.service import OperationsService
from linkops.ssh.bridge import SshManager
from linkops.ssh.enrollment import blocked_by_enrollment
from linkops.ssh.machines import insert_links_sync
from linkops.terminal.workspaces import Assignment, WorkspaceStore
from tests.fixtures_operations import seed_script

LINK = Link(id="gate-1", type="VPS", host="127.0.0.1", port=22, user="root", name="gate-1",
            enrollment=Enrollment(clientId="LINKOPS-00000000-0000-4000-8000-000000000001"))


async def _operation_refused(db: Database, settings: Settings, requested: bool) -> bool:
    service = OperationsService(db, settings, SshManager(settings.ssh))
    try:
        await service.submit({"scripts": ["a"], "targets": [LINK.id],
                              "require_enrollment": requested}, "tester")
    except ForbiddenError as exc:
        assert exc.code == "ENROLLMENT_REQUIRED"
        return True
    except UnavailableError:  # validated, then not started: the service is not running
        return False
    raise AssertionError("the operation was started by a service that is not running")


async def _terminal_refused(db: Database, global_required: bool) -> tuple[bool, bool]:
    store = WorkspaceStore(db, TerminalSettings(max_workspaces=100),
                           enrollment_required=global_required)
    workspace = await store.create("alice", "single", None)
    try:
        await store.assign("alice", workspace.id, [Assignment(pane="A", target=LINK.id)], ())
        assigned = False
    except ForbiddenError as exc:
        assert exc.code == "ENROLLMENT_REQUIRED"
        assigned = True
    try:
        await store.target_link(LINK.id)
        connect = False
    except ForbiddenError:
        connect = True
    return assigned, connect


@pytest.mark.parametrize("global_required", [False, True])
async def test_operations_and_terminals_decide_enrollment_identically(
        database: Database, settings: Settings, global_required: bool) -> None:
    await database.write(lambda c: insert_links_sync(c, [LINK]))
    seed_script(database, "a", "#!/bin/bash\necho a\n")
    settings = attrs.evolve(settings, security=attrs.evolve(
        settings.security, enrollment_required=global_required))
    for link_required, enrolled in itertools.product([False, True], repeat=2):
        flags = (int(link_required), int(enrolled), LINK.id)
        await database.write(lambda c, flags=flags: c.execute(
            "UPDATE machines SET enrollment_required = ?, enrolled = ? WHERE id = ?", flags))
        decisions = {}
        for requested in (False, True):
            expected = blocked_by_enrollment(global_required=global_required,
                                             link_required=link_required, enrolled=enrolled,
                                             requested=requested)
            decisions[requested] = await _operation_refused(database, settings, requested)
            assert decisions[requested] == expected, (global_required, link_required,
                                                      enrolled, requested)
        assigned, connect = await _terminal_refused(database, global_required)
        assert assigned == connect == decisions[False], (global_required, link_required,
                                                         enrolled)
        # A request can only make it stricter.
        assert decisions[True] >= decisions[False]
