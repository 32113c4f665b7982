"""An upgrade with install.sh keeps the database, the users and the config, and the new
release's migrations run when the service starts (before it reports READY=1).

The "new release" is this checkout with a higher version and one more migration, built into
a wheel; the old one is the checkout as it is. Both are installed for real into a staging
root, and the new one is started with the unit's command line.
"""

from __future__ import annotations

import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio

from linkops import auth
from linkops.db import migrations
from tests.fixtures_core import free_port
from tests.test_install import (
    INSTALL,
    REPO,
    VENV_FROM,
    build_wheel,
    printed_password,
    staged_config,
)
from tests.test_systemd_service import NotifyListener
from tests.test_systemd_unit import one


def next_release_wheel(out: Path) -> tuple[Path, str, int]:
    """This checkout as version ``<current>.post1`` with a migration ``NNNN+1``."""
    tree = out / "src"
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                           check=True, timeout=30).stdout.splitlines()
    for name in files:
        source = REPO / name
        if source.is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, tree / name)
    init = tree / "linkops/__init__.py"
    old = init.read_text()
    current = old.split('__version__ = "')[1].split('"')[0]
    version = f"{current}.post1"
    init.write_text(old.replace(f'"{current}"', f'"{version}"'))
    number = migrations()[-1][0] + 1
    (tree / f"linkops/migrations/{number:04d}_upgrade_probe.sql").write_text(
        "CREATE TABLE upgrade_probe (note TEXT NOT NULL);\n"
        "INSERT INTO upgrade_probe (note) VALUES ('migrated at start');\n"
    )
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                    str(out / "dist"), str(tree)], check=True, capture_output=True, timeout=300)
    (wheel,) = (out / "dist").glob("linkops-*.whl")
    return wheel, version, number


def install(root: Path, wheel: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(INSTALL), "--root", str(root), "--no-apt", "--wheel", str(wheel),
         "--venv-from", str(VENV_FROM)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


async def test_upgrade_keeps_data_and_migrates_at_start(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path / "root"
    first = install(root, build_wheel(tmp_path_factory))
    password = printed_password(first.stdout)
    db_path = root / "var/lib/linkops/linkops.db"
    with sqlite3.connect(db_path) as conn:
        (old_version,) = conn.execute("PRAGMA user_version").fetchone()
    config_bytes = (root / "etc/linkops/config.ini").read_bytes()

    wheel, version, number = next_release_wheel(tmp_path / "next")
    assert number == old_version + 1
    second = install(root, wheel)
    assert f"LinkOps {version} installed" in second.stdout
    assert "Password:" not in second.stdout
    assert (root / "etc/linkops/config.ini").read_bytes() == config_bytes
    # Installing does not touch the schema: that is the service's job at start.
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (old_version,)

    config = staged_config(root)
    port = free_port()
    config.write_text(config.read_text().replace("\nport = 8000\n", f"\nport = {port}\n"))
    argv = shlex.split(one("ExecStart"))
    argv[0] = str(root / argv[0].lstrip("/"))
    argv[argv.index("--config") + 1] = str(config)
    listener = NotifyListener(tmp_path / "notify.sock")
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(root / "var/lib/linkops"),
           "NOTIFY_SOCKET": str(listener.path)}
    proc = await trio.lowlevel.open_process(argv, env=env, stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL)
    try:
        with trio.fail_after(60):
            await listener.wait_for("READY")
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                health = (await http.get("/api/health")).json()
                login = await http.post("/api/auth/login",
                                        json={"username": "admin", "password": password})
            proc.send_signal(signal.SIGTERM)
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        listener.close()
    assert health["version"] == version
    assert health["schema_version"] == number
    assert login.status_code == 200, login.text  # the old users and passwords still work
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT note FROM upgrade_probe").fetchall() == [
            ("migrated at start",)]
        (stored,) = conn.execute(
            "SELECT password_hash FROM users WHERE username = 'admin'").fetchone()
    assert auth.verify_password(password, stored)
