"""``[api] allowed_hosts``: which ``Host`` header values are served (DNS rebinding defence).

A page on ``evil.example`` whose name an attacker re-points to 127.0.0.1 makes the victim's
browser talk to LinkOps as if it were the attacker's origin; the ``Host`` header still says
``evil.example``. Refusing unknown hosts (400 ``HOST_NOT_ALLOWED``) keeps such pages away from
the login endpoint and everything else. Default: the bind host, ``localhost``, ``127.0.0.1``
and ``::1`` (any port); entries are names (any port) or ``name:port``.
"""

from __future__ import annotations

from quart import Response

from linkops.config import ApiSettings
from linkops.web.errors import error_response

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")


def _split(value: str) -> tuple[str, str | None]:
    value = value.strip().lower()
    if value.startswith("["):  # [v6]:port
        host, _, rest = value[1:].partition("]")
        return host, rest.removeprefix(":") or None
    if value.count(":") > 1:  # bare IPv6
        return value, None
    host, _, port = value.partition(":")
    return host, port or None


def allowed_hosts(api: ApiSettings) -> frozenset[tuple[str, str | None]]:
    configured = api.allowed_hosts or (api.host, *DEFAULT_HOSTS)
    return frozenset(_split(h) for h in configured if h.strip())


def host_allowed(header: str | None, allowed: frozenset[tuple[str, str | None]]) -> bool:
    if not header:
        return False
    host, port = _split(header)
    return (host, None) in allowed or (host, port) in allowed


def host_refused(header: str | None) -> Response:
    return error_response(400, "HOST_NOT_ALLOWED", "this Host is not served; see [api] "
                          "allowed_hosts", {"host": (header or "")[:255]})
