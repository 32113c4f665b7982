"""Every failure becomes the SPEC §3 error object; never a stack trace in a response."""

from __future__ import annotations

import logging
import time
from typing import Any

from quart import Quart, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from linkops.errors import LinkOpsError
from linkops.timeutil import now_iso

log = logging.getLogger("linkops.web")

_HTTP_CODES = {
    400: "VALIDATION_ERROR",
    401: "TOKEN_INVALID",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    408: "REQUEST_TIMEOUT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RATE_LIMITED",
}


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "details": details or {},
            "timestamp": now_iso(),
        }
    }


def error_response(
    status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> Response:
    response = jsonify(error_body(code, message, details))
    response.status_code = status
    return response


# A 429 is what a flood gets, thousands a minute: logged one line per path every
# THROTTLE_SECONDS with the number left out, so an attacker cannot fill the log's disk (or
# drown the lines that matter) by being refused.
THROTTLE_SECONDS = 10.0
_throttled: dict[str, tuple[float, int]] = {}  # path -> (last line's monotonic time, left out)


def _throttle(status: int, path: str) -> int | None:
    """None: leave this line out. Otherwise the lines left out since the last one."""
    if status != 429:
        return 0
    now = time.monotonic()
    last, left_out = _throttled.get(path, (-THROTTLE_SECONDS, 0))
    if now - last < THROTTLE_SECONDS:
        _throttled[path] = (last, left_out + 1)
        return None
    if len(_throttled) > 1024:  # paths are the client's choice: keep the table bounded
        _throttled.clear()
    _throttled[path] = (now, 0)
    return left_out


def _log_error(status: int, code: str, message: str) -> None:
    """One line per failed request: enough context to find it, never the request body.

    Refusals of a flood (429) are throttled: see :data:`THROTTLE_SECONDS`."""
    left_out = _throttle(status, request.path)
    if left_out is None:
        return
    context: dict[str, Any] = {
        "path": request.path,
        "method": request.method,
        "status": status,
        "code": code,
        "message": message,
    }
    if status == 429:
        context["left_out"] = left_out
    log.log(logging.WARNING if status >= 500 else logging.INFO, "api.error",
            extra={"context": context})


def register(app: Quart) -> None:
    @app.errorhandler(LinkOpsError)
    async def linkops_error(exc: LinkOpsError) -> Response:
        _log_error(exc.status, exc.code, exc.message)
        response = error_response(exc.status, exc.code, exc.message, exc.details)
        retry_after = exc.details.get("retry_after_seconds")
        if exc.status in (429, 503) and isinstance(retry_after, int):
            response.headers["Retry-After"] = str(retry_after)
        return response

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = _HTTP_CODES.get(status, "HTTP_ERROR")
        message = {
            404: f"no route for {request.method} {request.path}",
            405: f"method {request.method} not allowed on {request.path}",
            413: "request body too large",
        }.get(status, exc.description or exc.name)
        _log_error(status, code, message)
        response = error_response(status, code, message)
        if status == 405 and exc.get_response().headers.get("Allow"):
            response.headers["Allow"] = exc.get_response().headers["Allow"]
        return response

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> Response:
        log.error(
            "api.unexpected_error",
            exc_info=exc,
            extra={"context": {"path": request.path, "method": request.method}},
        )
        return error_response(500, "INTERNAL_ERROR", "internal error; see the service log")
