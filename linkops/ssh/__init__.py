"""The SSH layer: the only package that imports paramiko.

* :mod:`.client` — blocking paramiko: one hop, ProxyJump chains (imports no trio);
* :mod:`.keys`, :mod:`.known_hosts` — the 0600 key rule, pins and the host-key policy;
* :mod:`.streams`, :mod:`.bridge` — worker threads, the SSH thread limiter, cancellation,
  streaming channels and the connection pool (:class:`SshManager` is the entry point);
* :mod:`.enrollment`, :mod:`.health` — client-ID verification and the health monitor;
* :mod:`.errors` — ``SshError`` and its subclasses (all HTTP 503, with a ``reason``).
"""

from linkops.ssh.bridge import ExecResult, ExecStream, ShellStream, SshConnection, SshManager
from linkops.ssh.errors import (
    HostKeyMismatchError,
    HostKeyUnknownError,
    SshAuthError,
    SshError,
    SshKeyError,
)

__all__ = [
    "ExecResult",
    "ExecStream",
    "HostKeyMismatchError",
    "HostKeyUnknownError",
    "ShellStream",
    "SshAuthError",
    "SshConnection",
    "SshError",
    "SshKeyError",
    "SshManager",
]
