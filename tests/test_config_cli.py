"""Configuration loading and the command line: bad input is one clear line and exit 1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from linkops import cli, config
from linkops.errors import ConfigError
from tests.fixtures_core import write_config


def run_cli(
    *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "linkops", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        cwd=Path(__file__).resolve().parents[1],
    )


@pytest.mark.parametrize(
    ("section", "values", "named"),
    [
        ("api", {"jwt_secret": ""}, "[api] jwt_secret"),
        ("api", {"jwt_secret": "short"}, "[api] jwt_secret"),
        ("api", {"port": "eighty"}, "[api] port"),
        ("api", {"port": "70000"}, "[api] port"),
        ("ssh", {"host_key_policy": "yolo"}, "[ssh] host_key_policy"),
        ("ssh", {"keys_directory": "/nonexistent/keys"}, "[ssh] keys_directory"),
        ("security", {"enrollment_required": "maybe"}, "[security] enrollment_required"),
        ("operations", {"default_concurrency": "500"}, "[operations] default_concurrency"),
        ("terminal", {"max_panes_per_workspace": "9"}, "[terminal] max_panes_per_workspace"),
        ("api", {"surprise": "1"}, "[api] surprise"),
        ("nonsense", {"a": "b"}, "[nonsense]"),
        ("database", {"path": "/nonexistent/dir/x.db"}, "[database] path"),
    ],
)
def test_bad_settings_name_section_and_key(
    tmp_path: Path, section: str, values: dict[str, str], named: str
) -> None:
    path = write_config(tmp_path, **{section: values})
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert named in str(info.value)


def test_every_bad_key_of_a_section_is_named_on_one_line(tmp_path: Path) -> None:
    """The one converter (with a hook per setting type) reports every problem it finds,
    in the documented syntax: ``[section] key: …`` joined on one line."""
    path = write_config(tmp_path, api={"port": "eighty", "cookie_secure": "maybe",
                                       "max_body_bytes": "9" * 5000, "prot": "1"})
    with pytest.raises(ConfigError) as info:
        config.load(path)
    text = str(info.value)
    assert "\n" not in text
    assert "[api] port: invalid value 'eighty'" in text
    assert "[api] cookie_secure: invalid value 'maybe' (expected true or false" in text
    assert "[api] max_body_bytes: invalid value" in text
    assert "[api] prot: unknown setting" in text
    # Accepted syntax is unchanged: spaces around values, yes/no, comma lists, "" paths.
    good = config.load(write_config(tmp_path, api={"cookie_secure": " Yes ",
                                                   "cors_origins": "https://a, https://b",
                                                   "port": " 8123"},
                                    git={"ssh_key_path": ""}))
    assert good.api.cookie_secure is True and good.api.port == 8123
    assert good.api.cors_origins == ("https://a", "https://b")
    assert good.git.ssh_key_path is None


def test_serve_with_broken_config_exits_1_naming_the_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, api={"jwt_secret": ""})
    result = run_cli("serve", "--config", str(path))
    assert result.returncode == 1
    assert "[api] jwt_secret" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_missing_config_file_and_env_variable(tmp_path: Path) -> None:
    result = run_cli("check-config", env={"LINKOPS_CONFIG": str(tmp_path / "nope.ini")})
    assert result.returncode == 1 and "not found" in result.stderr
    good = write_config(tmp_path)
    os.environ["LINKOPS_CONFIG"] = str(good)
    try:
        assert config.load(None).source == good
    finally:
        del os.environ["LINKOPS_CONFIG"]


def test_usage_errors_exit_2() -> None:
    assert cli.main(["frobnicate"]) == 2
    assert cli.main(["user"]) == 2


def test_enroll_id_format() -> None:
    result = run_cli("enroll-id")
    assert result.returncode == 0
    value = result.stdout.strip()
    assert value.startswith("LINKOPS-") and len(value) == len("LINKOPS-") + 36


def test_user_add_and_passwd_with_stdin(tmp_path: Path) -> None:
    path = str(write_config(tmp_path))
    added = run_cli(
        "user", "add", "Alice", "--password-stdin", "--config", path, stdin="s3cret-password\n"
    )
    assert added.returncode == 0, added.stderr
    again = run_cli(
        "user", "add", "alice ", "--password-stdin", "--config", path, stdin="s3cret-password\n"
    )
    assert again.returncode == 1 and "already exists" in again.stderr
    short = run_cli("user", "passwd", "alice", "--password-stdin", "--config", path, stdin="x\n")
    assert short.returncode == 1 and "at least 8" in short.stderr
    changed = run_cli(
        "user", "passwd", "ALICE", "--password-stdin", "--config", path, stdin="another-password\n"
    )
    assert changed.returncode == 0, changed.stderr
    # The password is never echoed back.
    assert "another-password" not in changed.stdout + changed.stderr


def test_sync_and_check_config_against_a_real_repository(tmp_path: Path) -> None:
    from tests.fixtures_git import make_repo

    (tmp_path / "repo").mkdir()
    repo = make_repo(tmp_path / "repo")
    path = str(write_config(tmp_path, git={"repository_url": f"file://{repo.bare}"}))
    synced = run_cli("sync", "--config", path)
    assert synced.returncode == 0, synced.stderr
    assert synced.stdout.startswith(f"synced {repo.head()}")
    assert run_cli("check-config", "--config", path).returncode == 0
    # A broken commit: the sync fails with one line naming the file, and exit 1.
    repo.write("links.yaml", "links:\n  vps-01: {type: VPS\n")
    repo.commit_and_push("broken yaml")
    failed = run_cli("sync", "--config", path)
    assert failed.returncode == 1 and "links.yaml" in failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1
    # A key with the wrong mode is reported by check-config, naming the file.
    key = tmp_path / "keys" / "id_ed25519"
    key.write_text("not really a key\n")
    key.chmod(0o644)
    checked = run_cli("check-config", "--config", path)
    assert checked.returncode == 1 and str(key) in checked.stderr and "0600" in checked.stderr
