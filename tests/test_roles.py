"""A ``viewer`` reads everything but cannot change machines: no operations, no terminals."""

from __future__ import annotations

import httpx
import trio

from linkops import auth, server
from tests.fixtures_core import base_url, login


async def test_viewer_cannot_run_operations_or_open_terminals(running: server.Running) -> None:
    await running.services.db.write(
        lambda c: auth.add_user(c, "watcher", "viewer-password", role="viewer")
    )
    with trio.fail_after(30):
        async with httpx.AsyncClient(base_url=base_url(running), timeout=20) as http:
            token = await login(http, "watcher", "viewer-password")
            http.cookies.clear()
            http.headers["Authorization"] = f"Bearer {token}"
            assert (await http.get("/api/links")).status_code == 200
            assert (await http.get("/api/operations")).status_code == 200
            body = {"scripts": ["x"], "targets": ["y"]}
            for method, path, payload in [
                ("POST", "/api/operations/run", body),
                ("POST", "/api/operations/OP-1/stop", None),
                ("POST", "/api/terminal/workspaces", {"layout": "single"}),
            ]:
                r = await http.request(method, path, json=payload)
                assert r.status_code == 403, (path, r.text)
                assert r.json()["error"]["code"] == "FORBIDDEN"
                assert "viewer" in r.json()["error"]["message"]
