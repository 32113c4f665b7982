"""Git over SSH with a deploy key, against a real sshd that only runs git-shell."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import trio

from tests.fixtures_git import GitSshd, RepoWriter, git


def _key_copy(source: Path, dest_dir: Path, mode: int = 0o600) -> Path:
    dest_dir.mkdir(parents=True, exist_ok=True)
    key = dest_dir / source.name
    shutil.copyfile(source, key)
    key.chmod(mode)
    return key


async def test_clone_and_update_with_deploy_key(
        tmp_path: Path, git_sshd: GitSshd, config_repo: RepoWriter, make_inventory: Any) -> None:
    key = _key_copy(git_sshd.deploy_key, tmp_path / "deploy")
    settings, _, service = make_inventory(git_sshd.url(config_repo.bare), ssh_key_path=key)
    with trio.fail_after(60):
        first = await service.sync()
    assert first.success, first.error
    assert first.commit_hash == config_repo.head()
    # accept-new: the unknown host key was recorded in our known_hosts, nowhere else.
    known = settings.ssh.known_hosts_path.read_text()
    assert f"[127.0.0.1]:{git_sshd.port}" in known
    config_repo.replace("links.yaml", "port: 22", "port: 2201")
    head = config_repo.commit_and_push("port change")
    with trio.fail_after(60):
        second = await service.sync()
    assert second.success, second.error
    assert second.commit_hash == head
    assert second.changes["links"]["updated"] == ["vps-fra-01"]
    assert git("rev-parse", "HEAD", cwd=settings.git.local_path) == head
    rewritten = config_repo.rewrite_last()
    with trio.fail_after(60):
        third = await service.sync()
    assert third.success and third.forced and third.commit_hash == rewritten


async def test_wrong_key_is_an_auth_failure_and_keeps_inventory(
        tmp_path: Path, git_sshd: GitSshd, config_repo: RepoWriter, make_inventory: Any) -> None:
    good = _key_copy(git_sshd.deploy_key, tmp_path / "good")
    _, db, service = make_inventory(git_sshd.url(config_repo.bare), ssh_key_path=good)
    with trio.fail_after(60):
        assert (await service.sync()).success
    count = db.read_sync(lambda c: c.execute("SELECT count(*) FROM machines").fetchone()[0])
    bad = _key_copy(git_sshd.other_key, tmp_path / "bad")
    _, db2, wrong = make_inventory(git_sshd.url(config_repo.bare), ssh_key_path=bad)
    with trio.fail_after(60):
        result = await wrong.sync()
    assert result.error is not None
    assert (result.error.code, result.error.status) == ("GIT_UNREACHABLE", 503)
    assert result.error.details["reason"] == "auth"
    assert result.error.details["repository"] == git_sshd.url(config_repo.bare)
    assert db2.read_sync(
        lambda c: c.execute("SELECT count(*) FROM machines").fetchone()[0]) == count


async def test_key_not_0600_is_refused_before_git_runs(
        tmp_path: Path, git_sshd: GitSshd, config_repo: RepoWriter, make_inventory: Any) -> None:
    key = _key_copy(git_sshd.deploy_key, tmp_path / "loose", mode=0o644)
    settings, _, service = make_inventory(git_sshd.url(config_repo.bare), ssh_key_path=key)
    with trio.fail_after(60):
        result = await service.sync()
    assert result.error is not None
    assert result.error.code == "SSH_KEY_INVALID"
    assert str(key) in result.error.message and "0644" in result.error.message
    assert not (settings.git.local_path / ".git").exists()


async def test_changed_host_key_is_refused(
        tmp_path: Path, git_sshd: GitSshd, config_repo: RepoWriter, make_inventory: Any) -> None:
    key = _key_copy(git_sshd.deploy_key, tmp_path / "deploy")
    settings, _, service = make_inventory(git_sshd.url(config_repo.bare), ssh_key_path=key)
    # known_hosts pins another key for this host:port: a man in the middle, as far as we know.
    other_public = Path(f"{git_sshd.other_key}.pub").read_text().split()
    settings.ssh.known_hosts_path.write_text(
        f"[127.0.0.1]:{git_sshd.port} {other_public[0]} {other_public[1]}\n")
    with trio.fail_after(60):
        result = await service.sync()
    assert result.error is not None
    assert result.error.details["reason"] == "host_key"




async def test_strict_policy_refuses_an_unknown_host(
        tmp_path: Path, git_sshd: GitSshd, config_repo: RepoWriter, make_inventory: Any) -> None:
    key = _key_copy(git_sshd.deploy_key, tmp_path / "deploy")
    settings, _, service = make_inventory(git_sshd.url(config_repo.bare), ssh_key_path=key,
                                          ssh={"host_key_policy": "strict"})
    with trio.fail_after(60):
        result = await service.sync()
    assert result.error is not None
    assert result.error.details["reason"] == "host_key"
    assert not settings.ssh.known_hosts_path.exists() or (
        f"[127.0.0.1]:{git_sshd.port}" not in settings.ssh.known_hosts_path.read_text())
    # Once the operator pins the server's key, strict mode syncs.
    host_public = Path(f"{git_sshd.host_key}.pub").read_text().split()
    settings.ssh.known_hosts_path.write_text(
        f"[127.0.0.1]:{git_sshd.port} {host_public[0]} {host_public[1]}\n")
    with trio.fail_after(60):
        assert (await service.sync()).success
