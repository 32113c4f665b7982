"""Request and response types of the HTTP API (SPEC §3, §10.1): attrs classes that the routes
decode with (and the services validate with: ``operations/validate.py``,
``terminal/workspaces.py``) and the OpenAPI document is generated from
(:mod:`linkops.web.contract`). Pure attrs + the converter: no Quart here.

Shape and declared bounds are checked by the converter (400 ``VALIDATION_ERROR`` with
``details.errors`` paths); rules that depend on configuration or the database (e.g.
``concurrency`` ≤ ``[operations] max_concurrency``, declared flags, enrollment) stay with the
service, which keeps its own codes (``INVALID_FLAG``, ``ENROLLMENT_REQUIRED`` …).
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

from linkops.converters import QUERY_NAME, constraints

Layout = Literal["single", "grid2x1", "grid1x3", "grid2x2"]
Pane = Literal["A", "B", "C", "D"]
Role = Literal["admin", "operator", "viewer"]


def doc(text: str, **keywords: Any) -> dict[str, Any]:
    """Field metadata: a description for the document, plus enforced constraints."""
    meta = constraints(**keywords) if keywords else {}
    return {**meta, "description": text}


# -- requests -------------------------------------------------------------------------------


@attrs.frozen
class LoginRequest:
    username: str = attrs.field(metadata=doc("user name", maxLength=256))
    password: str = attrs.field(metadata=doc("password", maxLength=1024))


@attrs.frozen
class RunRequest:
    scripts: list[str] = attrs.field(
        metadata=doc("script ids, run in this order on each target", minItems=1,
                     uniqueItems=True))
    targets: list[str] = attrs.field(
        metadata=doc("link ids", minItems=1, maxItems=500, uniqueItems=True))
    flags: dict[str, list[str]] | None = attrs.field(
        default=None, metadata=doc("per script: flags such as --threshold=80"))
    concurrency: int | None = attrs.field(
        default=None, metadata=doc("targets at once; 1..[operations] max_concurrency",
                                   minimum=1))
    require_enrollment: bool | None = attrs.field(
        default=None, metadata=doc("stricter than [security] enrollment_required, never looser"))
    plan_id: str | None = attrs.field(
        default=None, metadata=doc("POST /api/operations/plan's plan_id (needed when the plan "
                                   "asks for confirmation)", minLength=1, maxLength=128))
    confirm: str | None = attrs.field(
        default=None, metadata=doc("the plan's confirm.phrase, typed by the operator",
                                   maxLength=1000))


@attrs.frozen
class VerifyRequest:
    targets: list[str] | None = attrs.field(
        default=None, metadata=doc("link ids; omitted: every link", maxItems=1000))


@attrs.frozen
class CreateWorkspaceRequest:
    layout: Layout
    max_panes: int | None = attrs.field(
        default=None, metadata=doc("capacity; default [terminal] max_panes_per_workspace"))


@attrs.frozen
class LayoutRequest:
    layout: Layout


@attrs.frozen
class PaneAssignment:
    pane: Pane
    target: str | None = attrs.field(default=None, metadata=doc("link id; null clears"))


@attrs.frozen
class AssignPanesRequest:
    panes: list[PaneAssignment] = attrs.field(metadata=doc("assignments", minItems=1))


@attrs.frozen
class TableQueryRequest:
    """Checked in depth by the table engine, which answers INVALID_TABLE, INVALID_COLUMN,
    INVALID_OPERATOR, INVALID_FILTER or INVALID_CURSOR (see docs/api.md)."""

    table: Any = attrs.field(metadata=doc("table name (GET /api/tables)"))
    columns: Any = attrs.field(default=None, metadata=doc("column names"))
    filters: Any = attrs.field(default=None, metadata=doc("[{col, op, val}]"))
    sort: Any = attrs.field(default=None, metadata=doc("[{col, dir}]"))
    page: Any = attrs.field(default=None, metadata=doc("{size, cursor}"))

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in attrs.asdict(self, recurse=False).items() if v is not None}


# -- query strings (linkops.converters.structure_query) -------------------------------------


@attrs.frozen
class LinkListQuery:
    """``GET /api/links``; values are checked by ``LinkQuery.from_args``
    (``INVALID_FILTER`` / ``INVALID_SORT``)."""

    type: list[str] = attrs.field(factory=list, metadata=doc(
        "link types; repeat or comma-separate"))
    status: list[str] = attrs.field(factory=list, metadata=doc("online, offline or unknown"))
    enrolled: str | None = attrs.field(default=None, metadata=doc("true or false"))
    tag: list[str] = attrs.field(factory=list, metadata=doc(
        "links carrying one of these tags"))
    sort: str | None = attrs.field(default=None, metadata=doc("column to sort by (default id)"))
    dir: str | None = attrs.field(default=None, metadata=doc("asc or desc"))


@attrs.frozen
class RecordingListQuery:
    """``GET /api/terminal/recordings`` (times and cursor checked by the recording index)."""

    target: str | None = attrs.field(default=None, metadata=doc("only this link"))
    user: str | None = attrs.field(default=None, metadata=doc(
        "only this user's (admins; others see only their own)"))
    start: str | None = attrs.field(default=None, metadata={
        QUERY_NAME: "from", **doc("started at or after (ISO-8601)")})
    end: str | None = attrs.field(default=None, metadata={
        QUERY_NAME: "to", **doc("started at or before (ISO-8601)")})
    cursor: str | None = attrs.field(default=None, metadata=doc(
        "next_cursor of the previous page"))


@attrs.frozen
class RecordingSearchQuery:
    """``GET /api/terminal/recordings/search`` (an empty or over-long ``q`` is the index's
    ``INVALID_QUERY``)."""

    q: str = attrs.field(default="", metadata=doc(
        "words that must all be in the line; word* is a prefix"))


# -- responses ------------------------------------------------------------------------------


@attrs.frozen
class ErrorObject:
    code: str
    message: str
    details: dict[str, Any]
    timestamp: str


@attrs.frozen
class ErrorResponse:
    error: ErrorObject


@attrs.frozen
class Health:
    status: Literal["ok", "shutting_down"]
    version: str
    time: str
    schema_version: int
    # The start-up check of the UI's files; which ones are missing is only in the log.
    frontend: Literal["ok", "incomplete"]


@attrs.frozen
class UserInfo:
    username: str
    role: Role


@attrs.frozen
class LoginResponse:
    success: bool
    token: str
    user: UserInfo
    expires_at: str


@attrs.frozen
class Me:
    username: str
    role: Role
    expires_at: str


@attrs.frozen
class Success:
    success: bool


@attrs.frozen
class OperationAccepted:
    operation_id: str
    status: Literal["queued"]


@attrs.frozen
class OperationStopped:
    success: bool
    operation_id: str


@attrs.frozen
class WorkspaceDeleted:
    success: bool
    workspace_id: str


@attrs.frozen
class PaneView:
    pane: Pane
    target: str | None
    status: str
    cols: int
    rows: int
    error: str | None
    connected_at: str | None


@attrs.frozen
class WorkspaceView:
    """``Workspace.to_json()`` (linkops/terminal/workspaces.py)."""

    workspace_id: str
    layout: Layout
    max_panes: int
    owner: str
    created_at: str
    updated_at: str
    panes: list[PaneView]


@attrs.frozen
class WorkspaceList:
    workspaces: list[WorkspaceView]


@attrs.frozen
class PaneResult:
    """A pane after connect/disconnect, with its workspace."""

    workspace_id: str
    pane: Pane
    target: str | None
    status: str
    cols: int
    rows: int
    error: str | None
    connected_at: str | None


@attrs.frozen
class VerifyResult:
    """One enrollment check: ``EnrollmentResult`` (linkops/ssh/enrollment.py) is this type."""

    target: str
    enrolled: bool
    client_id_found: bool
    client_id_matches: bool
    error: str | None
    reason: str | None
    verified_at: str


@attrs.frozen
class VerifyResults:
    results: list[VerifyResult]
    count: int
    enrolled: int
