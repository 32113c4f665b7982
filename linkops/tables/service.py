"""The table query service: one validated, parameterised, keyset-paginated page per call.

``services.tables`` is a :class:`TableService`; the route ``POST /api/tables/query`` hands
it the decoded JSON body and returns what it returns.

*Concurrency*: a query runs on a reader connection inside one read transaction (via
:meth:`linkops.db.Database.read`), so the page is a consistent snapshot; ``meta.as_of`` is
taken inside that transaction, just before the statement runs.

*Cancellation*: as for :meth:`Database.read` — a cancelled caller waits for the (short)
statement to finish in its worker thread.

*Errors*: :class:`~linkops.errors.ValidationError` (400) with the codes of
:mod:`linkops.tables.query` and ``INVALID_CURSOR`` (:mod:`linkops.tables.cursor`). Nothing
from the request reaches the SQL text, so a bad request can never change the database.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import attrs

from linkops.db import Database
from linkops.tables.compile import compile_query
from linkops.tables.cursor import CursorCodec
from linkops.tables.query import Scalar, parse_query
from linkops.tables.schema import TABLES, Column, Table
from linkops.timeutil import now_iso


def _cell(column: Column, value: Any) -> Any:
    if column.type == "bool" and value is not None:
        return bool(value)
    return value


# Tables with other users' terminal rows, and the predicate that keeps only one user's.
_USER_SCOPES = {
    "tbl_terminal_sessions": "username = {user}",
    "tbl_terminal_panes": "owner = {user}",
    "tbl_recent_activity": "(kind != 'terminal' OR actor = {user})",
}


def scoped_table(table: Table, username: str) -> Table:
    """``table`` as ``username`` may see it (unchanged when it holds no private rows).

    The name becomes an SQL string literal (quotes doubled), so the fingerprint — and with it
    every cursor — differs per user: a cursor cannot carry one user's view to another."""
    predicate = _USER_SCOPES.get(table.name)
    if predicate is None:
        return table
    literal = "'" + username.replace("'", "''") + "'"
    where = predicate.format(user=literal)
    return attrs.evolve(table, source=f"SELECT * FROM ({table.source}) WHERE {where}")


class TableService:
    """Answers table queries against ``db``; cursors are signed with a key from ``secret``."""

    def __init__(
        self, db: Database, secret: bytes, *, clock: Callable[[], str] = now_iso
    ) -> None:
        self._db = db
        self._cursors = CursorCodec(secret)
        self._clock = clock

    def describe(self) -> list[dict[str, object]]:
        """Every declared table with its columns, types, key and default sort."""
        return [table.describe() for table in TABLES.values()]

    async def query(self, request: Any, *, only_user: str | None = None) -> dict[str, Any]:
        """One page of the table query ``request`` (SPEC §3 Tables).

        ``only_user`` (every caller but an admin): terminal rows of other users are not there
        at all — workspaces, panes and sessions are private (SPEC §10.2).

        Returns ``{table, rows, page: {size, next_cursor}, meta: {as_of, query, columns}}``;
        ``next_cursor`` is None on the last page.
        """
        query = parse_query(request)
        if only_user is not None:
            query = attrs.evolve(query, table=scoped_table(query.table, only_user))
        after: tuple[Scalar, ...] | None = None
        if query.cursor is not None:
            after = self._cursors.decode(
                query.cursor, query.shape_hash(), [t.column for t in query.order]
            )
        compiled = compile_query(query, after)

        def run(conn: sqlite3.Connection) -> tuple[str, list[sqlite3.Row]]:
            as_of = self._clock()
            return as_of, conn.execute(compiled.sql, compiled.params).fetchall()

        as_of, fetched = await self._db.read(run)
        more = len(fetched) > query.size
        fetched = fetched[: query.size]
        rows = [
            {c.name: _cell(c, row[i]) for i, c in enumerate(query.columns)} for row in fetched
        ]
        next_cursor = None
        if more:
            last = fetched[-1]
            position = {c.name: last[i] for i, c in enumerate(compiled.outputs)}
            next_cursor = self._cursors.encode(
                query.shape_hash(), [position[t.column.name] for t in query.order]
            )
        return {
            "table": query.table.name,
            "rows": rows,
            "page": {"size": query.size, "next_cursor": next_cursor},
            "meta": {
                "as_of": as_of,
                "query": query.applied(),
                "columns": [{"name": c.name, "type": c.type} for c in query.columns],
            },
        }


__all__ = ["TableService"]
