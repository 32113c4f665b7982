"""What pyproject.toml cannot express.

* Package discovery: ``frontend/`` and ``examples/`` ship as ``linkops.frontend`` and
  ``linkops.examples`` (see linkops/resources.py).
* A build step: every wheel carries ``frontend/vendor/`` (xterm.js and its addons), which is not
  in Git. ``build_py`` runs ``frontend/build.py`` (``npm ci --ignore-scripts`` from the lock,
  then a copy into vendor/) whenever vendor/ is missing or stale, so ``pip install .``, ``pip
  wheel .``, ``pip install git+…`` and a wheel built from the sdist all get the whole product.
  Without npm the build stops with one line saying so. The sdist carries the lock and the
  script, never vendor/ or node_modules/ (MANIFEST.in).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py
from setuptools.errors import ExecError

FRONTEND_BUILD = Path(__file__).resolve().parent / "frontend" / "build.py"


def _frontend_build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("linkops_frontend_build", FRONTEND_BUILD)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildPyWithFrontend(build_py):
    """``build_py`` that first makes frontend/vendor/ complete and current."""

    def run(self) -> None:
        frontend = _frontend_build()
        if not frontend.is_current():
            self.announce("frontend/vendor/ is missing or stale: running frontend/build.py", 2)
            try:
                frontend.build()
            except SystemExit as exc:  # build.py's one-line errors (npm missing, npm ci failed)
                raise ExecError(str(exc)) from None
        # Package data is collected lazily (build_py.data_files): after vendor/ exists.
        super().run()


setup(
    packages=[
        *find_packages(include=["linkops", "linkops.*"]),
        "linkops.frontend",
        "linkops.examples",
    ],
    package_dir={"linkops.frontend": "frontend", "linkops.examples": "examples"},
    cmdclass={"build_py": BuildPyWithFrontend},
)
