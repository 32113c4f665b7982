"""Are the frontend's files all there? (the start-up check and ``GET /api/health``'s ``frontend``).

A wheel built without the vendoring step used to serve a UI without its terminal emulator:
``/vendor/xterm/xterm.css`` was a JSON 404 and terminals could not work, silently. The files
expected under ``vendor/`` are not listed here: they come from ``frontend/build.py``'s ``FILES``
(shipped in the wheel as ``linkops/frontend/build.py``), the same list the build copies from,
so a package added to the frontend is checked without touching this module.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from types import ModuleType

from linkops.resources import bundled_dir

# Our own pages: without them there is no UI at all.
OWN_FILES = ("index.html", "login.html")


@functools.cache
def _build_module(build_py: Path) -> ModuleType | None:
    spec = importlib.util.spec_from_file_location("linkops_frontend_build", build_py)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def missing_assets(frontend_dir: Path | None = None) -> list[str]:
    """Paths under the frontend directory that are missing or empty; ``[]`` when complete."""
    root = frontend_dir if frontend_dir is not None else bundled_dir("frontend")
    missing = [name for name in OWN_FILES if not _non_empty(root / name)]
    build_py = root / "build.py"
    module = _build_module(build_py) if build_py.is_file() else None
    if module is None:
        # Without the list nothing can vouch for vendor/: report it rather than guess.
        return [*missing, "build.py"]
    vendored: tuple[str, ...] = module.vendored_files()
    missing.extend(f"vendor/{dst}" for dst in vendored if not _non_empty(root / "vendor" / dst))
    return missing


def _non_empty(path: Path) -> bool:
    try:
        return path.is_file() and path.stat().st_size > 0
    except OSError:
        return False
