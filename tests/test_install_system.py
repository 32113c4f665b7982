"""install.sh / uninstall.sh in their real mode (no ``--root``), inside a private mount namespace.

``--root`` (test_install.py) never runs ``useradd``, ``runuser`` or name-based ``chown``; this
module covers that path without touching the machine: ``unshare --mount`` gives the scripts a
namespace in which ``/etc`` is a copy, and ``/opt``, ``/var/lib`` and ``/var/log`` are empty
directories of the test, all bind-mounted. The scripts see a fresh Ubuntu-like system; when
the namespace ends the host is unchanged and the result is left in the test's directory.
systemd is not PID 1 here, so the installer enables the unit without starting it (that path
is also under test).
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from linkops import auth
from tests.fixtures_core import require_root
from tests.test_install import (
    INSTALL,
    REPO,
    UNINSTALL,
    VENV_FROM,
    build_wheel,
    printed_password,
)


@pytest.fixture(autouse=True)
def _needs_root() -> None:
    require_root("a private mount namespace", unshare=True)

SYSTEM_PYTHON = "/usr/bin/python3"
DEPS = Path("/opt/linkops-test-deps")


class Namespace:
    """Run commands where /etc, /opt, /var/lib and /var/log are this test's directories."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.etc = base / "etc"
        self.opt = base / "opt"
        self.var_lib = base / "var-lib"
        self.var_log = base / "var-log"
        self.backups = base / "var-backups"
        self.bin = base / "bin"
        subprocess.run(["cp", "-a", "/etc", str(self.etc)], check=True, timeout=60)
        for d in (self.opt, self.var_lib, self.var_log, self.backups, self.bin):
            d.mkdir()
            d.chmod(0o755)
        # The copy starts without any LinkOps trace (other tests use /etc/linkops as a mount
        # point for network namespaces; a developer machine may have a real install).
        shutil.rmtree(self.etc / "linkops", ignore_errors=True)
        for unit in self.etc.glob("systemd/system/**/linkopsd.service"):
            unit.unlink()
        for name in ("passwd", "group", "shadow", "gshadow"):
            path = self.etc / name
            if path.exists():
                kept = [line for line in path.read_text().splitlines(keepends=True)
                        if not line.startswith("linkops:")]
                path.write_text("".join(kept))

    def run(self, *argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        # The test environment (--venv-from) may live where the service user cannot reach
        # (e.g. under /root, mode 700): it is mounted at DEPS, readable by everybody.
        (self.opt / DEPS.name).mkdir(exist_ok=True)
        mounts = " && ".join(
            f"mount --bind {src} {dst}"
            for src, dst in ((self.etc, "/etc"), (self.opt, "/opt"),
                             (self.var_lib, "/var/lib"), (self.var_log, "/var/log"),
                             (self.backups, "/var/backups"), (VENV_FROM, DEPS))
        )
        return subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "--",
             "bash", "-c", f'{mounts} && exec "$@"', "ns", *argv],
            input=stdin, capture_output=True, text=True, timeout=180, check=False,
        )

    def user(self) -> tuple[int, int, str, str]:
        for line in (self.etc / "passwd").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == "linkops":
                return int(fields[2]), int(fields[3]), fields[5], fields[6]
        raise AssertionError("no linkops user")


def mode_owner(path: Path) -> tuple[int, int, int]:
    st = path.lstat()
    return stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid


@pytest.fixture
def ns(tmp_path: Path) -> Namespace:
    return Namespace(tmp_path)


def python_for_venv() -> str:
    # Same minor version as the environment the dependencies come from (--venv-from).
    out = subprocess.run([SYSTEM_PYTHON, "-c", "import sys; print(sys.version_info[:2])"],
                         capture_output=True, text=True, timeout=30, check=False)
    return SYSTEM_PYTHON if out.stdout.strip() == str(sys.version_info[:2]) else sys.executable


def test_real_mode_install_upgrade_and_purge(
    ns: Namespace, tmp_path_factory: pytest.TempPathFactory
) -> None:
    wheel = build_wheel(tmp_path_factory)
    install = [str(INSTALL), "--no-apt", "--wheel", str(wheel), "--venv-from", str(DEPS),
               "--python", python_for_venv()]
    first = ns.run(*install)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "created system user linkops" in first.stdout
    assert "systemd is not PID 1 here: not starting the service" in first.stdout

    uid, gid, home, shell = ns.user()
    assert 100 <= uid < 1000  # a system user
    assert (home, shell) == ("/var/lib/linkops", "/usr/sbin/nologin")
    shadow = {line.split(":")[0]: line.split(":")[1]
              for line in (ns.etc / "shadow").read_text().splitlines()}
    assert shadow["linkops"] in ("!", "*", "!*")  # no password: nobody logs in as linkops

    lib = ns.var_lib / "linkops"
    expected = {
        ns.etc / "linkops": (0o750, 0, gid),
        ns.etc / "linkops/config.ini": (0o640, 0, gid),
        lib: (0o750, uid, gid),
        lib / "keys": (0o700, uid, gid),
        lib / "keys/id_ed25519": (0o600, uid, gid),
        lib / "ssh/known_hosts": (0o600, uid, gid),
        lib / "git-repo": (0o750, uid, gid),
        ns.var_log / "linkops": (0o750, uid, gid),
        # Created by `linkops user add` run through runuser as the service user.
        lib / "linkops.db": (0o600, uid, gid),
        ns.etc / "systemd/system/linkopsd.service": (0o644, 0, 0),
    }
    for path, want in expected.items():
        assert mode_owner(path) == want, path
    wants = ns.etc / "systemd/system/multi-user.target.wants/linkopsd.service"
    assert os.readlink(wants) == "/etc/systemd/system/linkopsd.service"

    password = printed_password(first.stdout)
    with sqlite3.connect(lib / "linkops.db") as conn:
        (stored,) = conn.execute(
            "SELECT password_hash FROM users WHERE username = 'admin'"
        ).fetchone()
    assert auth.verify_password(password, stored)

    # The installed program runs inside the namespace as the service user and can read its
    # config (group linkops) and write its state: check-config sees only the missing repo.
    check = ns.run("runuser", "-u", "linkops", "--", "/opt/linkops/bin/linkops",
                   "check-config")
    assert check.returncode == 1
    assert check.stderr.strip().splitlines() == [
        "error: [git] repository_url: not set (no inventory can be synced)"
    ]

    # Upgrade: same config bytes and secret, same key, same users, no new password.
    config_before = (ns.etc / "linkops/config.ini").read_bytes()
    key_before = (lib / "keys/id_ed25519").read_bytes()
    # This time with the apt step, against a recording apt-get (no network in tests).
    apt_log = ns.base / "apt.log"
    (ns.bin / "apt-get").write_text(f"#!/bin/sh\necho \"$*\" >> {apt_log}\n")
    (ns.bin / "apt-get").chmod(0o755)
    with_apt = [arg for arg in install if arg != "--no-apt"]
    second = ns.run("env", f"PATH={ns.bin}:/usr/sbin:/usr/bin:/sbin:/bin", *with_apt)
    assert second.returncode == 0, second.stdout + second.stderr
    update, packages = apt_log.read_text().splitlines()
    assert update.split() == ["update", "-qq"]
    assert {"python3-venv", "git", "openssh-client", "sqlite3"} <= set(packages.split())
    assert packages.split()[:2] == ["install", "-y"]
    assert "system user linkops exists" in second.stdout
    assert "Password:" not in second.stdout
    assert (ns.etc / "linkops/config.ini").read_bytes() == config_before
    assert (lib / "keys/id_ed25519").read_bytes() == key_before
    assert ns.user()[:2] == (uid, gid)
    assert len(re.findall(r"^linkops:", (ns.etc / "passwd").read_text(), re.MULTILINE)) == 1

    kept = ns.run(str(UNINSTALL))
    assert kept.returncode == 0, kept.stdout + kept.stderr
    assert not (ns.opt / "linkops").exists()
    assert (ns.opt / DEPS.name).exists()  # uninstall removes /opt/linkops only
    assert (lib / "linkops.db").exists()
    assert ns.user()[:2] == (uid, gid)

    purge = ns.run(str(UNINSTALL), "--purge")
    assert purge.returncode == 0, purge.stdout + purge.stderr
    assert "removed user linkops" in purge.stdout
    assert not lib.exists()
    assert not (ns.etc / "linkops").exists()
    assert not (ns.var_log / "linkops").exists()
    assert not re.search(r"^linkops:", (ns.etc / "passwd").read_text(), re.MULTILINE)
    assert not re.search(r"^linkops:", (ns.etc / "group").read_text(), re.MULTILINE)


def doc_blocks(section: str) -> list[str]:
    """The ```bash blocks of one ``## `` section of docs/deployment.md."""
    doc = (REPO / "docs/deployment.md").read_text()
    body = doc.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", body, re.DOTALL)


def test_documented_backup_and_restore_work(
    ns: Namespace, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The backup script and the restore steps of docs/deployment.md, run as written (only
    ``STAMP`` filled in; systemctl is a recording stub: systemd is not PID 1 here)."""
    wheel = build_wheel(tmp_path_factory)
    first = ns.run(str(INSTALL), "--no-apt", "--wheel", str(wheel), "--venv-from", str(DEPS),
                   "--python", python_for_venv())
    assert first.returncode == 0, first.stdout + first.stderr
    password = printed_password(first.stdout)
    backup_script, restore_steps = doc_blocks("8. Backup and restore")

    lib = ns.var_lib / "linkops"
    kept = {path: path.read_bytes() for path in
            (ns.etc / "linkops/config.ini", lib / "keys/id_ed25519", lib / "linkops.db")}
    backup = ns.run("bash", "-c", backup_script)
    assert backup.returncode == 0, backup.stdout + backup.stderr
    (stamp,) = [p.name for p in (ns.backups / "linkops").iterdir()]
    saved = ns.backups / "linkops" / stamp
    assert sorted(p.name for p in saved.iterdir()) == ["files.tar.gz", "linkops.db"]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in saved.iterdir())
    assert not list(lib.glob("backup.*"))  # the temporary copy was moved away

    # Disaster: the database, the keys and the config are gone.
    for path in kept:
        path.unlink()
    stub = ns.bin / "systemctl"
    stub.write_text(f"#!/bin/sh\necho \"$*\" >> {ns.base / 'systemctl.log'}\n")
    stub.chmod(0o755)
    restore = ns.run("env", f"PATH={ns.bin}:/usr/sbin:/usr/bin:/sbin:/bin", "bash", "-euo",
                     "pipefail", "-c", restore_steps.replace("STAMP", stamp))
    assert restore.returncode == 0, restore.stdout + restore.stderr
    assert (ns.base / "systemctl.log").read_text().splitlines() == [
        "stop linkopsd", "start linkopsd"]

    uid, gid, _, _ = ns.user()
    for path, content in kept.items():
        if path.name != "linkops.db":
            assert path.read_bytes() == content, path
    assert mode_owner(ns.etc / "linkops/config.ini") == (0o640, 0, gid)
    assert mode_owner(lib / "keys/id_ed25519") == (0o600, uid, gid)
    assert mode_owner(lib / "linkops.db") == (0o600, uid, gid)
    with sqlite3.connect(lib / "linkops.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        (stored,) = conn.execute(
            "SELECT password_hash FROM users WHERE username = 'admin'"
        ).fetchone()
    assert auth.verify_password(password, stored)
