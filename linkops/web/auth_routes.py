"""``/api/auth/*``: login (JSON + HttpOnly cookie), logout, me, API tokens.

- ``POST /api/auth/tokens {name, role?, expires_in_days?}`` → 201
  ``{id, name, role, token, expires_at, ...}`` (the token is in this answer only; body:
  :class:`linkops.auth_tokens.CreateTokenBody`)
- ``GET /api/auth/tokens`` → ``{tokens: [...]}`` (own; an admin sees all), with
  ``last_used_at``, never a secret
- ``DELETE /api/auth/tokens/{id}`` → the revoked token
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, jsonify, request

from linkops import auth_tokens
from linkops.errors import LinkOpsError
from linkops.timeutil import to_iso
from linkops.web.common import (
    SECURE_SESSION_COOKIE,
    SESSION_COOKIE,
    authenticated,
    client_ip,
    current_session,
    current_user,
    json_body,
    services,
    session_cookie_name,
)

blueprint = Blueprint("auth", __name__)


@blueprint.post("/api/auth/login")
async def login() -> Response:
    # Only JSON: a cross-site form can post text/plain, never application/json (login CSRF).
    if request.mimetype != "application/json":
        raise LinkOpsError(
            "login takes an application/json body", code="UNSUPPORTED_MEDIA_TYPE", status=415,
            details={"content_type": request.mimetype or None},
        )
    body = await json_body()
    result = await services().auth.login(
        body.get("username"),  # type: ignore[arg-type]  # checked by login()
        body.get("password"),  # type: ignore[arg-type]
        remote_addr=client_ip(),
    )
    payload: dict[str, Any] = {
        "success": True,
        "token": result.token,
        "user": {"username": result.user.username, "role": result.user.role},
        "expires_at": to_iso(result.expires_at),
    }
    response = jsonify(payload)
    name = session_cookie_name()
    response.set_cookie(
        name,
        result.token,
        max_age=int(services().settings.api.jwt_expiration_hours * 3600),
        path="/",
        httponly=True,
        samesite="Strict",
        secure=name == SECURE_SESSION_COOKIE,
    )
    return response


@blueprint.post("/api/auth/logout")
@authenticated
async def logout() -> Response:
    await services().auth.revoke(current_session())
    response = jsonify({"success": True})
    name = session_cookie_name()
    response.delete_cookie(name, path="/", secure=name == SECURE_SESSION_COOKIE, httponly=True,
                           samesite="Strict")
    if name != SESSION_COOKIE:
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


@blueprint.post("/api/auth/tokens")
@authenticated
async def create_token() -> tuple[Response, int]:
    body = auth_tokens.parse_create_body(await json_body())
    token, secret = await services().auth.create_api_token(current_session(), body)
    return jsonify({**token.to_json(), "token": secret}), 201


@blueprint.get("/api/auth/tokens")
@authenticated
async def list_tokens() -> Response:
    tokens = await services().auth.list_api_tokens(current_session())
    return jsonify({"tokens": [t.to_json() for t in tokens]})


@blueprint.delete("/api/auth/tokens/<token_id>")
@authenticated
async def revoke_token(token_id: str) -> Response:
    token = await services().auth.revoke_api_token(current_session(), token_id)
    return jsonify({"success": True, **token.to_json()})
