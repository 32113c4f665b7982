"""``/api/tables``: the table query engine over HTTP (SPEC §3 Tables).

Thin routes over :class:`linkops.tables.TableService` (``services().tables``):

- ``POST /api/tables/query`` — body ``{table, columns?, filters?, sort?, page?}`` →
  ``{table, rows, page: {size, next_cursor}, meta: {as_of, query, columns}}``; every
  validation failure is a 400 with ``INVALID_TABLE`` / ``INVALID_COLUMN`` /
  ``INVALID_OPERATOR`` / ``INVALID_FILTER`` / ``INVALID_CURSOR`` / ``VALIDATION_ERROR``.
- ``GET /api/tables`` — the declared tables with their typed columns, key and default sort.

A query only reads, so it is a POST only because its body is structured JSON.
"""

from __future__ import annotations

from quart import Blueprint, Response, jsonify

from linkops.api_types import TableQueryRequest
from linkops.api_views import TableList, TableResult
from linkops.web.common import authenticated, current_user, services
from linkops.web.contract import endpoint

blueprint = Blueprint("tables", __name__)


@blueprint.post("/api/tables/query")
@authenticated
@endpoint("Query a declared table", request=TableQueryRequest, response=TableResult)
async def query_table(body: TableQueryRequest) -> Response:
    user = current_user()
    # Terminal workspaces, panes and sessions are private: only an admin sees everybody's.
    only_user = None if user.role == "admin" else user.username
    return jsonify(await services().tables.query(body.to_dict(), only_user=only_user))


@blueprint.get("/api/tables")
@authenticated
@endpoint("The declared tables and their typed columns", response=TableList)
async def list_tables() -> Response:
    return jsonify({"tables": services().tables.describe()})
