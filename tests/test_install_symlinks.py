"""install.sh cannot be turned against root by the ``linkops`` account (issue 15).

Real mode in a private mount namespace (see test_install_system.py): one install, then, for
each attack, what a compromised service could plant in the directories it owns — symlinks to
system files, dangling links to paths that do not exist yet, a directory swapped for a link,
a file handed to another user — followed by ``sudo install.sh`` (an upgrade). The installer
must refuse, naming the path, and nothing outside the service's directories may change
(``stat`` and content before/after; dangling targets stay absent).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest

from tests.fixtures_core import require_root
from tests.test_install import INSTALL, build_wheel
from tests.test_install_system import DEPS, Namespace, python_for_venv

NOBODY = 65534


@attrs.frozen
class Installed:
    ns: Namespace
    argv: list[str]
    uid: int
    gid: int

    @property
    def lib(self) -> Path:
        return self.ns.var_lib / "linkops"

    def install(self) -> tuple[int, str]:
        result = self.ns.run(*self.argv)
        return result.returncode, result.stdout + result.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    require_root("a private mount namespace", unshare=True)
    base = tmp_path_factory.mktemp("ns-symlinks")
    ns = Namespace(base)
    wheel = build_wheel(tmp_path_factory)
    argv = [str(INSTALL), "--no-apt", "--wheel", str(wheel), "--venv-from", str(DEPS),
            "--python", python_for_venv()]
    first = ns.run(*argv)
    assert first.returncode == 0, first.stdout + first.stderr
    uid, gid, _, _ = ns.user()
    yield Installed(ns=ns, argv=argv, uid=uid, gid=gid)


def fingerprint(path: Path) -> tuple[object, ...] | None:
    """Everything chmod, chown or a write would change; None when the path does not exist."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    content = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
    return (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, st.st_ctime_ns,
            content)


def plant_link(link: Path, target: str, owner: Installed) -> None:
    """What ``ln -sfn TARGET LINK`` run as linkops leaves behind."""
    if link.is_dir() and not link.is_symlink():
        shutil.rmtree(link)
    elif link.exists() or link.is_symlink():
        link.unlink()
    link.symlink_to(target)
    os.lchown(link, owner.uid, owner.gid)


@attrs.frozen
class Attack:
    planted: str              # path under /var/lib/linkops the attacker controls
    target: str               # where the link points, as the namespace sees it
    refused: str              # the path the installer must name


ATTACKS = {
    "key -> /etc/passwd": Attack("keys/id_ed25519", "/etc/passwd", "keys/id_ed25519"),
    "public key -> /etc/shadow": Attack("keys/id_ed25519.pub", "/etc/shadow",
                                        "keys/id_ed25519.pub"),
    "dangling known_hosts -> /etc/ld.so.preload": Attack(
        "ssh/known_hosts", "/etc/ld.so.preload", "ssh/known_hosts"),
    "keys dir -> /etc/sudoers.d": Attack("keys", "/etc/sudoers.d", "keys"),
    "ssh dir -> /etc/ssh": Attack("ssh", "/etc/ssh", "ssh"),
    "git-repo -> /etc/systemd": Attack("git-repo", "/etc/systemd", "git-repo"),
    "database -> /etc/passwd": Attack("linkops.db", "/etc/passwd", "linkops.db"),
    "dangling wal -> /etc/cron.d/linkops": Attack(
        "linkops.db-wal", "/etc/cron.d/linkops", "linkops.db-wal"),
    "dangling admin marker -> /etc/profile.d/x.sh": Attack(
        ".admin-created", "/etc/profile.d/linkops.sh", ".admin-created"),
}


def in_namespace(ns: Namespace, path: str) -> Path:
    """Where a path of the namespace's /etc (a copy) lives on the host. Every target is in
    there: a link the installer wrongly followed must not reach the real machine."""
    assert path.startswith("/etc/")
    return ns.etc / path.removeprefix("/etc/")


@pytest.fixture
def restore(installed: Installed) -> Iterator[Callable[[str], None]]:
    """Put the planted path back the way the installer left it, after the test."""
    saved: dict[str, Path | None] = {}
    keep = installed.ns.base / "saved"
    keep.mkdir(exist_ok=True)

    def save(rel: str) -> None:
        source = installed.lib / rel
        saved[rel] = None
        if source.exists() and not source.is_symlink():
            target = keep / rel.replace("/", "_")
            shutil.move(source, target)
            saved[rel] = target

    yield save
    for rel, target in saved.items():
        path = installed.lib / rel
        if path.is_symlink():
            path.unlink()
        if target is not None:
            shutil.move(target, path)


@pytest.mark.parametrize("name", list(ATTACKS))
def test_planted_link_is_refused_and_its_target_untouched(
    installed: Installed, restore: Callable[[str], None], name: str
) -> None:
    attack = ATTACKS[name]
    target = in_namespace(installed.ns, attack.target)
    watched = [target, *(target.iterdir() if target.is_dir() else ()),
               installed.ns.etc / "passwd", installed.ns.etc / "shadow"]
    before = {path: fingerprint(path) for path in watched}
    restore(attack.planted)
    plant_link(installed.lib / attack.planted, attack.target, installed)

    status, output = installed.install()

    assert status != 0, output
    refused = f"/var/lib/linkops/{attack.refused}"
    assert f"refusing {refused}: it is a symbolic link (to {attack.target})" in output, output
    assert {path: fingerprint(path) for path in watched} == before
    if before[target] is None:
        assert not target.exists() and not target.is_symlink()  # the dangling target stays
    assert (installed.lib / attack.planted).is_symlink()  # refused, not "repaired"


@pytest.mark.parametrize("rel", ["keys/id_ed25519", "keys", "ssh/known_hosts"])
def test_path_handed_to_another_user_is_refused(installed: Installed, rel: str) -> None:
    path = installed.lib / rel
    st = path.lstat()
    os.chown(path, NOBODY, NOBODY)
    try:
        status, output = installed.install()
        assert status != 0, output
        assert (f"refusing /var/lib/linkops/{rel}: it is owned by uid {NOBODY}, neither root "
                "nor the service user") in output, output
        after = path.lstat()
        assert (after.st_uid, after.st_mode) == (NOBODY, st.st_mode)  # left alone
    finally:
        os.chown(path, st.st_uid, st.st_gid)


def test_links_inside_the_log_and_repository_directories_are_never_followed(
        installed: Installed) -> None:
    """/var/log/linkops and the checkout belong to the service, which may fill them with
    anything: the installer fixes the directories themselves (above) and never walks their
    contents, so an upgrade succeeds and no planted link is followed or "repaired"."""
    log_dir = installed.ns.var_log / "linkops"
    planted = {
        log_dir / "linkops.log": "/etc/shadow",
        log_dir / "linkops.log.1": "/etc/linkops-dangling-log",
        installed.lib / "git-repo" / "links.yaml": "/etc/passwd",
        installed.lib / "git-repo" / "scripts": "/etc/sudoers.d",
    }
    targets = [in_namespace(installed.ns, t) for t in planted.values()]
    watched = [*targets, *(p for t in targets if t.is_dir() for p in t.iterdir()),
               installed.ns.etc / "passwd", installed.ns.etc / "shadow"]
    before = {path: fingerprint(path) for path in watched}
    for link, target in planted.items():
        plant_link(link, target, installed)
    try:
        status, output = installed.install()
        assert status == 0, output
        assert {path: fingerprint(path) for path in watched} == before
        assert not in_namespace(installed.ns, "/etc/linkops-dangling-log").exists()
        for link, target in planted.items():
            assert link.is_symlink() and os.readlink(link) == target, link
    finally:
        for link in planted:
            link.unlink()


def test_after_the_links_are_gone_the_upgrade_succeeds(installed: Installed) -> None:
    status, output = installed.install()
    assert status == 0, output
    key = installed.lib / "keys/id_ed25519"
    st = key.lstat()
    assert (st.st_uid, st.st_mode & 0o777) == (installed.uid, 0o600)
    assert not [p for p in installed.lib.rglob(".*.install-*")]  # no temporary file left
