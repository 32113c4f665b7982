"""Response types of the larger views (SPEC §3, §10.1): links, scripts, Git, operations,
tables, recordings, terminal connect-all.

These describe, field by field, what the services answer (the OpenAPI document is generated
from them, :mod:`linkops.web.openapi`). A route whose answer the service builds as a dict
(``InventoryService.list_links``, ``OperationsService.detail`` …) declares one of these as its
``response``; ``tests/test_openapi.py`` validates real answers of a real fleet against the
document and ``tests/test_schemathesis.py`` fuzzes it with ``response_schema_conformance``,
so a field added in a service without its type fails a test (every object here is closed:
``additionalProperties: false``; see docs/decisions/http-contract.md).

A field with a default is one whose key may be absent from the answer; every other field is
always present (``null`` where its type says ``| None``).
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

from linkops.api_types import Pane, doc
from linkops.tables.schema import ColumnType

LinkStatus = Literal["online", "offline", "unknown"]
TaskStatus = Literal["pending", "running", "success", "failed", "timeout", "stopped",
                     "skipped", "interrupted"]
OperationStatus = Literal["queued", "running", "success", "failed", "partial", "stopped",
                          "interrupted"]
Stream = Literal["stdout", "stderr"]


# -- inventory ------------------------------------------------------------------------------


@attrs.frozen
class LinkSsh:
    host: str
    port: int
    user: str
    proxyJump: str | None
    keyRef: str | None


@attrs.frozen
class LinkHealth:
    reachable: bool | None
    latency: float | None = attrs.field(metadata=doc("milliseconds"))
    lastSeen: str | None
    lastCheck: str | None
    error: str | None


@attrs.frozen
class LinkView:
    """One link (``linkops.inventory.queries.link_to_api``)."""

    id: str
    name: str
    type: str
    provider: str | None
    icon: str | None
    tags: list[str]
    enrolled: bool
    enrollmentId: str
    enrollmentVerifiedAt: str | None
    enrollmentRequired: bool
    enrollmentError: str | None
    clientIdPath: str = attrs.field(
        metadata=doc("the file on the host that must hold the enrollment ID"))
    ssh: LinkSsh
    health: LinkHealth
    status: LinkStatus
    metadata: dict[str, Any]


@attrs.frozen
class LinkList:
    links: list[LinkView]
    count: int


@attrs.frozen
class FlagSpecView:
    name: str
    default: str | None
    takesValue: bool
    required: bool


@attrs.frozen
class ScriptSummary:
    """One script of the catalogue (``linkops.inventory.queries.script_to_api``)."""

    id: str
    name: str
    description: str
    emoji: str | None
    path: str
    flags: list[str]
    flagSpecs: list[FlagSpecView]
    estimatedDuration: int | None = attrs.field(metadata=doc("seconds"))
    tags: list[str]
    sha256: str
    updatedAt: str


@attrs.frozen
class ScriptView(ScriptSummary):
    """One script with its content."""

    content: str


@attrs.frozen
class ScriptList:
    scripts: list[ScriptSummary]
    count: int


@attrs.frozen
class GitStatus:
    last_sync: str | None
    last_success: str | None
    commit_hash: str | None
    status: str = attrs.field(metadata=doc("never, syncing, or the last attempt's status"))
    error: str | None
    error_code: str | None
    error_details: dict[str, Any] | None
    branch: str
    repository: str = attrs.field(metadata=doc("the repository URL without credentials"))
    sync_interval_minutes: float
    in_progress: bool


@attrs.frozen
class ChangeSet:
    added: list[str]
    removed: list[str]
    updated: list[str]


@attrs.frozen
class SyncChanges:
    links: ChangeSet
    scripts: ChangeSet


@attrs.frozen
class KeyWarning:
    """A link whose ``keyRef`` file is missing or not 0600 (refused at use)."""

    link: str
    keyRef: str
    message: str


@attrs.frozen
class SyncResultView:
    """``linkops.inventory.sync.SyncResult.to_dict()``."""

    success: bool
    commit_hash: str | None
    timestamp: str
    error: str | None
    error_code: str | None
    error_details: dict[str, Any] | None
    changes: SyncChanges
    forced: bool = attrs.field(metadata=doc("the remote was force-pushed"))
    warnings: list[KeyWarning]
    active_commit: str | None


# -- operations -----------------------------------------------------------------------------


@attrs.frozen
class PlanTarget:
    id: str
    name: str
    tags: list[str]
    enrolled: bool
    verified_at: str | None
    status: LinkStatus
    host_key: Literal["pinned", "known", "unknown"]


@attrs.frozen
class PlanScript:
    id: str
    name: str
    path: str
    sha256: str
    flags: list[str]


@attrs.frozen
class ConfirmationAsked:
    phrase: str = attrs.field(metadata=doc("what the run's confirm must be, exactly"))
    reason: str


@attrs.frozen
class PlanView:
    """``POST /api/operations/plan`` (``linkops.operations.planning.plan_view``)."""

    plan_id: str
    created: str
    expires_at: str
    inventory_commit: str | None
    targets: list[PlanTarget]
    scripts: list[PlanScript]
    concurrency: int
    require_enrollment: bool
    confirm: ConfirmationAsked | None


@attrs.frozen
class RerunAccepted:
    operation_id: str
    parent: str
    targets: list[str]


@attrs.frozen
class OperationSummary:
    """An operation without its logs (``linkops.operations.history._summary``)."""

    id: str
    status: OperationStatus
    scripts: list[str]
    targets: list[str]
    flags: dict[str, list[str]]
    concurrency: int
    require_enrollment: bool
    triggered_by: str | None
    commit_hash: str | None
    script_hashes: dict[str, str]
    created: str
    started: str | None
    ended: str | None
    duration: float | None
    result: dict[str, int] = attrs.field(
        metadata=doc("targets by outcome and tasks_<status> counts"))
    error: str | None
    parent: str | None
    children: list[str]


@attrs.frozen
class TaskLog:
    target: str
    script: str
    position: int
    status: TaskStatus
    exit_code: int | None
    stdout_head: str
    stderr_head: str
    stdout_bytes: int = attrs.field(metadata=doc("kept size in UTF-8 bytes"))
    stderr_bytes: int
    output_truncated: bool
    duration: float | None
    started: str | None
    ended: str | None
    error: str | None
    remote_killed: bool | None


@attrs.frozen
class OperationView(OperationSummary):
    """One operation with its logs and the plan it was confirmed with."""

    plan: PlanView | None
    logs: list[TaskLog]


@attrs.frozen
class HistoryPage:
    limit: int
    next_cursor: str | None
    page: int | None = attrs.field(default=None,
                                   metadata=doc("present when the page parameter was given"))


@attrs.frozen
class OperationHistory:
    operations: list[OperationSummary]
    page: HistoryPage


@attrs.frozen
class GroupView:
    key: str
    status: TaskStatus
    exit_code: int | None
    count: int
    majority: bool
    targets: list[str]
    stdout_head: str
    stderr_head: str


@attrs.frozen
class ScriptGroups:
    script: str
    position: int
    majority: str | None
    groups: list[GroupView]


@attrs.frozen
class UnfinishedTask:
    target: str
    script: str
    position: int
    status: TaskStatus


@attrs.frozen
class OperationGroups:
    operation_id: str
    status: OperationStatus
    finished: int
    total: int
    script_groups: list[ScriptGroups]
    unfinished: list[UnfinishedTask]


@attrs.frozen
class GroupDiff:
    operation_id: str
    group: str
    against: str
    script: str
    stdout: str
    stderr: str
    diff: str
    cut: bool


@attrs.frozen
class OutputPage:
    operation_id: str
    target: str
    script: str
    stream: Stream
    limit: int
    data: str
    offset: int
    next_offset: int | None
    total: int
    truncated: bool


# -- tables ---------------------------------------------------------------------------------


@attrs.frozen
class SortTerm:
    col: str
    dir: Literal["asc", "desc"]


@attrs.frozen
class TableColumn:
    name: str
    type: ColumnType
    nullable: bool


@attrs.frozen
class TableDescription:
    table: str
    description: str
    columns: list[TableColumn]
    key: list[str]
    default_sort: list[SortTerm]


@attrs.frozen
class TableList:
    tables: list[TableDescription]


@attrs.frozen
class AppliedFilter:
    col: str
    op: Literal["eq", "in", "gt", "lt", "gte", "lte"]
    val: Any


@attrs.frozen
class AppliedPage:
    size: int
    cursor: str | None


@attrs.frozen
class AppliedQuery:
    """The query as it was applied, in request form."""

    table: str
    columns: list[str]
    filters: list[AppliedFilter]
    sort: list[SortTerm]
    page: AppliedPage


@attrs.frozen
class ResultColumn:
    name: str
    type: ColumnType


@attrs.frozen
class TableMeta:
    as_of: str
    query: AppliedQuery
    columns: list[ResultColumn]


@attrs.frozen
class TablePage:
    size: int
    next_cursor: str | None


@attrs.frozen
class TableResult:
    table: str
    rows: list[dict[str, Any]] = attrs.field(metadata=doc("one object per row, by column name"))
    page: TablePage
    meta: TableMeta


# -- terminal -------------------------------------------------------------------------------


@attrs.frozen
class RecordingView:
    id: int
    workspace_id: str
    pane: Pane
    target: str
    user: str
    started: str
    ended: str | None = attrs.field(metadata=doc("null while live"))
    duration: float
    bytes: int
    width: int
    height: int
    cut_reason: str | None


@attrs.frozen
class RecordingList:
    recordings: list[RecordingView]
    next_cursor: str | None


@attrs.frozen
class RecordingHit:
    recording_id: int
    target: str
    user: str
    started: str
    offset_seconds: float
    line: str


@attrs.frozen
class RecordingHits:
    hits: list[RecordingHit]


@attrs.frozen
class PaneOutcome:
    pane: Pane
    target: str | None
    status: Literal["connected", "error"]
    error: str | None
    code: str | None = attrs.field(default=None, metadata=doc("the error's code (on error)"))


@attrs.frozen
class ConnectAllResult:
    workspace_id: str
    panes: list[PaneOutcome]
