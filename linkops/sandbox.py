"""A local fleet of real OpenSSH servers for ``linkops demo`` and the tests (blocking, no trio).

Owns everything a fleet needs and removes it again: one temporary root directory with a
generated client key (mode 0600) and ``authorized_keys``, and per host a generated Ed25519
host key, an ``sshd_config``, a log (``LogLevel VERBOSE``), a PID file, a client ID file and
its own ``HOME`` (``SetEnv HOME=…``), so bash never reads the operator's ``~/.bashrc`` (on
these machines root's runs ``pyenv init``: ~100 ms per command).

Two kinds of hosts, any mix:

* **loopback** hosts: ``sshd -D -e -f CFG`` as the current user on ``127.0.0.1`` and a free
  port; each host's client ID lives in its own directory, named by the link's
  ``enrollment.clientIdPath``.
* **netns** hosts (root only): a *bastion* in its own network namespace, reachable from the
  host on a private ``10.x.y.0/30`` veth link, and *inner* hosts in further namespaces linked
  only to the bastion, so ProxyJump through the bastion is the only way in. They listen on
  port 22 of their own address and keep their client ID at the real default path
  ``/etc/linkops/client_id`` (``ip netns exec`` mounts ``/etc/netns/NS/linkops`` there).

Every process is started by us and ended by its PID (with the session children sshd forked
for it); every namespace, veth and ``/etc/netns`` directory carries a random tag and is
deleted on :meth:`Sandbox.stop`. ``/etc/linkops`` is created if missing (an empty directory
is needed as the bind-mount target) and left in place.

*Errors*: :class:`SandboxError` with one clear message (e.g. no ``sshd``: install the
Debian package ``openssh-server``).
"""

from __future__ import annotations

import getpass
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import attrs
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

SSHD = Path("/usr/sbin/sshd")
KEY_NAME = "sandbox_ed25519"
NETNS_ETC = Path("/etc/netns")


class SandboxError(RuntimeError):
    """The sandbox could not be started (the message says what to do)."""


def new_client_id() -> str:
    return f"LINKOPS-{uuid.uuid4()}"


def _keypair() -> tuple[bytes, str]:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    return private, public


def _write(path: Path, data: bytes | str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode() if isinstance(data, str) else data
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, raw)
    finally:
        os.close(fd)
    os.chmod(path, mode)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SandboxError(f"{' '.join(argv)} failed: {done.stderr.strip()}")


def _descendants(pid: int) -> list[int]:
    """PIDs below ``pid`` (the per-connection children sshd forked), deepest last."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def netns_available() -> bool:
    """Root with a working ``ip netns`` (the ProxyJump part of the fleet needs both)."""
    return os.geteuid() == 0 and shutil.which("ip") is not None


@attrs.define
class SandboxHost:
    """One sshd of the fleet and the data its link needs."""

    name: str
    directory: Path
    address: str
    port: int
    client_id: str
    client_id_path: str
    client_id_file: Path
    host_key_line: str = ""
    netns: str | None = None
    proxy_jump: str | None = None
    type: str = "VPS"
    process: subprocess.Popen[bytes] | None = None

    @property
    def config_path(self) -> Path:
        return self.directory / "sshd_config"

    @property
    def log_path(self) -> Path:
        return self.directory / "sshd.log"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def host_key_path(self) -> Path:
        return self.directory / "ssh_host_ed25519_key"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def known_hosts_line(self) -> str:
        name = self.address if self.port == 22 else f"[{self.address}]:{self.port}"
        return f"{name} {self.host_key_line}"


class Sandbox:
    """The fleet. ``with Sandbox(hosts=3, netns_inner=2) as fleet: …`` (see module doc).

    ``netns_inner`` > 0 (root only) adds a bastion and that many inner hosts behind it.
    """

    def __init__(self, root: Path | None = None, *, hosts: int = 3, netns_inner: int = 0,
                 prefix: str = "sbx") -> None:
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="linkops-sandbox-")) if root is None else root
        self.count = hosts
        self.netns_inner = netns_inner
        self.prefix = prefix
        self.tag = secrets.token_hex(2)
        self.user = getpass.getuser()
        self.hosts: dict[str, SandboxHost] = {}
        self._namespaces: list[str] = []
        self._root_veths: list[str] = []
        self._routes: list[str] = []
        self._subnet: ipaddress.IPv4Network | None = None
        self._next_slot = 0

    # -- paths and data for a config repo ------------------------------------------------

    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    @property
    def key_path(self) -> Path:
        return self.keys_dir / KEY_NAME

    @property
    def authorized_keys(self) -> Path:
        return self.root / "authorized_keys"

    def host(self, name: str) -> SandboxHost:
        return self.hosts[name]

    def known_hosts_text(self) -> str:
        return "".join(h.known_hosts_line() + "\n" for h in self.hosts.values())

    def links(self) -> list[dict[str, Any]]:
        """Flat link dicts: id, type, host, port, user, keyRef, clientId, clientIdPath, …"""
        return [
            {"id": h.name, "type": h.type, "host": h.address, "port": h.port, "user": self.user,
             "keyRef": KEY_NAME, "clientId": h.client_id, "clientIdPath": h.client_id_path,
             "proxyJump": h.proxy_jump, "hostKey": h.host_key_line}
            for h in self.hosts.values()
        ]

    def links_yaml_data(self) -> dict[str, Any]:
        """The ``links:`` mapping of a links.yaml describing this fleet (SPEC §2 shape)."""
        out: dict[str, Any] = {}
        for h in self.hosts.values():
            entry: dict[str, Any] = {
                "type": h.type, "provider": "sandbox", "host": h.address, "port": h.port,
                "user": self.user, "tags": ["sandbox", "netns" if h.netns else "loopback"],
                "enrollment": {"clientId": h.client_id, "required": True},
                "ssh": {"keyRef": KEY_NAME, "proxyJump": h.proxy_jump},
                "metadata": {"location": "sandbox"},
            }
            if h.client_id_path != "/etc/linkops/client_id":
                entry["enrollment"]["clientIdPath"] = h.client_id_path
            if h.proxy_jump:
                entry["metadata"]["parent"] = h.proxy_jump
            out[h.name] = entry
        return {"links": out}

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Sandbox:
        if not SSHD.exists():
            raise SandboxError(f"{SSHD} not found: install the Debian package openssh-server "
                               "(apt-get install openssh-server)")
        if self.netns_inner and not netns_available():
            raise SandboxError("network-namespace hosts need root and the `ip` tool (iproute2)")
        try:
            self._prepare_common()
            for i in range(1, self.count + 1):
                self._add_loopback(f"{self.prefix}-{i:02d}")
            if self.netns_inner:
                bastion = self._add_netns(f"{self.prefix}-bastion", None)
                for i in range(1, self.netns_inner + 1):
                    self._add_netns(f"{self.prefix}-inner-{i:02d}", bastion)
            for host in self.hosts.values():
                self.start_host(host.name)
        except BaseException:
            self.stop()
            raise
        return self

    def _prepare_common(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        private, public = _keypair()
        _write(self.key_path, private, 0o600)
        _write(self.key_path.with_suffix(".pub"), public + "\n")
        _write(self.authorized_keys, public + "\n", 0o600)
        if os.geteuid() == 0:
            # sshd's privilege separation directory; normally made by systemd.
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)

    def _new_host_dir(self, name: str) -> Path:
        directory = self.root / "hosts" / name
        (directory / "home").mkdir(parents=True, exist_ok=True)
        # An interactive shell gets a recognisable prompt and nothing else.
        _write(directory / "home" / ".bashrc", f"PS1='\\u@{name}:\\w\\$ '\n")
        _write(directory / "home" / ".profile", ". \"$HOME/.bashrc\"\n")
        return directory

    def _add_loopback(self, name: str) -> SandboxHost:
        directory = self._new_host_dir(name)
        id_file = directory / "etc-linkops" / "client_id"
        host = SandboxHost(name=name, directory=directory, address="127.0.0.1", port=0,
                           client_id=new_client_id(), client_id_path=str(id_file),
                           client_id_file=id_file)
        self._finish_host(host)
        return host

    def _finish_host(self, host: SandboxHost) -> None:
        private, public = _keypair()
        _write(host.host_key_path, private, 0o600)
        host.host_key_line = public
        _write(host.client_id_file, host.client_id + "\n")
        self.hosts[host.name] = host

    def _pick_subnet(self) -> ipaddress.IPv4Network:
        # Addresses and routes (other fleets add an "unreachable" route for their subnet).
        used = " " + " ".join(
            subprocess.run(["ip", "-4", *cmd], capture_output=True, text=True,
                           check=False).stdout for cmd in (["-o", "addr"], ["route"]))
        for _ in range(50):
            net = ipaddress.IPv4Network(
                f"10.{secrets.randbelow(100) + 100}.{secrets.randbelow(256)}.0/24")
            if f" {net.network_address}".rsplit(".", 1)[0] + "." not in used:
                return net
        raise SandboxError("no free private 10.x.y.0/24 subnet found")

    def _add_netns(self, name: str, via: SandboxHost | None) -> SandboxHost:
        if self._subnet is None:
            self._subnet = self._pick_subnet()
            Path("/etc/linkops").mkdir(exist_ok=True)
            # Without this, packets for inner hosts would follow the default route out of the
            # machine (and a transparent proxy may even answer): make them fail at once. The
            # connected /30 of the bastion is more specific and stays reachable.
            _run("ip", "route", "add", "unreachable", str(self._subnet))
            self._routes.append(str(self._subnet))
        slot = self._next_slot
        self._next_slot += 1
        base = int(self._subnet.network_address) + 4 * slot
        near, far = str(ipaddress.IPv4Address(base + 1)), str(ipaddress.IPv4Address(base + 2))
        ns = f"lko-{self.tag}-{slot}"
        _run("ip", "netns", "add", ns)
        self._namespaces.append(ns)
        outer, inner = f"lk{self.tag}a{slot}", f"lk{self.tag}b{slot}"
        _run("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
        if via is None:
            self._root_veths.append(outer)
            side: tuple[str, ...] = ()
        else:
            assert via.netns is not None
            _run("ip", "link", "set", outer, "netns", via.netns)
            side = ("ip", "netns", "exec", via.netns)
        _run(*side, "ip", "addr", "add", f"{near}/30", "dev", outer)
        _run(*side, "ip", "link", "set", outer, "up")
        _run("ip", "link", "set", inner, "netns", ns)
        _run("ip", "netns", "exec", ns, "ip", "addr", "add", f"{far}/30", "dev", inner)
        _run("ip", "netns", "exec", ns, "ip", "link", "set", inner, "up")
        _run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        directory = self._new_host_dir(name)
        host = SandboxHost(
            name=name, directory=directory, address=far, port=22, client_id=new_client_id(),
            client_id_path="/etc/linkops/client_id",
            client_id_file=NETNS_ETC / ns / "linkops" / "client_id", netns=ns,
            proxy_jump=via.name if via else None, type="VM" if via else "VPS")
        self._finish_host(host)
        return host

    def _config(self, host: SandboxHost) -> str:
        return "\n".join([
            f"Port {host.port}", f"ListenAddress {host.address}", "AddressFamily inet",
            f"HostKey {host.host_key_path}", f"PidFile {host.directory / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            # Files live in /tmp (world-writable parents): StrictModes would refuse them.
            "StrictModes no", "UsePAM no", "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "AllowTcpForwarding yes", "X11Forwarding no",
            "MaxSessions 64", "MaxStartups 100:30:200", "LoginGraceTime 30", "UseDNS no",
            "PrintMotd no", "PrintLastLog no", "LogLevel VERBOSE",
            f"SetEnv HOME={host.directory / 'home'} LINKOPS_SANDBOX_HOST={host.name}",
            "Subsystem sftp internal-sftp", "",
        ])

    def start_host(self, name: str, *, timeout: float = 10.0) -> SandboxHost:
        """Start (or restart after :meth:`stop_host`) one host's sshd and wait until ready."""
        host = self.hosts[name]
        for _attempt in range(5):
            if host.netns is None and host.port == 0:
                host.port = free_port()
            _write(host.config_path, self._config(host))
            pid_file = host.directory / "sshd.pid"
            pid_file.unlink(missing_ok=True)
            argv = [str(SSHD), "-D", "-e", "-f", str(host.config_path)]
            if host.netns is not None:
                argv = ["ip", "netns", "exec", host.netns, *argv]
            with host.log_path.open("ab") as log:
                host.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                                stderr=subprocess.STDOUT, start_new_session=True)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if host.process.poll() is not None:
                    break
                if pid_file.exists() and pid_file.read_text().strip():
                    return host
                time.sleep(0.02)
            if host.process.poll() is None:
                self._kill(host)
                raise SandboxError(f"sshd for {name} did not start within {timeout:g} s; "
                                   f"see {host.log_path}")
            if host.netns is not None or "Bind to port" not in host.log_text():
                break  # only a port race is worth another try
            host.port = 0
        raise SandboxError(f"sshd for {name} exited at start: {host.log_text()[-800:]}")

    def stop_host(self, name: str) -> None:
        """Stop one host's sshd *and* its open sessions (the host "goes away")."""
        self._kill(self.hosts[name])

    def _kill(self, host: SandboxHost) -> None:
        proc = host.process
        if proc is None:
            return
        victims = [proc.pid, *_descendants(proc.pid)]
        for pid in victims:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        for pid in victims[1:]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        host.process = None

    def rotate_host_key(self, name: str) -> str:
        """Give a host a new host key and restart it (a "changed host key"); returns it."""
        host = self.hosts[name]
        self._kill(host)
        private, public = _keypair()
        _write(host.host_key_path, private, 0o600)
        host.host_key_line = public
        self.start_host(name)
        return public

    def write_client_id(self, name: str, content: bytes | None) -> None:
        """Replace the host's client ID file (``None`` deletes it)."""
        path = self.hosts[name].client_id_file
        if path.is_dir():
            shutil.rmtree(path)
        if content is None:
            path.unlink(missing_ok=True)
        else:
            _write(path, content)

    def make_client_id_unreadable(self, name: str) -> None:
        """Put a directory where the client ID file should be (unreadable even for root)."""
        path = self.hosts[name].client_id_file
        path.unlink(missing_ok=True)
        path.mkdir(parents=True, exist_ok=True)

    def stop(self) -> None:
        for host in self.hosts.values():
            try:
                self._kill(host)
            except (OSError, subprocess.SubprocessError):
                pass
        for ns in reversed(self._namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
            shutil.rmtree(NETNS_ETC / ns, ignore_errors=True)
        for veth in self._root_veths:
            # Normally gone with its peer's namespace; make sure.
            subprocess.run(["ip", "link", "del", veth], capture_output=True, check=False)
        for route in self._routes:
            subprocess.run(["ip", "route", "del", "unreachable", route], capture_output=True,
                           check=False)
        self._namespaces.clear()
        self._root_veths.clear()
        self._routes.clear()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)


class Tarpit:
    """A TCP listener on 127.0.0.1 that accepts connections and never says a word."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = int(self._sock.getsockname()[1])
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="linkops-tarpit", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._held.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for conn in self._held:
            conn.close()
        self._sock.close()

    def __enter__(self) -> Tarpit:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
