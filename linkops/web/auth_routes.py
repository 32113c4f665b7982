"""``/api/auth/*``: login (JSON + HttpOnly cookie), logout, me."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, jsonify, request

from linkops.timeutil import to_iso
from linkops.web.common import (
    SESSION_COOKIE,
    authenticated,
    current_session,
    current_user,
    json_body,
    services,
)

blueprint = Blueprint("auth", __name__)


@blueprint.post("/api/auth/login")
async def login() -> Response:
    body = await json_body()
    result = await services().auth.login(
        body.get("username"),  # type: ignore[arg-type]  # checked by login()
        body.get("password"),  # type: ignore[arg-type]
        remote_addr=request.remote_addr,
    )
    payload: dict[str, Any] = {
        "success": True,
        "token": result.token,
        "user": {"username": result.user.username, "role": result.user.role},
        "expires_at": to_iso(result.expires_at),
    }
    response = jsonify(payload)
    response.set_cookie(
        SESSION_COOKIE,
        result.token,
        max_age=int(services().settings.api.jwt_expiration_hours * 3600),
        path="/",
        httponly=True,
        samesite="Strict",
        secure=services().settings.api.cookie_secure,
    )
    return response


@blueprint.post("/api/auth/logout")
@authenticated
async def logout() -> Response:
    await services().auth.revoke(current_session())
    response = jsonify({"success": True})
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@blueprint.get("/api/auth/me")
@authenticated
async def me() -> Response:
    user = current_user()
    return jsonify({
        "username": user.username,
        "role": user.role,
        "expires_at": to_iso(current_session().expires_at),
    })
