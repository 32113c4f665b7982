"""The inventory in SQLite: rows for links and scripts, and the all-or-nothing apply.

:func:`apply_inventory` runs inside one ``db.write`` transaction together with the
``git_sync_history`` row, so a sync is either entirely visible or not at all. It touches only
the inventory columns of ``machines``: enrollment and health state of a machine that is still
in the inventory survive a sync, except that ``enrolled`` is reset when the identity of the
machine changes (see :data:`IDENTITY_COLUMNS` and docs/decisions/inventory-sync.md).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from linkops.db import dumps, loads
from linkops.inventory.validate import Inventory
from linkops.models import Link, Script

LINK_COLUMNS = (
    "name", "type", "provider", "host", "port", "user", "tags", "client_id",
    "enrollment_required", "client_id_path", "key_ref", "proxy_jump", "host_key", "metadata",
    "icon",
)
# A change to any of these may mean another machine answers now: enrollment must be verified
# again before operations and terminals trust it.
IDENTITY_COLUMNS = ("client_id", "client_id_path", "host", "port", "user", "proxy_jump")
SCRIPT_COLUMNS = (
    "name", "description", "emoji", "path", "flags", "estimated_duration", "tags", "sha256",
    "content",
)


def link_row(link: Link) -> dict[str, Any]:
    icon = link.metadata.get("icon")
    return {
        "name": link.display_name,
        "type": link.type,
        "provider": link.provider,
        "host": link.host,
        "port": link.port,
        "user": link.user,
        "tags": dumps(list(link.tags)),
        "client_id": link.enrollment.clientId,
        "enrollment_required": int(link.enrollment.required),
        "client_id_path": link.enrollment.clientIdPath,
        "key_ref": link.ssh.keyRef,
        "proxy_jump": link.ssh.proxyJump,
        "host_key": link.ssh.hostKey,
        "metadata": dumps(link.metadata),
        "icon": icon if isinstance(icon, str) else None,
    }


def script_row(script: Script) -> dict[str, Any]:
    return {
        "name": script.name,
        "description": script.description,
        "emoji": script.emoji,
        "path": script.path,
        "flags": dumps(list(script.flags)),
        "estimated_duration": script.estimatedDuration,
        "tags": dumps(list(script.tags)),
        "sha256": script.sha256,
        "content": script.content,
    }


def script_from_row(row: sqlite3.Row) -> Script:
    return Script(
        id=row["id"],
        name=row["name"],
        description=row["description"],
        path=row["path"],
        emoji=row["emoji"],
        flags=tuple(loads(row["flags"], [])),
        estimatedDuration=row["estimated_duration"],
        tags=tuple(loads(row["tags"], [])),
        sha256=row["sha256"],
        content=row["content"],
    )


def _empty_changes() -> dict[str, list[str]]:
    return {"added": [], "removed": [], "updated": []}


def _apply_links(conn: sqlite3.Connection, links: dict[str, Link], now: str
                 ) -> dict[str, list[str]]:
    changes = _empty_changes()
    existing = {row["id"]: row for row in conn.execute("SELECT * FROM machines")}
    for link_id in sorted(links):
        row = link_row(links[link_id])
        old = existing.get(link_id)
        if old is None:
            columns = ["id", *LINK_COLUMNS, "created_at", "updated_at"]
            values = [link_id, *(row[c] for c in LINK_COLUMNS), now, now]
            conn.execute(
                f"INSERT INTO machines ({', '.join(columns)}) "
                f"VALUES ({', '.join('?' for _ in columns)})", values)
            changes["added"].append(link_id)
            continue
        differing = [c for c in LINK_COLUMNS if old[c] != row[c]]
        if not differing:
            continue
        assignments = [f"{c} = ?" for c in differing] + ["updated_at = ?"]
        values = [row[c] for c in differing] + [now]
        if any(c in IDENTITY_COLUMNS for c in differing):
            assignments += ["enrolled = 0", "enrollment_verified_at = NULL",
                            "enrollment_error = ?"]
            values.append("inventory entry changed; verify enrollment again")
        conn.execute(f"UPDATE machines SET {', '.join(assignments)} WHERE id = ?",
                     [*values, link_id])
        changes["updated"].append(link_id)
    for link_id in sorted(set(existing) - set(links)):
        conn.execute("DELETE FROM machines WHERE id = ?", (link_id,))
        changes["removed"].append(link_id)
    return changes


def _apply_scripts(conn: sqlite3.Connection, scripts: dict[str, Script], now: str
                   ) -> dict[str, list[str]]:
    changes = _empty_changes()
    existing = {row["id"]: row for row in conn.execute("SELECT * FROM scripts")}
    for script_id in sorted(scripts):
        row = script_row(scripts[script_id])
        old = existing.get(script_id)
        if old is not None and all(old[c] == row[c] for c in SCRIPT_COLUMNS):
            continue
        columns = ["id", *SCRIPT_COLUMNS, "updated_at"]
        conn.execute(
            f"INSERT OR REPLACE INTO scripts ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' for _ in columns)})",
            [script_id, *(row[c] for c in SCRIPT_COLUMNS), now])
        changes["added" if old is None else "updated"].append(script_id)
    for script_id in sorted(set(existing) - set(scripts)):
        conn.execute("DELETE FROM scripts WHERE id = ?", (script_id,))
        changes["removed"].append(script_id)
    return changes


def apply_inventory(conn: sqlite3.Connection, inventory: Inventory, now: str
                    ) -> dict[str, dict[str, list[str]]]:
    """Make ``machines`` and ``scripts`` match ``inventory``; returns what changed."""
    return {
        "links": _apply_links(conn, inventory.links, now),
        "scripts": _apply_scripts(conn, inventory.scripts, now),
    }


def record_sync(conn: sqlite3.Connection, *, started_at: str, ended_at: str, status: str,
                trigger: str, commit_hash: str | None, previous_commit: str | None,
                forced: bool, changes: dict[str, Any], error: dict[str, Any] | None) -> None:
    conn.execute(
        "INSERT INTO git_sync_history (started_at, ended_at, status, trigger, commit_hash, "
        "previous_commit, forced, changes, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (started_at, ended_at, status, trigger, commit_hash, previous_commit, int(forced),
         dumps(changes), dumps(error) if error is not None else None),
    )


def active_commit(conn: sqlite3.Connection) -> str | None:
    """The commit whose content is in ``machines``/``scripts`` (the last successful sync)."""
    row = conn.execute(
        "SELECT commit_hash FROM git_sync_history WHERE status = 'success' "
        "ORDER BY id DESC LIMIT 1").fetchone()
    return None if row is None else row["commit_hash"]
