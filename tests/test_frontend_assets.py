"""The service checks at start that its frontend is complete: an error in the log and
``GET /api/health`` says ``frontend: incomplete`` (``ok`` otherwise). The expected vendored files
come from frontend/build.py's FILES, the list the build copies from."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest
import trio

from linkops import frontend_assets
from linkops.config import Settings
from linkops.logs import setup_logging
from linkops.resources import bundled_dir
from tests.fixtures_core import add_admin, base_url, start_service


def copy_frontend(tmp_path: Path) -> Path:
    source = bundled_dir("frontend")
    target = tmp_path / "frontend"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("node_modules"))
    return target


def test_the_source_checkout_is_complete() -> None:
    # The tests run after frontend/build.py (nox, or the README's setup).
    assert frontend_assets.missing_assets() == []


def test_missing_and_empty_files_are_named(tmp_path: Path) -> None:
    frontend = copy_frontend(tmp_path)
    assert frontend_assets.missing_assets(frontend) == []
    (frontend / "vendor" / "xterm" / "xterm.css").unlink()
    (frontend / "vendor" / "xterm" / "addon-fit.js").write_text("")
    (frontend / "login.html").unlink()
    assert frontend_assets.missing_assets(frontend) == [
        "login.html", "vendor/xterm/xterm.css", "vendor/xterm/addon-fit.js"]
    shutil.rmtree(frontend / "vendor")
    missing = frontend_assets.missing_assets(frontend)
    assert "vendor/xterm/xterm.js" in missing and "vendor/xterm/LICENSE" in missing


def test_expected_files_follow_the_build_list(tmp_path: Path) -> None:
    """A package added to build.py's FILES is checked without touching linkops."""
    frontend = copy_frontend(tmp_path)
    build_py = frontend / "build.py"
    text = build_py.read_text()
    assert "FILES: tuple" in text
    extra = '    ("example-pkg/dist/viewer.js", "viewer/viewer.js", None),\n'
    build_py.write_text(text.replace("\n)\nSTAMP", f"\n{extra})\nSTAMP", 1))
    assert frontend_assets.missing_assets(frontend) == ["vendor/viewer/viewer.js"]
    build_py.unlink()
    assert frontend_assets.missing_assets(frontend) == ["build.py"]


async def test_incomplete_frontend_is_logged_and_reported_by_health(
    settings: Settings, nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frontend = copy_frontend(tmp_path)
    shutil.rmtree(frontend / "vendor")
    # The service reads its frontend from the package; point it at the broken copy.
    monkeypatch.setattr(frontend_assets, "bundled_dir", lambda name: frontend)
    add_admin(settings)
    setup_logging(settings.logging)
    with trio.fail_after(30):
        handle = await start_service(nursery, settings)
        async with httpx.AsyncClient(base_url=base_url(handle), timeout=20) as http:
            health = (await http.get("/api/health")).json()
        handle.stop.set()
    assert health["frontend"] == "incomplete" and health["status"] == "ok"
    assert settings.logging.path is not None
    records = [json.loads(line) for line in settings.logging.path.read_text().splitlines()]
    (record,) = [r for r in records if r["event"] == "service.frontend_incomplete"]
    assert record["level"] == "ERROR"
    assert "vendor/xterm/xterm.js" in record["context"]["missing"]
    assert "frontend/build.py" in record["context"]["fix"]


async def test_complete_frontend_reports_ok(anon: httpx.AsyncClient,
                                            running: object) -> None:
    with trio.fail_after(20):
        health = (await anon.get("/api/health")).json()
    assert health["frontend"] == "ok"
    services = running.services  # type: ignore[attr-defined]
    assert services.frontend_missing == []
    log_path = services.settings.logging.path
    assert "service.frontend_incomplete" not in log_path.read_text()
