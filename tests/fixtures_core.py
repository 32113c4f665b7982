"""Fixtures for the core: a config in a temp dir, the database, a running service, a client.

- ``make_config(tmp_path, **sections)`` writes a complete config.ini whose every path lives
  under ``tmp_path`` and returns its path; ``settings`` loads it.
- ``running`` starts the real service in-process (root nursery, Hypercorn on a free port) with
  one admin user; ``client`` is an httpx client for it with a bearer token, ``anon`` without.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from linkops import auth, config, server
from linkops.config import Settings
from linkops.db import Database
from linkops.logs import setup_logging

ADMIN = "admin"
ADMIN_PASSWORD = "correct-horse-battery"


def require_root(why: str, *, unshare: bool = False) -> None:
    """Fail (never skip) a test that needs what the CI machine has: root, and ``unshare``.

    A skipped test would let a green run hide that it never ran; the README's test command
    runs as root (``.ci/run``), so this only fires on a machine that cannot run the suite.
    """
    assert os.geteuid() == 0, f"this test needs root: {why}"
    if unshare:
        assert shutil.which("unshare") is not None, f"this test needs unshare(1): {why}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(tmp_path: Path, **sections: dict[str, Any]) -> Path:
    """A complete config.ini under ``tmp_path``; ``sections`` override or add keys."""
    for sub in ("keys", "ssh", "log", "git-repo"):
        (tmp_path / sub).mkdir(exist_ok=True)
    (tmp_path / "keys").chmod(0o700)
    base: dict[str, dict[str, Any]] = {
        "api": {"host": "127.0.0.1", "port": free_port(), "jwt_secret": secrets.token_urlsafe(48)},
        "database": {"path": tmp_path / "linkops.db"},
        "git": {"local_path": tmp_path / "git-repo", "sync_interval_minutes": 0},
        "ssh": {
            "keys_directory": tmp_path / "keys",
            "known_hosts_path": tmp_path / "ssh" / "known_hosts",
            "connection_timeout": 5,
            "max_retries": 1,
        },
        "health": {"check_interval_minutes": 60},
        "logging": {"path": tmp_path / "log" / "linkops.log", "level": "INFO"},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    lines = []
    for name, values in base.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {value}" for key, value in values.items())
        lines.append("")
    path = tmp_path / "config.ini"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@pytest.fixture
def make_config() -> Callable[..., Path]:
    return write_config


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return config.load(write_config(tmp_path))


@pytest.fixture
def database(settings: Settings) -> Iterator[Database]:
    db = Database(settings.database.path)
    yield db
    db.close()


def add_admin(settings: Settings, name: str = ADMIN, password: str = ADMIN_PASSWORD) -> None:
    db = Database(settings.database.path)
    try:
        db.write_sync(lambda c: auth.add_user(c, name, password, role="admin"))
    finally:
        db.close()


async def start_service(nursery: trio.Nursery, settings: Settings) -> server.Running:
    """The real service (root nursery, Hypercorn on its port) in ``nursery``; stop it by
    setting ``Running.stop``."""
    handle: server.Running = await nursery.start(
        lambda task_status: server.run(settings, handle_signals=False, task_status=task_status)
    )
    return handle


@pytest.fixture
async def running(settings: Settings, nursery: trio.Nursery) -> AsyncIterator[server.Running]:
    add_admin(settings)
    setup_logging(settings.logging)
    handle = await start_service(nursery, settings)
    yield handle
    handle.stop.set()


def base_url(handle: server.Running) -> str:
    return f"http://{handle.binds[0].removeprefix('http://')}"


@contextlib.asynccontextmanager
async def authed_client(
    handle: server.Running, username: str = ADMIN, password: str = ADMIN_PASSWORD,
    timeout: float = 30,
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client that sends a bearer token (and no cookie) on every request."""
    async with httpx.AsyncClient(base_url=base_url(handle), timeout=timeout) as http:
        token = await login(http, username, password)
        http.headers["Authorization"] = f"Bearer {token}"
        http.cookies.clear()
        yield http


async def wait_healthy(base: str, timeout: float = 30) -> None:
    """Poll ``GET /api/health`` on a service started outside this process until it answers 200."""
    with trio.fail_after(timeout):
        async with httpx.AsyncClient(base_url=base, timeout=5) as http:
            while True:
                try:
                    if (await http.get("/api/health")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass  # not listening yet: the deadline above bounds the wait
                await trio.sleep(0.1)


async def login(
    http: httpx.AsyncClient, username: str = ADMIN, password: str = ADMIN_PASSWORD
) -> str:
    response = await http.post("/api/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


@pytest.fixture
async def anon(running: server.Running) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url(running), timeout=20) as http:
        yield http


@pytest.fixture
async def client(running: server.Running) -> AsyncIterator[httpx.AsyncClient]:
    async with authed_client(running, timeout=20) as http:
        yield http
