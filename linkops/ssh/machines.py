"""The SSH layer's view of the ``machines`` table: rows in as :class:`Link`, results out.

Operations and terminals reach ``machines`` only through this module (:func:`machine_row` /
:func:`machine_rows`); neither has SQL on it. Elsewhere the table is only *read* for display:
the inventory's list queries (``inventory/queries.py``), the generic tables view
(``tables/schema.py``) and the history's host column (``operations/history.py``).

Inventory sync owns the rows (it writes them from links.yaml); this module only reads the
connection columns and writes the columns that enrollment and health own:
``enrolled, enrollment_verified_at, enrollment_error`` and
``status, reachable, latency_ms, last_seen, last_check, health_error``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from linkops.db import Database, dumps, loads
from linkops.models import Enrollment, Link, SshOptions
from linkops.timeutil import now_iso


def link_from_row(row: sqlite3.Row) -> Link:
    return Link(
        id=row["id"], type=row["type"], host=row["host"], port=int(row["port"]),
        user=row["user"], name=row["name"], provider=row["provider"],
        tags=tuple(loads(row["tags"], [])),
        enrollment=Enrollment(clientId=row["client_id"],
                              required=bool(row["enrollment_required"]),
                              clientIdPath=row["client_id_path"]),
        ssh=SshOptions(keyRef=row["key_ref"], proxyJump=row["proxy_jump"],
                       hostKey=row["host_key"]),
        metadata=loads(row["metadata"], {}),
    )


def machine_row(conn: sqlite3.Connection, link_id: str) -> sqlite3.Row | None:
    """One ``machines`` row (runs in a DB thread)."""
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM machines WHERE id = ?", (link_id,)).fetchone()
    return row


def machine_rows(conn: sqlite3.Connection, link_ids: Iterable[str]) -> dict[str, sqlite3.Row]:
    """The ``machines`` rows of ``link_ids`` that exist, by id (runs in a DB thread)."""
    ids = list(link_ids)
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    rows = conn.execute(f"SELECT * FROM machines WHERE id IN ({marks})", ids)
    return {row["id"]: row for row in rows}


async def load_links(db: Database) -> dict[str, Link]:
    """Every link in the inventory, by id (the resolver for ProxyJump chains)."""
    rows = await db.fetchall("SELECT * FROM machines ORDER BY id")
    return {row["id"]: link_from_row(row) for row in rows}


def store_enrollment(conn: sqlite3.Connection, link_id: str, enrolled: bool,
                     verified_at: str, error: str | None) -> None:
    conn.execute(
        "UPDATE machines SET enrolled = ?, enrollment_verified_at = ?, enrollment_error = ?, "
        "updated_at = ? WHERE id = ?",
        (int(enrolled), verified_at, error, now_iso(), link_id),
    )


def store_health(conn: sqlite3.Connection, link_id: str, online: bool,
                 latency_ms: float | None, checked_at: str, error: str | None) -> None:
    if online:
        conn.execute(
            "UPDATE machines SET status = 'online', reachable = 1, latency_ms = ?, "
            "last_seen = ?, last_check = ?, health_error = NULL WHERE id = ?",
            (latency_ms, checked_at, checked_at, link_id),
        )
    else:
        # last_seen is kept: it says when the host was last reachable.
        conn.execute(
            "UPDATE machines SET status = 'offline', reachable = 0, latency_ms = NULL, "
            "last_check = ?, health_error = ? WHERE id = ?",
            (checked_at, error, link_id),
        )


def insert_links_sync(conn: sqlite3.Connection, links: Iterable[Link]) -> None:
    """Insert (or replace) rows for ``links`` — for tests and the demo, not for sync."""
    now = now_iso()
    for link in links:
        conn.execute(
            "INSERT OR REPLACE INTO machines (id, name, type, provider, host, port, user, tags, "
            "client_id, enrollment_required, client_id_path, key_ref, proxy_jump, host_key, "
            "metadata, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (link.id, link.display_name, link.type, link.provider, link.host, link.port,
             link.user, dumps(list(link.tags)), link.enrollment.clientId,
             int(link.enrollment.required), link.enrollment.clientIdPath, link.ssh.keyRef,
             link.ssh.proxyJump, link.ssh.hostKey, dumps(link.metadata), now, now),
        )
