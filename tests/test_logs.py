"""The JSON log: one object per line, rotation by size, and secrets masked."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import trio

from linkops import server
from linkops.config import LoggingSettings
from linkops.logs import redact, setup_logging


def test_log_rotates_by_size_and_keeps_backup_count(tmp_path: Path) -> None:
    path = tmp_path / "linkops.log"
    setup_logging(LoggingSettings(path=path, max_size_mb=0.002, backup_count=2), stderr=False)
    log = logging.getLogger("linkops.test")
    for i in range(200):
        log.info("test.line", extra={"context": {"i": i, "pad": "x" * 50}})
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["linkops.log", "linkops.log.1", "linkops.log.2"]
    for name in files:
        for line in (tmp_path / name).read_text().splitlines():
            entry = json.loads(line)
            assert entry["event"] == "test.line" and entry["level"] == "INFO"
    assert path.stat().st_size <= 0.002 * 1024 * 1024 + 200


def test_redaction_of_things_that_look_secret() -> None:
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJlLXZhbHVl"
    text = redact(f"Authorization: Bearer {token} https://bot:hunter2@git.example/r.git "
                  "password=hunter2 token: abc123")
    assert token not in text and "hunter2" not in text and "abc123" not in text
    assert "git.example/r.git" in text


async def test_tokens_and_passwords_never_reach_the_log(
    running: server.Running, anon: httpx.AsyncClient
) -> None:
    with trio.fail_after(20):
        r = await anon.post(
            "/api/auth/login", json={"username": "admin", "password": "correct-horse-battery"}
        )
        token = r.json()["token"]
        await anon.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
        await anon.get("/api/nope", headers={"Authorization": f"Bearer {token}x"})
        await anon.post("/api/auth/login", json={"username": "admin", "password": "Wr0ng-Pass!"})
    text = running.services.settings.logging.path.read_text()  # type: ignore[union-attr]
    assert '"event": "service.start"' in text
    assert token not in text and token.split(".")[2] not in text
    assert "correct-horse-battery" not in text and "Wr0ng-Pass!" not in text
