"""The inventory HTTP API on the real running service: links, scripts, git status and sync,
including the structured errors of a failed sync and that secrets never reach a response."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from linkops import config
from linkops.config import Settings
from tests.fixtures_core import write_config
from tests.fixtures_git import RepoWriter

TOKEN = "ghp_NeverShowThisTokenAnywhere1234"
API_KEY = "api-secret-value-5678"
LINK_KEYS = {"id", "name", "type", "provider", "icon", "tags", "enrolled", "enrollmentId",
             "enrollmentVerifiedAt", "ssh", "health", "status", "metadata"}


@pytest.fixture
def settings(tmp_path: Path, config_repo: RepoWriter) -> Settings:
    # The core `settings` fixture, pointed at a real bare repository; no automatic syncs.
    config_repo.write("secrets.ini", f"[git]\ntoken = {TOKEN}\n[api]\nkey = {API_KEY}\n")
    config_repo.commit_and_push("secrets")
    return config.load(write_config(tmp_path, git={
        "repository_url": str(config_repo.bare), "sync_interval_minutes": 0}))


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    assert error["message"] and error["timestamp"]
    assert isinstance(error["details"], dict)
    return error


def assert_no_secrets(response: httpx.Response) -> None:
    assert TOKEN not in response.text and API_KEY not in response.text


async def test_inventory_api_end_to_end(client: httpx.AsyncClient, config_repo: RepoWriter,
                                        anon: httpx.AsyncClient) -> None:
    with trio.fail_after(60):
        empty = await client.get("/api/links")
        assert empty.json() == {"links": [], "count": 0}
        assert (await client.get("/api/git/status")).json()["status"] == "never"

        synced = await client.post("/api/git/sync")
        assert synced.status_code == 200, synced.text
        body = synced.json()
        assert {"success", "commit_hash", "timestamp", "error", "changes"} <= set(body)
        assert body["success"] is True and body["error"] is None
        assert body["commit_hash"] == config_repo.head()
        assert len(body["changes"]["links"]["added"]) == 7
        assert_no_secrets(synced)

        listed = await client.get("/api/links")
        data = listed.json()
        assert data["count"] == 7 == len(data["links"])
        for link in data["links"]:
            assert LINK_KEYS <= set(link)
            assert set(link["ssh"]) >= {"host", "port", "user", "proxyJump", "keyRef"}
            assert set(link["health"]) >= {"reachable", "latency", "lastSeen"}
        assert [link["id"] for link in data["links"]] == sorted(link["id"]
                                                                for link in data["links"])

        vms = (await client.get("/api/links", params={
            "type": "VM", "tag": "prod", "sort": "name", "dir": "desc"})).json()
        assert [link["id"] for link in vms["links"]] == ["vm-web-01", "vm-db-01",
                                                         "vm-docker-01"]
        assert (await client.get("/api/links", params={"enrolled": "true"})).json()["count"] == 0

        one = (await client.get("/api/links/vm-db-01")).json()
        assert one["ssh"]["proxyJump"] == "pve-office-01"
        assert one["enrollmentId"] == "LINKOPS-2b3c4d5e-6f7a-4b9c-8d1e-2f3a4b5c6d7e"
        assert_error(await client.get("/api/links/nope"), 404, "LINK_NOT_FOUND")
        bad_sort = assert_error(await client.get("/api/links", params={"sort": "secret"}),
                                400, "INVALID_SORT")
        assert bad_sort["details"]["value"] == "secret"

        scripts = (await client.get("/api/scripts")).json()
        assert scripts["count"] == 7
        assert all("content" not in s for s in scripts["scripts"])
        backup = (await client.get("/api/scripts/backup_config")).json()
        assert backup["content"].startswith("#!/usr/bin/env bash\n")
        assert {"name": "--destination", "default": "REQUIRED", "takesValue": True,
                "required": True} in backup["flagSpecs"]
        assert_error(await client.get("/api/scripts/nope"), 404, "SCRIPT_NOT_FOUND")

        status = await client.get("/api/git/status")
        assert status.json()["status"] == "success"
        assert status.json()["commit_hash"] == config_repo.head()
        assert status.json()["repository"] == str(config_repo.bare)
        for path in ("/api/links", "/api/scripts", "/api/git/status"):
            assert_error(await anon.get(path), 401, "TOKEN_INVALID")
        assert_error(await anon.post("/api/git/sync"), 401, "TOKEN_INVALID")


async def test_failed_sync_answers_with_the_structured_error(
        client: httpx.AsyncClient, config_repo: RepoWriter) -> None:
    with trio.fail_after(60):
        assert (await client.post("/api/git/sync")).status_code == 200
        good = config_repo.head()
        before = (await client.get("/api/links")).json()

        config_repo.replace("links.yaml", "port: 22\n", "port: 99999\n")
        config_repo.commit_and_push("bad port")
        failed = await client.post("/api/git/sync")
        error = assert_error(failed, 400, "VALIDATION_ERROR")
        assert error["details"]["file"] == "links.yaml"
        assert error["details"]["entry"] == "vps-fra-01"
        assert error["details"]["line"] == 14
        assert error["message"] == ("links.yaml:14: links.vps-fra-01.port: "
                                    "must be an integer 1-65535")
        assert (await client.get("/api/links")).json() == before
        status = (await client.get("/api/git/status")).json()
        assert (status["status"], status["commit_hash"]) == ("failed", good)
        assert status["error_code"] == "VALIDATION_ERROR"

        config_repo.write("scripts/system_info.sh", "#!/bin/sh\necho hi\n", 0o755)
        config_repo.replace("links.yaml", "port: 99999\n", "port: 22\n")
        config_repo.commit_and_push("sh script")
        error = assert_error(await client.post("/api/git/sync"), 400, "NON_BASH_SCRIPT")
        assert error["details"]["entry"] == "system_info"

        # The remote disappears: 503, and the inventory is still the last good one.
        moved = config_repo.bare.with_name("moved.git")
        config_repo.bare.rename(moved)
        try:
            error = assert_error(await client.post("/api/git/sync"), 503, "GIT_UNREACHABLE")
            assert error["details"]["repository"] == str(config_repo.bare)
            assert (await client.get("/api/links")).json() == before
        finally:
            moved.rename(config_repo.bare)


async def test_secrets_never_reach_the_api(client: httpx.AsyncClient) -> None:
    with trio.fail_after(60):
        responses = [await client.post("/api/git/sync")]
        for path in ("/api/links", "/api/scripts", "/api/git/status", "/api/links/vm-web-01",
                     "/api/scripts/system_info"):
            responses.append(await client.get(path))
        for response in responses:
            assert response.status_code == 200
            assert_no_secrets(response)
