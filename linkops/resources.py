"""Directories shipped with the package: the frontend and the example config repository.

Installed, they are the packages ``linkops.frontend`` and ``linkops.examples`` (setup.py maps
the top-level ``frontend/`` and ``examples/`` there); in a source checkout they are read in
place.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_SOURCE_ROOT = Path(__file__).resolve().parents[1]


def bundled_dir(name: str) -> Path:
    """``frontend`` or ``examples``: the installed copy, else the source checkout's."""
    spec = importlib.util.find_spec(f"linkops.{name}")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return _SOURCE_ROOT / name
