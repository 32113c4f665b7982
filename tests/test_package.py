"""The wheel carries everything a deployed service needs and nothing from npm's work tree."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_contains_frontend_examples_and_migrations(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = tmp_path.glob("linkops-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "linkops/frontend/index.html",
        "linkops/frontend/login.html",
        "linkops/frontend/vendor/xterm/xterm.js",
        "linkops/frontend/vendor/xterm/addon-fit.js",
        "linkops/examples/config-repo/links.yaml",
        "linkops/examples/config-repo/scripts.yaml",
        "linkops/migrations/0001_initial.sql",
        "linkops/templates/config.ini.template",
        "linkops/py.typed",
    ):
        assert required in names, required
    assert not [n for n in names if "node_modules" in n]
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "linkops = linkops.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
