"""Terminal workspaces over HTTP and the workspace WebSocket (thin: decode, authorize, call).

- ``POST   /api/terminal/workspaces {layout, max_panes?}`` → 201 workspace
- ``GET    /api/terminal/workspaces`` → ``{workspaces: [...]}`` (the caller's own)
- ``GET    /api/terminal/workspaces/{id}`` → workspace (404 for anyone but the owner)
- ``PATCH  /api/terminal/workspaces/{id} {layout}`` → workspace
- ``DELETE /api/terminal/workspaces/{id}`` → ``{success: true}`` (closes its shells)
- ``PUT    /api/terminal/workspaces/{id}/panes {panes: [{pane, target}]}`` → workspace
- ``POST   /api/terminal/workspaces/{id}/connect-all`` → ``{workspace_id, panes: [...]}``
- ``POST   /api/terminal/workspaces/{id}/panes/{pane}/connect|disconnect`` → pane
- ``WS     /api/terminal/workspaces/{id}/ws`` — see :mod:`linkops.terminal.protocol`. The
  handshake is refused *before* it is accepted (403 origin / 401 token / 404 workspace), so
  nothing of the workspace is touched for a refused caller.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, jsonify, websocket

from linkops.api_types import (
    AssignPanesRequest,
    CreateWorkspaceRequest,
    LayoutRequest,
    PaneResult,
    WorkspaceDeleted,
    WorkspaceList,
    WorkspaceView,
)
from linkops.api_views import ConnectAllResult
from linkops.errors import LinkOpsError
from linkops.terminal.service import TerminalService
from linkops.terminal.socket import serve_socket
from linkops.terminal.workspaces import parse_assignments
from linkops.web.common import (
    OPERATOR_ROLES,
    authenticate_websocket,
    current_user,
    operators_only,
    require_role,
    services,
)
from linkops.web.contract import encode, endpoint
from linkops.web.errors import error_response

blueprint = Blueprint("terminal", __name__)

# Viewers read only: no terminals at all, not even listing (SPEC §10.2).
ACTION = "use terminals"

BASE = "/api/terminal/workspaces"


def _terminal() -> TerminalService:
    return services().terminal


def _json(value: Any, status: int = 200) -> Response:
    response = jsonify(value)
    response.status_code = status
    return response


@blueprint.post(BASE)
@operators_only(ACTION)
@endpoint("Create a terminal workspace", request=CreateWorkspaceRequest, response=WorkspaceView,
          status=201, errors=(403,))
async def create_workspace(body: CreateWorkspaceRequest) -> Response:
    user = require_role(action="open terminals")
    workspace = await _terminal().create_workspace(user.username, body.layout,
                                                   body.max_panes)
    return _json(workspace.to_json(), 201)


@blueprint.get(BASE)
@operators_only(ACTION)
@endpoint("The caller's workspaces", response=WorkspaceList)
async def list_workspaces() -> Response:
    found = await _terminal().list_workspaces(current_user().username)
    return _json({"workspaces": [w.to_json() for w in found]})


@blueprint.get(f"{BASE}/<workspace_id>")
@operators_only(ACTION)
@endpoint("One workspace (404 for anyone but its owner)", response=WorkspaceView,
          errors=(404,))
async def get_workspace(workspace_id: str) -> Response:
    workspace = await _terminal().get_workspace(current_user().username, workspace_id)
    return _json(workspace.to_json())


@blueprint.patch(f"{BASE}/<workspace_id>")
@operators_only(ACTION)
@endpoint("Change a workspace's layout", request=LayoutRequest, response=WorkspaceView,
          errors=(404,))
async def set_layout(workspace_id: str, body: LayoutRequest) -> Response:
    workspace = await _terminal().set_layout(current_user().username, workspace_id,
                                             body.layout)
    return _json(workspace.to_json())


@blueprint.delete(f"{BASE}/<workspace_id>")
@operators_only(ACTION)
@endpoint("Delete a workspace (closes its shells)", response=WorkspaceDeleted,
          errors=(404,))
async def delete_workspace(workspace_id: str) -> Response:
    await _terminal().delete_workspace(current_user().username, workspace_id)
    return _json(encode(WorkspaceDeleted(success=True, workspace_id=workspace_id)))


@blueprint.put(f"{BASE}/<workspace_id>/panes")
@operators_only(ACTION)
@endpoint("Assign links to panes (target null clears a pane)", request=AssignPanesRequest,
          response=WorkspaceView, errors=(404, 409))
async def assign_panes(workspace_id: str, body: AssignPanesRequest) -> Response:
    assignments = parse_assignments(body)
    workspace = await _terminal().assign_panes(current_user().username, workspace_id,
                                               assignments)
    return _json(workspace.to_json())


@blueprint.post(f"{BASE}/<workspace_id>/connect-all")
@operators_only(ACTION)
@endpoint("Connect every assigned pane", response=ConnectAllResult, errors=(403, 404))
async def connect_all(workspace_id: str) -> Response:
    results = await _terminal().connect_all(
        require_role(action="open terminals").username, workspace_id
    )
    return _json({"workspace_id": workspace_id, "panes": results})


@blueprint.post(f"{BASE}/<workspace_id>/panes/<pane>/connect")
@operators_only(ACTION)
@endpoint("Open the pane's shell", response=PaneResult, errors=(403, 404, 409, 503))
async def connect_pane(workspace_id: str, pane: str) -> Response:
    state = await _terminal().connect_pane(
        require_role(action="open terminals").username, workspace_id, pane
    )
    return _json({"workspace_id": workspace_id, **state.to_json()})


@blueprint.post(f"{BASE}/<workspace_id>/panes/<pane>/disconnect")
@operators_only(ACTION)
@endpoint("Close the pane's shell", response=PaneResult, errors=(404,))
async def disconnect_pane(workspace_id: str, pane: str) -> Response:
    state = await _terminal().disconnect_pane(current_user().username, workspace_id, pane)
    return _json({"workspace_id": workspace_id, **state.to_json()})


@blueprint.websocket(f"{BASE}/<workspace_id>/ws")
@endpoint("Workspace WebSocket (protocol: docs/api.md)", errors=(403, 404))
async def workspace_socket(workspace_id: str) -> Response | None:
    try:
        session = await authenticate_websocket()
        require_role(OPERATOR_ROLES, action=ACTION)
        terminal = _terminal()
        attachment = await terminal.attach(session.user.username, workspace_id)
    except LinkOpsError as exc:
        # Returned before accept(): Quart answers the upgrade with this HTTP response.
        return error_response(exc.status, exc.code, exc.message, exc.details)
    try:
        await websocket.accept()
    except BaseException:
        terminal.detach(attachment)
        raise
    with services().auth.live.track(session) as live:
        await serve_socket(websocket, terminal, attachment, closing=services().closing,
                           live=live)
    return None
