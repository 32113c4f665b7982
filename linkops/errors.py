"""The one exception hierarchy of LinkOps and the HTTP status each maps to.

Every failure that can reach a user is a :class:`LinkOpsError` carrying a stable ``code``
(SPEC §3), an HTTP ``status``, a message meant for humans and optional ``details``::

    LinkOpsError (500 INTERNAL_ERROR)
    ├── ValidationError (400 VALIDATION_ERROR; also INVALID_TABLE, INVALID_OPERATOR,
    │   NON_BASH_SCRIPT, YAML_PARSE_ERROR, INVALID_FLAG …)
    ├── AuthError (401 INVALID_CREDENTIALS, TOKEN_EXPIRED, TOKEN_INVALID)
    ├── ForbiddenError (403 ACCOUNT_LOCKED, ENROLLMENT_REQUIRED, CLIENT_ID_MISMATCH, FORBIDDEN)
    ├── NotFoundError (404 NOT_FOUND, SCRIPT_NOT_FOUND, LINK_NOT_FOUND …)
    ├── ConflictError (409 PANE_ALREADY_ASSIGNED, OPERATION_FINISHED, SYNC_IN_PROGRESS …)
    ├── RateLimitError (429 RATE_LIMITED)
    ├── UnavailableError (503 SSH_CONNECTION_FAILED, GIT_UNREACHABLE, HOST_KEY_MISMATCH …)
    └── ExecutionTimeoutError (504 EXECUTION_TIMEOUT)

The web layer turns any of these into the SPEC error object; anything else becomes a 500
``INTERNAL_ERROR`` without a stack trace. Services raise these and never import Quart.
"""

from __future__ import annotations

from typing import Any, ClassVar


class LinkOpsError(Exception):
    """Base class; ``code`` and ``status`` default per subclass and may be overridden."""

    status: ClassVar[int] = 500
    default_code: ClassVar[str] = "INTERNAL_ERROR"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details: dict[str, Any] = details or {}
        if status is not None:
            self.status = status  # type: ignore[misc]

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class ValidationError(LinkOpsError):
    status = 400
    default_code = "VALIDATION_ERROR"


class AuthError(LinkOpsError):
    status = 401
    default_code = "TOKEN_INVALID"


class ForbiddenError(LinkOpsError):
    status = 403
    default_code = "FORBIDDEN"


class NotFoundError(LinkOpsError):
    status = 404
    default_code = "NOT_FOUND"


class ConflictError(LinkOpsError):
    status = 409
    default_code = "CONFLICT"


class RateLimitError(LinkOpsError):
    status = 429
    default_code = "RATE_LIMITED"


class UnavailableError(LinkOpsError):
    status = 503
    default_code = "SERVICE_UNAVAILABLE"


class ExecutionTimeoutError(LinkOpsError):
    status = 504
    default_code = "EXECUTION_TIMEOUT"


class ConfigError(Exception):
    """A configuration problem found at start-up; the message names section and key."""
