"""Who is asking, and over what: the client address and scheme behind trusted proxies.

``X-Forwarded-For`` and ``X-Forwarded-Proto`` are believed only when the TCP peer is inside
``[api] trusted_proxies`` (CIDRs; default none, so nobody can pick their own address for the
login rate limit or the lockout). ``X-Forwarded-For`` is read from the right: the first
address that is not itself a trusted proxy is the client; hops to its left were written by
the client and are ignored.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=8)
def _networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def _trusted(address: str | None, cidrs: tuple[str, ...]) -> bool:
    if not address or not cidrs:
        return False
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return False
    return any(ip in net for net in _networks(cidrs))


def client_address(peer: str | None, headers: Mapping[str, str],
                   trusted_proxies: tuple[str, ...]) -> str:
    """The client's IP address as far as we can believe it ('' when unknown)."""
    address = (peer or "").strip()
    if not _trusted(address, trusted_proxies):
        return address
    forwarded = headers.get("X-Forwarded-For") or ""
    hops = [h.strip() for h in forwarded.split(",") if h.strip()]
    for hop in reversed(hops):
        try:
            canonical = str(ipaddress.ip_address(hop.strip("[]")))
        except ValueError:
            return address  # garbage from the client's side: stop believing at the proxy
        if not _trusted(canonical, trusted_proxies):
            return canonical
        address = canonical
    return address


def came_over_https(scheme: str, peer: str | None, headers: Mapping[str, str],
                    trusted_proxies: tuple[str, ...]) -> bool:
    """True for TLS to us, or a trusted proxy saying ``X-Forwarded-Proto: https``."""
    if scheme in ("https", "wss"):
        return True
    if _trusted(peer, trusted_proxies):
        proto = (headers.get("X-Forwarded-Proto") or "").split(",")[0].strip().lower()
        return proto == "https"
    return False
