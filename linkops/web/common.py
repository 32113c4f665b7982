"""What every route module uses: the services, the authenticated user, the role checks.

Authentication (see docs/security.md):
- Non-browser clients send ``Authorization: Bearer <token>`` on any route, SSE and the
  WebSocket handshake included.
- Browsers get the same token in an HttpOnly, SameSite=Strict cookie at login (JavaScript
  never sees it, and EventSource/WebSocket carry it without a token in the URL). Because a
  cookie is ambient authority, a cookie-authenticated request that changes state must also
  carry ``X-Requested-With: linkops`` (a header a cross-site form cannot set), and WebSocket
  upgrades must come from an allowed ``Origin``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, ParamSpec, TypeVar, cast

from quart import current_app, g, request, websocket

from linkops.auth import Session, User
from linkops.errors import AuthError, ForbiddenError
from linkops.services import Services
from linkops.web.clientinfo import came_over_https, client_address

SESSION_COOKIE = "linkops_session"
# Over HTTPS the cookie gets the __Host- prefix: Secure, Path=/, no Domain — a sibling
# subdomain or a plain-HTTP man in the middle cannot plant or overwrite it.
SECURE_SESSION_COOKIE = "__Host-linkops_session"
CSRF_HEADER = "X-Requested-With"
CSRF_VALUE = "linkops"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

P = ParamSpec("P")
R = TypeVar("R")


def services() -> Services:
    return cast(Services, current_app.config["LINKOPS_SERVICES"])


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise AuthError("malformed Authorization header", code="TOKEN_INVALID")
    return value.strip()


def client_ip(req: Any = None) -> str:
    """The caller's address (``X-Forwarded-For`` believed only from ``[api] trusted_proxies``)."""
    req = req if req is not None else request
    return client_address(req.remote_addr, req.headers, services().settings.api.trusted_proxies)


def is_https(req: Any = None) -> bool:
    """TLS to us, or a trusted proxy that says ``X-Forwarded-Proto: https``."""
    req = req if req is not None else request
    return came_over_https(req.scheme, req.remote_addr, req.headers,
                           services().settings.api.trusted_proxies)


def session_cookie_name(req: Any = None) -> str:
    """The cookie this request's session lives in (``__Host-`` prefixed over HTTPS)."""
    secure = is_https(req) or services().settings.api.cookie_secure
    return SECURE_SESSION_COOKIE if secure else SESSION_COOKIE


async def _session_from(headers: Any, cookies: Any, method: str, req: Any) -> Session:
    token = _bearer(headers.get("Authorization"))
    if token is None:
        token = cookies.get(session_cookie_name(req))
        if token is None:
            raise AuthError("authentication required", code="TOKEN_INVALID")
        if method not in SAFE_METHODS and headers.get(CSRF_HEADER) != CSRF_VALUE:
            raise ForbiddenError(
                f"cookie-authenticated requests that change state need {CSRF_HEADER}: {CSRF_VALUE}",
                code="CSRF_CHECK_FAILED",
            )
    return await services().auth.authenticate(token)


async def authenticate_request() -> Session:
    session: Session = await _session_from(request.headers, request.cookies, request.method,
                                           request)
    g.linkops_session = session
    return session


def origin_allowed(origin: str | None, host: str | None) -> bool:
    """Same-origin (scheme-agnostic host:port match) or listed in ``[api] cors_origins``."""
    if not origin:
        # Non-browser clients send no Origin; they must use a bearer token instead.
        return False
    if origin in services().settings.api.cors_origins:
        return True
    _, _, rest = origin.partition("://")
    return bool(host) and rest.rstrip("/") == host


async def authenticate_websocket() -> Session:
    """Auth for a WebSocket handshake: bearer token, or cookie plus an allowed Origin."""
    headers = websocket.headers
    has_bearer = headers.get("Authorization") is not None
    if not has_bearer and not origin_allowed(headers.get("Origin"), headers.get("Host")):
        raise ForbiddenError("WebSocket origin not allowed", code="ORIGIN_NOT_ALLOWED")
    # GET semantics for the upgrade itself: the Origin check above is the CSRF defence.
    session: Session = await _session_from(headers, websocket.cookies, "GET", websocket)
    g.linkops_session = session
    return session


def authenticated(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Route decorator: 401 unless the request carries a valid token."""

    @wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        await authenticate_request()
        return await fn(*args, **kwargs)

    return wrapper


# Roles that may change machines (run/stop operations, open terminals); a ``viewer`` reads.
OPERATOR_ROLES = frozenset({"admin", "operator"})


def require_role(roles: frozenset[str] = OPERATOR_ROLES, *, action: str = "do this") -> User:
    """The current user, or 403 ``FORBIDDEN`` when their role is not in ``roles``."""
    user = current_user()
    if user.role not in roles:
        raise ForbiddenError(
            f"role {user.role!r} may not {action}", code="FORBIDDEN", details={"role": user.role}
        )
    return user


def operators_only(action: str) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Route decorator: 401 without a valid token, 403 ``FORBIDDEN`` for a ``viewer``."""

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            await authenticate_request()
            require_role(OPERATOR_ROLES, action=action)
            return await fn(*args, **kwargs)

        return wrapper

    return decorate


def current_session() -> Session:
    session = g.get("linkops_session")
    if session is None:
        raise AuthError("authentication required", code="TOKEN_INVALID")
    return cast(Session, session)


def current_user() -> User:
    return current_session().user

