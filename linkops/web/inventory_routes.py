"""``/api/links``, ``/api/scripts`` and ``/api/git/*``: the inventory and its Git sync.

Thin routes over :class:`linkops.inventory.InventoryService` (``services().inventory``).
A failed ``POST /api/git/sync`` answers with the structured error of the sync (400 for bad
repository content with ``details.file/line/entry``, 503 ``GIT_UNREACHABLE`` for the remote);
the failure is recorded either way and the previous inventory stays active.
"""

from __future__ import annotations

from quart import Blueprint, Response, jsonify

from linkops.api_types import LinkListQuery
from linkops.api_views import GitStatus, LinkList, LinkView, ScriptList, ScriptView, SyncResultView
from linkops.inventory import InventoryService, LinkQuery
from linkops.web.common import authenticated, operators_only, services
from linkops.web.contract import endpoint

blueprint = Blueprint("inventory", __name__)


def _inventory() -> InventoryService:
    return services().inventory


@blueprint.get("/api/links")
@authenticated
@endpoint("The inventory's links, filtered and sorted", query=LinkListQuery,
          response=LinkList)
async def list_links(query: LinkListQuery) -> Response:
    links = await _inventory().list_links(LinkQuery.from_args(
        types=query.type, statuses=query.status, enrolled=query.enrolled, tags=query.tag,
        sort=query.sort, direction=query.dir))
    return jsonify({"links": links, "count": len(links)})


@blueprint.get("/api/links/<link_id>")
@authenticated
@endpoint("One link", response=LinkView, errors=(404,))
async def get_link(link_id: str) -> Response:
    return jsonify(await _inventory().get_link(link_id))


@blueprint.get("/api/scripts")
@authenticated
@endpoint("The script catalogue", response=ScriptList)
async def list_scripts() -> Response:
    scripts = await _inventory().list_scripts()
    return jsonify({"scripts": scripts, "count": len(scripts)})


@blueprint.get("/api/scripts/<script_id>")
@authenticated
@endpoint("One script with its content", response=ScriptView, errors=(404,))
async def get_script(script_id: str) -> Response:
    return jsonify(await _inventory().get_script(script_id))


@blueprint.get("/api/git/status")
@authenticated
@endpoint("Repository, active commit and recent syncs", response=GitStatus)
async def git_status() -> Response:
    return jsonify(await _inventory().status())


@blueprint.post("/api/git/sync")
@operators_only("sync the configuration repository")
@endpoint("Sync the inventory from Git now", response=SyncResultView, errors=(400, 409, 503))
async def git_sync() -> Response:
    result = await _inventory().sync(trigger="api")
    result.raise_for_error()
    return jsonify(result.to_dict())
