"""``/api/auth/*``: login (JSON + HttpOnly cookie), logout, me."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, jsonify, request

from linkops.api_types import LoginRequest, LoginResponse, Me, Success
from linkops.timeutil import to_iso
from linkops.web.common import (
    SESSION_COOKIE,
    authenticated,
    current_session,
    current_user,
    services,
)
from linkops.web.contract import endpoint

blueprint = Blueprint("auth", __name__)


@blueprint.post("/api/auth/login")
@endpoint("Sign in: a bearer token (and the HttpOnly session cookie)", auth=False,
          request=LoginRequest, response=LoginResponse, errors=(401, 403, 429))
async def login(body: LoginRequest) -> Response:
    result = await services().auth.login(body.username, body.password,
                                         remote_addr=request.remote_addr)
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
@endpoint("Sign out: revokes this token", response=Success)
async def logout() -> Response:
    await services().auth.revoke(current_session())
    response = jsonify({"success": True})
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@blueprint.get("/api/auth/me")
@authenticated
@endpoint("The signed-in user", response=Me)
async def me() -> Response:
    user = current_user()
    return jsonify({
        "username": user.username,
        "role": user.role,
        "expires_at": to_iso(current_session().expires_at),
    })
