"""The inventory service around one sync: the periodic loop, secrets.ini (in the repository
and local), keyRef warnings, and `linkops sync` on the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from linkops.db import Database
from linkops.inventory import InventoryService
from tests.fixtures_git import ListHandler, RepoWriter
from tests.test_git_sync import history, snapshot

Inventory = tuple[Any, Database, InventoryService]
ROOT = Path(__file__).resolve().parent.parent


async def _wait_for(predicate: Any, timeout: float = 20) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.05)


async def test_periodic_sync_follows_the_remote(config_repo: RepoWriter, make_inventory: Any,
                                                nursery: trio.Nursery) -> None:
    # 0.01 minutes = 0.6 s between syncs.
    _, db, service = make_inventory(str(config_repo.bare), sync_interval_minutes=0.01)
    await nursery.start(service.run)
    await _wait_for(lambda: len(history(db)) >= 1)
    config_repo.replace("links.yaml", "host: 10.10.0.11", "host: 10.10.0.111")
    head = config_repo.commit_and_push("moved web")
    await _wait_for(lambda: any(r["commit_hash"] == head for r in history(db)))
    hosts = {m["id"]: m["host"] for m in snapshot(db)[0]}
    assert hosts["vm-web-01"] == "10.10.0.111"
    assert all(r["trigger"] == "scheduled" for r in history(db))


async def test_periodic_loop_survives_failures(tmp_path: Path, make_inventory: Any,
                                               nursery: trio.Nursery) -> None:
    _, db, service = make_inventory(str(tmp_path / "missing.git"), sync_interval_minutes=0.005)
    await nursery.start(service.run)
    await _wait_for(lambda: len(history(db)) >= 3)
    assert {r["status"] for r in history(db)} == {"failed"}


async def test_interval_zero_means_no_automatic_sync(config_repo: RepoWriter,
                                                     make_inventory: Any) -> None:
    _, db, service = make_inventory(str(config_repo.bare), sync_interval_minutes=0)
    with trio.fail_after(5):
        await service.run()  # returns at once: nothing scheduled
    assert history(db) == []


def _spy_tokens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    tokens: list[str] = []
    real = trio.run_process

    async def spy(command: list[str], **kwargs: Any) -> Any:
        tokens.append((kwargs.get("env") or {}).get("LINKOPS_GIT_TOKEN", ""))
        return await real(command, **kwargs)

    monkeypatch.setattr(trio, "run_process", spy)
    return tokens


async def test_repository_secrets_are_parsed_and_used_for_the_next_fetch(
        inventory: Inventory, config_repo: RepoWriter, monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, service = inventory
    config_repo.write("secrets.ini", "[ssh]\nkey_path = /var/lib/linkops/keys/id_ed25519\n"
                      "known_hosts_path = /var/lib/linkops/ssh/known_hosts\n"
                      "[git]\ntoken = repo-token-1234\n[api]\nnotify = hook-secret\n")
    config_repo.commit_and_push("secrets")
    tokens = _spy_tokens(monkeypatch)
    with trio.fail_after(30):
        assert (await service.sync()).success
    assert set(tokens) == {""}
    secrets = service.secrets
    assert secrets is not None
    assert secrets.ssh_key_path == "/var/lib/linkops/keys/id_ed25519"
    assert secrets.known_hosts_path == "/var/lib/linkops/ssh/known_hosts"
    assert secrets.git_token == "repo-token-1234"
    assert dict(secrets.api) == {"notify": "hook-secret"}
    assert "repo-token-1234" not in repr(secrets)
    tokens.clear()
    with trio.fail_after(30):
        assert (await service.sync()).success
    assert set(tokens) == {"repo-token-1234"}


async def test_local_secrets_file_wins_over_config_token(
        tmp_path: Path, config_repo: RepoWriter, make_inventory: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    local = tmp_path / "local-secrets.ini"
    local.write_text("[git]\ntoken = local-token-5678\n")
    local.chmod(0o600)
    _, _, service = make_inventory(str(config_repo.bare), secrets_file=str(local),
                                   token="config-token-0000")
    tokens = _spy_tokens(monkeypatch)
    with trio.fail_after(30):
        assert (await service.sync()).success
    assert set(tokens) == {"local-token-5678"}
    assert service.secrets is not None and service.secrets.source == str(local)


@pytest.mark.parametrize(("change", "message"), [
    (lambda r: r.write("secrets.ini", "[git]\ntoken = abc\nnot an option line secret-q\n"),
     "secrets.ini:3: malformed INI"),
    (lambda r: r.symlink("secrets.ini", "/etc/shadow"), "secrets.ini: resolves outside"),
])
async def test_bad_secrets_file_fails_the_sync(inventory: Inventory, config_repo: RepoWriter,
                                               change: Any, message: str) -> None:
    _, db, service = inventory
    with trio.fail_after(30):
        assert (await service.sync()).success
    before = snapshot(db)
    change(config_repo)
    config_repo.commit_and_push("bad secrets")
    with trio.fail_after(30):
        result = await service.sync()
    assert result.error is not None
    assert result.error.code == "SECRETS_PARSE_ERROR"
    assert result.error.status == 400
    assert result.error.message.startswith(message)
    assert "secret-q" not in repr(result.to_dict())
    assert snapshot(db) == before


async def test_key_files_with_a_bad_mode_are_warnings_not_failures(
        inventory: Inventory, inventory_log: ListHandler) -> None:
    settings, _, service = inventory
    key = settings.ssh.keys_directory / "ops_ed25519"
    key.write_text("not really a key\n")
    key.chmod(0o644)
    with trio.fail_after(30):
        result = await service.sync()
    assert result.success
    assert {w["link"] for w in result.warnings} == {
        "vps-fra-01", "vps-nyc-01", "pve-office-01", "vm-web-01", "vm-db-01", "vm-docker-01",
        "vm-staging-01"}
    assert all(str(key) in w["message"] and "0644" in w["message"] for w in result.warnings)
    # One log line per key file, naming the links that use it.
    logged = [r for r in inventory_log.records if r.getMessage() == "inventory.key_warning"]
    assert len(logged) == 1
    assert logged[0].context["keyRef"] == "ops_ed25519"  # type: ignore[attr-defined]
    assert len(logged[0].context["links"]) == 7  # type: ignore[attr-defined]
    key.chmod(0o600)
    with trio.fail_after(30):
        assert (await service.sync()).warnings == ()


def _cli(config_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "linkops", "sync", "--config",
                           str(config_path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)


async def test_cli_sync(config_repo: RepoWriter, make_inventory: Any) -> None:
    settings, _, _ = make_inventory(str(config_repo.bare))
    done = await trio.to_thread.run_sync(_cli, settings.source)
    assert done.returncode == 0, done.stderr
    assert config_repo.head() in done.stdout + done.stderr
    config_repo.replace("links.yaml", "port: 22\n", "port: 0\n")
    config_repo.commit_and_push("bad")
    done = await trio.to_thread.run_sync(_cli, settings.source)
    assert done.returncode == 1
    assert "links.yaml:14: links.vps-fra-01.port: must be an integer 1-65535" in done.stderr
