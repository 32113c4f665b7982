"""``/api/links``, ``/api/scripts`` and ``/api/git/*``: the inventory and its Git sync.

Thin routes over :class:`linkops.inventory.InventoryService` (``services().inventory``).
A failed ``POST /api/git/sync`` answers with the structured error of the sync (400 for bad
repository content with ``details.file/line/entry``, 503 ``GIT_UNREACHABLE`` for the remote);
the failure is recorded either way and the previous inventory stays active.
"""

from __future__ import annotations

from quart import Blueprint, Response, jsonify, request

from linkops.api_types import OBJECT, listing
from linkops.inventory import InventoryService, LinkQuery
from linkops.web.common import authenticated, operators_only, services
from linkops.web.contract import QueryParam, endpoint

blueprint = Blueprint("inventory", __name__)


def _inventory() -> InventoryService:
    return services().inventory


LINK_QUERY = (
    QueryParam("type", {"type": "string"}, "link type; repeat or comma-separate", True),
    QueryParam("status", {"type": "string"}, "online, offline or unknown", True),
    QueryParam("enrolled", {"type": "string"}, "true or false"),
    QueryParam("tag", {"type": "string"}, "links carrying every tag given", True),
    QueryParam("sort", {"type": "string"}, "column to sort by (default id)"),
    QueryParam("dir", {"type": "string"}, "asc or desc"),
)


@blueprint.get("/api/links")
@authenticated
@endpoint("The inventory's links, filtered and sorted", query=LINK_QUERY,
          response=listing("links"))
async def list_links() -> Response:
    args = request.args
    query = LinkQuery.from_args(
        types=args.getlist("type"),
        statuses=args.getlist("status"),
        enrolled=args.get("enrolled"),
        tags=args.getlist("tag"),
        sort=args.get("sort"),
        direction=args.get("dir"),
    )
    links = await _inventory().list_links(query)
    return jsonify({"links": links, "count": len(links)})


@blueprint.get("/api/links/<link_id>")
@authenticated
@endpoint("One link", response=OBJECT, errors=(404,))
async def get_link(link_id: str) -> Response:
    return jsonify(await _inventory().get_link(link_id))


@blueprint.get("/api/scripts")
@authenticated
@endpoint("The script catalogue", response=listing("scripts"))
async def list_scripts() -> Response:
    scripts = await _inventory().list_scripts()
    return jsonify({"scripts": scripts, "count": len(scripts)})


@blueprint.get("/api/scripts/<script_id>")
@authenticated
@endpoint("One script with its content", response=OBJECT, errors=(404,))
async def get_script(script_id: str) -> Response:
    return jsonify(await _inventory().get_script(script_id))


@blueprint.get("/api/git/status")
@authenticated
@endpoint("Repository, active commit and recent syncs", response=OBJECT)
async def git_status() -> Response:
    return jsonify(await _inventory().status())


@blueprint.post("/api/git/sync")
@operators_only("sync the configuration repository")
@endpoint("Sync the inventory from Git now", response=OBJECT, errors=(400, 409, 503))
async def git_sync() -> Response:
    result = await _inventory().sync(trigger="api")
    result.raise_for_error()
    return jsonify(result.to_dict())
