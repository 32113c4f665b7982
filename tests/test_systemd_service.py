"""`linkops serve` started the way linkopsd.service starts it, with a fake systemd around it.

What is real: the program comes from ``systemd/install.sh --root`` (the wheel of this
checkout in a virtualenv), its config is the one the installer generated, and the command
line, environment and working directory are read from ``systemd/linkopsd.service``. The
process gets what the unit's settings give it: the service user's uid/gid recorded by the
installer, no new privileges, an empty capability bounding set (``setpriv``), the unit's
``SystemCallFilter=`` as a real seccomp filter (expanded with ``systemd-analyze
syscall-filter``, loaded through libseccomp) and ``UMask=0077``. So the modes and owners the
installer set, and the syscalls the filter leaves, are the ones that must let it work.
``NOTIFY_SOCKET`` points at a unix datagram socket this test reads, the way PID 1 does;
``WATCHDOG_USEC`` is set as ``WatchdogSec=`` would set it. The service then does real work
before the SIGTERM: a Git sync over SSH (git and the OpenSSH client as subprocesses, under
the same filter) with a deploy key, an enrollment check and a long
operation on a real sshd of the sandbox, an SSE stream following that operation and a
terminal WebSocket with a live PTY session.

What is not systemd: no mount sandbox (ProtectSystem=, PrivateTmp= … are checked
statically by ``systemd-analyze verify`` and ``security`` in test_systemd_unit.py; systemd
is not PID 1 here), and paths are translated into the staging root.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import sqlite3
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
from trio_websocket import ConnectionClosed, open_websocket_url

from linkops.sandbox import Sandbox
from tests.fixtures_core import free_port, require_root
from tests.fixtures_git import GitSshd, make_repo
from tests.fixtures_operations import SseEvent, read_sse
from tests.fixtures_terminal import TermSocket
from tests.test_install import (
    INSTALL,
    VENV_FROM,
    build_wheel,
    printed_password,
    service_ids,
)
from tests.test_systemd_unit import ANALYZE, UNIT, parse_unit


@pytest.fixture(autouse=True)
def _needs_root() -> None:
    require_root("the service runs as another uid, with a bind mount in a private namespace",
                 unshare=True)

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
    link: str
    marker: str


SCRIPT = """#!/bin/bash
# Prints a line, then runs until it is stopped (the marker makes it findable with pgrep).
echo "started on $(hostname)"
sleep {marker}
echo "never reached"
"""


def with_deps(root: Path, *argv: str) -> list[str]:
    """``argv`` in a private mount namespace where the test environment (``--venv-from``)
    appears at ROOT/deps. It may live where the service uid cannot go (under /root, mode
    700, e.g. a CI checkout); the bind mount makes it reachable without copying it. Once the
    installer has run, the namespace's /etc/passwd and /etc/group also know the service user
    (as on the container; the OpenSSH client that git runs refuses an unknown uid). The
    command is exec'd, so its PID is the one signals go to."""
    mounts = [(VENV_FROM, root / "deps")]
    if (root / "ns-passwd").exists():
        mounts += [(root / "ns-passwd", Path("/etc/passwd")),
                   (root / "ns-group", Path("/etc/group"))]
    script = " && ".join(f"mount --bind {src} {dst}" for src, dst in mounts)
    return ["unshare", "--mount", "--propagation", "private", "--",
            "bash", "-c", f'{script} && exec "$@"', "ns", *argv]


def _namespace_users(root: Path) -> None:
    """/etc/passwd and /etc/group of this machine plus the staged service user's lines."""
    for name in ("passwd", "group"):
        extra = [line for line in (root / "etc" / name).read_text().splitlines(keepends=True)
                 if line.startswith("linkops:")]
        target = root / f"ns-{name}"
        target.write_text(Path("/etc", name).read_text() + "".join(extra))
        target.chmod(0o644)


def _system_python_matches() -> bool:
    """The service user cannot reach pyenv's interpreter under /root (mode 700); the distro
    python3 can host the venv when it is the same minor version as the test environment
    (the dependencies come from there through a .pth file)."""
    if not SYSTEM_PYTHON.exists():
        return False
    out = subprocess.run([str(SYSTEM_PYTHON), "-c", "import sys; print(sys.version_info[:2])"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return out.strip() == str(sys.version_info[:2])


def _config_repo(root: Path, fleet: Sandbox, marker: str) -> Path:
    """A bare Git repository with the fleet in links.yaml and one long-running script."""
    source = root / "repo-source"
    (source / "scripts").mkdir(parents=True)
    # JSON is YAML: the fleet's links mapping as the sandbox describes it.
    (source / "links.yaml").write_text(json.dumps(fleet.links_yaml_data(), indent=2))
    (source / "scripts.yaml").write_text(json.dumps({"scripts": {"longrun": {
        "name": "Long run", "description": "prints a line and sleeps until stopped",
        "path": "scripts/longrun.sh"}}}, indent=2))
    (source / "scripts/longrun.sh").write_text(SCRIPT.format(marker=marker))
    (source / "scripts/longrun.sh").chmod(0o755)
    (root / "repo").mkdir()
    return make_repo(root / "repo", source).bare


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with Sandbox(tmp_path_factory.mktemp("sdn-fleet"), hosts=1, prefix="sdn") as fleet:
        yield fleet


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory, fleet: Sandbox,
           git_sshd: GitSshd) -> Iterator[Staged]:
    wheel = build_wheel(tmp_path_factory)
    # pytest's temp dirs are 0700: the service uid could not even reach its files.
    root = Path(tempfile.mkdtemp(prefix="linkops-svc-", dir="/tmp"))
    root.chmod(0o755)
    python = SYSTEM_PYTHON if _system_python_matches() else Path(sys.executable)
    (root / "deps").mkdir(mode=0o755)
    result = subprocess.run(
        with_deps(root, str(INSTALL), "--root", str(root), "--no-apt", "--wheel", str(wheel),
                  "--venv-from", str(root / "deps"), "--python", str(python)),
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    uid, gid = service_ids(root)
    if python != SYSTEM_PYTHON:
        uid, gid = os.getuid(), os.getgid()
    _namespace_users(root)
    lib = root / "var/lib/linkops"
    # What an operator does after installing: the targets' key, their host keys, the repo.
    # The configuration repository is reached over SSH with a deploy key (git runs the
    # OpenSSH client); its host key is learnt on first contact (accept-new).
    key = lib / "keys" / fleet.key_path.name
    deploy_key = lib / "keys" / "deploy_ed25519"
    shutil.copyfile(fleet.key_path, key)
    shutil.copyfile(git_sshd.deploy_key, deploy_key)
    (lib / "ssh/known_hosts").write_text(fleet.known_hosts_text())
    for path in (key, deploy_key, lib / "ssh/known_hosts"):
        path.chmod(0o600)
        os.chown(path, uid, gid)
    marker = f"600.{secrets.randbelow(10**6):06d}"
    bare = _config_repo(root, fleet, marker)

    port = free_port()
    cp = configparser.ConfigParser(interpolation=None)
    cp.read_string((root / "etc/linkops/config.ini").read_text())
    for section in cp.sections():
        for key_name, value in cp[section].items():
            value = value.replace("/var/lib/linkops", f"{root}/var/lib/linkops")
            cp[section][key_name] = value.replace("/var/log/linkops", f"{root}/var/log/linkops")
    cp["api"]["port"] = str(port)
    cp["git"]["repository_url"] = git_sshd.url(bare)
    cp["git"]["ssh_key_path"] = str(deploy_key)
    cp["git"]["sync_interval_minutes"] = "0"  # the test syncs through the API
    cp["ssh"]["default_key"] = fleet.key_path.name
    cfg = root / "etc/linkops/config.staged.ini"
    with cfg.open("w") as fh:
        cp.write(fh)
    cfg.chmod(0o640)
    os.chown(cfg, 0, gid)
    (root / "run").mkdir(mode=0o755)
    (link,) = fleet.hosts
    yield Staged(root=root, config=cfg, port=port, password=printed_password(result.stdout),
                 uid=uid, gid=gid, python=python, link=link, marker=marker)
    shutil.rmtree(root, ignore_errors=True)


SECCOMP_EXEC = """
# Load a seccomp filter like systemd's SystemCallFilter= (libseccomp via ctypes), then exec.
# argv: ALLOWED_FILE KNOWN_FILE COMMAND...   Needs no_new_privs (setpriv --no-new-privs).
import ctypes, errno, os, sys
lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
lib.seccomp_init.restype = ctypes.c_void_p
lib.seccomp_init.argtypes = [ctypes.c_uint32]
lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
lib.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
lib.seccomp_load.argtypes = [ctypes.c_void_p]
ALLOW = 0x7FFF0000
def errno_action(code): return 0x00050000 | code
allowed = set(open(sys.argv[1]).read().split())
known = set(open(sys.argv[2]).read().split())
# systemd: listed calls run, other known calls fail with SystemCallErrorNumber= (EPERM),
# calls it does not know fail with ENOSYS (so libc falls back to older ones).
ctx = lib.seccomp_init(errno_action(errno.ENOSYS))
for name in sorted(known | allowed):
    nr = lib.seccomp_syscall_resolve_name(name.encode())
    if nr >= 0:
        action = ALLOW if name in allowed else errno_action(errno.EPERM)
        lib.seccomp_rule_add(ctx, action, nr, 0)
if lib.seccomp_load(ctx) != 0:
    sys.exit("seccomp_load failed")
os.execvp(sys.argv[3], sys.argv[3:])
"""


def syscall_names(group: str, seen: set[str] | None = None) -> set[str]:
    """A systemd syscall group expanded to names (``systemd-analyze syscall-filter``)."""
    seen = set() if seen is None else seen
    seen.add(group)
    out = subprocess.run([ANALYZE, "syscall-filter", "--no-pager", group], capture_output=True,
                         text=True, timeout=30, check=True).stdout
    names: set[str] = set()
    for line in out.splitlines()[1:]:
        item = line.strip()
        if not item or item.startswith("#"):
            continue
        if item.startswith("@"):
            if item not in seen:
                names |= syscall_names(item, seen)
        else:
            names.add(item)
    return names


def unit_syscall_filter() -> set[str]:
    """What the unit's SystemCallFilter= lines allow (allow-list, then ``~`` removals)."""
    allowed: set[str] = set()
    for value in [v for s, k, v in parse_unit(UNIT.read_text())
                  if s == "Service" and k == "SystemCallFilter"]:
        deny = value.startswith("~")
        for item in value.lstrip("~").split():
            names = syscall_names(item) if item.startswith("@") else {item}
            allowed = allowed - names if deny else allowed | names
    return allowed


def seccomp_command(root: Path) -> list[str]:
    """The prefix that puts the unit's syscall filter on a command (files under root)."""
    allowed, known = root / "seccomp.allowed", root / "seccomp.known"
    if not allowed.exists():
        allowed.write_text("\n".join(sorted(unit_syscall_filter())))
        known.write_text("\n".join(sorted(syscall_names("@known"))))
        (root / "seccomp_exec.py").write_text(SECCOMP_EXEC)
    return [str(SYSTEM_PYTHON), str(root / "seccomp_exec.py"), str(allowed), str(known)]


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
        self.raw = raw
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


def pgrep(pattern: str) -> list[int]:
    done = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True,
                          timeout=10, check=False)
    return [int(pid) for pid in done.stdout.split()]


async def test_ready_then_stopping_and_exit_0_with_terminal_and_sse_open(
    staged: Staged, tmp_path: Path
) -> None:
    """READY=1 once serving; on SIGTERM, with a terminal session and an SSE stream of a
    running operation open: STOPPING=1, the stream ends with ``operation_end`` (stopped),
    the WebSocket is closed, the remote script is killed, and the process exits 0."""
    argv, env, workdir = unit_command(staged)
    assert argv[1:] == ["serve", "--config", str(staged.config)]
    listener = NotifyListener(staged.root / "run" / "notify.sock")
    env["NOTIFY_SOCKET"] = str(listener.path)
    # The unit's watchdog, shortened to 2 s (pings every second) so the test sees several.
    armed = "WatchdogSec" in service_keys_of_unit()
    if armed:
        env["WATCHDOG_USEC"] = "2000000"
    command = with_deps(
        staged.root,
        # User=, Group=, NoNewPrivileges=yes, CapabilityBoundingSet= (empty), UMask=0077.
        "setpriv", f"--reuid={staged.uid}", f"--regid={staged.gid}", "--clear-groups",
        "--no-new-privs", "--bounding-set=-all", "--inh-caps=-all", "--",
        # SystemCallFilter=, SystemCallErrorNumber=EPERM, SystemCallArchitectures=native
        *seccomp_command(staged.root),
        "/bin/sh", "-c", 'umask 0077 && exec "$@"', "linkopsd", *argv,
    )
    stderr_path = tmp_path / "stderr.log"
    base = f"http://127.0.0.1:{staged.port}"
    with stderr_path.open("wb") as stderr:
        proc = await trio.lowlevel.open_process(
            command, env=env, cwd=str(workdir), stdin=subprocess.DEVNULL,
            stdout=stderr, stderr=stderr,
        )
    sse_events: list[SseEvent] = []
    sse_ended = trio.Event()
    ws_closed: list[ConnectionClosed] = []
    try:
        with trio.fail_after(30):
            ready = await listener.wait_for("READY")
        assert set(ready) <= {"READY", "STATUS"}
        status = dict(line.split(":\t", 1) for line in
                      Path(f"/proc/{proc.pid}/status").read_text().splitlines()
                      if ":\t" in line)
        assert status["Seccomp"].strip() == "2"  # filter mode
        assert status["NoNewPrivs"].strip() == "1"
        assert int(status["CapBnd"], 16) == 0 and int(status["CapEff"], 16) == 0
        assert status["Uid"].split()[:2] == [str(staged.uid)] * 2
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            # READY=1 means the port is bound and the migrations ran: no retry needed.
            with trio.fail_after(60):
                health = await http.get("/api/health")
                assert health.status_code == 200
                assert health.json()["status"] == "ok"
                token = await _login(http, staged.password)
                http.headers["Authorization"] = f"Bearer {token}"
                http.cookies.clear()
                op_id = await _sync_verify_and_run(http, staged.link)
            if armed:
                with trio.fail_after(10):
                    await listener.wait_for("WATCHDOG")

            async def follow_sse(task_status: trio.TaskStatus[None]) -> None:
                async with http.stream("GET", f"/api/operations/{op_id}/events") as resp:
                    assert resp.status_code == 200
                    started = False
                    async for event in read_sse(resp):
                        if event.event is None:
                            continue
                        sse_events.append(event)
                        if not started and event.event == "output" \
                                and "started on" in event.data["data"]:
                            started = True
                            task_status.started()
                sse_ended.set()

            async with trio.open_nursery() as nursery:
                with trio.fail_after(30):
                    await nursery.start(follow_sse)
                    ws_id = await _workspace(http, staged.link)
                headers = [(b"Authorization", f"Bearer {token}".encode())]
                ws_url = base.replace("http://", "ws://") + \
                    f"/api/terminal/workspaces/{ws_id}/ws"
                async with open_websocket_url(ws_url, extra_headers=headers) as ws:
                    sock = TermSocket(ws)
                    with trio.fail_after(30):
                        await sock.until_status("A", "connected")
                        await sock.stdin("A", "echo $((6*7))-A\r")
                        await sock.until_output("A", "42-A")
                    assert pgrep(f"sleep {staged.marker}"), "the script is not running"

                    proc.send_signal(signal.SIGTERM)
                    with trio.fail_after(20):  # well inside TimeoutStopSec=30s
                        await listener.wait_for("STOPPING")
                        try:
                            while True:
                                await sock.pump_one()
                        except ConnectionClosed as exc:
                            ws_closed.append(exc)
                        await sse_ended.wait()
                        code = await proc.wait()
        assert code == 0, stderr_path.read_text()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        listener.close()

    # Stream: ended by the server after the operation's last event, which says stopped.
    assert ws_closed, "the terminal socket was not closed"
    assert sse_events[-1].event == "operation_end", [e.event for e in sse_events]
    assert sse_events[-1].data["status"] == "stopped"
    # The remote script was really killed, not abandoned, and the outcome is on disk.
    with trio.move_on_after(5):  # the kill was sent before exit; let the target reap it
        while pgrep(f"sleep {staged.marker}"):
            await trio.sleep(0.1)
    assert pgrep(f"sleep {staged.marker}") == []
    with sqlite3.connect(staged.root / "var/lib/linkops/linkops.db") as conn:
        (status,) = conn.execute("SELECT status FROM operations WHERE id = ?",
                                 (op_id,)).fetchone()
    assert status == "stopped"

    # Files the service made belong to the service user and follow UMask=0077.
    log_file = staged.root / "var/log/linkops/linkops.log"
    st = log_file.stat()
    assert (st.st_uid, st.st_gid) == (staged.uid, staged.gid)
    assert stat.S_IMODE(st.st_mode) == 0o600
    events: list[dict[str, Any]] = [json.loads(line) for line in log_file.read_text().splitlines()]
    names = [e["event"] for e in events]
    assert "service.start" in names
    assert names[-1] == "service.stop"


async def _login(http: httpx.AsyncClient, password: str) -> str:
    login = await http.post("/api/auth/login", json={"username": "admin", "password": password})
    assert login.status_code == 200, login.text
    assert login.json()["user"] == {"username": "admin", "role": "admin"}
    return str(login.json()["token"])


async def _sync_verify_and_run(http: httpx.AsyncClient, link: str) -> str:
    sync = await http.post("/api/git/sync")
    assert sync.status_code == 200 and sync.json()["success"], sync.text
    verify = await http.post(f"/api/links/{link}/verify")
    assert verify.status_code == 200 and verify.json()["enrolled"], verify.text
    run = await http.post("/api/operations/run", json={"scripts": ["longrun"],
                                                       "targets": [link]})
    assert run.status_code == 202, run.text
    return str(run.json()["operation_id"])


async def _workspace(http: httpx.AsyncClient, link: str) -> str:
    created = await http.post("/api/terminal/workspaces", json={"layout": "single"})
    assert created.status_code == 201, created.text
    ws_id = str(created.json()["workspace_id"])
    panes = await http.put(f"/api/terminal/workspaces/{ws_id}/panes",
                           json={"panes": [{"pane": "A", "target": link}]})
    assert panes.status_code == 200, panes.text
    connected = await http.post(f"/api/terminal/workspaces/{ws_id}/connect-all")
    assert connected.status_code == 200, connected.text
    return ws_id


async def test_bad_config_exits_1_without_ready(staged: Staged, tmp_path: Path) -> None:
    """A config error ends `linkops serve` with status 1 and one line, before READY=1:
    systemd marks the start failed (Restart=on-failure, then the start limit) instead of
    believing a half-started service."""
    argv, env, workdir = unit_command(staged)
    broken = staged.root / "etc/linkops/config.broken.ini"
    text = staged.config.read_text()
    broken.write_text(re.sub(r"^jwt_secret = .*$", "jwt_secret = short", text,
                             flags=re.MULTILINE))
    broken.chmod(0o640)
    os.chown(broken, 0, staged.gid)
    argv = [str(broken) if part == str(staged.config) else part for part in argv]
    listener = NotifyListener(staged.root / "run" / "notify-broken.sock")
    env["NOTIFY_SOCKET"] = str(listener.path)
    try:
        with trio.fail_after(30):
            done = await trio.run_process(
                with_deps(staged.root, "setpriv", f"--reuid={staged.uid}",
                          f"--regid={staged.gid}", "--clear-groups", "--", *argv),
                env=env, cwd=str(workdir), capture_stdout=True, capture_stderr=True,
                check=False,
            )
        assert done.returncode == 1
        lines = done.stderr.decode().strip().splitlines()
        assert len(lines) == 1, lines
        assert "[api] jwt_secret" in lines[0]
        # Nothing was announced to systemd.
        with pytest.raises(BlockingIOError):
            listener.raw.recv(4096, socket.MSG_DONTWAIT)
    finally:
        listener.close()


async def test_the_syscall_filter_is_real(staged: Staged) -> None:
    """The emulated SystemCallFilter= refuses what the unit takes away (EPERM) and lets the
    rest run: niceness is @resources, chown is @privileged; reading files is allowed."""
    probe = (
        "import os, sys\n"
        "def refused(fn):\n"
        "    try:\n"
        "        fn()\n"
        "    except PermissionError:\n"
        "        return True\n"
        "    return False\n"
        "path = sys.argv[1]\n"
        "print(refused(lambda: os.nice(1)), refused(lambda: os.chown(path, -1, -1)),\n"
        "      open('/etc/hostname').read() != '')\n"
    )
    mine = staged.root / "run" / "probe-file"
    mine.write_text("x")
    os.chown(mine, staged.uid, staged.gid)
    base = ["setpriv", f"--reuid={staged.uid}", f"--regid={staged.gid}", "--clear-groups",
            "--no-new-privs", "--"]
    with trio.fail_after(30):
        plain = await trio.run_process([*base, str(SYSTEM_PYTHON), "-c", probe, str(mine)],
                                       capture_stdout=True)
        filtered = await trio.run_process(
            [*base, *seccomp_command(staged.root), str(SYSTEM_PYTHON), "-c", probe, str(mine)],
            capture_stdout=True)
    assert plain.stdout.decode().split() == ["False", "False", "True"]
    assert filtered.stdout.decode().split() == ["True", "True", "True"]
