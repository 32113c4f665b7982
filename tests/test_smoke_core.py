"""The service starts, answers health, logs in and refuses what it should."""

from __future__ import annotations

import httpx
import trio


async def test_health_and_login(anon: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    with trio.fail_after(20):
        r = await anon.get("/api/health")
        assert r.status_code == 200 and r.json()["status"] == "ok"
        r = await anon.get("/api/auth/me")
        assert r.status_code == 401 and r.json()["error"]["code"] == "TOKEN_INVALID"
        r = await client.get("/api/auth/me")
        assert r.status_code == 200 and r.json()["username"] == "admin"


async def test_static_files_headers_and_no_traversal(anon: httpx.AsyncClient) -> None:
    with trio.fail_after(20):
        r = await anon.get("/")
        assert r.status_code == 200 and "<html" in r.text.lower()
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        for path in ("/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/js/../../pyproject.toml",
                     "/..%2f..%2fetc%2fpasswd"):
            r = await anon.get(path)
            assert r.status_code == 404, path
            assert "root:" not in r.text and "[project]" not in r.text
        r = await anon.get("/api/health")
        assert r.headers["cache-control"] == "no-store"
