"""The trust boundary of X-Forwarded-For/-Proto (hostile headers), and attempt pruning."""

from __future__ import annotations

import ipaddress
import sqlite3
from datetime import timedelta

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from linkops.auth import AuthService
from linkops.config import Settings
from linkops.db import Database
from linkops.errors import AuthError
from linkops.timeutil import to_iso, utcnow
from linkops.web.clientinfo import came_over_https, client_address

PROXIES = ("127.0.0.1/32", "10.0.0.0/8")
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=200)
ips = st.ip_addresses().map(str)


@settings(max_examples=200, deadline=None)
@given(peer=ips, forwarded=header_text, proto=header_text)
def test_headers_from_untrusted_peers_are_ignored(peer: str, forwarded: str, proto: str) -> None:
    """Whatever the headers say, an untrusted peer is its own address and not HTTPS."""
    ip = ipaddress.ip_address(peer)
    if any(ip in ipaddress.ip_network(n) for n in PROXIES):
        return
    headers = {"X-Forwarded-For": forwarded, "X-Forwarded-Proto": proto}
    assert client_address(peer, headers, PROXIES) == peer
    assert came_over_https("http", peer, headers, PROXIES) is False


@settings(max_examples=200, deadline=None)
@given(forwarded=header_text, client=ips)
def test_trusted_proxy_chain_is_read_from_the_right(forwarded: str, client: str) -> None:
    """Behind trusted proxies the client is the right-most untrusted hop; garbage never raises
    and never yields something that is not an IP address (or the proxy itself)."""
    got = client_address("127.0.0.1", {"X-Forwarded-For": forwarded}, PROXIES)
    ipaddress.ip_address(got)
    chain = f"{forwarded}, {client}, 10.1.1.1"
    expected = client if not any(ipaddress.ip_address(client) in ipaddress.ip_network(n)
                                 for n in PROXIES) else None
    result = client_address("127.0.0.1", {"X-Forwarded-For": chain}, PROXIES)
    if expected is not None:
        assert result == str(ipaddress.ip_address(expected))


def test_no_trusted_proxies_means_nobody_is_believed() -> None:
    headers = {"X-Forwarded-For": "1.2.3.4", "X-Forwarded-Proto": "https"}
    assert client_address("127.0.0.1", headers, ()) == "127.0.0.1"
    assert not came_over_https("http", "127.0.0.1", headers, ())
    assert came_over_https("http", "127.0.0.1", headers, ("127.0.0.1/32",))
    assert came_over_https("https", "8.8.8.8", {}, ())


async def test_old_attempts_are_pruned(database: Database, settings: Settings) -> None:
    """Rows older than attempts_retention_hours go (with the refusal counters); recent ones
    stay."""
    security = attrs.evolve(settings.security, attempts_retention_hours=1.0)
    service = AuthService(database, settings.api, security)
    old = to_iso(utcnow() - timedelta(hours=2))
    recent = to_iso(utcnow() - timedelta(minutes=10))

    def seed(conn: sqlite3.Connection) -> None:
        for at in [old] * 50 + [recent] * 3:
            conn.execute(
                "INSERT INTO auth_attempts (username_norm, success, remote_addr, attempted_at)"
                " VALUES ('ghost', 0, '1.1.1.1', ?)", (at,))
        conn.execute(
            "INSERT INTO auth_refusals VALUES ('ghost', '1.1.1.1', 7, ?, ?)", (old, old))

    await database.write(seed)
    try:
        await service.login("someone", "wrong-password", "2.2.2.2")
    except AuthError:
        pass
    left = await database.fetchone("SELECT COUNT(*) FROM auth_attempts WHERE username_norm = ?",
                                   ("ghost",))
    refusals = await database.fetchone("SELECT COUNT(*) FROM auth_refusals")
    assert left is not None and left[0] == 3
    assert refusals is not None and refusals[0] == 0
    # The lock query uses the index, not a scan of the table.
    plan = await database.fetchall(
        "EXPLAIN QUERY PLAN SELECT attempted_at, remote_addr, success FROM auth_attempts"
        " WHERE username_norm = ? AND success IN (0, 1) AND attempted_at > ?", ("x", old))
    assert any("auth_attempts_user_outcome_time" in str(tuple(r)) for r in plan), plan
