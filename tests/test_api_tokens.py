"""API tokens (SPEC §10.2): lifecycle over the API and the CLI, stored only hashed, role at
most the creator's, expiry, last_used_at, a revoked token refused on REST, SSE and the
WebSocket handshake, and never a token in a log line."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import trio
from trio_websocket import ConnectionRejected, open_websocket_url

from linkops import auth, server
from linkops.config import Settings
from tests.fixtures_core import base_url, login

ROOT = Path(__file__).resolve().parents[1]


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "linkops", *args, "--config", str(settings.source)],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60)


async def _ws_status(running: server.Running, token: str) -> int:
    url = base_url(running).replace("http://", "ws://") + "/api/terminal/workspaces/x0/ws"
    try:
        async with open_websocket_url(url, extra_headers=[
                (b"Authorization", f"Bearer {token}".encode())]):
            return 101
    except ConnectionRejected as rejected:
        return int(rejected.status_code)


async def test_token_lifecycle_and_revocation_everywhere(
        running: server.Running, client: httpx.AsyncClient, anon: httpx.AsyncClient,
        settings: Settings) -> None:
    with trio.fail_after(60):
        r = await client.post("/api/auth/tokens", json={"name": "ci deploy", "role": "operator",
                                                        "expires_in_days": 7})
        assert r.status_code == 201, r.text
        created = r.json()
        secret = created["token"]
        assert secret.startswith("lkp_") and len(secret) >= 4 + 43
        assert created["role"] == "operator" and created["expires_at"].endswith("Z")
        bearer = {"Authorization": f"Bearer {secret}"}

        # It works like a login token, with its own role.
        me = await anon.get("/api/auth/me", headers=bearer)
        assert me.status_code == 200 and me.json()["role"] == "operator", me.text
        assert (await anon.get("/api/links", headers=bearer)).status_code == 200
        # An operator token reaches the WebSocket's workspace lookup (404, not 401/403).
        assert await _ws_status(running, secret) == 404

        listed = (await client.get("/api/auth/tokens")).json()["tokens"]
        mine = [t for t in listed if t["id"] == created["id"]]
        assert mine and "token" not in mine[0] and mine[0]["last_used_at"] is not None
        # last_used_at is written at most once a minute: cleared behind the service's back,
        # it stays cleared through more requests within the minute.
        await running.services.db.write(lambda c: c.execute(
            "UPDATE api_tokens SET last_used_at = NULL WHERE id = ?", (created["id"],)))
        for _ in range(5):
            assert (await anon.get("/api/links", headers=bearer)).status_code == 200
        row = await running.services.db.fetchone(
            "SELECT last_used_at FROM api_tokens WHERE id = ?", (created["id"],))
        assert row is not None and row[0] is None
        assert secret not in (await client.get("/api/auth/tokens")).text

        # Stored only as a hash.
        def dump() -> str:
            with sqlite3.connect(settings.database.path) as conn:
                return repr(conn.execute("SELECT * FROM api_tokens").fetchall())
        stored = await trio.to_thread.run_sync(dump)
        assert secret not in stored and secret[4:] not in stored

        # A token cannot mint tokens.
        r = await anon.post("/api/auth/tokens", headers=bearer, json={"name": "x"})
        assert r.status_code == 403

        r = await client.delete(f"/api/auth/tokens/{created['id']}")
        assert r.status_code == 200 and r.json()["revoked_at"], r.text
        r = await anon.get("/api/links", headers=bearer)
        assert r.status_code == 401 and r.json()["error"]["code"] == "TOKEN_INVALID"
        r = await anon.get("/api/operations/OP-x/events", headers=bearer)
        assert r.status_code == 401
        assert await _ws_status(running, secret) == 401
        # Unknown ids and other users' tokens are 404.
        assert (await client.delete("/api/auth/tokens/tok_nope")).status_code == 404


async def test_roles_bodies_and_expiry(running: server.Running, client: httpx.AsyncClient,
                                       anon: httpx.AsyncClient, settings: Settings) -> None:
    await running.services.db.write(
        lambda c: auth.add_user(c, "dora", "dora-password-1", role="operator"))
    with trio.fail_after(60):
        token = await login(anon, "dora", "dora-password-1")
        anon.cookies.clear()
        dora = {"Authorization": f"Bearer {token}"}
        r = await anon.post("/api/auth/tokens", headers=dora,
                            json={"name": "too much", "role": "admin"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "FORBIDDEN"
        r = await anon.post("/api/auth/tokens", headers=dora, json={"name": "reader",
                                                                   "role": "viewer"})
        assert r.status_code == 201
        viewer = {"Authorization": f"Bearer {r.json()['token']}"}
        assert (await anon.post("/api/git/sync", headers=viewer)).status_code == 403
        # Dora sees her own tokens only; the admin sees all.
        assert [t["name"] for t in (await anon.get("/api/auth/tokens", headers=dora)
                                    ).json()["tokens"]] == ["reader"]
        for bad in ({"name": 5}, {"name": "x", "expires_in_days": "7"}, {"nom": "x"},
                    {"name": "x", "expires_in_days": 0}, {"name": "x", "expires_in_days": 999},
                    {"name": ""}, {"name": "x", "role": "root"}):
            r = await client.post("/api/auth/tokens", json=bad)
            assert r.status_code == 400, (bad, r.text)
            assert r.json()["error"]["code"] == "VALIDATION_ERROR"
        # Expired: refused with TOKEN_EXPIRED.
        token_id = (await anon.get("/api/auth/tokens", headers=dora)).json()["tokens"][0]["id"]
        await running.services.db.write(lambda c: c.execute(
            "UPDATE api_tokens SET expires_at = '2020-01-01T00:00:00Z' WHERE id = ?",
            (token_id,)))
        r = await anon.get("/api/links", headers=viewer)
        assert r.status_code == 401 and r.json()["error"]["code"] == "TOKEN_EXPIRED"
        # Demoting the user caps what an older token can do.
        r = await anon.post("/api/auth/tokens", headers=dora, json={"name": "ops"})
        ops = {"Authorization": f"Bearer {r.json()['token']}"}
        await running.services.db.write(lambda c: auth.set_role(c, "dora", "viewer"))
        assert (await anon.get("/api/auth/me", headers=ops)).json()["role"] == "viewer"


async def test_cli_tokens_and_no_token_in_any_log_line(
        running: server.Running, anon: httpx.AsyncClient, settings: Settings) -> None:
    with trio.fail_after(90):
        made = await trio.to_thread.run_sync(
            lambda: _cli(settings, "token", "create", "nightly", "--user", "admin",
                         "--role", "viewer", "--days", "2"))
        assert made.returncode == 0, made.stderr
        secret = made.stdout.strip()
        assert secret.startswith("lkp_") and "\n" not in secret
        bearer = {"Authorization": f"Bearer {secret}"}
        assert (await anon.get("/api/links", headers=bearer)).status_code == 200
        listed = await trio.to_thread.run_sync(lambda: _cli(settings, "token", "list"))
        assert "nightly" in listed.stdout and "active" in listed.stdout
        assert secret not in listed.stdout + listed.stderr
        token_id = listed.stdout.split("\t")[0]
        gone = await trio.to_thread.run_sync(
            lambda: _cli(settings, "token", "revoke", token_id))
        assert gone.returncode == 0, gone.stderr
        assert (await anon.get("/api/links", headers=bearer)).status_code == 401
        bad = await trio.to_thread.run_sync(
            lambda: _cli(settings, "token", "create", "x", "--user", "nobody"))
        assert bad.returncode == 1 and "no user" in bad.stderr
        # Failed requests with tokens (revoked, malformed) are logged: never the token.
        jwt_token = await login(anon)
        await anon.get("/api/links", headers={"Authorization": f"Bearer {jwt_token}x"})
        await anon.post("/api/auth/logout", headers={"Authorization": f"Bearer {jwt_token}"})
        await anon.get("/api/links", headers={"Authorization": f"Bearer {jwt_token}"})
    assert settings.logging.path is not None
    log_text = settings.logging.path.read_text(encoding="utf-8")
    assert "api.error" in log_text  # the scan looked at real request logs
    for needle in (secret, secret[4:], jwt_token, jwt_token.split(".")[2]):
        assert needle not in log_text
