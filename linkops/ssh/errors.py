"""The SSH layer's failures, each a :class:`~linkops.errors.UnavailableError` (HTTP 503).

Every error carries a short machine-readable ``reason`` (also in ``details["reason"]``) so that
enrollment and health results can say *why* a host could not be reached::

    SshError (SSH_CONNECTION_FAILED; reason "connect", "timeout", "closed" or "protocol":
              the peer broke the protocol, e.g. ignored flow control)
    ├── HostKeyMismatchError (HOST_KEY_MISMATCH; reason "host_key")  changed or wrong pinned key
    ├── HostKeyUnknownError (HOST_KEY_UNKNOWN; reason "host_key")    unknown host, strict policy
    ├── SshAuthError (SSH_AUTH_FAILED; reason "auth")                 the server refused our key
    └── SshKeyError (SSH_KEY_INVALID; reason "key")                   missing, unreadable, not 0600

``details`` always names the link (``target``) and, for chains, the hop that failed (``hop``).
A command that outlives its deadline raises :class:`~linkops.errors.ExecutionTimeoutError`
(``EXECUTION_TIMEOUT``, 504), which is not an ``SshError``: the connection itself was fine.
"""

from __future__ import annotations

from typing import Any, ClassVar

from linkops.errors import UnavailableError

REASONS = ("connect", "timeout", "closed", "protocol", "host_key", "auth", "key")


class SshError(UnavailableError):
    """The connection could not be made or was lost."""

    default_code = "SSH_CONNECTION_FAILED"
    default_reason: ClassVar[str] = "connect"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        code: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.reason = reason or self.default_reason
        merged = {"reason": self.reason, **(details or {})}
        super().__init__(message, code=code, details=merged)


class HostKeyMismatchError(SshError):
    default_code = "HOST_KEY_MISMATCH"
    default_reason = "host_key"


class HostKeyUnknownError(SshError):
    default_code = "HOST_KEY_UNKNOWN"
    default_reason = "host_key"


class SshAuthError(SshError):
    default_code = "SSH_AUTH_FAILED"
    default_reason = "auth"


class SshKeyError(SshError):
    default_code = "SSH_KEY_INVALID"
    default_reason = "key"


# Failures that the same attempt would hit again: never retried.
PERMANENT = (HostKeyMismatchError, HostKeyUnknownError, SshAuthError, SshKeyError)
