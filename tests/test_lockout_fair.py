"""Fair lockout over HTTP (SPEC §10.2): per (name, client IP) behind a trusted proxy, the
per-name ceiling, ``linkops user unlock``, and the X-Forwarded-For trust boundary."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio

from linkops import config
from linkops.config import Settings
from tests.fixtures_core import ADMIN, ADMIN_PASSWORD, write_config

ROOT = Path(__file__).resolve().parents[1]
CEILING = 12


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return config.load(write_config(
        tmp_path,
        api={"trusted_proxies": "127.0.0.1/32"},
        security={"lockout_ceiling": CEILING, "login_rate_per_minute": 1000,
                  "login_rate_global_per_minute": 1000},
    ))


async def _login(anon: httpx.AsyncClient, password: str, ip: str | None) -> httpx.Response:
    headers = {"X-Forwarded-For": ip} if ip else {}
    return await anon.post("/api/auth/login", headers=headers,
                           json={"username": ADMIN, "password": password})


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "linkops", *args, "--config", str(settings.source)],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60)


async def test_lockout_from_one_address_leaves_the_owner_alone(
        anon: httpx.AsyncClient, settings: Settings) -> None:
    with trio.fail_after(60):
        for _ in range(5):
            r = await _login(anon, "wrong-guess-123", "198.51.100.7")
            assert r.status_code == 401
        r = await _login(anon, ADMIN_PASSWORD, "198.51.100.7")
        assert r.status_code == 403 and r.json()["error"]["code"] == "ACCOUNT_LOCKED"
        # The owner, elsewhere, is not affected.
        r = await _login(anon, ADMIN_PASSWORD, "192.0.2.10")
        assert r.status_code == 200, r.text
        # More refusals from the locked address are counted, not stored one row each.
        for _ in range(20):
            assert (await _login(anon, "wrong-again-123", "198.51.100.7")).status_code == 403
        assert await _one(anon, settings) == (5, 21)


async def _one(anon: httpx.AsyncClient, settings: Settings) -> tuple[int, int]:
    import sqlite3

    def read() -> tuple[int, int]:
        with sqlite3.connect(settings.database.path) as conn:
            failed = conn.execute("SELECT COUNT(*) FROM auth_attempts WHERE success = 0"
                                  ).fetchone()[0]
            refused = conn.execute("SELECT COALESCE(SUM(refused), 0) FROM auth_refusals"
                                   ).fetchone()[0]
        return int(failed), int(refused)

    return await trio.to_thread.run_sync(read)


async def test_the_ceiling_locks_everybody_and_unlock_clears_it(
        anon: httpx.AsyncClient, settings: Settings) -> None:
    with trio.fail_after(90):
        # CEILING failures from CEILING/3 addresses: none of them locked on its own.
        for i in range(CEILING):
            r = await _login(anon, "wrong-guess-123", f"198.51.100.{i // 3 + 1}")
            assert r.status_code == 401, r.text
        r = await _login(anon, ADMIN_PASSWORD, "192.0.2.10")
        assert r.status_code == 403 and r.json()["error"]["code"] == "ACCOUNT_LOCKED"
        assert r.json()["error"]["details"]["unlock_at"].endswith("Z")
        done = await trio.to_thread.run_sync(_cli, settings, "user", "unlock", "ADMIN")
        assert done.returncode == 0, done.stderr
        assert "unlocked admin" in done.stdout
        r = await _login(anon, ADMIN_PASSWORD, "192.0.2.10")
        assert r.status_code == 200, r.text
        missing = await trio.to_thread.run_sync(_cli, settings, "user", "unlock", "nobody")
        assert missing.returncode == 1 and "no user" in missing.stderr


async def test_forwarded_for_is_believed_only_from_trusted_proxies(
        tmp_path: Path, nursery: trio.Nursery) -> None:
    """Without trusted_proxies a client cannot pick its own address: X-Forwarded-For is
    ignored and its guesses lock its real address, whatever header it sends."""
    from tests.fixtures_core import add_admin, base_url, start_service

    plain = config.load(write_config(tmp_path, security={"login_rate_per_minute": 1000}))
    add_admin(plain)
    handle = await start_service(nursery, plain)
    try:
        with trio.fail_after(60):
            async with httpx.AsyncClient(base_url=base_url(handle), timeout=20) as http:
                for i in range(5):
                    r = await _login(http, "wrong-guess-123", f"203.0.113.{i}")
                    assert r.status_code == 401
                r = await _login(http, ADMIN_PASSWORD, "203.0.113.99")
                assert r.status_code == 403
    finally:
        handle.stop.set()


async def test_rate_limit_answers_429_before_hashing(tmp_path: Path,
                                                     nursery: trio.Nursery) -> None:
    from tests.fixtures_core import add_admin, base_url, start_service

    limited = config.load(write_config(tmp_path, security={"login_rate_per_minute": 3}))
    add_admin(limited)
    handle = await start_service(nursery, limited)
    try:
        with trio.fail_after(60):
            async with httpx.AsyncClient(base_url=base_url(handle), timeout=20) as http:
                codes = [(await _login(http, "wrong-guess-123", None)).status_code
                         for _ in range(4)]
                assert codes == [401, 401, 401, 429]
                r = await _login(http, ADMIN_PASSWORD, None)
                assert r.status_code == 429
                assert r.json()["error"]["code"] == "RATE_LIMITED"
                assert int(r.headers["Retry-After"]) >= 1
                assert r.json()["error"]["details"]["retry_after_seconds"] >= 1
                # Refused before any hashing or row: only the three 401s were stored.
                rows = await handle.services.db.fetchone(
                    "SELECT COUNT(*) FROM auth_attempts")
                assert rows is not None and rows[0] == 3
                # Login takes JSON only (a cross-site form can post text/plain).
                r = await http.post("/api/auth/login", content=b'{"username":"admin"}',
                                    headers={"Content-Type": "text/plain"})
                assert r.status_code == 415
                assert r.json()["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    finally:
        handle.stop.set()
