"""Hostile commits: each leaves the last good inventory active, runs nothing, and fails with
an error that names the file, the line and the entry."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from linkops.db import Database
from linkops.inventory import InventoryService
from tests.fixtures_git import RepoWriter, git, make_repo
from tests.test_git_sync import history, snapshot

Inventory = tuple[Any, Database, InventoryService]


async def _sync_ok(service: InventoryService) -> None:
    with trio.fail_after(30):
        result = await service.sync()
    assert result.success, result.error


def _canary_hook(canary: Path) -> str:
    return f"#!/bin/sh\ntouch {canary}\n"


async def test_hooks_never_run(tmp_path: Path, inventory: Inventory,
                               config_repo: RepoWriter) -> None:
    settings, _, service = inventory
    canary = tmp_path / "hook-ran"
    await _sync_ok(service)
    # Something planted hooks in our checkout (or a template put them there): git must not
    # run any of them on fetch, reset or clean.
    hooks = settings.git.local_path / ".git" / "hooks"
    hooks.mkdir(exist_ok=True)
    for name in ("post-checkout", "post-merge", "reference-transaction", "pre-auto-gc",
                 "post-rewrite", "pre-commit", "fsmonitor-watchman"):
        (hooks / name).write_text(_canary_hook(canary))
        (hooks / name).chmod(0o755)
    # The repository also ships hook-looking files and a script that would touch the canary.
    config_repo.write(".githooks/post-checkout", _canary_hook(canary), 0o755)
    config_repo.write("scripts/long_task.sh", f"#!/bin/bash\ntouch {canary}\n", 0o755)
    # Filters and fsmonitor need configuration git never takes from repository content.
    config_repo.write(".gitattributes", "* filter=evil\n")
    config_repo.write(".gitconfig", f'[filter "evil"]\n\tsmudge = touch {canary}\n'
                                    f"[core]\n\tfsmonitor = touch {canary}\n")
    config_repo.write(".lfsconfig", f"[lfs]\n\turl = ext::touch {canary}\n")
    head = config_repo.commit_and_push("hooks")
    await _sync_ok(service)
    assert git("rev-parse", "HEAD", cwd=settings.git.local_path) == head
    # The script is stored (it is valid bash) but nothing ran it.
    stored = (await service.script_models(["long_task"]))["long_task"]
    assert f"touch {canary}" in stored.content
    assert not canary.exists()


async def test_submodules_are_not_fetched(tmp_path: Path, inventory: Inventory,
                                          config_repo: RepoWriter) -> None:
    settings, _, service = inventory
    evil_root = tmp_path / "evil"
    evil_root.mkdir()
    evil = make_repo(evil_root)
    evil.write("payload.txt", "should never arrive\n")
    evil.commit_and_push("payload")
    git("-c", "protocol.file.allow=always", "submodule", "add", "-q", str(evil.bare), "vendor",
        cwd=config_repo.work)
    config_repo.commit_and_push("add submodule")
    await _sync_ok(service)
    vendor = settings.git.local_path / "vendor"
    assert not (vendor / "payload.txt").exists()
    assert not (vendor / "links.yaml").exists()
    assert not (settings.git.local_path / ".git" / "modules").exists()


def _link_port_text(repo: RepoWriter) -> None:
    repo.replace("links.yaml", "port: 22\n", "port: seventy\n")


def _escape_through_directory(repo: RepoWriter) -> None:
    repo.symlink("scripts/lib", "/etc")
    repo.replace("scripts.yaml", "path: scripts/disk_usage.sh", "path: scripts/lib/passwd")


def _jump_cycle(repo: RepoWriter) -> None:
    # vm-web-01 jumps through pve-office-01; make pve-office-01 jump through vm-web-01.
    text = repo.read("links.yaml")
    head, _, tail = text.partition("  pve-office-01:")
    tail = tail.replace("proxyJump: null", "proxyJump: vm-web-01", 1)
    repo.write("links.yaml", f"{head}  pve-office-01:{tail}")


MALICIOUS: dict[str, tuple[Callable[[RepoWriter], None], str, str, str | None]] = {
    # name: (change, expected code, file, entry)
    "symlinked script to /etc/shadow": (
        lambda r: r.symlink("scripts/disk_usage.sh", "/etc/shadow"),
        "VALIDATION_ERROR", "scripts.yaml", "disk_usage"),
    "symlinked script escaping through a directory": (
        _escape_through_directory, "VALIDATION_ERROR", "scripts.yaml", "disk_usage"),
    "script path with ..": (
        lambda r: r.replace("scripts.yaml", "path: scripts/disk_usage.sh",
                            "path: ../../../../etc/passwd"),
        "VALIDATION_ERROR", "scripts.yaml", "disk_usage"),
    "absolute script path": (
        lambda r: r.replace("scripts.yaml", "path: scripts/disk_usage.sh", "path: /etc/passwd"),
        "VALIDATION_ERROR", "scripts.yaml", "disk_usage"),
    "links.yaml is a symlink to /etc/passwd": (
        lambda r: r.symlink("links.yaml", "/etc/passwd"),
        "VALIDATION_ERROR", "links.yaml", None),
    "alias bomb": (
        lambda r: r.write("links.yaml", "links:\n  a: &a [x, x, x, x, x, x, x, x, x]\n"
                          "  b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                          "  c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                          "  d: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"),
        "YAML_PARSE_ERROR", "links.yaml", None),
    "duplicate keys": (
        lambda r: r.replace("links.yaml", "    port: 22\n", "    port: 22\n    port: 2222\n"),
        "YAML_PARSE_ERROR", "links.yaml", None),
    "non-bash script": (
        lambda r: r.write("scripts/system_info.sh", "#!/usr/bin/python3\nimport os\n", 0o755),
        "NON_BASH_SCRIPT", "scripts.yaml", "system_info"),
    "ssh option smuggled in a host": (
        lambda r: r.replace("links.yaml", "host: 203.0.113.10",
                            "host: -oProxyCommand=touch${IFS}/tmp/x"),
        "VALIDATION_ERROR", "links.yaml", "vps-fra-01"),
    "ssh option smuggled in a user": (
        lambda r: r.replace("links.yaml", "user: root", "user: -oProxyCommand=sh"),
        "VALIDATION_ERROR", "links.yaml", "vps-fra-01"),
    "proxyJump cycle": (
        _jump_cycle, "VALIDATION_ERROR", "links.yaml", "pve-office-01"),
    "wrong type": (_link_port_text, "VALIDATION_ERROR", "links.yaml", "vps-fra-01"),
    "python object tag": (
        lambda r: r.replace("links.yaml", "type: VPS", "type: !!python/object/apply:os.system"
                            " ['touch /tmp/x']"),
        "YAML_PARSE_ERROR", "links.yaml", None),
}


@pytest.mark.parametrize("name", sorted(MALICIOUS))
async def test_bad_commit_keeps_last_good_inventory(
        name: str, inventory: Inventory, config_repo: RepoWriter) -> None:
    change, code, file, entry = MALICIOUS[name]
    _, db, service = inventory
    await _sync_ok(service)
    good = snapshot(db)
    good_commit = config_repo.head()
    change(config_repo)
    bad_commit = config_repo.commit_and_push(name)
    with trio.fail_after(30):
        result = await service.sync()
    assert not result.success
    assert result.error is not None
    assert (result.error.code, result.error.status) == (code, 400), result.error.message
    details = result.error.details
    assert details["file"] == file
    assert result.error.message.startswith(f"{file}:")
    if entry is not None:
        assert details["entry"] == entry
        assert isinstance(details["line"], int) and details["line"] > 0
        assert f"{file}:{details['line']}:" in result.error.message
    assert snapshot(db) == good
    assert result.commit_hash == bad_commit
    assert result.active_commit == good_commit
    rows = history(db)
    assert rows[-1]["status"] == "failed" and rows[-1]["commit_hash"] == bad_commit
    status = await service.status()
    assert (status["status"], status["commit_hash"]) == ("failed", good_commit)
    assert status["error_code"] == code
    # Nothing from outside the repository was read into the database.
    shadow = Path("/etc/shadow").read_text(errors="replace")
    assert all(shadow not in (row["content"] or "") for row in snapshot(db)[1])
