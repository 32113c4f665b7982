"""Every route of the app × every role → the expected answer (SPEC §10.2 roles).

Generated from ``app.url_map``: a route added without an entry in :data:`ACCESS` fails this
suite, so each new route gets an explicit role decision. Levels:

- ``public``: anybody (never 401/403);
- ``signed_in``: 401 without a token, any role otherwise;
- ``operator``: 401 without a token, 403 ``FORBIDDEN`` for a viewer, operator and admin pass.

"Pass" means the role check let the request through: the answer is whatever the route says to
placeholder ids and an empty body (200, 400, 404, 409, 503 …), never 401 or 403.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import ConnectionRejected, open_websocket_url

from linkops import auth, server
from linkops.auth import User
from linkops.web.app import create_app
from tests.fixtures_core import base_url

ACCESS: dict[tuple[str, str], str] = {
    ("GET", "/"): "public",
    ("GET", "/<path:path>"): "public",
    ("GET", "/api/health"): "public",
    ("POST", "/api/auth/login"): "public",
    ("POST", "/api/auth/logout"): "signed_in",
    ("GET", "/api/auth/me"): "signed_in",
    ("GET", "/api/links"): "signed_in",
    ("GET", "/api/links/<link_id>"): "signed_in",
    ("POST", "/api/links/<link_id>/verify"): "operator",
    ("POST", "/api/links/verify"): "operator",
    ("GET", "/api/scripts"): "signed_in",
    ("GET", "/api/scripts/<script_id>"): "signed_in",
    ("GET", "/api/git/status"): "signed_in",
    ("POST", "/api/git/sync"): "operator",
    ("POST", "/api/operations/run"): "operator",
    ("GET", "/api/operations"): "signed_in",
    ("GET", "/api/operations/<op_id>"): "signed_in",
    ("POST", "/api/operations/<op_id>/stop"): "operator",
    ("GET", "/api/operations/<op_id>/events"): "signed_in",
    ("POST", "/api/tables/query"): "signed_in",
    ("GET", "/api/tables"): "signed_in",
    ("POST", "/api/terminal/workspaces"): "operator",
    ("GET", "/api/terminal/workspaces"): "operator",
    ("GET", "/api/terminal/workspaces/<workspace_id>"): "operator",
    ("PATCH", "/api/terminal/workspaces/<workspace_id>"): "operator",
    ("DELETE", "/api/terminal/workspaces/<workspace_id>"): "operator",
    ("PUT", "/api/terminal/workspaces/<workspace_id>/panes"): "operator",
    ("POST", "/api/terminal/workspaces/<workspace_id>/connect-all"): "operator",
    ("POST", "/api/terminal/workspaces/<workspace_id>/panes/<pane>/connect"): "operator",
    ("POST", "/api/terminal/workspaces/<workspace_id>/panes/<pane>/disconnect"): "operator",
    ("WS", "/api/terminal/workspaces/<workspace_id>/ws"): "operator_ws",
    ("POST", "/api/auth/tokens"): "signed_in",
    ("GET", "/api/auth/tokens"): "signed_in",
    ("DELETE", "/api/auth/tokens/<token_id>"): "signed_in",
    # The API document describes routes, never data: public like the login page.
    ("POST", "/api/operations/plan"): "operator",
    ("POST", "/api/operations/<op_id>/rerun"): "operator",
    ("GET", "/api/operations/<op_id>/groups"): "signed_in",
    ("GET", "/api/operations/<op_id>/groups/<key>/diff"): "signed_in",
    ("GET", "/api/operations/<op_id>/tasks/<target>/<script>/output"): "signed_in",
    ("GET", "/api/terminal/recordings"): "operator",
    ("GET", "/api/terminal/recordings/search"): "operator",
    ("GET", "/api/terminal/recordings/<recording_id>"): "operator",
    ("GET", "/api/openapi.json"): "public",
    ("GET", "/api/docs"): "public",
}
ROLES = ("anonymous", "viewer", "operator", "admin")


def expected(level: str, role: str) -> set[int] | None:
    """The statuses the role check gives, or None for 'let through'."""
    if level == "public":
        return None
    if role == "anonymous":
        # The WebSocket handshake checks the Origin before the token: 403 without either.
        return {401, 403} if level == "operator_ws" else {401}
    if level in ("operator", "operator_ws") and role == "viewer":
        return {403}
    return None


def _routes(running: server.Running) -> list[tuple[str, str]]:
    app = create_app(running.services)  # the same route table the server runs
    found = []
    for rule in app.url_map.iter_rules():
        if getattr(rule, "websocket", False):
            found.append(("WS", rule.rule))
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append((method, rule.rule))
    return found


def _concrete(rule: str) -> str:
    # Placeholder ids: nothing by that name exists, so a route that passes answers 404/400.
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda m: "A" if m.group(1) == "pane" else "x0",
                  rule)


async def test_every_declared_route_is_in_the_table(running: server.Running) -> None:
    routes = set(_routes(running))
    missing = sorted(routes - set(ACCESS))
    assert not missing, f"routes without a role decision in ACCESS: {missing}"
    stale = sorted(set(ACCESS) - routes)
    assert not stale, f"ACCESS lists routes the app does not have: {stale}"


async def _token(running: server.Running, role: str) -> str | None:
    if role == "anonymous":
        return None
    name = f"matrix-{role}"
    db = running.services.db
    existing = await db.fetchone("SELECT 1 FROM users WHERE username_norm = ?", (name,))
    if existing is None:
        await db.write(lambda c: auth.add_user(c, name, "matrix-password", role=role))
    # Minted directly: no scrypt, no login rate limit, a fresh jti for every request (so a
    # logout in the matrix does not revoke the next request's token).
    return running.services.auth.issue_token(User(name, role, 1)).token


async def _status(running: server.Running, http: httpx.AsyncClient, method: str, path: str,
                  token: str | None) -> int:
    headers: dict[str, Any] = {"Authorization": f"Bearer {token}"} if token else {}
    if method == "WS":
        url = base_url(running).replace("http://", "ws://") + path
        try:
            async with open_websocket_url(url, extra_headers=[
                    (k.encode(), v.encode()) for k, v in headers.items()]):
                return 101
        except ConnectionRejected as rejected:
            return int(rejected.status_code)
    if method in ("POST", "PUT", "PATCH"):
        headers["Content-Type"] = "application/json"
        response = await http.request(method, path, headers=headers, content=b"{}")
    else:
        response = await http.request(method, path, headers=headers)
    return response.status_code


@pytest.mark.parametrize("role", ROLES)
async def test_role_matrix(running: server.Running, role: str) -> None:
    failures = []
    with trio.fail_after(120):
        async with httpx.AsyncClient(base_url=base_url(running), timeout=30) as http:
            for method, rule in _routes(running):
                level = ACCESS.get((method, rule))
                assert level is not None, f"{method} {rule}: no role decision in ACCESS"
                token = await _token(running, role)
                if method == "GET" and rule.endswith("/events"):
                    # A stream: the status line is all we need.
                    headers = {"Authorization": f"Bearer {token}"} if token else {}
                    async with http.stream("GET", _concrete(rule), headers=headers) as resp:
                        status = resp.status_code
                else:
                    status = await _status(running, http, method, _concrete(rule), token)
                want = expected(level, role)
                if want is None:
                    ok = (status not in (401, 403) and status < 500) or status == 503
                else:
                    ok = status in want
                if not ok:
                    failures.append(f"{role}: {method} {rule} → {status} (level {level})")
    assert not failures, "\n".join(failures)
