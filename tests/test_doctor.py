"""``linkops doctor`` against real broken setups: each failing check is reported with its fix,
and the exit status is 1 whenever anything failed."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import trio

from linkops import config, doctor
from linkops.db import Database
from linkops.doctor import Finding
from linkops.resources import bundled_dir
from linkops.sandbox import _keypair
from tests.fixtures_core import free_port, require_root, write_config
from tests.fixtures_git import GitSshd, RepoWriter, make_repo
from tests.test_config_cli import run_cli

REPO_ROOT = Path(__file__).resolve().parents[1]
UNIT = REPO_ROOT / "systemd" / "linkopsd.service"
NOBODY = 65534


def healthy(tmp_path: Path, **sections: dict[str, Any]) -> Path:
    """A setup with nothing wrong: a reachable repository, a 0600 key, a known_hosts file
    under the strict policy, a migrated database."""
    (tmp_path / "remote").mkdir()
    repo = make_repo(tmp_path / "remote")
    sections.setdefault("git", {}).setdefault("repository_url", f"file://{repo.bare}")
    sections.setdefault("ssh", {}).setdefault("host_key_policy", "strict")
    path = write_config(tmp_path, **sections)
    key = tmp_path / "keys" / "id_ed25519"
    key.write_bytes(_keypair()[0])
    key.chmod(0o600)
    known_hosts = tmp_path / "ssh" / "known_hosts"
    known_hosts.write_text("")
    known_hosts.chmod(0o600)
    Database(tmp_path / "linkops.db").close()
    return path


async def diagnose(path: Path, **kwargs: Any) -> list[Finding]:
    with trio.fail_after(90):
        return await doctor.diagnose(config.load(path), unit=kwargs.pop("unit", UNIT), **kwargs)


def move_behind_a_link(path: Path, elsewhere: Path) -> None:
    """``path`` becomes a symbolic link to its own content, moved to ``elsewhere``."""
    shutil.move(path, elsewhere)
    path.symlink_to(elsewhere)


def only(findings: list[Finding], check: str, status: str) -> Finding:
    found = [f for f in findings if f.check == check and f.status == status]
    assert len(found) == 1, doctor.render(findings)
    return found[0]


async def test_a_healthy_setup_is_all_ok(tmp_path: Path) -> None:
    findings = await diagnose(healthy(tmp_path))
    assert [f for f in findings if f.status != "ok"] == [], doctor.render(findings)
    assert {f.check for f in findings} == {"config", "keys", "git remote", "known_hosts",
                                           "frontend", "database", "unit"}
    assert "branch main at" in only(findings, "git remote", "ok").detail


def test_cli_prints_the_table_and_exits_1_on_a_failure(tmp_path: Path) -> None:
    path = healthy(tmp_path)
    ok = run_cli("doctor", "--config", str(path), "--unit", str(UNIT))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.splitlines()[0].split() == ["status", "check", "detail"]
    assert ok.stdout.strip().endswith("ok, 0 warn, 0 fail")
    (tmp_path / "keys" / "id_ed25519").chmod(0o644)
    bad = run_cli("doctor", "--config", str(path), "--unit", str(UNIT))
    assert bad.returncode == 1
    assert f"fix: chmod 600 {tmp_path / 'keys' / 'id_ed25519'}" in bad.stdout
    # check-config stays: the offline subset install.sh runs.
    assert run_cli("check-config", "--config", str(path)).returncode == 1


def test_cli_reports_a_config_that_does_not_load(tmp_path: Path) -> None:
    path = write_config(tmp_path, api={"jwt_secret": "short"})
    result = run_cli("doctor", "--config", str(path))
    assert result.returncode == 1
    assert "fail    config" in result.stdout and "[api] jwt_secret" in result.stdout
    assert "fix: edit the file" in result.stdout


async def test_unreachable_git_remote(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    path = healthy(tmp_path, git={"repository_url": f"ssh://git@127.0.0.1:{port}/repo.git",
                                  "ssh_key_path": tmp_path / "keys" / "id_ed25519",
                                  "timeout_seconds": 15})
    finding = only(await diagnose(path), "git remote", "fail")
    assert "could not be reached" in finding.detail
    assert "check the host and port in [git] repository_url" in finding.fix


async def test_bare_repository_path_that_does_not_exist(tmp_path: Path) -> None:
    path = healthy(tmp_path, git={"repository_url": f"file://{tmp_path}/missing.git"})
    finding = only(await diagnose(path), "git remote", "fail")
    assert "repository not found" in finding.detail
    assert "check [git] repository_url" in finding.fix


async def test_branch_missing_on_the_remote(tmp_path: Path) -> None:
    path = healthy(tmp_path, git={"branch": "production"})
    finding = only(await diagnose(path), "git remote", "fail")
    assert "'production' does not exist" in finding.detail and "[git] branch" in finding.fix


def deploy_key_copy(source: Path, tmp_path: Path) -> Path:
    key = tmp_path / "deploy" / source.name
    key.parent.mkdir(exist_ok=True)
    shutil.copyfile(source, key)
    key.chmod(0o600)
    return key


async def test_wrong_and_right_deploy_key_over_real_sshd(
    tmp_path: Path, git_sshd: GitSshd, config_repo: RepoWriter
) -> None:
    url = git_sshd.url(config_repo.bare)
    wrong = deploy_key_copy(git_sshd.other_key, tmp_path)
    path = healthy(tmp_path, git={"repository_url": url, "ssh_key_path": wrong},
                   ssh={"host_key_policy": "accept-new"})
    finding = only(await diagnose(path), "git remote", "fail")
    assert "authentication failed" in finding.detail
    assert f"register the deploy key ({wrong}.pub)" in finding.fix
    right = deploy_key_copy(git_sshd.deploy_key, tmp_path)
    text = (tmp_path / "config.ini").read_text().replace(str(wrong), str(right))
    (tmp_path / "config.ini").write_text(text)
    findings = await diagnose(path)
    assert only(findings, "git remote", "ok").detail.endswith(config_repo.head()[:12])


async def test_key_with_mode_0644(tmp_path: Path) -> None:
    path = healthy(tmp_path)
    key = tmp_path / "keys" / "id_ed25519"
    key.chmod(0o644)
    finding = only(await diagnose(path), "keys", "fail")
    assert str(key) in finding.detail and "0644" in finding.detail
    assert finding.fix == f"chmod 600 {key}"


async def test_symlinked_key(tmp_path: Path) -> None:
    path = healthy(tmp_path)
    key = tmp_path / "keys" / "id_ed25519"
    move_behind_a_link(key, tmp_path / "elsewhere_key")
    finding = only(await diagnose(path), "keys", "fail")
    assert str(key) in finding.detail and "symbolic link" in finding.detail
    assert finding.fix.startswith("replace the link with the key itself")


async def test_key_owned_by_another_user(tmp_path: Path) -> None:
    require_root("chown a key to another user")
    path = healthy(tmp_path)
    key = tmp_path / "keys" / "id_ed25519"
    os.chown(key, NOBODY, NOBODY)
    finding = only(await diagnose(path), "keys", "fail")
    assert f"uid {NOBODY}" in finding.detail
    assert finding.fix.startswith(f"chown {os.geteuid()} {key}")


async def test_corrupted_database(tmp_path: Path) -> None:
    path = healthy(tmp_path)
    db = tmp_path / "linkops.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE filler (n INTEGER PRIMARY KEY, text TEXT)")
        conn.execute("CREATE INDEX filler_text ON filler (text)")
        conn.executemany("INSERT INTO filler (text) VALUES (?)",
                         [(f"row {i} " * 8,) for i in range(4000)])
    conn.close()
    size = db.stat().st_size
    with db.open("r+b") as f:  # garbage over pages in the middle, header intact
        f.seek(size // 2)
        f.write(os.urandom(8192))
    finding = only(await diagnose(path), "database", "fail")
    assert str(db) in finding.detail
    assert "restore the last backup" in finding.fix
    db.write_bytes(os.urandom(4096))  # not a database at all
    finding = only(await diagnose(path), "database", "fail")
    assert "not a database" in finding.detail


async def test_missing_frontend_assets(tmp_path: Path) -> None:
    path = healthy(tmp_path)
    frontend = tmp_path / "frontend"
    shutil.copytree(bundled_dir("frontend"), frontend,
                    ignore=shutil.ignore_patterns("node_modules"))
    (frontend / "vendor" / "xterm" / "xterm.css").unlink()
    finding = only(await diagnose(path, frontend_dir=frontend), "frontend", "fail")
    assert finding.detail == "missing: vendor/xterm/xterm.css"
    assert "pip wheel ." in finding.fix


async def test_weak_or_missing_unit(tmp_path: Path) -> None:
    path = healthy(tmp_path)
    weak = tmp_path / "linkopsd.service"
    weak.write_text("[Service]\nExecStart=/opt/linkops/bin/linkops serve\n")
    finding = only(await diagnose(path, unit=weak), "unit", "fail")
    assert "UNSAFE" in finding.detail or "EXPOSED" in finding.detail
    assert "restore the shipped unit" in finding.fix
    finding = only(await diagnose(path, unit=tmp_path / "absent.service"), "unit", "warn")
    assert "not installed" in finding.detail


async def test_strict_policy_without_known_hosts_and_a_writable_file(tmp_path: Path) -> None:
    path = healthy(tmp_path)
    known_hosts = tmp_path / "ssh" / "known_hosts"
    known_hosts.chmod(0o666)
    finding = only(await diagnose(path), "known_hosts", "fail")
    assert "writable by others" in finding.detail and finding.fix == f"chmod 600 {known_hosts}"
    known_hosts.unlink()
    finding = only(await diagnose(path), "known_hosts", "fail")
    assert "every connection will be refused" in finding.detail
    assert "ssh-keyscan" in finding.fix


@pytest.mark.parametrize("policy", ["accept-new"])
async def test_accept_new_is_a_warning_with_the_fix(tmp_path: Path, policy: str) -> None:
    path = healthy(tmp_path, ssh={"host_key_policy": policy})
    finding = only(await diagnose(path), "known_hosts", "warn")
    assert "trusted on first contact" in finding.detail
    assert "host_key_policy = strict" in finding.fix


async def test_repository_url_not_set_is_the_first_install_failure(tmp_path: Path) -> None:
    path = healthy(tmp_path, git={"repository_url": ""})
    finding = only(await diagnose(path), "git remote", "fail")
    assert finding.detail == "[git] repository_url is not set"
    assert finding.fix == f"set [git] repository_url in {path}"


def test_missing_keys_directory(tmp_path: Path) -> None:
    # The settings themselves refuse it, so the doctor reports the config, with the path.
    path = healthy(tmp_path)
    shutil.rmtree(tmp_path / "keys")
    result = run_cli("doctor", "--config", str(path), "--unit", str(UNIT))
    assert result.returncode == 1, result.stdout
    assert "fail    config" in result.stdout, result.stdout
    assert f"[ssh] keys_directory: {tmp_path / 'keys'} is not a readable directory" \
        in result.stdout, result.stdout


async def test_known_hosts_that_is_a_link_or_someone_elses(tmp_path: Path) -> None:
    path = healthy(tmp_path)
    known_hosts = tmp_path / "ssh" / "known_hosts"
    planted = tmp_path / "planted_known_hosts"
    move_behind_a_link(known_hosts, planted)
    finding = only(await diagnose(path), "known_hosts", "fail")
    assert "not a regular file" in finding.detail and str(known_hosts) in finding.detail
    assert finding.fix.startswith(f"replace {known_hosts} with a regular file")
    known_hosts.unlink()
    shutil.move(planted, known_hosts)
    require_root("chown known_hosts to another user")
    os.chown(known_hosts, NOBODY, NOBODY)
    finding = only(await diagnose(path), "known_hosts", "fail")
    assert f"owned by uid {NOBODY}" in finding.detail
    assert finding.fix == f"chown {os.geteuid()} {known_hosts}"


def test_warnings_alone_exit_0(tmp_path: Path) -> None:
    # accept-new is a warning, never a failure: the table says so and the exit status is 0.
    path = healthy(tmp_path, ssh={"host_key_policy": "accept-new"})
    result = run_cli("doctor", "--config", str(path), "--unit", str(UNIT))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("ok, 1 warn, 0 fail"), result.stdout
