"""`linkops user add|role|unlock` (SPEC §10.2): least privilege by default, explicit admins."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from linkops import config
from tests.fixtures_core import write_config
from tests.test_config_cli import run_cli


def _role(path: str, name: str) -> str:
    db = config.load(path).database.path
    with sqlite3.connect(db) as conn:
        return str(conn.execute("SELECT role FROM users WHERE username_norm = ?",
                                (name,)).fetchone()[0])


def test_user_add_defaults_to_operator_and_admin_is_explicit(tmp_path: Path) -> None:
    path = str(write_config(tmp_path))
    added = run_cli("user", "add", "olga", "--password-stdin", "--config", path,
                    stdin="olga-password-1\n")
    assert added.returncode == 0, added.stderr
    assert "(operator)" in added.stdout and _role(path, "olga") == "operator"
    admin = run_cli("user", "add", "root-person", "--role", "admin", "--password-stdin",
                    "--config", path, stdin="admin-password-1\n")
    assert admin.returncode == 0 and _role(path, "root-person") == "admin"
    changed = run_cli("user", "role", "OLGA", "viewer", "--config", path)
    assert changed.returncode == 0, changed.stderr
    assert _role(path, "olga") == "viewer"
    bad = run_cli("user", "role", "olga", "root", "--config", path)
    assert bad.returncode == 2
    missing = run_cli("user", "role", "nobody", "viewer", "--config", path)
    assert missing.returncode == 1 and "no user" in missing.stderr
    unlocked = run_cli("user", "unlock", "olga", "--config", path)
    assert unlocked.returncode == 0 and "0 failed logins cleared" in unlocked.stdout


def test_installer_and_demo_create_their_admin_explicitly() -> None:
    root = Path(__file__).resolve().parents[1]
    install = (root / "systemd" / "install.sh").read_text(encoding="utf-8")
    # The first admin is created with --role admin (the command spans two lines), and the
    # manual hint printed on failure says so too.
    assert '"$ADMIN_NAME" --role admin --password-stdin' in install
    assert "user add $ADMIN_NAME --role admin" in install
    demo = (root / "linkops" / "demo.py").read_text(encoding="utf-8")
    assert 'add_user(c, DEMO_ADMIN, hashed, role="admin")' in demo
