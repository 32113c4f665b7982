"""systemd/linkopsd.service: `systemd-analyze verify`, its security score, and the settings
the rest of the system relies on.

How verify is run, and why: ``systemd-analyze verify`` loads the unit the way PID 1 would,
which means (a) ExecStart= must name an existing executable, and (b) every unit it refers to
(network-online.target, multi-user.target, and sysinit.target, basic.target… pulled in by
default dependencies) must be loadable. We therefore build a throw-away root: the unit in
``etc/systemd/system``, an executable stub at ``opt/linkops/bin/linkops`` and a copy of this
machine's ``/usr/lib/systemd/system``, and pass ``--root``. ``--man=no`` because verify would
otherwise look up every ``Documentation=`` man page. Unknown keys or bad values do not change
verify's exit status (they are "ignoring" warnings), so the tests also require empty output.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from linkops import config, server

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "systemd" / "linkopsd.service"
ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
SYSTEM_UNITS = Path("/usr/lib/systemd/system")


def parse_unit(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) in order; repeated keys (Environment=) stay separate."""
    entries = []
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        entries.append((section, key.strip(), value.strip()))
    return entries


def values(key: str, section: str = "Service") -> list[str]:
    return [v for s, k, v in parse_unit(UNIT.read_text()) if s == section and k == key]


def one(key: str, section: str = "Service") -> str:
    found = values(key, section)
    assert len(found) == 1, f"{key}= appears {len(found)} times"
    return found[0]


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|min)?", value)
    assert match, value
    return float(match.group(1)) * (60 if match.group(2) == "min" else 1)


@pytest.fixture
def verify_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT, root / "etc/systemd/system/linkopsd.service")
    stub = root / "opt/linkops/bin/linkops"
    stub.parent.mkdir(parents=True)
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    (root / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    return root


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ANALYZE, *args], capture_output=True, text=True, timeout=60,
                          check=False)


def test_unit_passes_systemd_analyze_verify(verify_root: Path) -> None:
    result = analyze("verify", "--man=no", f"--root={verify_root}", "linkopsd.service")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr == ""


def test_verify_would_catch_mistakes(verify_root: Path) -> None:
    """The check above is meaningful: a misspelt key is reported, a missing binary fails."""
    bad = UNIT.read_text().replace("ProtectSystem=", "ProtectSytem=")
    (verify_root / "etc/systemd/system/linkopsd.service").write_text(bad)
    result = analyze("verify", "--man=no", f"--root={verify_root}", "linkopsd.service")
    assert "Unknown key" in result.stderr

    shutil.copy(UNIT, verify_root / "etc/systemd/system/linkopsd.service")
    (verify_root / "opt/linkops/bin/linkops").unlink()
    result = analyze("verify", "--man=no", f"--root={verify_root}", "linkopsd.service")
    assert result.returncode != 0
    assert "not executable" in result.stderr


def test_security_exposure_is_low(verify_root: Path) -> None:
    result = analyze("security", "--offline=yes", f"--root={verify_root}", "--threshold=30",
                     "--no-pager", "linkopsd.service")
    assert result.returncode == 0, result.stdout + result.stderr
    match = re.search(r"Overall exposure level for linkopsd\.service: (\d+\.\d+)", result.stdout)
    assert match, result.stdout
    # 0 is a sealed box, 10 an unconfined root daemon; a network client that must run git and
    # ssh cannot reach 0 (it needs the network and its own files).
    assert float(match.group(1)) <= 2.5


def test_runs_the_service_as_documented() -> None:
    assert one("Type") == "notify"
    assert one("NotifyAccess") == "main"
    assert one("ExecStart") == "/opt/linkops/bin/linkops serve --config /etc/linkops/config.ini"
    assert one("User") == "linkops"
    assert one("Group") == "linkops"
    assert one("Restart") == "on-failure"
    assert one("WantedBy", "Install") == "multi-user.target"
    env = dict(v.split("=", 1) for v in values("Environment"))
    assert env["LINKOPS_CONFIG"] == "/etc/linkops/config.ini"
    assert env["HOME"] == one("WorkingDirectory") == "/var/lib/linkops"


def test_stop_timeout_covers_the_graceful_shutdown() -> None:
    # server.run: services get SHUTDOWN_SECONDS, Hypercorn [api] graceful_timeout, then a
    # 2 s margin before the root nursery is cancelled. systemd must not SIGKILL before that
    # (docs/configuration.md says to raise TimeoutStopSec= with graceful_timeout).
    budget = server.SHUTDOWN_SECONDS + config.ApiSettings().graceful_timeout + 2
    assert seconds(one("TimeoutStopSec")) >= budget + 10
    assert one("KillMode") == "mixed"


def test_hardening_that_still_lets_it_work() -> None:
    assert one("NoNewPrivileges") == "yes"
    assert one("ProtectSystem") == "strict"
    assert one("ReadWritePaths").split() == ["/var/lib/linkops", "/var/log/linkops"]
    assert one("ProtectHome") == "yes"
    assert one("PrivateTmp") == "yes"
    assert one("CapabilityBoundingSet") == ""
    assert "AF_INET" in one("RestrictAddressFamilies").split()
    assert "@system-service" in values("SystemCallFilter")
    # Options that need a fresh /proc mount fail in an unprivileged LXC without nesting.
    for key in ("ProtectProc", "ProcSubset", "PrivateUsers", "ProtectKernelTunables"):
        assert values(key) == [], key


def test_watchdog_if_armed_is_generous() -> None:
    # The Trio loop pings every WatchdogSec/2; a minute tolerates a slow ping under load but
    # catches a blocked loop. test_systemd_service checks the pings whenever it is armed.
    for value in values("WatchdogSec"):
        assert seconds(value) >= 30
