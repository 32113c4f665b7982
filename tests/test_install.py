"""systemd/install.sh and uninstall.sh run for real into a temporary root (``--root``).

The wheel is built once per session from this checkout; the installer gets the
dependencies from the test virtualenv (``--venv-from``), so nothing touches the network or
the machine outside the temporary root. Each install takes about two seconds.
"""

from __future__ import annotations

import configparser
import hashlib
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from linkops import auth, config
from tests.fixtures_core import require_root
from tests.test_systemd_unit import SYSTEM_UNITS, analyze

REPO = Path(__file__).resolve().parents[1]
INSTALL = REPO / "systemd" / "install.sh"
UNINSTALL = REPO / "systemd" / "uninstall.sh"
VENV_FROM = Path(sys.prefix)

@pytest.fixture(autouse=True)
def _needs_root() -> None:
    require_root("ownership checks")


def build_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this checkout, built once per test session (shared by test modules)."""
    out = tmp_path_factory.getbasetemp() / "linkops-wheel"
    found = sorted(out.glob("linkops-*.whl"))
    if found:
        return found[0]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(REPO)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (wheel,) = out.glob("linkops-*.whl")
    return wheel


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory)


def run_install(root: Path, wheel: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(INSTALL), "--root", str(root), "--no-apt", "--wheel", str(wheel),
         "--venv-from", str(VENV_FROM), *extra],
        capture_output=True, text=True, timeout=120, check=False,
    )


def run_uninstall(root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(UNINSTALL), "--root", str(root), *extra],
        capture_output=True, text=True, timeout=60, check=False,
    )


def installed(root: Path, wheel: Path) -> subprocess.CompletedProcess[str]:
    result = run_install(root, wheel)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def service_ids(root: Path) -> tuple[int, int]:
    for line in (root / "etc/passwd").read_text().splitlines():
        name, _, uid, gid, _gecos, home, shell = line.split(":")
        if name == "linkops":
            assert home == "/var/lib/linkops"
            assert shell == "/usr/sbin/nologin"
            return int(uid), int(gid)
    raise AssertionError("linkops is not in etc/passwd")


def mode_owner(path: Path) -> tuple[int, int, int]:
    st = path.lstat()
    return stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid


def staged_config(root: Path) -> Path:
    """The installed config with its target paths pointed into the staging root."""
    text = (root / "etc/linkops/config.ini").read_text()
    text = text.replace("/var/lib/linkops", f"{root}/var/lib/linkops")
    text = text.replace("/var/log/linkops", f"{root}/var/log/linkops")
    path = root.parent / f"{root.name}-staged.ini"
    path.write_text(text)
    return path


def snapshot(root: Path) -> dict[str, tuple[int, int, int, str]]:
    """Mode, owner and content hash of everything the installer manages outside the venv."""
    result = {}
    for top in ("etc", "var"):
        for path in sorted((root / top).rglob("*")):
            digest = ""
            if path.is_file() and not path.is_symlink():
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            elif path.is_symlink():
                digest = os.readlink(path)
            result[str(path.relative_to(root))] = (*mode_owner(path), digest)
    return result


def printed_password(output: str) -> str:
    match = re.search(r"^\s*Password:\s+(\S+)\s*$", output, re.MULTILINE)
    assert match, output
    return match.group(1)


def test_first_install_layout(tmp_path: Path, wheel: Path) -> None:
    root = tmp_path / "root"
    out = installed(root, wheel).stdout
    uid, gid = service_ids(root)
    assert f"linkops:x:{gid}:" in (root / "etc/group").read_text().splitlines()
    assert "host untouched" in out
    assert "skipping apt" in out

    expected = {
        "etc/linkops": (0o750, 0, gid),
        "etc/linkops/config.ini": (0o640, 0, gid),
        "var/lib/linkops": (0o750, uid, gid),
        "var/lib/linkops/keys": (0o700, uid, gid),
        "var/lib/linkops/ssh": (0o700, uid, gid),
        "var/lib/linkops/ssh/known_hosts": (0o600, uid, gid),
        "var/lib/linkops/git-repo": (0o750, uid, gid),
        "var/log/linkops": (0o750, uid, gid),
        "var/lib/linkops/keys/id_ed25519": (0o600, uid, gid),
        "var/lib/linkops/keys/id_ed25519.pub": (0o644, uid, gid),
        "var/lib/linkops/linkops.db": (0o600, uid, gid),
        "etc/systemd/system/linkopsd.service": (0o644, 0, 0),
    }
    for rel, want in expected.items():
        assert mode_owner(root / rel) == want, rel

    # The program: the venv's own entry point runs and the wrapper is world-executable
    # (systemd starts it as the linkops user).
    venv = root / "opt/linkops"
    assert stat.S_IMODE(venv.stat().st_mode) == 0o755
    version = subprocess.run([str(venv / "bin/linkops"), "--version"],
                             capture_output=True, text=True, check=True, timeout=30)
    assert version.stdout.startswith("linkops ")

    # Unit installed and enabled the way `systemctl enable` would.
    unit = (root / "etc/systemd/system/linkopsd.service").read_text()
    assert unit == (REPO / "systemd/linkopsd.service").read_text()
    wants = root / "etc/systemd/system/multi-user.target.wants/linkopsd.service"
    assert os.readlink(wants) == "/etc/systemd/system/linkopsd.service"

    # Config: from the template, with a generated secret, and valid once paths are staged.
    cp = configparser.ConfigParser(interpolation=None)
    cp.read(root / "etc/linkops/config.ini")
    secret = cp["api"]["jwt_secret"]
    assert len(secret) >= 60
    assert cp["database"]["path"] == "/var/lib/linkops/linkops.db"
    settings = config.load(staged_config(root))
    assert settings.api.jwt_secret == secret

    # SSH key pair: a real ed25519 key whose .pub matches, and the public key is printed.
    key = root / "var/lib/linkops/keys/id_ed25519"
    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(key)], capture_output=True,
                             text=True, check=True, timeout=30).stdout.split()[:2]
    pub = (root / "var/lib/linkops/keys/id_ed25519.pub").read_text().split()
    assert derived == pub[:2]
    assert pub[0] == "ssh-ed25519"
    assert " ".join(pub[:2]) in out

    # First admin: created in the database with the password printed once.
    password = printed_password(out)
    with sqlite3.connect(root / "var/lib/linkops/linkops.db") as conn:
        row = conn.execute("SELECT username, role, password_hash FROM users").fetchall()
    assert [(r[0], r[1]) for r in row] == [("admin", "admin")]
    assert auth.verify_password(password, row[0][2])
    assert not auth.verify_password(password + "x", row[0][2])


def test_second_run_changes_nothing_important(tmp_path: Path, wheel: Path) -> None:
    root = tmp_path / "root"
    first = installed(root, wheel)
    before = snapshot(root)
    venv_init = next((root / "opt/linkops/lib").glob("python3*/site-packages/linkops/__init__.py"))
    # Simulate a damaged or older program: the upgrade path must replace it.
    venv_init.write_text("broken = True\n")

    second = installed(root, wheel)
    assert snapshot(root) == before
    assert "keeping existing /etc/linkops/config.ini" in second.stdout
    assert "Password:" not in second.stdout
    assert "__version__" in venv_init.read_text()
    # Same key, printed again for convenience.
    pub = (root / "var/lib/linkops/keys/id_ed25519.pub").read_text().split()
    assert " ".join(pub[:2]) in first.stdout
    assert " ".join(pub[:2]) in second.stdout
    for db in ("passwd", "group"):
        lines = (root / "etc" / db).read_text().splitlines()
        assert [line for line in lines if line.startswith("linkops:")] == [lines[0]]


def test_existing_config_is_never_overwritten(tmp_path: Path, wheel: Path) -> None:
    root = tmp_path / "root"
    (root / "etc/linkops").mkdir(parents=True)
    mine = "[api]\n# hand-written by the operator\njwt_secret = " + "s" * 40 + "\nport = 9999\n"
    (root / "etc/linkops/config.ini").write_text(mine)
    (root / "etc/linkops/config.ini").chmod(0o600)
    out = installed(root, wheel).stdout
    assert (root / "etc/linkops/config.ini").read_text() == mine
    # Its mode is repaired so the service can read it.
    _, gid = service_ids(root)
    assert mode_owner(root / "etc/linkops/config.ini") == (0o640, 0, gid)
    assert "keeping existing" in out


def test_uninstall_keeps_data_and_purge_removes_it(tmp_path: Path, wheel: Path) -> None:
    root = tmp_path / "root"
    installed(root, wheel)
    config_bytes = (root / "etc/linkops/config.ini").read_bytes()
    key_bytes = (root / "var/lib/linkops/keys/id_ed25519").read_bytes()

    result = run_uninstall(root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (root / "opt/linkops").exists()
    assert not (root / "etc/systemd/system/linkopsd.service").exists()
    assert not (root / "etc/systemd/system/multi-user.target.wants/linkopsd.service").is_symlink()
    assert (root / "etc/linkops/config.ini").read_bytes() == config_bytes
    assert (root / "var/lib/linkops/keys/id_ed25519").read_bytes() == key_bytes
    assert (root / "var/lib/linkops/linkops.db").is_file()
    assert (root / "var/log/linkops").is_dir()
    assert (root / "etc/passwd").read_text().startswith("linkops:")
    assert "--purge" in result.stdout

    # Reinstall after uninstall: same config, same key, users kept (no new password).
    again = installed(root, wheel)
    assert (root / "etc/linkops/config.ini").read_bytes() == config_bytes
    assert (root / "var/lib/linkops/keys/id_ed25519").read_bytes() == key_bytes
    assert "Password:" not in again.stdout

    purge = run_uninstall(root, "--purge")
    assert purge.returncode == 0, purge.stdout + purge.stderr
    for gone in ("opt/linkops", "etc/linkops", "var/lib/linkops", "var/log/linkops"):
        assert not (root / gone).exists(), gone
    assert (root / "etc/passwd").read_text() == ""
    assert (root / "etc/group").read_text() == ""
    # Purging twice is fine (idempotent too).
    assert run_uninstall(root, "--purge").returncode == 0


def test_installer_keeps_other_entries_of_staged_passwd(tmp_path: Path, wheel: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n"
                                     "other:x:999:999::/home/other:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\nother:x:999:\n")
    installed(root, wheel)
    uid, gid = service_ids(root)
    assert (uid, gid) == (998, 998)  # 999 is taken: the next free system id
    run_uninstall(root, "--purge")
    assert (root / "etc/passwd").read_text() == ("root:x:0:0:root:/root:/bin/bash\n"
                                                 "other:x:999:999::/home/other:/bin/sh\n")
    assert (root / "etc/group").read_text() == "root:x:0:\nother:x:999:\n"


def test_bad_usage_exits_2_and_missing_wheel_exits_1(tmp_path: Path) -> None:
    bad = subprocess.run([str(INSTALL), "--bogus"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2
    assert "Usage" in bad.stderr
    missing = subprocess.run(
        [str(INSTALL), "--root", str(tmp_path), "--wheel", str(tmp_path / "nope.whl")],
        capture_output=True, text=True, timeout=30,
    )
    assert missing.returncode == 1
    assert "not found" in missing.stderr
    assert subprocess.run([str(UNINSTALL), "--bogus"], capture_output=True,
                          timeout=30).returncode == 2


def test_install_from_the_source_tree(tmp_path: Path) -> None:
    """Without --wheel the installer builds this checkout (its frontend already vendored)."""
    root = tmp_path / "root"
    result = subprocess.run(
        [str(INSTALL), "--root", str(root), "--no-apt", "--venv-from", str(VENV_FROM)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"installing {REPO} into" in result.stdout
    site = next((root / "opt/linkops/lib").glob("python3*/site-packages"))
    # Installed as a real copy (not an editable link back to the checkout), with the
    # frontend and the config template as package data.
    assert (site / "linkops/__init__.py").is_file()
    assert (site / "linkops/templates/config.ini.template").is_file()
    assert (site / "linkops/frontend/index.html").is_file()
    assert list((site / "linkops/frontend/vendor").rglob("*.js"))


def test_leftover_group_is_reused(tmp_path: Path, wheel: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "etc/group").write_text("root:x:0:\nlinkops:x:500:\n")
    installed(root, wheel)
    uid, gid = service_ids(root)
    assert (uid, gid) == (999, 500)
    assert (root / "etc/group").read_text() == "root:x:0:\nlinkops:x:500:\n"
    assert mode_owner(root / "var/lib/linkops/keys") == (0o700, uid, 500)


def test_installed_unit_verifies_with_the_real_entry_point(tmp_path: Path, wheel: Path) -> None:
    """`systemd-analyze verify` on what the installer laid down: the enabled unit and the
    virtualenv's own `linkops` script (not a stub) as ExecStart=."""
    root = tmp_path / "root"
    installed(root, wheel)
    (root / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    result = analyze("verify", "--man=no", f"--root={root}", "linkopsd.service")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_admin_password_is_shown_even_when_a_later_step_fails(
    tmp_path: Path, wheel: Path
) -> None:
    """The admin is created before the unit is installed; if that fails, the one-time
    password must still reach the operator (it is never shown again)."""
    root = tmp_path / "root"
    (root / "etc/systemd").mkdir(parents=True)
    (root / "etc/systemd/system").write_text("not a directory\n")  # the unit step fails
    result = run_install(root, wheel)
    assert result.returncode != 0
    password = printed_password(result.stdout)
    with sqlite3.connect(root / "var/lib/linkops/linkops.db") as conn:
        (stored,) = conn.execute("SELECT password_hash FROM users").fetchone()
    assert auth.verify_password(password, stored)
