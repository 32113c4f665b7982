"""`linkops serve` started the way linkopsd.service starts it, with a fake systemd around it.

What is real: the program comes from ``systemd/install.sh --root`` (the wheel of this
checkout in a virtualenv), its config is the one the installer generated, and the command
line, environment and working directory are read from ``systemd/linkopsd.service``. The
process runs as the service user's uid/gid recorded by the installer (``setpriv``, with
``UMask=0077`` and no new privileges), so the modes and owners the installer set are the
ones that must let it work. ``NOTIFY_SOCKET`` points at a unix datagram socket this test
reads, the way PID 1 does; ``WATCHDOG_USEC`` is set as ``WatchdogSec=`` would set it.

What is not systemd: no mount namespace (ProtectSystem= etc. are checked by
``systemd-analyze verify`` in test_systemd_unit.py; systemd is not PID 1 here), and paths
are translated into the staging root.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio

from tests.fixtures_core import free_port
from tests.test_install import (
    INSTALL,
    VENV_FROM,
    build_wheel,
    printed_password,
    service_ids,
)
from tests.test_systemd_unit import UNIT, parse_unit

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs the service as another uid")

SYSTEM_PYTHON = Path("/usr/bin/python3")


@attrs.frozen
class Staged:
    root: Path
    config: Path
    port: int
    password: str
    uid: int
    gid: int
    python: Path


def _system_python_matches() -> bool:
    """The service user cannot reach pyenv's interpreter under /root (mode 700); the distro
    python3 can host the venv when it is the same minor version as the test environment
    (the dependencies come from there through a .pth file)."""
    if not SYSTEM_PYTHON.exists():
        return False
    out = subprocess.run([str(SYSTEM_PYTHON), "-c", "import sys; print(sys.version_info[:2])"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return out.strip() == str(sys.version_info[:2])


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Staged]:
    wheel = build_wheel(tmp_path_factory)
    # pytest's temp dirs are 0700: the service uid could not even reach its files.
    root = Path(tempfile.mkdtemp(prefix="linkops-svc-", dir="/tmp"))
    root.chmod(0o755)
    python = SYSTEM_PYTHON if _system_python_matches() else Path(sys.executable)
    result = subprocess.run(
        [str(INSTALL), "--root", str(root), "--no-apt", "--wheel", str(wheel),
         "--venv-from", str(VENV_FROM), "--python", str(python)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    uid, gid = service_ids(root)
    if python != SYSTEM_PYTHON:
        uid, gid = os.getuid(), os.getgid()
    port = free_port()
    text = (root / "etc/linkops/config.ini").read_text()
    text = text.replace("/var/lib/linkops", f"{root}/var/lib/linkops")
    text = text.replace("/var/log/linkops", f"{root}/var/log/linkops")
    text = text.replace("\nport = 8000\n", f"\nport = {port}\n")
    assert f"port = {port}" in text
    cfg = root / "etc/linkops/config.staged.ini"
    cfg.write_text(text)
    cfg.chmod(0o640)
    os.chown(cfg, 0, gid)
    (root / "run").mkdir(mode=0o755)
    yield Staged(root=root, config=cfg, port=port, password=printed_password(result.stdout),
                 uid=uid, gid=gid, python=python)
    shutil.rmtree(root, ignore_errors=True)


def unit_command(staged: Staged) -> tuple[list[str], dict[str, str], Path]:
    """ExecStart argv, Environment= and WorkingDirectory= of the unit, moved into the root."""
    entries = [(k, v) for s, k, v in parse_unit(UNIT.read_text()) if s == "Service"]

    def move(value: str) -> str:
        value = value.replace("/etc/linkops/config.ini", str(staged.config))
        for prefix in ("/opt/linkops", "/var/lib/linkops", "/var/log/linkops"):
            value = value.replace(prefix, f"{staged.root}{prefix}")
        return value

    (exec_start,) = [v for k, v in entries if k == "ExecStart"]
    argv = [move(part) for part in shlex.split(exec_start)]
    env = {
        # What systemd gives every service, then the unit's own Environment= lines.
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "USER": "linkops",
        "LOGNAME": "linkops",
        "SHELL": "/usr/sbin/nologin",
    }
    for key, value in entries:
        if key == "Environment":
            name, _, val = value.partition("=")
            env[name] = move(val)
    (workdir,) = [v for k, v in entries if k == "WorkingDirectory"]
    return argv, env, Path(move(workdir))


def service_keys_of_unit() -> set[str]:
    return {k for s, k, _v in parse_unit(UNIT.read_text()) if s == "Service"}


class NotifyListener:
    """The PID 1 side of sd_notify: a unix datagram socket, its messages in order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        raw.bind(str(path))
        path.chmod(0o777)  # like /run/systemd/notify: any service uid may send
        self.sock = trio.socket.from_stdlib_socket(raw)
        self.messages: list[dict[str, str]] = []

    async def wait_for(self, key: str, value: str = "1") -> dict[str, str]:
        for message in self.messages:
            if message.get(key) == value:
                return message
        while True:
            data = await self.sock.recv(4096)
            message = dict(line.split("=", 1) for line in data.decode().split("\n") if line)
            self.messages.append(message)
            if message.get(key) == value:
                return message

    def close(self) -> None:
        self.sock.close()


async def test_ready_then_stopping_and_exit_0_on_sigterm(staged: Staged, tmp_path: Path) -> None:
    argv, env, workdir = unit_command(staged)
    assert argv[1:] == ["serve", "--config", str(staged.config)]
    listener = NotifyListener(staged.root / "run" / "notify.sock")
    env["NOTIFY_SOCKET"] = str(listener.path)
    # The unit's watchdog, shortened to 2 s (pings every second) so the test sees several.
    armed = "WatchdogSec" in service_keys_of_unit()
    if armed:
        env["WATCHDOG_USEC"] = "2000000"
    command = [
        "setpriv", f"--reuid={staged.uid}", f"--regid={staged.gid}", "--clear-groups",
        "--no-new-privs", "--",
        "/bin/sh", "-c", 'umask 0077 && exec "$@"', "linkopsd", *argv,
    ]
    stderr_path = tmp_path / "stderr.log"
    base = f"http://127.0.0.1:{staged.port}"
    with stderr_path.open("wb") as stderr:
        proc = await trio.lowlevel.open_process(
            command, env=env, cwd=str(workdir), stdin=subprocess.DEVNULL,
            stdout=stderr, stderr=stderr,
        )
    try:
        with trio.fail_after(30):
            ready = await listener.wait_for("READY")
        assert set(ready) <= {"READY", "STATUS"}
        # READY=1 means the port is bound and the migrations ran: no retry needed.
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            with trio.fail_after(15):
                health = await client.get("/api/health")
                assert health.status_code == 200
                body = health.json()
                assert body["status"] == "ok"
                assert body["schema_version"] >= 1
                login = await client.post(
                    "/api/auth/login", json={"username": "admin", "password": staged.password}
                )
                assert login.status_code == 200, login.text
                assert login.json()["user"] == {"username": "admin", "role": "admin"}
        if armed:
            with trio.fail_after(10):
                await listener.wait_for("WATCHDOG")

        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(20):  # well inside TimeoutStopSec=30s
            await listener.wait_for("STOPPING")
            code = await proc.wait()
        assert code == 0, stderr_path.read_text()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        listener.close()

    # Files the service made belong to the service user and follow UMask=0077.
    log_file = staged.root / "var/log/linkops/linkops.log"
    st = log_file.stat()
    assert (st.st_uid, st.st_gid) == (staged.uid, staged.gid)
    assert stat.S_IMODE(st.st_mode) == 0o600
    events: list[dict[str, Any]] = [json.loads(line) for line in log_file.read_text().splitlines()]
    names = [e["event"] for e in events]
    assert "service.start" in names
    assert names[-1] == "service.stop"
