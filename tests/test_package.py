"""``pip`` alone, from a clean clone, gives the whole product: the wheel carries the frontend's
vendored files (built from the npm lock by setup.py's build step), the sdist carries the lock,
and without npm the build stops with one line saying why."""

from __future__ import annotations

import importlib.util
import os
import sys
import tarfile
import zipfile
from pathlib import Path
from types import ModuleType

from tests.fixtures_package import REPO_ROOT, checked, run


def frontend_build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("frontend_build",
                                                  REPO_ROOT / "frontend" / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def wheel_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())


def assert_complete_wheel(wheel: Path) -> None:
    names = wheel_names(wheel)
    vendored = frontend_build().vendored_files()
    assert "xterm/xterm.js" in vendored and "xterm/xterm.css" in vendored
    for dst in vendored:
        assert f"linkops/frontend/vendor/{dst}" in names, dst
    with zipfile.ZipFile(wheel) as zf:
        js = zf.read("linkops/frontend/vendor/xterm/xterm.js")
    assert len(js) > 100_000 and b"sourceMappingURL=xterm.js.map" in js
    assert not [n for n in names if "node_modules" in n]


def test_pip_wheel_from_a_clean_clone_carries_the_vendored_frontend(clean_wheel: Path) -> None:
    names = wheel_names(clean_wheel)
    assert_complete_wheel(clean_wheel)
    for required in (
        "linkops/frontend/index.html",
        "linkops/frontend/login.html",
        "linkops/frontend/build.py",
        "linkops/examples/config-repo/links.yaml",
        "linkops/examples/config-repo/scripts.yaml",
        "linkops/migrations/0001_initial.sql",
        "linkops/templates/config.ini.template",
        "linkops/py.typed",
    ):
        assert required in names, required
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "linkops = linkops.cli:main" in zipfile.ZipFile(clean_wheel).read(entry_points).decode()


def test_sdist_carries_the_lock_and_its_wheel_the_vendored_frontend(
    clean_clone: Path, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    checked(run(["git", "clone", "--quiet", str(clean_clone), str(src)], tmp_path))
    checked(run([sys.executable, "-m", "build", "--sdist", "--outdir", str(tmp_path / "sdist"),
                 str(src)], tmp_path))
    (sdist,) = (tmp_path / "sdist").glob("linkops-*.tar.gz")
    with tarfile.open(sdist) as tf:
        members = {m.name.split("/", 1)[1] for m in tf.getmembers() if "/" in m.name}
    for required in ("frontend/package.json", "frontend/package-lock.json", "frontend/build.py",
                     "setup.py", "systemd/install.sh"):
        assert required in members, required
    assert not [m for m in members if m.startswith(("frontend/vendor", "frontend/node_modules"))]
    # pip unpacks the sdist and builds the wheel from it: npm ci from the lock on the way.
    checked(run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", str(sdist),
                 "-w", str(tmp_path / "wheel")], tmp_path))
    (wheel,) = (tmp_path / "wheel").glob("linkops-*.whl")
    assert_complete_wheel(wheel)


def test_without_npm_the_build_stops_with_one_clear_line(
    clean_clone: Path, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    checked(run(["git", "clone", "--quiet", str(clean_clone), str(src)], tmp_path))
    empty_path = tmp_path / "bin"
    empty_path.mkdir()  # nothing on PATH: no npm (pip itself is run by absolute path)
    result = run([sys.executable, "-m", "pip", "wheel", "--no-deps", ".", "-w", "dist"], src,
                 env={**os.environ, "PATH": str(empty_path)})
    assert result.returncode != 0
    errors = [line.strip() for line in (result.stdout + result.stderr).splitlines()
              if "npm not found" in line]
    assert errors == ["error: frontend/build.py: npm not found on PATH; it is needed to vendor "
                      "the frontend's npm packages from frontend/package-lock.json (install "
                      "npm, or install a wheel built where npm is available)"]
    assert not list(src.glob("dist/*.whl"))
