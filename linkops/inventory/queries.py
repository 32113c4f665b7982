"""Reads of the inventory for the API: links with filters and sorting, scripts, by id.

Sorting and filtering use allow-listed columns only and parameterised SQL; ties are always
broken by ``id`` so a sorted list is a total, repeatable order (SPEC §9 property 10).
The API shapes are those of SPEC §3; secrets never appear (there are none in these tables).

*Errors*: ``INVALID_SORT`` / ``INVALID_FILTER`` (400) for unknown columns or values,
``LINK_NOT_FOUND`` / ``SCRIPT_NOT_FOUND`` (404).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import attrs

from linkops.db import Database, loads
from linkops.errors import NotFoundError, ValidationError
from linkops.inventory.store import script_from_row
from linkops.models import FlagSpec, Link, Script
from linkops.ssh.machines import link_from_row

# API name -> SQL expression. Booleans and NULLs sort as SQLite does (NULL first ascending).
LINK_SORT_COLUMNS = {
    "id": "id",
    "name": "name COLLATE NOCASE",
    "type": "type COLLATE NOCASE",
    "provider": "provider COLLATE NOCASE",
    "host": "host",
    "port": "port",
    "user": "user",
    "status": "status",
    "enrolled": "enrolled",
    "enrollmentVerifiedAt": "enrollment_verified_at",
    "latency": "latency_ms",
    "lastSeen": "last_seen",
}
LINK_STATUSES = ("online", "offline", "unknown")
_TRUE = ("1", "true", "yes")
_FALSE = ("0", "false", "no")


@attrs.frozen
class LinkQuery:
    """Filters (each list means "any of") and the sort of ``GET /api/links``."""

    types: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    enrolled: bool | None = None
    tags: tuple[str, ...] = ()
    sort: str = "id"
    direction: str = "asc"

    @classmethod
    def from_args(cls, *, types: Sequence[str] = (), statuses: Sequence[str] = (),
                  enrolled: str | None = None, tags: Sequence[str] = (),
                  sort: str | None = None, direction: str | None = None) -> LinkQuery:
        """Build from query-string values; raises a 400 naming the bad parameter."""

        def split(values: Sequence[str]) -> tuple[str, ...]:
            return tuple(v for value in values for v in value.split(",") if v)

        statuses_t = split(statuses)
        for status in statuses_t:
            if status not in LINK_STATUSES:
                raise ValidationError(f"status must be one of {', '.join(LINK_STATUSES)}",
                                      code="INVALID_FILTER",
                                      details={"param": "status", "value": status})
        enrolled_b: bool | None = None
        if enrolled not in (None, ""):
            lowered = enrolled.lower()
            if lowered not in _TRUE + _FALSE:
                raise ValidationError("enrolled must be true or false", code="INVALID_FILTER",
                                      details={"param": "enrolled", "value": enrolled})
            enrolled_b = lowered in _TRUE
        sort = sort or "id"
        if sort not in LINK_SORT_COLUMNS:
            raise ValidationError(f"unknown sort column {sort!r}", code="INVALID_SORT",
                                  details={"param": "sort", "value": sort,
                                           "allowed": sorted(LINK_SORT_COLUMNS)})
        direction = (direction or "asc").lower()
        if direction not in ("asc", "desc"):
            raise ValidationError("dir must be asc or desc", code="INVALID_SORT",
                                  details={"param": "dir", "value": direction})
        return cls(types=split(types), statuses=statuses_t, enrolled=enrolled_b,
                   tags=split(tags), sort=sort, direction=direction)

    def sql(self) -> tuple[str, list[Any]]:
        where: list[str] = []
        params: list[Any] = []
        if self.types:
            where.append(f"type IN ({', '.join('?' for _ in self.types)})")
            params += self.types
        if self.statuses:
            where.append(f"status IN ({', '.join('?' for _ in self.statuses)})")
            params += self.statuses
        if self.enrolled is not None:
            where.append("enrolled = ?")
            params.append(int(self.enrolled))
        if self.tags:
            where.append("EXISTS (SELECT 1 FROM json_each(machines.tags) WHERE value IN "
                         f"({', '.join('?' for _ in self.tags)}))")
            params += self.tags
        direction = "DESC" if self.direction == "desc" else "ASC"
        order = f"{LINK_SORT_COLUMNS[self.sort]} {direction}, id {direction}"
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        return f"SELECT * FROM machines{clause} ORDER BY {order}", params


def link_to_api(row: sqlite3.Row) -> dict[str, Any]:
    reachable = row["reachable"]
    return {
        "id": row["id"],
        "name": row["name"],
        "type": row["type"],
        "provider": row["provider"],
        "icon": row["icon"],
        "tags": loads(row["tags"], []),
        "enrolled": bool(row["enrolled"]),
        "enrollmentId": row["client_id"],
        "enrollmentVerifiedAt": row["enrollment_verified_at"],
        "enrollmentRequired": bool(row["enrollment_required"]),
        "enrollmentError": row["enrollment_error"],
        "clientIdPath": row["client_id_path"],
        "ssh": {
            "host": row["host"],
            "port": row["port"],
            "user": row["user"],
            "proxyJump": row["proxy_jump"],
            "keyRef": row["key_ref"],
        },
        "health": {
            "reachable": None if reachable is None else bool(reachable),
            "latency": row["latency_ms"],
            "lastSeen": row["last_seen"],
            "lastCheck": row["last_check"],
            "error": row["health_error"],
        },
        "status": row["status"],
        "metadata": loads(row["metadata"], {}),
    }


def script_to_api(row: sqlite3.Row, *, content: bool) -> dict[str, Any]:
    flags = loads(row["flags"], [])
    shaped: dict[str, Any] = {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "emoji": row["emoji"],
        "path": row["path"],
        "flags": flags,
        "flagSpecs": [
            {"name": spec.name, "default": spec.default, "takesValue": spec.takes_value,
             "required": spec.required}
            for spec in map(FlagSpec.parse, flags)
        ],
        "estimatedDuration": row["estimated_duration"],
        "tags": loads(row["tags"], []),
        "sha256": row["sha256"],
        "updatedAt": row["updated_at"],
    }
    if content:
        shaped["content"] = row["content"]
    return shaped


async def list_links(db: Database, query: LinkQuery = LinkQuery()) -> list[dict[str, Any]]:
    sql, params = query.sql()
    return [link_to_api(row) for row in await db.fetchall(sql, params)]


async def get_link(db: Database, link_id: str) -> dict[str, Any]:
    row = await db.fetchone("SELECT * FROM machines WHERE id = ?", (link_id,))
    if row is None:
        raise NotFoundError(f"link {link_id!r} not found", code="LINK_NOT_FOUND",
                            details={"id": link_id})
    return link_to_api(row)


async def list_scripts(db: Database) -> list[dict[str, Any]]:
    rows = await db.fetchall("SELECT * FROM scripts ORDER BY id")
    return [script_to_api(row, content=False) for row in rows]


async def get_script(db: Database, script_id: str) -> dict[str, Any]:
    row = await db.fetchone("SELECT * FROM scripts WHERE id = ?", (script_id,))
    if row is None:
        raise NotFoundError(f"script {script_id!r} not found", code="SCRIPT_NOT_FOUND",
                            details={"id": script_id})
    return script_to_api(row, content=True)


async def link_models(db: Database, ids: Sequence[str] | None = None) -> dict[str, Link]:
    """Validated :class:`Link` models (all, or those with ``ids``; unknown ids are absent)."""
    if ids is None:
        rows = await db.fetchall("SELECT * FROM machines ORDER BY id")
    elif not ids:
        return {}
    else:
        marks = ", ".join("?" for _ in ids)
        rows = await db.fetchall(f"SELECT * FROM machines WHERE id IN ({marks})", list(ids))
    return {row["id"]: link_from_row(row) for row in rows}


async def script_models(db: Database, ids: Sequence[str] | None = None) -> dict[str, Script]:
    """:class:`Script` models with content and sha256 (unknown ids are absent)."""
    if ids is None:
        rows = await db.fetchall("SELECT * FROM scripts ORDER BY id")
    elif not ids:
        return {}
    else:
        marks = ", ".join("?" for _ in ids)
        rows = await db.fetchall(f"SELECT * FROM scripts WHERE id IN ({marks})", list(ids))
    return {row["id"]: script_from_row(row) for row in rows}
