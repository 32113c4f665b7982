"""Fixtures for the packaging tests: this checkout as a new user gets it, and what pip makes of it.

* ``clean_clone`` (session): ``git clone`` of this checkout's HEAD into a temporary directory —
  no ``frontend/vendor/``, no ``node_modules/``, no nox; what ``pip install git+…`` sees.
* ``clean_wheel`` (session): ``python -m pip wheel . -w dist`` run in that clone, with pip's
  default build isolation (the build backend comes from the index like for any user). The
  setuptools build step vendors the frontend from the npm lock on the way.
* ``installed_venv`` (session): a fresh virtualenv in which ``pip install .`` was run in the
  clone (dependencies from the index, nothing from the test environment).

The clone takes HEAD: uncommitted changes are not in it (CI runs on a fresh clone anyway).
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD_TIMEOUT = 600


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None,
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=BUILD_TIMEOUT, check=False)


def checked(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"{result.args}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="session")
def clean_clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    clone = tmp_path_factory.mktemp("clean-clone") / "linkops"
    checked(run(["git", "clone", "--quiet", "--no-hardlinks", str(REPO_ROOT), str(clone)],
                REPO_ROOT))
    assert not (clone / "frontend" / "vendor").exists()
    assert not (clone / "frontend" / "node_modules").exists()
    assert not (clone / ".nox").exists()
    return clone


@pytest.fixture(scope="session")
def clean_wheel(clean_clone: Path) -> Path:
    checked(run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", ".",
                 "-w", "dist"], clean_clone))
    (wheel,) = (clean_clone / "dist").glob("linkops-*.whl")
    return wheel


@pytest.fixture(scope="session")
def installed_venv(clean_clone: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    env_dir = tmp_path_factory.mktemp("fresh-venv") / "venv"
    venv.create(env_dir, with_pip=True)
    checked(run([str(env_dir / "bin" / "python"), "-m", "pip", "install", "--quiet", "."],
                clean_clone))
    return env_dir
