"""linkops.install_guard on its own: what install.sh's root-run steps do with hostile paths in
a directory the service user can write (no namespace needed; the installer-level attacks are
in test_install_symlinks.py)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from linkops.install_guard import Guard, Refused, main
from tests.fixtures_core import require_root

NOBODY = 65534


@pytest.fixture
def anchor(tmp_path: Path) -> Path:
    root = tmp_path / "var-lib"
    root.mkdir(mode=0o755)
    (root / "linkops").mkdir(mode=0o750)
    return root


def test_a_fifo_in_place_of_a_file_is_refused_without_hanging(anchor: Path) -> None:
    os.mkfifo(anchor / "linkops" / "known_hosts")
    result = subprocess.run([sys.executable, "-m", "linkops.install_guard", str(anchor),
                             "linkops/known_hosts", "create", "--mode", "600"],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (f"[linkops-install] error: refusing {anchor}/linkops/"
                                     "known_hosts: not a regular file")


def test_a_link_on_the_way_is_refused(anchor: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "id_ed25519").write_text("root's file\n")
    (anchor / "linkops" / "keys").symlink_to(outside)
    with pytest.raises(Refused, match=r"linkops/keys: it is a symbolic link"):
        Guard(anchor, set()).own_file("linkops/keys/id_ed25519", 0o600, None)
    assert stat.S_IMODE((outside / "id_ed25519").stat().st_mode) == 0o644


def test_install_replaces_a_planted_link_instead_of_writing_through_it(
    anchor: Path, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    source = tmp_path / "new_key"
    source.write_text("KEY\n")
    # install refuses a link at the destination (a race that plants one after the check is
    # harmless: rename(2) replaces the link itself).
    (anchor / "linkops" / "key").symlink_to(victim)
    with pytest.raises(Refused, match="symbolic link"):
        Guard(anchor, set()).install("linkops/key", source, 0o600, None)
    (anchor / "linkops" / "key").unlink()
    Guard(anchor, set()).install("linkops/key", source, 0o600, None)
    assert (anchor / "linkops" / "key").read_text() == "KEY\n"
    assert stat.S_IMODE((anchor / "linkops" / "key").stat().st_mode) == 0o600
    assert victim.read_text() == "keep me\n"
    assert [p.name for p in (anchor / "linkops").iterdir()] == ["key"]


def test_bad_relative_paths_and_an_unsafe_anchor_are_refused(anchor: Path) -> None:
    guard = Guard(anchor, set())
    for rel in ("../etc/passwd", "linkops/../../x", "/etc/passwd", ""):
        with pytest.raises(Refused):
            guard.state(rel)
    anchor.chmod(0o777)
    with pytest.raises(Refused, match="not be writable by group or others"):
        guard.state("linkops")


def test_a_foreign_owner_is_refused_and_left_alone(anchor: Path) -> None:
    require_root("chown to another user")
    path = anchor / "linkops" / "linkops.db"
    path.write_text("")
    os.chown(path, NOBODY, NOBODY)
    assert main([str(anchor), "linkops/linkops.db", "file", "--mode", "600",
                 "--owner", "0:0"]) == 1
    st = path.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (NOBODY, 0o644)
    assert main([str(anchor), "linkops/linkops.db", "file", "--mode", "600", "--owner", "0:0",
                 "--allow", str(NOBODY)]) == 0
    assert path.stat().st_uid == 0


def test_state_and_read(anchor: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (anchor / "linkops" / "id.pub").write_text("ssh-ed25519 AAAA linkops\n")
    assert main([str(anchor), "linkops/id.pub", "read"]) == 0
    assert main([str(anchor), "linkops/absent", "state"]) == 0
    assert main([str(anchor), "linkops", "state"]) == 0
    assert capsys.readouterr().out == "ssh-ed25519 AAAA linkops\nabsent\ndir\n"
