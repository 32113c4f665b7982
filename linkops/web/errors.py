"""Every failure becomes the SPEC §3 error object; never a stack trace in a response."""

from __future__ import annotations

import logging
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


def _log_error(status: int, code: str, message: str) -> None:
    """One line per failed request: enough context to find it, never the request body."""
    context = {
        "path": request.path,
        "method": request.method,
        "status": status,
        "code": code,
        "message": message,
    }
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
