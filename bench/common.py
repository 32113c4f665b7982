"""Shared machinery of the end-to-end benchmarks: a fleet, the server as a subprocess, timing.

* :func:`quick_mode` — ``--quick`` on the command line, ``LINKOPS_BENCH_QUICK=1`` or ``CI=true``
  (CI-like smoke runs): smaller sizes, fewer repeats.
* :func:`fleet_links` — ``n`` links spread round-robin over a :class:`~linkops.sandbox.Sandbox`
  fleet (links are (host, port) pairs with their own ids, so 20 sshd can serve 500 links).
* :class:`ServerProcess` — ``python -m linkops serve --config …`` in its own session, with an
  admin user, a bearer token, and psutil on its PID (CPU seconds, RSS, peak RSS). The DB is
  seeded *after* the start, so the health monitor's first round finds nothing to check and
  never competes with a measurement.
* :class:`Table` — the rows every bench prints: metric, LinkOps, baseline, ratio, goal.

*Resource handling*: every process started here is ended by its PID (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil  # type: ignore[import-untyped]

from linkops import auth, auth_tokens
from linkops.db import Database
from linkops.models import Enrollment, Link, SshOptions
from linkops.sandbox import KEY_NAME, Sandbox
from linkops.ssh.machines import insert_links_sync
from linkops.timeutil import now_iso

REPO = Path(__file__).resolve().parent.parent
ADMIN = "bench"
ADMIN_PASSWORD = "bench-password-not-secret"


def quick_mode(argv: list[str] | None = None) -> bool:
    """Smaller sizes and fewer repeats: ``--quick``, ``LINKOPS_BENCH_QUICK=1`` or ``CI=true``."""
    args = sys.argv[1:] if argv is None else argv
    if "--full" in args:
        return False
    if "--quick" in args:
        return True
    flag = os.environ.get("LINKOPS_BENCH_QUICK", "").lower()
    if flag:
        return flag in ("1", "true", "yes")
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def percentile(values: Iterable[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- fleet and links ------------------------------------------------------------------------


def fleet_links(fleet: Sandbox, n: int, prefix: str = "bench") -> list[Link]:
    """``n`` links over the fleet's hosts, round-robin (ids ``prefix-0001``…)."""
    hosts = list(fleet.hosts.values())
    out = []
    for i in range(n):
        h = hosts[i % len(hosts)]
        out.append(Link(
            id=f"{prefix}-{i + 1:04d}", type="VPS", host=h.address, port=h.port,
            user=fleet.user, provider="sandbox",
            enrollment=Enrollment(clientId=h.client_id, clientIdPath=h.client_id_path),
            ssh=SshOptions(keyRef=KEY_NAME)))
    return out


def client_files(fleet: Sandbox, directory: Path) -> tuple[Path, Path]:
    """A 0600 copy of the fleet key and a known_hosts file: what every client uses."""
    directory.mkdir(parents=True, exist_ok=True)
    keys = directory / "keys"
    keys.mkdir(mode=0o700, exist_ok=True)
    key = keys / KEY_NAME
    shutil.copyfile(fleet.key_path, key)
    key.chmod(0o600)
    known_hosts = directory / "known_hosts"
    known_hosts.write_text(fleet.known_hosts_text())
    return key, known_hosts


def check_lean_shell(fleet: Sandbox, key: Path, known_hosts: Path) -> float:
    """Seconds one ``ssh host true`` takes, after checking the target shell skips ~/.bashrc.

    *Errors*: AssertionError when the remote HOME is the operator's (the pyenv-heavy root
    ``~/.bashrc`` would swamp every figure).
    """
    host = next(iter(fleet.hosts.values()))
    argv = [*ssh_argv(key, known_hosts, host.port, fleet.user, host.address), "echo $HOME"]
    t0 = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    elapsed = time.perf_counter() - t0
    home = done.stdout.strip()
    assert home.startswith(str(fleet.root)), f"sandbox shell HOME is {home!r}"
    return elapsed


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine spent busy so far, from /proc/stat: user
    (guest time is inside it), nice, system, interrupts; not idle, I/O wait or steal."""
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + getattr(t, "irq", 0.0)
                 + getattr(t, "softirq", 0.0))


def fleet_cpu_seconds(fleet: Sandbox) -> float:
    """CPU seconds the fleet's sshd have used, with every session and command they ran.

    On loopback the "remote" side shares our cores: this tells what an operation costs the
    targets (sshd sessions, shells, the commands) apart from what it costs the server.
    """
    total = 0.0
    for host in fleet.hosts.values():
        if host.pid is None:
            continue
        try:
            listener = psutil.Process(host.pid)
            t = listener.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
            for child in listener.children(recursive=True):
                try:
                    c = child.cpu_times()  # its own and its reaped children's
                    total += c.user + c.system + c.children_user + c.children_system
                except psutil.NoSuchProcess:
                    pass
        except psutil.NoSuchProcess:
            pass
    return total


def settle_fleet(fleet: Sandbox, timeout: float = 15.0) -> None:
    """Wait until no sshd of the fleet has a session left (closed ones exit asynchronously).

    A session that ends *during* the next measurement would move its CPU into the listener's
    reaped-children total and be counted against the wrong contender.
    """
    deadline = time.monotonic() + timeout
    pids = [h.pid for h in fleet.hosts.values() if h.pid is not None]
    while time.monotonic() < deadline:
        try:
            if not any(psutil.Process(pid).children() for pid in pids):
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.05)


def ssh_argv(key: Path, known_hosts: Path, port: int, user: str, host: str) -> list[str]:
    """OpenSSH client argv: no user config, BatchMode, the fleet key, our known_hosts.

    The key exchange is curve25519-sha256, what paramiko negotiates with this sshd.
    OpenSSH's default (sntrup761x25519) costs ~70 ms of client CPU per connection here: with
    it, OpenSSH would be a much weaker baseline than it can be.
    """
    return ["ssh", "-F", "/dev/null", "-o", "KexAlgorithms=curve25519-sha256",
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
            "-i", str(key), "-o", f"UserKnownHostsFile={known_hosts}",
            "-o", "StrictHostKeyChecking=yes", "-o", "LogLevel=ERROR", "-p", str(port),
            f"{user}@{host}"]


def run_baseline(mode: str, job: dict[str, Any]) -> dict[str, Any]:
    """``python -m bench.baselines MODE -`` with ``job`` as JSON on stdin; its JSON result.

    *Errors*: RuntimeError with the baseline's stderr when it fails.
    """
    done = subprocess.run([sys.executable, "-m", "bench.baselines", mode, "-"],
                          input=json.dumps(job), capture_output=True, text=True, timeout=900,
                          check=False, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
    if done.returncode != 0:
        raise RuntimeError(f"{mode} baseline failed: {done.stderr[-1500:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# -- the server -------------------------------------------------------------------------------


def _ini(sections: dict[str, dict[str, Any]]) -> str:
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {v}" for k, v in values.items())
        lines.append("")
    return "\n".join(lines)


class ServerProcess:
    """The real service in a subprocess (see the module docstring).

    ``overrides`` adds or replaces config keys per section.
    """

    def __init__(self, root: Path, fleet: Sandbox,
                 overrides: dict[str, dict[str, Any]] | None = None) -> None:
        self.root = root
        self.fleet = fleet
        self.overrides = overrides or {}
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.db_path = root / "linkops.db"
        self.popen: subprocess.Popen[bytes] | None = None
        self.proc: psutil.Process | None = None
        self.pyspy: subprocess.Popen[bytes] | None = None
        self.token = ""
        # LINKOPS_BENCH_PROFILE=DIR: run the server under cProfile (bench/profile_server.py),
        # one .prof file per server in DIR, written at its graceful exit.
        profile_dir = os.environ.get("LINKOPS_BENCH_PROFILE")
        self.launcher = ["-m", "linkops"]
        if profile_dir:
            out = Path(profile_dir) / f"{root.name}.prof"
            self.launcher = ["-m", "bench.profile_server", str(out)]

    def _config(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        key, known_hosts = client_files(self.fleet, self.root / "ssh")
        for sub in ("git-repo", "log"):
            (self.root / sub).mkdir(exist_ok=True)
        sections: dict[str, dict[str, Any]] = {
            "api": {"host": "127.0.0.1", "port": self.port,
                    "jwt_secret": secrets.token_urlsafe(48)},
            "database": {"path": self.db_path},
            "git": {"local_path": self.root / "git-repo", "sync_interval_minutes": 0},
            "ssh": {"keys_directory": key.parent, "known_hosts_path": known_hosts,
                    "default_key": KEY_NAME, "connection_timeout": 30, "max_retries": 2},
            # Fan-out to 100+ targets measures the run itself, not the confirmation step.
            "operations": {"max_concurrency": 100, "script_timeout": 600,
                           "confirm_over": 100000},
            "health": {"check_interval_minutes": 100000},
            "logging": {"path": self.root / "log" / "linkops.log", "level": "WARNING"},
        }
        for name, values in self.overrides.items():
            sections.setdefault(name, {}).update(values)
        path = self.root / "config.ini"
        path.write_text(_ini(sections))
        return path

    def start(self) -> ServerProcess:
        config = self._config()
        from linkops import config as config_module
        settings = config_module.load(config)
        db = Database(settings.database.path)
        try:
            db.write_sync(lambda c: auth.add_user(c, ADMIN, ADMIN_PASSWORD, role="admin"))
            # An API token, the way scripts and CI talk to LinkOps (docs/api.md): no login,
            # no rate limit, no scrypt in the measurements.
            _, self.token = db.write_sync(lambda c: auth_tokens.create_token(
                c, username=ADMIN, creator_role="admin", name="bench", role="admin", days=1,
                created_by="bench"))
        finally:
            db.close()
        env = dict(os.environ, PYTHONPATH=str(REPO))
        with (self.root / "server.out").open("ab") as out:
            self.popen = subprocess.Popen(
                [sys.executable, *self.launcher, "serve", "--config", str(config)],
                cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True)
        self.proc = psutil.Process(self.popen.pid)
        self._start_pyspy()
        deadline = time.monotonic() + 60
        with httpx.Client(base_url=self.base_url, timeout=10) as http:
            while True:
                if self.popen.poll() is not None:
                    raise RuntimeError("server exited at start: "
                                       + (self.root / "server.out").read_text()[-2000:])
                try:
                    r = http.get("/api/auth/me",
                                 headers={"Authorization": f"Bearer {self.token}"})
                    if r.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("server did not answer within 60 s")
                time.sleep(0.1)
        return self

    def client(self, timeout: float = 600) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=timeout,
                            headers={"Authorization": f"Bearer {self.token}"})

    def seed(self, links: Iterable[Link], scripts: dict[str, str] | None = None) -> None:
        """``machines`` rows (enrolled) and ``scripts`` rows, written beside the server."""
        links = list(links)
        db = Database(self.db_path)
        try:
            db.write_sync(lambda c: insert_links_sync(c, links))
            now = now_iso()
            db.write_sync(lambda c: c.executemany(
                "UPDATE machines SET enrolled = 1, enrollment_verified_at = ? WHERE id = ?",
                [(now, link.id) for link in links]))
            rows = [(sid, sid, "benchmark", f"scripts/{sid}.sh", "[]",
                     hashlib.sha256(content.encode()).hexdigest(), content, now_iso())
                    for sid, content in (scripts or {}).items()]
            db.write_sync(lambda c: c.executemany(
                "INSERT OR REPLACE INTO scripts (id, name, description, path, flags, sha256, "
                "content, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows))
        finally:
            db.close()

    # -- measurements on the server process --------------------------------------------------

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        t = self.proc.cpu_times()
        return float(t.user + t.system)

    def thread_cpu_seconds(self) -> dict[int, float]:
        """CPU seconds per thread of the server (``{thread id: seconds}``; the main thread's
        id is the process id). Linux counts them in clock ticks (10 ms)."""
        assert self.proc is not None
        return {t.id: t.user_time + t.system_time for t in self.proc.threads()}

    def rss(self) -> int:
        assert self.proc is not None
        return int(self.proc.memory_info().rss)

    def reset_peak_rss(self) -> None:
        """Start a new peak (``VmHWM``) window: Linux's ``clear_refs`` value 5."""
        assert self.popen is not None
        try:
            Path(f"/proc/{self.popen.pid}/clear_refs").write_text("5")
        except OSError:
            pass

    def peak_rss(self) -> int:
        assert self.popen is not None
        for line in Path(f"/proc/{self.popen.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return self.rss()

    def _start_pyspy(self) -> None:
        """LINKOPS_BENCH_PYSPY=DIR: sample every thread of the server with py-spy (CPU only).

        Unlike cProfile this sees paramiko's reader threads and the pumps, and costs the server
        nothing (py-spy reads its memory from outside). One ``*.txt`` (collapsed stacks, for
        flamegraph tools or ``grep``) per server in DIR, written when the server stops.
        """
        out_dir = os.environ.get("LINKOPS_BENCH_PYSPY")
        if not out_dir or self.popen is None:
            return
        out = Path(out_dir) / f"{self.root.name}.txt"
        pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self.pyspy = subprocess.Popen(
            [pyspy, "record", "--pid", str(self.popen.pid), "--format", "raw",
             "--threads", "--rate", "250", "--output", str(out)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        if self.pyspy is not None:
            self.pyspy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            self.pyspy.wait(timeout=30)
        os.kill(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=5)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- operations over HTTP + SSE ---------------------------------------------------------------


def sse_events(response: httpx.Response) -> Iterator[tuple[str, bytes]]:
    """``(event, data)`` pairs of an SSE response (comments and ids skipped).

    Parses bytes, not text lines: the client must never be what limits a 640 MB stream.
    """
    buf = bytearray()
    scanned = 0  # bytes of buf already searched: a 256 KiB event arrives in many reads
    for chunk in response.iter_raw(1 << 16):
        buf += chunk
        while (end := buf.find(b"\n\n", max(0, scanned - 1))) >= 0:
            block = bytes(buf[:end])
            del buf[:end + 2]
            scanned = 0
            kind = "message"
            data: list[bytes] = []
            for line in block.split(b"\n"):
                if line.startswith(b"event:"):
                    kind = line[6:].strip().decode()
                elif line.startswith(b"data:"):
                    data.append(line[5:].removeprefix(b" "))
            if data:
                yield kind, b"\n".join(data)
        scanned = len(buf)


def stdout_chars(payload: bytes) -> int:
    """Characters of stdout text in one ``output`` event's JSON (0 for stderr and for the
    replay notice's ``truncated`` event)."""
    event = json.loads(payload)
    if event.get("stream") != "stdout" or event.get("truncated"):
        return 0
    return len(str(event.get("data", "")))


def run_operation(http: httpx.Client, body: dict[str, Any],
                  on_output: Callable[[bytes], None] | None = None
                  ) -> tuple[float, dict[str, Any]]:
    """POST the operation, follow its SSE stream to ``operation_end``.

    ``on_output`` gets the raw JSON of every ``output`` event (decode it, or count it with
    :func:`stdout_chars`). Returns (seconds from the POST to ``operation_end`` on the
    stream, its data).
    """
    t0 = time.perf_counter()
    r = http.post("/api/operations/run", json=body)
    if r.status_code != 202:
        raise RuntimeError(f"run refused: {r.status_code} {r.text[:500]}")
    op_id = r.json()["operation_id"]
    with http.stream("GET", f"/api/operations/{op_id}/events") as response:
        for kind, data in sse_events(response):
            if kind == "output" and on_output is not None:
                on_output(data)
            elif kind == "operation_end":
                return time.perf_counter() - t0, dict(json.loads(data), operation_id=op_id)
    raise RuntimeError(f"the event stream of {op_id} ended without operation_end")


# -- the printed table ------------------------------------------------------------------------


class Table:
    """Rows of ``metric | LinkOps | baseline | ratio | goal | met``, printed at the end."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.rows: list[tuple[str, str, str, str, str, str]] = []

    def add(self, metric: str, linkops: str, baseline: str = "", ratio: str = "",
            goal: str = "", met: bool | None = None) -> None:
        mark = "" if met is None else ("yes" if met else "NO")
        self.rows.append((metric, linkops, baseline, ratio, goal, mark))
        print(f"  {metric}: {linkops}  {baseline}  {ratio}  {goal} {mark}".rstrip(), flush=True)

    def render(self) -> str:
        header = ("metric", "LinkOps", "baseline", "ratio", "goal", "met")
        rows = [header, *self.rows]
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        line = "-+-".join("-" * w for w in widths)
        out = [self.title, line]
        for n, row in enumerate(rows):
            out.append(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
            if n == 0:
                out.append(line)
        return "\n".join(out)

    def print(self) -> None:
        print("\n" + self.render() + "\n", flush=True)
        results = os.environ.get("LINKOPS_BENCH_RESULTS")
        if results:
            with open(results, "a", encoding="utf-8") as fh:
                fh.write(self.render() + "\n\n")
