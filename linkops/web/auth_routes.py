"""``/api/auth/*``: login (JSON + HttpOnly cookie), logout, me, API tokens.

- ``POST /api/auth/tokens {name, role?, expires_in_days?}`` → 201
  ``{id, name, role, token, expires_at, ...}`` (the token is in this answer only; body:
  :class:`linkops.auth_tokens.CreateTokenBody`)
- ``GET /api/auth/tokens`` → ``{tokens: [...]}`` (own; an admin sees all), with
  ``last_used_at``, never a secret
- ``DELETE /api/auth/tokens/{id}`` → the revoked token
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from quart import Blueprint, Response, jsonify, request

from linkops import auth_tokens
from linkops.api_types import LoginRequest, LoginResponse, Me, Success
from linkops.errors import LinkOpsError
from linkops.timeutil import to_iso
from linkops.web.common import (
    SECURE_SESSION_COOKIE,
    SESSION_COOKIE,
    authenticated,
    client_ip,
    current_session,
    current_user,
    services,
    session_cookie_name,
)
from linkops.web.contract import endpoint

blueprint = Blueprint("auth", __name__)

P = ParamSpec("P")
R = TypeVar("R")


def _json_only(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """415 unless the body is JSON: a cross-site form can post text/plain, never
    application/json (login CSRF). Checked before the body is decoded."""

    @wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if request.mimetype != "application/json":
            raise LinkOpsError(
                "login takes an application/json body", code="UNSUPPORTED_MEDIA_TYPE",
                status=415, details={"content_type": request.mimetype or None},
            )
        return await fn(*args, **kwargs)

    return wrapper


@blueprint.post("/api/auth/login")
@_json_only
@endpoint("Sign in: a bearer token (and the HttpOnly session cookie)", auth=False,
          request=LoginRequest, response=LoginResponse, errors=(401, 403, 415, 429))
async def login(body: LoginRequest) -> Response:
    result = await services().auth.login(body.username, body.password,
                                         remote_addr=client_ip())
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
@endpoint("Sign out: revokes this token", response=Success)
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
@endpoint("The signed-in user", response=Me)
async def me() -> Response:
    user = current_user()
    return jsonify({
        "username": user.username,
        "role": user.role,
        "expires_at": to_iso(current_session().expires_at),
    })


@blueprint.post("/api/auth/tokens")
@authenticated
@endpoint("Create an API token (shown once; role at most the creator's)",
          request=auth_tokens.CreateTokenBody, response=auth_tokens.CreatedToken,
          status=201, errors=(403,))
async def create_token(body: auth_tokens.CreateTokenBody) -> tuple[Response, int]:
    token, secret = await services().auth.create_api_token(current_session(), body)
    return jsonify({**token.to_json(), "token": secret}), 201


@blueprint.get("/api/auth/tokens")
@authenticated
@endpoint("API tokens: your own (an admin sees all), never a secret",
          response=auth_tokens.TokenList)
async def list_tokens() -> Response:
    tokens = await services().auth.list_api_tokens(current_session())
    return jsonify({"tokens": [t.to_json() for t in tokens]})


@blueprint.delete("/api/auth/tokens/<token_id>")
@authenticated
@endpoint("Revoke an API token (its live streams end at once)",
          response=auth_tokens.RevokedToken, errors=(403, 404))
async def revoke_token(token_id: str) -> Response:
    token = await services().auth.revoke_api_token(current_session(), token_id)
    return jsonify({"success": True, **token.to_json()})
