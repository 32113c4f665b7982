"""Build step of the frontend: third-party code from the npm lock into ``frontend/vendor/``.

The repository holds only our own HTML, CSS and JavaScript plus ``package.json`` and
``package-lock.json``. This script installs exactly the locked versions (``npm ci``) and copies
the few browser files the app imports into ``vendor/`` (gitignored). The wheel then carries
``vendor/`` as package data of ``linkops.frontend``, so a deployed service never needs npm.

ES-module builds are copied under a ``.js`` name (xterm ships them as ``.mjs``): the package-data
globs and every static file server already know ``.js`` as ``text/javascript``, which module
scripts require. The ``sourceMappingURL`` comment is pointed at the renamed map file.

Usage::

    python frontend/build.py            # npm ci (when needed) + copy
    python frontend/build.py --check    # exit 1 unless vendor/ is complete and current

From nox (``noxfile.py``)::

    session.run("python", "frontend/build.py", external=True)

*Errors*: a missing ``npm`` or a failing ``npm ci`` ends the script with exit status 1 and one
line on stderr naming the cause.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
NODE_MODULES = HERE / "node_modules"
VENDOR = HERE / "vendor"

# What the app imports from npm packages: the one list every other part derives from (the
# packages to vendor, the build step of setup.py, the service's start-up check of its assets).
# (source under node_modules, destination under vendor, source-map rename or None)
FILES: tuple[tuple[str, str, tuple[str, str] | None], ...] = (
    ("@xterm/xterm/lib/xterm.mjs", "xterm/xterm.js", ("xterm.mjs.map", "xterm.js.map")),
    ("@xterm/xterm/lib/xterm.mjs.map", "xterm/xterm.js.map", None),
    ("@xterm/xterm/css/xterm.css", "xterm/xterm.css", None),
    ("@xterm/xterm/LICENSE", "xterm/LICENSE", None),
    (
        "@xterm/addon-fit/lib/addon-fit.mjs",
        "xterm/addon-fit.js",
        ("addon-fit.mjs.map", "addon-fit.js.map"),
    ),
    ("@xterm/addon-fit/lib/addon-fit.mjs.map", "xterm/addon-fit.js.map", None),
    # The OpenAPI viewer of GET /api/docs (classic bundle: no module loader needed).
    ("swagger-ui-dist/swagger-ui-bundle.js", "swagger-ui/swagger-ui-bundle.js", None),
    ("swagger-ui-dist/swagger-ui-bundle.js.map", "swagger-ui/swagger-ui-bundle.js.map", None),
    ("swagger-ui-dist/swagger-ui.css", "swagger-ui/swagger-ui.css", None),
    ("swagger-ui-dist/LICENSE", "swagger-ui/LICENSE", None),
    # The Recordings view's player (a classic script defining window.AsciinemaPlayer, loaded
    # on demand by js/recordings.js; its terminal emulator is WebAssembly, hence the CSP's
    # 'wasm-unsafe-eval', see docs/security.md).
    (
        "asciinema-player/dist/bundle/asciinema-player.min.js",
        "asciinema-player/asciinema-player.min.js",
        None,
    ),
    ("asciinema-player/dist/bundle/asciinema-player.css", "asciinema-player/asciinema-player.css",
     None),
    ("asciinema-player/LICENSE", "asciinema-player/LICENSE", None),
)
STAMP = VENDOR / "versions.json"


def package_name(source: str) -> str:
    """The npm package a FILES source path belongs to (``@scope/name`` or ``name``)."""
    parts = source.split("/")
    return "/".join(parts[:2]) if source.startswith("@") else parts[0]


def vendored_packages() -> tuple[str, ...]:
    """Every npm package FILES copies from, in order of first mention."""
    return tuple(dict.fromkeys(package_name(src) for src, _, _ in FILES))


def vendored_files() -> tuple[str, ...]:
    """The paths under vendor/ a complete build holds (what the service checks at start)."""
    return tuple(dst for _, dst, _ in FILES)


def missing_files(vendor: Path = VENDOR) -> list[str]:
    """The vendored files absent (or empty) under ``vendor``; empty when complete."""
    missing = []
    for dst in vendored_files():
        path = vendor / dst
        if not path.is_file() or path.stat().st_size == 0:
            missing.append(dst)
    return missing


def locked_versions() -> dict[str, str]:
    """The versions package-lock.json pins for every vendored package."""
    lock = json.loads((HERE / "package-lock.json").read_text(encoding="utf-8"))
    packages: dict[str, dict[str, str]] = lock["packages"]
    return {name: packages[f"node_modules/{name}"]["version"] for name in vendored_packages()}


def installed_versions() -> dict[str, str] | None:
    """The versions present in node_modules, or None when any is missing."""
    found: dict[str, str] = {}
    for name in locked_versions():
        manifest = NODE_MODULES / name / "package.json"
        if not manifest.is_file():
            return None
        found[name] = json.loads(manifest.read_text(encoding="utf-8"))["version"]
    return found


def npm_ci() -> None:
    """Install exactly what package-lock.json says (no scripts run: they are not needed)."""
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit(
            "frontend/build.py: npm not found on PATH; it is needed to vendor the frontend's npm "
            "packages from frontend/package-lock.json (install npm, or install a wheel built "
            "where npm is available)"
        )
    result = subprocess.run(
        [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=HERE, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"frontend/build.py: npm ci failed with exit status {result.returncode}")


def copy_vendor() -> None:
    """Copy the browser files into vendor/ and record the versions they came from."""
    for src_rel, dst_rel, map_rename in FILES:
        src = NODE_MODULES / src_rel
        dst = VENDOR / dst_rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if map_rename is None:
            shutil.copyfile(src, dst)
        else:
            old, new = map_rename
            text = src.read_text(encoding="utf-8")
            text = text.replace(f"sourceMappingURL={old}", f"sourceMappingURL={new}")
            dst.write_text(text, encoding="utf-8")
    STAMP.write_text(json.dumps(locked_versions(), indent=2) + "\n", encoding="utf-8")


def is_current() -> bool:
    """True when every vendored file exists and was copied from the locked versions."""
    if not STAMP.is_file() or missing_files():
        return False
    recorded: dict[str, str] = json.loads(STAMP.read_text(encoding="utf-8"))
    return recorded == locked_versions()


def build() -> None:
    """Make vendor/ complete and current; runs npm ci only when node_modules is stale."""
    if installed_versions() != locked_versions():
        npm_ci()
    copy_vendor()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="only check that vendor/ is current")
    args = parser.parse_args(argv)
    if args.check:
        if is_current():
            return 0
        print("frontend/vendor/ is missing or stale: run python frontend/build.py", file=sys.stderr)
        return 1
    build()
    return 0


if __name__ == "__main__":
    sys.exit(main())
