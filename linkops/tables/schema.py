"""The declared tables of the table query engine: names, typed columns, SQL sources.

Every table the API can query is declared here and nowhere else. A table is a SQL ``SELECT``
written in this module (a plain projection of one database table, or an aggregate/union for
the derived tables) plus the typed columns it exposes. The compiler wraps the source as
``SELECT … FROM (<source>) AS t`` and refers to columns only as ``t."<declared name>"``, so no
identifier ever comes from request text.

What is *not* exposed, on purpose: password hashes, secrets, tokens and script content (the
``users``, ``auth_attempts`` and ``revoked_tokens`` tables have no declared table at all,
and ``scripts.content`` is never selected).

Ordering rules the compiler and the cursor rely on:

- ``key`` names columns that together are unique per row; they are appended to every sort as
  the deterministic tie-break.
- ``nullable`` says whether a column can hold NULL. NULL sorts as the smallest value (SQLite's
  native order): first when ascending, last when descending.
- JSON-valued database columns (``tags``, ``flags``, ``scripts``, ``targets``) are exposed as
  ``str`` holding the JSON text, because the engine's types are str/int/float/bool/time.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Literal

import attrs

ColumnType = Literal["str", "int", "float", "bool", "time"]
COLUMN_TYPES: tuple[ColumnType, ...] = ("str", "int", "float", "bool", "time")

_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*$")


@attrs.frozen
class Column:
    name: str
    type: ColumnType
    nullable: bool = False

    def __attrs_post_init__(self) -> None:
        # Declared names become quoted SQL identifiers: keep them boring.
        if not _IDENTIFIER.match(self.name):
            raise ValueError(f"bad column name {self.name!r}")

    @property
    def sql(self) -> str:
        """The SQL expression for this column inside a compiled query."""
        return f't."{self.name}"'


@attrs.frozen
class SortTerm:
    column: str
    dir: Literal["asc", "desc"]


@attrs.frozen
class Table:
    name: str
    description: str
    source: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    default_sort: tuple[SortTerm, ...]
    by_name: dict[str, Column] = attrs.field(init=False)

    @by_name.default
    def _index(self) -> dict[str, Column]:
        return {column.name: column for column in self.columns}

    def __attrs_post_init__(self) -> None:
        if len(self.by_name) != len(self.columns):
            raise ValueError(f"{self.name}: duplicate column names")
        for name in (*self.key, *(term.column for term in self.default_sort)):
            if name not in self.by_name:
                raise ValueError(f"{self.name}: unknown column {name!r} in key or sort")

    @property
    def fingerprint(self) -> str:
        """Changes whenever the declaration changes; cursors from before are then stale."""
        shape = {
            "name": self.name,
            "source": self.source,
            "columns": [[c.name, c.type, c.nullable] for c in self.columns],
            "key": list(self.key),
        }
        text = json.dumps(shape, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def describe(self) -> dict[str, object]:
        return {
            "table": self.name,
            "description": self.description,
            "columns": [
                {"name": c.name, "type": c.type, "nullable": c.nullable} for c in self.columns
            ],
            "key": list(self.key),
            "default_sort": [{"col": t.column, "dir": t.dir} for t in self.default_sort],
        }


def _c(name: str, type_: ColumnType = "str", nullable: bool = False) -> Column:
    return Column(name, type_, nullable)


_LINK_COLUMNS = (
    _c("id"),
    _c("name"),
    _c("type"),
    _c("provider", nullable=True),
    _c("host"),
    _c("port", "int"),
    _c("user"),
    _c("tags"),
    _c("enrollment_id"),
    _c("enrollment_required", "bool"),
    _c("enrolled", "bool"),
    _c("enrollment_verified_at", "time", nullable=True),
    _c("enrollment_error", nullable=True),
    _c("key_ref", nullable=True),
    _c("proxy_jump", nullable=True),
    _c("icon", nullable=True),
    _c("status"),
    _c("reachable", "bool", nullable=True),
    _c("latency_ms", "float", nullable=True),
    _c("last_seen", "time", nullable=True),
    _c("last_check", "time", nullable=True),
    _c("created_at", "time"),
    _c("updated_at", "time"),
)

TBL_LINKS = Table(
    name="tbl_links",
    description="Every link of the inventory with enrollment, SSH and health state.",
    source=(
        "SELECT id, name, type, provider, host, port, user, tags, client_id AS enrollment_id,"
        " enrollment_required, enrolled, enrollment_verified_at, enrollment_error, key_ref,"
        " proxy_jump, icon, status, reachable, latency_ms, last_seen, last_check, created_at,"
        " updated_at FROM machines"
    ),
    columns=_LINK_COLUMNS,
    key=("id",),
    default_sort=(SortTerm("id", "asc"),),
)

TBL_LINK_HEALTH = Table(
    name="tbl_link_health",
    description="Health of every link: status, reachability, latency, last contact.",
    source=(
        "SELECT id, name, type, status, reachable, latency_ms, last_seen, last_check,"
        " health_error, enrolled FROM machines"
    ),
    columns=(
        _c("id"),
        _c("name"),
        _c("type"),
        _c("status"),
        _c("reachable", "bool", nullable=True),
        _c("latency_ms", "float", nullable=True),
        _c("last_seen", "time", nullable=True),
        _c("last_check", "time", nullable=True),
        _c("health_error", nullable=True),
        _c("enrolled", "bool"),
    ),
    key=("id",),
    default_sort=(SortTerm("id", "asc"),),
)

TBL_INFRASTRUCTURE = Table(
    name="tbl_infrastructure",
    description="Counts of links by type: total, enrolled, online, offline, unknown.",
    source=(
        "SELECT type, COUNT(*) AS total,"
        " SUM(CASE WHEN enrolled THEN 1 ELSE 0 END) AS enrolled,"
        " SUM(CASE WHEN status = 'online' THEN 1 ELSE 0 END) AS online,"
        " SUM(CASE WHEN status = 'offline' THEN 1 ELSE 0 END) AS offline,"
        " SUM(CASE WHEN status NOT IN ('online', 'offline') THEN 1 ELSE 0 END) AS unknown"
        " FROM machines GROUP BY type"
    ),
    columns=(
        _c("type"),
        _c("total", "int"),
        _c("enrolled", "int"),
        _c("online", "int"),
        _c("offline", "int"),
        _c("unknown", "int"),
    ),
    key=("type",),
    default_sort=(SortTerm("type", "asc"),),
)

# One row per operation and per terminal session. `ref` is the operation id or the session
# number as text, so (kind, ref) is unique; `at` is when it happened (created/opened).
# "Recent" is a sliding window of the RECENT_WINDOW newest of each kind: each branch is then
# an index scan (operations_created, terminal_sessions_opened) and the union stays small, where
# an unbounded union of 100k operations would be sorted whole for every page.
RECENT_WINDOW = 500

TBL_RECENT_ACTIVITY = Table(
    name="tbl_recent_activity",
    description=f"The {RECENT_WINDOW} latest operations and terminal sessions, newest first.",
    source=(
        "SELECT * FROM (SELECT 'operation' AS kind, id AS ref, status, triggered_by AS actor,"
        " targets AS target, scripts AS detail, created_at AS at, ended_at FROM operations"
        f" ORDER BY created_at DESC, seq DESC LIMIT {RECENT_WINDOW:d})"
        " UNION ALL"
        " SELECT * FROM (SELECT 'terminal' AS kind, CAST(id AS TEXT) AS ref,"
        " CASE WHEN closed_at IS NULL THEN 'open' ELSE 'closed' END AS status,"
        " username AS actor, target, workspace_id || '/' || pane AS detail,"
        " opened_at AS at, closed_at AS ended_at FROM terminal_sessions"
        f" ORDER BY opened_at DESC, id DESC LIMIT {RECENT_WINDOW:d})"
    ),
    columns=(
        _c("kind"),
        _c("ref"),
        _c("status"),
        _c("actor", nullable=True),
        _c("target"),
        _c("detail"),
        _c("at", "time"),
        _c("ended_at", "time", nullable=True),
    ),
    key=("kind", "ref"),
    default_sort=(SortTerm("at", "desc"),),
)

def _result_count(key: str) -> str:
    """``result.<key>`` when it is an integer, else NULL (never an error on bad JSON).

    CASE evaluates lazily, so json_type never sees text that is not JSON.
    """
    path = f"'$.{key}'"
    return (
        f"CASE WHEN json_valid(result) THEN CASE WHEN json_type(result, {path}) = 'integer'"
        f" THEN json_extract(result, {path}) END END"
    )


_OPERATION_COLUMNS_SQL = (
    "SELECT seq, id, status, scripts, targets, concurrency, require_enrollment, triggered_by,"
    " commit_hash, created_at, started_at, ended_at, duration,"
    f" {_result_count('success')} AS succeeded, {_result_count('failed')} AS failed,"
    " error FROM operations"
)


def _operation_columns() -> tuple[Column, ...]:
    return (
        _c("seq", "int"),
        _c("id"),
        _c("status"),
        _c("scripts"),
        _c("targets"),
        _c("concurrency", "int"),
        _c("require_enrollment", "bool"),
        _c("triggered_by", nullable=True),
        _c("commit_hash", nullable=True),
        _c("created_at", "time"),
        _c("started_at", "time", nullable=True),
        _c("ended_at", "time", nullable=True),
        _c("duration", "float", nullable=True),
        _c("succeeded", "int", nullable=True),
        _c("failed", "int", nullable=True),
        _c("error", nullable=True),
    )


ACTIVE_STATUSES = ("queued", "running")

TBL_OPERATIONS = Table(
    name="tbl_operations",
    description="Active operations (queued or running), newest first.",
    source=f"{_OPERATION_COLUMNS_SQL} WHERE status IN ('queued', 'running')",
    columns=_operation_columns(),
    key=("seq",),
    default_sort=(SortTerm("created_at", "desc"),),
)

# History is every operation that has ended, so active + history partition all operations.
TBL_OPERATIONS_HISTORY = Table(
    name="tbl_operations_history",
    description="Finished operations (any terminal status), newest first.",
    source=f"{_OPERATION_COLUMNS_SQL} WHERE status NOT IN ('queued', 'running')",
    columns=_operation_columns(),
    key=("seq",),
    default_sort=(SortTerm("created_at", "desc"),),
)

TBL_SCRIPTS = Table(
    name="tbl_scripts",
    description="The script catalogue (never the script content).",
    source=(
        "SELECT id, name, description, emoji, path, flags, estimated_duration, tags, sha256,"
        " updated_at FROM scripts"
    ),
    columns=(
        _c("id"),
        _c("name"),
        _c("description"),
        _c("emoji", nullable=True),
        _c("path"),
        _c("flags"),
        _c("estimated_duration", "int", nullable=True),
        _c("tags"),
        _c("sha256"),
        _c("updated_at", "time"),
    ),
    key=("id",),
    default_sort=(SortTerm("id", "asc"),),
)

TBL_TERMINAL_SESSIONS = Table(
    name="tbl_terminal_sessions",
    description="Every terminal session that was opened, newest first.",
    source=(
        "SELECT id, workspace_id, pane, target, username, opened_at, closed_at, close_reason"
        " FROM terminal_sessions"
    ),
    columns=(
        _c("id", "int"),
        _c("workspace_id"),
        _c("pane"),
        _c("target"),
        _c("username"),
        _c("opened_at", "time"),
        _c("closed_at", "time", nullable=True),
        _c("close_reason", nullable=True),
    ),
    key=("id",),
    default_sort=(SortTerm("opened_at", "desc"),),
)

TBL_TERMINAL_PANES = Table(
    name="tbl_terminal_panes",
    description="Panes of every terminal workspace with their target and connection state.",
    source=(
        "SELECT p.workspace_id AS workspace_id, p.pane AS pane, w.owner AS owner,"
        " w.layout AS layout, p.target AS target, p.status AS status, p.cols AS cols,"
        " p.rows AS rows, p.connected_at AS connected_at,"
        " p.disconnected_at AS disconnected_at, p.error AS error,"
        " w.closed_at AS workspace_closed_at"
        " FROM terminal_panes AS p JOIN terminal_workspaces AS w ON w.id = p.workspace_id"
    ),
    columns=(
        _c("workspace_id"),
        _c("pane"),
        _c("owner"),
        _c("layout"),
        _c("target", nullable=True),
        _c("status"),
        _c("cols", "int"),
        _c("rows", "int"),
        _c("connected_at", "time", nullable=True),
        _c("disconnected_at", "time", nullable=True),
        _c("error", nullable=True),
        _c("workspace_closed_at", "time", nullable=True),
    ),
    key=("workspace_id", "pane"),
    default_sort=(SortTerm("workspace_id", "asc"), SortTerm("pane", "asc")),
)

TABLES: dict[str, Table] = {
    table.name: table
    for table in (
        TBL_LINKS,
        TBL_LINK_HEALTH,
        TBL_INFRASTRUCTURE,
        TBL_RECENT_ACTIVITY,
        TBL_OPERATIONS,
        TBL_OPERATIONS_HISTORY,
        TBL_SCRIPTS,
        TBL_TERMINAL_SESSIONS,
        TBL_TERMINAL_PANES,
    )
}
