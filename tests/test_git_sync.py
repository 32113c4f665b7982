"""Git sync against real bare repositories reached by path: clone, update, force-push,
unreachable remotes, limits, refused URLs and concurrent requests."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trio

from linkops.db import Database
from linkops.inventory import InventoryService
from tests.fixtures_git import ListHandler, RepoWriter, git


def snapshot(db: Database) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    def read(conn: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        machines = [dict(r) for r in conn.execute("SELECT * FROM machines ORDER BY id")]
        scripts = [dict(r) for r in conn.execute("SELECT * FROM scripts ORDER BY id")]
        return machines, scripts
    return db.read_sync(read)


def history(db: Database) -> list[dict[str, Any]]:
    return db.read_sync(lambda c: [dict(r) for r in c.execute(
        "SELECT * FROM git_sync_history ORDER BY id")])


async def test_first_sync_clones_and_stores_links_and_scripts(
        inventory: tuple[Any, Database, InventoryService], config_repo: RepoWriter) -> None:
    settings, db, service = inventory
    with trio.fail_after(30):
        result = await service.sync()
    assert result.success, result.error
    assert result.commit_hash == config_repo.head()
    assert sorted(result.changes["links"]["added"]) == sorted([
        "vps-fra-01", "vps-nyc-01", "pve-office-01", "vm-web-01", "vm-db-01", "vm-docker-01",
        "vm-staging-01"])
    assert len(result.changes["scripts"]["added"]) == 7
    # The checkout is a real clone at the remote head.
    assert git("rev-parse", "HEAD", cwd=settings.git.local_path) == config_repo.head()
    machines, scripts = snapshot(db)
    web = next(m for m in machines if m["id"] == "vm-web-01")
    assert (web["host"], web["port"], web["user"], web["proxy_jump"]) == (
        "10.10.0.11", 22, "ops", "pve-office-01")
    assert web["client_id"] == "LINKOPS-1a2b3c4d-5e6f-4a8b-9c0d-1e2f3a4b5c6d"
    for row in scripts:
        raw = (config_repo.work / row["path"]).read_bytes()
        assert row["content"] == raw.decode()
        assert row["sha256"] == hashlib.sha256(raw).hexdigest()
    rows = history(db)
    assert [(r["status"], r["commit_hash"], r["forced"]) for r in rows] == [
        ("success", config_repo.head(), 0)]
    status = await service.status()
    assert status["status"] == "success"
    assert status["commit_hash"] == config_repo.head()
    assert status["branch"] == "main"
    assert status["repository"] == str(config_repo.bare)


async def test_update_reports_changes_and_keeps_enrollment_and_health(
        inventory: tuple[Any, Database, InventoryService], config_repo: RepoWriter) -> None:
    _, db, service = inventory
    with trio.fail_after(30):
        assert (await service.sync()).success
    # The SSH layer verified two machines and recorded their health.
    db.write_sync(lambda c: c.execute(
        "UPDATE machines SET enrolled = 1, enrollment_verified_at = 'T', status = 'online', "
        "reachable = 1, latency_ms = 12.5, last_seen = 'S' WHERE id IN ('vm-web-01', "
        "'vps-fra-01')"))
    config_repo.replace("links.yaml", "tags: [prod, vm, web, nginx]", "tags: [prod, vm, web]")
    config_repo.replace("links.yaml", "host: 203.0.113.10", "host: 203.0.113.99")
    text = config_repo.read("links.yaml")
    start = text.index("  vm-docker-01:")
    end = text.index("  # Freshly provisioned")
    config_repo.write("links.yaml", text[:start] + text[end:] + (
        "\n  vps-sgp-01:\n    type: VPS\n    host: 192.0.2.77\n    port: 2222\n    user: root\n"
        "    enrollment:\n      clientId: LINKOPS-0000-new\n"))
    config_repo.write("scripts/long_task.sh",
                      config_repo.read("scripts/long_task.sh") + "# tweak\n", 0o755)
    new_head = config_repo.commit_and_push("second")
    with trio.fail_after(30):
        result = await service.sync()
    assert result.success, result.error
    assert result.commit_hash == new_head
    assert not result.forced
    assert result.changes["links"] == {"added": ["vps-sgp-01"], "removed": ["vm-docker-01"],
                                       "updated": ["vm-web-01", "vps-fra-01"]}
    assert result.changes["scripts"] == {"added": [], "removed": [], "updated": ["long_task"]}
    machines = {m["id"]: m for m in snapshot(db)[0]}
    # Tags changed only: still enrolled. Host changed: must be verified again; health kept.
    assert machines["vm-web-01"]["enrolled"] == 1
    assert machines["vm-web-01"]["tags"] == '["prod","vm","web"]'
    fra = machines["vps-fra-01"]
    assert (fra["enrolled"], fra["enrollment_verified_at"]) == (0, None)
    assert (fra["status"], fra["latency_ms"], fra["last_seen"]) == ("online", 12.5, "S")
    assert machines["vps-sgp-01"]["port"] == 2222
    assert "vm-docker-01" not in machines
    # Nothing changed: an empty change set, still a recorded success.
    with trio.fail_after(30):
        again = await service.sync()
    assert again.success
    assert again.changes == {kind: {"added": [], "removed": [], "updated": []}
                             for kind in ("links", "scripts")}


async def test_force_push_is_followed_and_recorded(
        inventory: tuple[Any, Database, InventoryService], config_repo: RepoWriter) -> None:
    settings, db, service = inventory
    config_repo.write("README.md", "one\n")
    config_repo.commit_and_push("to be rewritten")
    with trio.fail_after(30):
        assert (await service.sync()).success
    rewritten = config_repo.rewrite_last()
    with trio.fail_after(30):
        result = await service.sync()
    assert result.success, result.error
    assert result.forced
    assert result.commit_hash == rewritten
    assert git("rev-parse", "HEAD", cwd=settings.git.local_path) == rewritten
    assert (settings.git.local_path / "README.md").read_text().startswith("rewritten")
    assert [r["forced"] for r in history(db)] == [0, 1]


async def test_unreachable_remote_keeps_inventory_and_logs_without_credentials(
        tmp_path: Path, config_repo: RepoWriter, make_inventory: Any,
        inventory_log: ListHandler) -> None:
    _, db, service = make_inventory(str(config_repo.bare))
    with trio.fail_after(30):
        assert (await service.sync()).success
    before = snapshot(db)
    # Same server state, but the remote is now an https URL with a password that cannot be
    # reached (no network in the test environment, the name does not resolve).
    secret = "hunter2-s3cret-token"
    _, db2, broken = make_inventory(f"https://deploy:{secret}@git.example.invalid/ops/cfg.git",
                                    timeout_seconds=15)
    with trio.fail_after(30):
        result = await broken.sync()
    assert not result.success
    assert result.error is not None
    assert result.error.code == "GIT_UNREACHABLE"
    assert result.error.status == 503
    assert result.error.details["repository"] == "https://git.example.invalid/ops/cfg.git"
    assert result.error.details["reason"] in ("network", "not_found")
    assert snapshot(db2) == before
    rows = history(db2)
    assert rows[-1]["status"] == "failed"
    assert secret not in repr(rows)
    assert secret not in repr(result.to_dict())
    status = await broken.status()
    assert status["status"] == "failed"
    assert status["commit_hash"] == config_repo.head()  # the active inventory's commit
    assert status["repository"] == "https://git.example.invalid/ops/cfg.git"
    assert status["error_code"] == "GIT_UNREACHABLE"
    failures = [r for r in inventory_log.records if r.getMessage() == "inventory.sync_failed"]
    assert failures
    context = failures[-1].context  # type: ignore[attr-defined]
    assert context["repository"] == "https://git.example.invalid/ops/cfg.git"
    assert context["code"] == "GIT_UNREACHABLE"
    assert all(secret not in repr(r.__dict__) for r in inventory_log.records)


async def test_missing_repository_and_branch(
        tmp_path: Path, config_repo: RepoWriter, make_inventory: Any) -> None:
    _, _, service = make_inventory(str(tmp_path / "nope.git"))
    with trio.fail_after(30):
        result = await service.sync()
    assert result.error is not None
    assert (result.error.code, result.error.details["reason"]) == ("GIT_UNREACHABLE",
                                                                   "not_found")
    _, _, service = make_inventory(str(config_repo.bare), branch="release")
    with trio.fail_after(30):
        result = await service.sync()
    assert result.error is not None
    assert result.error.details["reason"] == "branch_not_found"


def _git_processes() -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"linkops-stall" in cmdline:
            found.append(int(pid))
    return found


async def test_timeout_kills_git_and_its_ssh(
        tmp_path: Path, make_inventory: Any, nursery: trio.Nursery) -> None:
    # A server that says hello as SSH and then never answers: only our deadline ends it.
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    held: list[trio.SocketStream] = []

    async def stall(stream: trio.SocketStream) -> None:
        held.append(stream)
        await stream.send_all(b"SSH-2.0-OpenSSH_9.2\r\n")
        await trio.sleep_forever()

    nursery.start_soon(trio.serve_listeners, stall, [listener])
    _, db, service = make_inventory(f"ssh://git@127.0.0.1:{port}/linkops-stall.git",
                                    timeout_seconds=2)
    started = trio.current_time()
    results: list[Any] = []

    async def sync() -> None:
        results.append(await service.sync())

    with trio.fail_after(20):
        async with trio.open_nursery() as inner:
            inner.start_soon(sync)
            while not held:
                await trio.sleep(0.05)
            status = await service.status()
            assert (status["status"], status["in_progress"]) == ("syncing", True)
    result = results[0]
    assert result.error is not None
    assert (result.error.code, result.error.details["reason"]) == ("GIT_UNREACHABLE",
                                                                   "timeout")
    assert trio.current_time() - started < 10
    assert held, "git never connected"
    # git and the ssh it started are gone (killed as a process group).
    await trio.sleep(0.2)
    assert _git_processes() == []
    assert history(db)[-1]["status"] == "failed"


async def test_size_limit(tmp_path: Path, config_repo: RepoWriter, make_inventory: Any) -> None:
    _, db, service = make_inventory(str(config_repo.bare), max_repo_mb=1)
    with trio.fail_after(30):
        assert (await service.sync()).success
    before = snapshot(db)
    config_repo.write("blob.bin", os.urandom(3 * 1024 * 1024))
    config_repo.commit_and_push("big")
    with trio.fail_after(30):
        result = await service.sync()
    assert result.error is not None
    assert result.error.code == "GIT_REPO_TOO_LARGE"
    assert snapshot(db) == before


@pytest.mark.parametrize("url", [
    "ext::sh -c touch% {canary}",
    "ext::sh",
    "-uploadpack=touch {canary}",
    "--upload-pack=touch {canary}",
    "fd::3",
    "http://example.invalid/repo.git",
    "git://example.invalid/repo.git",
    "relative/path.git",
    "ssh://-oProxyCommand=touch%20{canary}/x",
    "-oProxyCommand=touch {canary}:repo",
    "",
])
async def test_dangerous_urls_are_refused_before_git_runs(
        tmp_path: Path, make_inventory: Any, url: str) -> None:
    canary = tmp_path / "canary"
    settings, db, service = make_inventory(url.format(canary=canary))
    with trio.fail_after(30):
        result = await service.sync()
    assert result.error is not None
    assert result.error.code in ("INVALID_REPOSITORY_URL", "GIT_NOT_CONFIGURED")
    assert not canary.exists()
    assert not (settings.git.local_path / ".git").exists()  # git never ran
    assert history(db)[-1]["status"] == "failed"


async def test_concurrent_sync_requests_share_one_sync(
        inventory: tuple[Any, Database, InventoryService]) -> None:
    _, db, service = inventory
    results: list[Any] = []

    async def request() -> None:
        results.append(await service.sync(trigger="api"))

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(request)
    assert len(results) == 5
    assert all(r is results[0] for r in results)
    assert len(history(db)) == 1
    # A request after that sync finished runs a new one.
    with trio.fail_after(30):
        later = await service.sync()
    assert later is not results[0]
    assert len(history(db)) == 2


async def test_token_travels_in_the_environment_only(
        tmp_path: Path, make_inventory: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The askpass helper answers from the environment; argv never holds the token."""
    secret = "glpat-very-secret-value"
    seen: list[tuple[list[str], dict[str, str]]] = []
    real = trio.run_process

    async def spy(command: list[str], **kwargs: Any) -> Any:
        seen.append((list(command), dict(kwargs.get("env") or {})))
        return await real(command, **kwargs)

    monkeypatch.setattr(trio, "run_process", spy)
    _, _, service = make_inventory("https://git.example.invalid/ops/cfg.git", token=secret,
                                   timeout_seconds=15)
    with trio.fail_after(30):
        result = await service.sync()
    assert result.error is not None
    assert seen
    for argv, env in seen:
        assert all(secret not in part for part in argv)
        assert env["GIT_TERMINAL_PROMPT"] == "0"
        assert env["GIT_CONFIG_NOSYSTEM"] == "1"
        assert env["HOME"] != os.environ.get("HOME")
        assert env["LINKOPS_GIT_TOKEN"] == secret
        keys = {env[f"GIT_CONFIG_KEY_{i}"]: env[f"GIT_CONFIG_VALUE_{i}"]
                for i in range(int(env["GIT_CONFIG_COUNT"]))}
        assert keys["core.hooksPath"] == "/dev/null"
        assert keys["protocol.allow"] == "never"
        assert keys["protocol.https.allow"] == "always"
        assert "protocol.file.allow" not in keys
    # The helper git would call prints the token for the password prompt and the user name
    # for the user prompt, and nothing else.
    from linkops.inventory.git import ASKPASS_SCRIPT
    helper = tmp_path / "askpass.sh"
    helper.write_text(ASKPASS_SCRIPT)
    helper.chmod(0o700)
    env = {"LINKOPS_GIT_TOKEN": secret, "LINKOPS_GIT_USERNAME": "x-access-token",
           "PATH": "/usr/bin:/bin"}
    password = subprocess.run([str(helper), "Password for 'https://x@git.example.invalid': "],
                              env=env, capture_output=True, text=True, check=True)
    username = subprocess.run([str(helper), "Username for 'https://git.example.invalid': "],
                              env=env, capture_output=True, text=True, check=True)
    assert (password.stdout, username.stdout) == (f"{secret}\n", "x-access-token\n")
    assert secret not in repr(result.to_dict())


async def test_foreign_local_path_is_refused_not_deleted(
        config_repo: RepoWriter, make_inventory: Any) -> None:
    settings, _, service = make_inventory(str(config_repo.bare))
    precious = settings.git.local_path / "notes.txt"
    precious.write_text("someone else's file\n")
    with trio.fail_after(30):
        result = await service.sync()
    assert result.error is not None
    assert result.error.code == "GIT_ERROR"
    assert "is not a LinkOps checkout" in result.error.message
    assert precious.read_text() == "someone else's file\n"
    assert not (settings.git.local_path / ".git").exists()


async def test_leftovers_of_a_killed_git_are_cleaned_up(
        inventory: tuple[Any, Database, InventoryService], config_repo: RepoWriter) -> None:
    settings, _, service = inventory
    with trio.fail_after(30):
        assert (await service.sync()).success
    checkout = settings.git.local_path
    # What git leaves when it is SIGKILLed mid-way (our deadline does that) ...
    stale = [checkout / ".git" / "index.lock",
             checkout / ".git" / "refs" / "remotes" / "origin" / "main.lock"]
    for path in stale:
        path.write_text("")
    # ... and a private directory of a sync whose process died.
    old_private = checkout.parent / f".{checkout.name}-git-dead"
    (old_private / "home").mkdir(parents=True)
    head = config_repo.commit_and_push("after a crash")
    with trio.fail_after(30):
        result = await service.sync()
    assert result.success, result.error
    assert result.commit_hash == head
    assert not any(path.exists() for path in stale)
    assert not old_private.exists()
    assert list(checkout.parent.glob(f".{checkout.name}-git-*")) == []


async def test_another_process_holding_the_checkout_lock(
        config_repo: RepoWriter, make_inventory: Any) -> None:
    import fcntl

    settings, _, service = make_inventory(str(config_repo.bare), timeout_seconds=1)
    checkout = settings.git.local_path
    lock = checkout.parent / f".{checkout.name}.lock"
    # A separate open file description conflicts like another process would.
    with lock.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with trio.fail_after(30):
            result = await service.sync()
        assert result.error is not None
        assert (result.error.code, result.error.status) == ("SYNC_IN_PROGRESS", 409)
        fcntl.flock(held, fcntl.LOCK_UN)
    with trio.fail_after(30):
        assert (await service.sync()).success
