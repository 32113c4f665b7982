"""Browser edges (SPEC §10.2): the Secure ``__Host-`` cookie over HTTPS (a trusted proxy's
``X-Forwarded-Proto``), plain HTTP unchanged, ``[api] allowed_hosts`` against DNS rebinding,
and login only as ``application/json``."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trio
from trio_websocket import ConnectionRejected, open_websocket_url

from linkops import config, server
from linkops.config import Settings
from tests.fixtures_core import ADMIN, ADMIN_PASSWORD, base_url, write_config

LOGIN = {"username": ADMIN, "password": ADMIN_PASSWORD}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return config.load(write_config(tmp_path, api={"trusted_proxies": "127.0.0.1/32"}))


async def test_cookie_is_secure_and_host_prefixed_behind_a_tls_proxy(
        anon: httpx.AsyncClient) -> None:
    with trio.fail_after(30):
        https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.1"}
        r = await anon.post("/api/auth/login", json=LOGIN, headers=https)
        assert r.status_code == 200, r.text
        cookie = r.headers["set-cookie"]
        assert cookie.startswith("__Host-linkops_session=")
        assert "Secure" in cookie and "HttpOnly" in cookie and "Path=/" in cookie
        assert "Domain" not in cookie and "SameSite=Strict" in cookie
        token = r.json()["token"]
        anon.cookies.clear()
        # The prefixed cookie authenticates HTTPS requests; the plain name does not.
        me = await anon.get("/api/auth/me", headers={
            **https, "Cookie": f"__Host-linkops_session={token}"})
        assert me.status_code == 200
        me = await anon.get("/api/auth/me", headers={
            **https, "Cookie": f"linkops_session={token}"})
        assert me.status_code == 401
        # Plain HTTP (the localhost demo) keeps the plain cookie.
        r = await anon.post("/api/auth/login", json=LOGIN)
        assert r.headers["set-cookie"].startswith("linkops_session=")
        assert "Secure" not in r.headers["set-cookie"]


async def test_forwarded_proto_from_an_untrusted_peer_is_ignored(
        tmp_path: Path, nursery: trio.Nursery) -> None:
    from tests.fixtures_core import add_admin, start_service

    plain = config.load(write_config(tmp_path))  # no trusted proxies
    add_admin(plain)
    handle = await start_service(nursery, plain)
    try:
        with trio.fail_after(30):
            async with httpx.AsyncClient(base_url=base_url(handle), timeout=20) as http:
                r = await http.post("/api/auth/login", json=LOGIN,
                                    headers={"X-Forwarded-Proto": "https"})
                assert r.headers["set-cookie"].startswith("linkops_session=")
    finally:
        handle.stop.set()


async def test_unknown_hosts_are_refused(running: server.Running,
                                         anon: httpx.AsyncClient) -> None:
    with trio.fail_after(30):
        for host in ("evil.example", "evil.example:8000", "127.0.0.1.nip.io"):
            r = await anon.post("/api/auth/login", json=LOGIN, headers={"Host": host})
            assert r.status_code == 400, (host, r.text)
            error = r.json()["error"]
            assert error["code"] == "HOST_NOT_ALLOWED" and error["details"]["host"] == host
            assert (await anon.get("/", headers={"Host": host})).status_code == 400
        for host in ("localhost", "127.0.0.1:9", "LOCALHOST:8000", "[::1]:80"):
            r = await anon.get("/api/auth/me", headers={"Host": host})
            assert r.status_code == 401, (host, r.text)  # served: only the token is missing
        # Health stays open to monitors probing by address.
        assert (await anon.get("/api/health", headers={"Host": "10.1.2.3"})).status_code == 200
        # The WebSocket handshake too (raw: client libraries insist on their own Host).
        hostport = base_url(running).removeprefix("http://")
        host, port = hostport.rsplit(":", 1)
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            await stream.send_all(
                b"GET /api/terminal/workspaces/x/ws HTTP/1.1\r\nHost: evil.example\r\n"
                b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
            head = await stream.receive_some(4096)
        assert head.startswith(b"HTTP/1.1 400"), head[:200]
        # And a real client with an allowed Host gets through to the auth check.
        url = base_url(running).replace("http://", "ws://") + "/api/terminal/workspaces/x/ws"
        with pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(url, extra_headers=[(b"Authorization", b"Bearer x")]):
                pass
        assert rejected.value.status_code == 401


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", None])
async def test_login_takes_json_only(anon: httpx.AsyncClient, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    with trio.fail_after(30):
        r = await anon.post("/api/auth/login", headers=headers,
                            content=b'{"username": "admin", "password": "correct-horse-battery"}')
        assert r.status_code == 415, r.text
        assert r.json()["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
        assert "set-cookie" not in r.headers
