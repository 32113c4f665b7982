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
