"""Fixtures for the git area: real bare repositories, a working clone to push from, an sshd
that serves them with a deploy key, and an inventory service wired to a temp database.

- ``config_repo``: a bare repository seeded with ``examples/config-repo`` (branch ``main``)
  plus a :class:`RepoWriter` to change, commit, push and force-push it.
- ``git_sshd``: a real ``/usr/sbin/sshd`` on 127.0.0.1 that only runs ``git-shell`` for one
  deploy key (``authorized_keys`` with ``restrict,command=…``). Ended by PID.
- ``git_https``: git's smart HTTP (``git http-backend``) over TLS with a self-signed
  certificate, answering only requests whose Basic auth password is its token.
- ``inventory``: ``(settings, db, InventoryService)`` syncing ``config_repo`` by path.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import attrs
import pytest

from linkops import config
from linkops.config import Settings
from linkops.db import Database
from linkops.inventory import InventoryService
from tests.fixtures_core import free_port, write_config

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "config-repo"

# Tests drive git as a user would, but never read the machine's own git configuration.
_TEST_GIT_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
    "GIT_TERMINAL_PROMPT": "0",
    "LANG": "C",
}


def git(*args: str, cwd: Path | None = None) -> str:
    env = {**_TEST_GIT_ENV, "HOME": str(cwd or "/nonexistent")}
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          check=False, timeout=60)
    if done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {done.stderr}")
    return done.stdout.strip()


@attrs.define
class RepoWriter:
    """A working clone of ``bare``: change files, commit, push (or force-push)."""

    bare: Path
    work: Path

    def write(self, relative: str, content: str | bytes, mode: int = 0o644) -> None:
        path = self.work / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            path.unlink()
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        path.chmod(mode)

    def read(self, relative: str) -> str:
        return (self.work / relative).read_text(encoding="utf-8")

    def replace(self, relative: str, old: str, new: str, count: int = 1) -> None:
        text = self.read(relative)
        assert old in text, f"{old!r} not in {relative}"
        self.write(relative, text.replace(old, new, count))

    def symlink(self, relative: str, target: str) -> None:
        path = self.work / relative
        if path.exists() or path.is_symlink():
            path.unlink()
        path.symlink_to(target)

    def remove(self, relative: str) -> None:
        git("rm", "-q", "-r", "--", relative, cwd=self.work)

    def commit(self, message: str = "change") -> str:
        git("add", "-A", cwd=self.work)
        git("commit", "-q", "--allow-empty", "-m", message, cwd=self.work)
        return self.head()

    def head(self) -> str:
        return git("rev-parse", "HEAD", cwd=self.work)

    def push(self, *, force: bool = False) -> None:
        git("push", "-q", *(["--force"] if force else []), "origin", "HEAD:main", cwd=self.work)

    def commit_and_push(self, message: str = "change") -> str:
        commit = self.commit(message)
        self.push()
        return commit

    def rewrite_last(self, message: str = "rewritten") -> str:
        """Replace the last commit with a different one and force-push (history rewrite)."""
        git("reset", "-q", "--hard", "HEAD~1", cwd=self.work)
        self.write("README.md", f"rewritten at {time.time_ns()}\n")
        commit = self.commit(message)
        self.push(force=True)
        return commit


def make_repo(root: Path, source: Path = EXAMPLES) -> RepoWriter:
    bare = root / "remote.git"
    work = root / "work"
    git("init", "-q", "--bare", "-b", "main", str(bare), cwd=root)
    shutil.copytree(source, work)
    git("init", "-q", "-b", "main", cwd=work)
    git("remote", "add", "origin", str(bare), cwd=work)
    writer = RepoWriter(bare=bare, work=work)
    writer.commit_and_push("initial inventory")
    return writer


@pytest.fixture
def config_repo(tmp_path: Path) -> RepoWriter:
    root = tmp_path / "repo"
    root.mkdir()
    return make_repo(root)


def inventory_settings(tmp_path: Path, url: str, ssh: dict[str, Any] | None = None,
                       **git: Any) -> Settings:
    server = tmp_path / "server"
    server.mkdir(exist_ok=True)
    values: dict[str, Any] = {"repository_url": url, "timeout_seconds": 20,
                              "sync_interval_minutes": 0}
    values.update(git)
    return config.load(write_config(server, git=values, ssh=ssh or {}))


@pytest.fixture
def make_inventory(tmp_path: Path) -> Iterator[Callable[..., tuple[Settings, Database,
                                                                   InventoryService]]]:
    """``make_inventory(url, ssh={...}, **git_settings)`` → (settings, db, service)."""
    opened: list[Database] = []

    def make(url: str, ssh: dict[str, Any] | None = None, **git: Any
             ) -> tuple[Settings, Database, InventoryService]:
        settings = inventory_settings(tmp_path, url, ssh, **git)
        db = Database(settings.database.path)
        opened.append(db)
        return settings, db, InventoryService(settings, db)

    yield make
    for db in opened:
        db.close()


@pytest.fixture
def inventory(config_repo: RepoWriter, make_inventory: Callable[..., Any]
              ) -> tuple[Settings, Database, InventoryService]:
    result: tuple[Settings, Database, InventoryService] = make_inventory(str(config_repo.bare))
    return result


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def inventory_log() -> Iterator[ListHandler]:
    # Our own handler: the service's logging setup turns propagation off for "linkops".
    handler = ListHandler()
    logger = logging.getLogger("linkops.inventory")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old_level)


# -- sshd serving git over SSH with a deploy key -------------------------------------------


@attrs.frozen
class GitSshd:
    port: int
    deploy_key: Path  # the private key the server accepts (mode 600)
    other_key: Path  # a valid key the server does not accept
    host_key: Path  # the server's host key (private; ``.pub`` next to it)
    pid: int

    def url(self, bare: Path) -> str:
        return f"ssh://root@127.0.0.1:{self.port}{bare}"


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "linkops-test",
                    "-f", str(path)], check=True, capture_output=True, timeout=30)
    path.chmod(0o600)


def _wait_for_port(port: int, process: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            error = process.stderr.read() if process.stderr else b""
            raise AssertionError(f"sshd exited: {error!r}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                if sock.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("sshd did not start")


@pytest.fixture(scope="session")
def git_sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitSshd]:
    root = tmp_path_factory.mktemp("git-sshd")
    root.chmod(0o755)
    host_key, deploy, other = root / "host_ed25519", root / "deploy_ed25519", root / "other"
    for key in (host_key, deploy, other):
        _keygen(key)
    public = (root / "deploy_ed25519.pub").read_text().strip()
    authorized = root / "authorized_keys"
    # git-shell only runs git's transport commands: the deploy key can read repositories and
    # nothing else.
    authorized.write_text(
        f'restrict,command="git-shell -c \\"$SSH_ORIGINAL_COMMAND\\"" {public}\n')
    authorized.chmod(0o600)
    port = free_port()
    conf = root / "sshd_config"
    conf.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}",
        f"AuthorizedKeysFile {authorized}", "StrictModes no", "UsePAM no",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes", "PermitRootLogin prohibit-password", "AllowUsers root",
        f"PidFile {root / 'sshd.pid'}", "LogLevel ERROR", "",
    ]))
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    process = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(conf)],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    try:
        _wait_for_port(port, process, time.monotonic() + 15)
        yield GitSshd(port=port, deploy_key=deploy, other_key=other, host_key=host_key,
                      pid=process.pid)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


# -- git's smart HTTP over TLS, with a token, for the HTTPS path ---------------------------


class _GitHttpHandler(BaseHTTPRequestHandler):
    """Runs ``git http-backend`` (CGI) for requests that carry the right token."""

    server: _GitHttpServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        auth = self.headers.get("Authorization", "")
        user, _, token = (base64.b64decode(auth[6:]).decode() if auth.startswith("Basic ")
                          else "").partition(":")
        self.server.seen_users.append(user)
        if token != self.server.token:
            self.server.denied += 1
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="linkops-test"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        env = {
            **_TEST_GIT_ENV, "GIT_PROJECT_ROOT": "/", "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": path, "QUERY_STRING": query, "REQUEST_METHOD": self.command,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)), "REMOTE_USER": user, "REMOTE_ADDR": "127.0.0.1",
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
        }
        done = subprocess.run(["git", "http-backend"], input=body, env=env,
                              capture_output=True, check=False, timeout=60)
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _GitHttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, token: str) -> None:
        super().__init__(("127.0.0.1", 0), _GitHttpHandler)
        self.token = token
        self.denied = 0
        self.seen_users: list[str] = []


@attrs.frozen
class GitHttps:
    port: int
    token: str
    ca_file: Path  # the server's self-signed certificate
    server: _GitHttpServer

    def url(self, bare: Path, credentials: str = "") -> str:
        return f"https://{credentials}127.0.0.1:{self.port}{bare}"


@pytest.fixture(scope="session")
def git_https(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitHttps]:
    root = tmp_path_factory.mktemp("git-https")
    cert, key = root / "cert.pem", root / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True,
                   timeout=60)
    server = _GitHttpServer(token="tok-" + os.urandom(12).hex())
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield GitHttps(port=server.server_address[1], token=server.token, ca_file=cert,
                       server=server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
