"""A hostile SSH server: paramiko in server mode on 127.0.0.1, misbehaving on demand.

A real sshd cannot be told to stop answering channel requests or to ignore flow control, so
these faults (and only these) come from a fake (PREAMBLE non-negotiable 1). It authenticates
any public key and then behaves per ``mode``:

* ``mute``: never answers a channel open (nor anything after it: the server's transport
  thread is parked, as in a host whose sshd is wedged; TCP stays up, the kernel ACKs);
* ``mute_pty``: answers execs (the client-ID read: prints ``client_id``, exit 0) but never a
  ``pty-req`` or ``shell``;
* ``flood_exec`` / ``flood_shell``: accepts the exec (or PTY shell) and sends data as fast as
  it can, ignoring the window the client advertised, up to ``flood_bytes``;
* ``flood_script``: an operation's launch wrapper gets a matching client-ID report, then the
  flood (its script never "runs": the flood is its output);
* ``drop``: accepts an exec or shell, sends a few bytes, then closes the TCP connection.

Half-open connections need no fake: ``tests/test_ssh_boundary.py`` sets the veth of a real
sshd in a network namespace down. :class:`DelayProxy` adds latency in front of a real sshd.

``HostileServer`` is a context manager; ``link(...)`` gives a :class:`Link` for it. Every thread
it starts ends when it stops (parked threads are released).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import paramiko
import pytest
from paramiko.common import (
    AUTH_SUCCESSFUL,
    OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED,
    OPEN_SUCCEEDED,
    cMSG_CHANNEL_DATA,
)

from linkops.models import Enrollment, Link, SshOptions
from linkops.operations.remote import ID_BEGIN, ID_END

MODES = ("mute", "mute_pty", "flood_exec", "flood_shell", "flood_script", "drop")
CLIENT_ID = "LINKOPS-00000000-0000-4000-8000-0000000000aa"
FLOOD_PACKET = 32768
# The server side's paramiko chatter (clients hanging up mid-banner…) is noise here.
LOG = "tests.hostile.paramiko"
logging.getLogger(LOG).setLevel(logging.CRITICAL)


class _Interface(paramiko.ServerInterface):
    def __init__(self, server: HostileServer) -> None:
        self.server = server

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        return AUTH_SUCCESSFUL

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if self.server.mode == "mute":
            self.server.park()
        return OPEN_SUCCEEDED if kind == "session" else \
            OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_pty_request(self, channel: paramiko.Channel, term: bytes, width: int,
                                  height: int, pixelwidth: int, pixelheight: int,
                                  modes: bytes) -> bool:
        if self.server.mode == "mute_pty":
            self.server.park()
        return True

    def check_channel_shell_request(self, channel: paramiko.Channel) -> bool:
        if self.server.mode == "mute_pty":
            self.server.park()
        self.server.spawn(self.server.behave, channel, "shell")
        return True

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        self.server.execs += 1
        # flood_script: an operation's launch wrapper gets the client-ID report it asks for
        # (linkops/operations/remote.py), then the flood; other commands are answered as usual.
        kind = "script" if self.server.mode == "flood_script" and b"linkops-op" in command \
            else "exec"
        self.server.spawn(self.server.behave, channel, kind)
        return True

    def check_channel_window_change_request(self, *args: Any) -> bool:
        return True

    def check_channel_env_request(self, *args: Any) -> bool:
        return True


class HostileServer:
    """See the module docstring."""

    def __init__(self, mode: str, directory: Path, *, flood_bytes: int = 2 << 30) -> None:
        assert mode in MODES, mode
        self.mode = mode
        self.flood_bytes = flood_bytes
        self.flooded = 0  # bytes of channel data sent past (or within) the window
        self.execs = 0
        self.connections = 0
        self.host_key = paramiko.RSAKey.generate(2048)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._transports: list[paramiko.Transport] = []
        self._lock = threading.Lock()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(512)
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self.directory = directory

    # -- helpers for the interface ----------------------------------------------------------

    def park(self) -> None:
        """Never answer (until the server stops)."""
        self._stop.wait()

    def spawn(self, fn: Any, *args: Any) -> None:
        thread = threading.Thread(target=fn, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def behave(self, channel: paramiko.Channel, kind: str) -> None:
        # paramiko replies to the request only after the check_* handler returned: let that
        # reply go first (a CLOSE before it would read as a refused request).
        time.sleep(0.2)
        try:
            if self.mode == "flood_" + kind:
                if kind == "script":
                    channel.sendall(ID_BEGIN + (CLIENT_ID + "\n").encode().hex().encode()
                                    + b"\n" + ID_END + b"0\n")
                self._flood(channel)
            elif self.mode == "drop":
                channel.sendall(b"partial output\n")
                time.sleep(0.2)
                transport = channel.get_transport()
                if transport is not None:
                    transport.sock.shutdown(socket.SHUT_RDWR)
                    transport.sock.close()
            elif kind == "exec":
                channel.sendall(CLIENT_ID.encode() + b"\n")
                channel.send_exit_status(0)
                channel.close()
            else:
                self._stop.wait()
        except (OSError, EOFError, paramiko.SSHException):
            pass

    def _flood(self, channel: paramiko.Channel) -> None:
        """Channel data straight to the transport: paramiko's send() would honour the window."""
        transport = channel.get_transport()
        assert transport is not None
        chunk = b"F" * FLOOD_PACKET
        while self.flooded < self.flood_bytes and not self._stop.is_set() \
                and transport.is_active() and not channel.closed:
            m = paramiko.Message()
            m.add_byte(cMSG_CHANNEL_DATA)
            m.add_int(channel.remote_chanid)
            m.add_string(chunk)
            transport._send_user_message(m)  # type: ignore[attr-defined]
            self.flooded += len(chunk)

    # -- lifetime ---------------------------------------------------------------------------

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            transport = paramiko.Transport(sock)
            transport.set_log_channel(LOG)
            transport.add_server_key(self.host_key)
            with self._lock:
                self._transports.append(transport)
            try:
                transport.start_server(server=_Interface(self))
            except (paramiko.SSHException, OSError, EOFError):
                transport.close()

    def __enter__(self) -> HostileServer:
        self.spawn(self._serve)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        with self._lock:
            transports, threads = list(self._transports), list(self._threads)
        for transport in transports:
            transport.close()
        for thread in threads:
            thread.join(5)

    def known_hosts_line(self, host: str = "127.0.0.1") -> str:
        key = self.host_key
        return f"[{host}]:{self.port} {key.get_name()} {key.get_base64()}\n"

    def link(self, link_id: str = "hostile", *, key_ref: str | None = None,
             required: bool = False) -> Link:
        return Link(id=link_id, type="VPS", host="127.0.0.1", port=self.port, user="nobody",
                    name=link_id, provider="hostile",
                    enrollment=Enrollment(clientId=CLIENT_ID, required=required),
                    ssh=SshOptions(keyRef=key_ref))


@attrs.define
class HostileFactory:
    directory: Path
    servers: list[HostileServer] = attrs.field(factory=list)

    def __call__(self, mode: str, **kwargs: Any) -> HostileServer:
        server = HostileServer(mode, self.directory, **kwargs).__enter__()
        self.servers.append(server)
        return server


@pytest.fixture
def hostile(tmp_path: Path) -> Iterator[HostileFactory]:
    """``hostile(mode)`` starts a :class:`HostileServer`; all are stopped after the test."""
    factory = HostileFactory(tmp_path)
    try:
        yield factory
    finally:
        for server in factory.servers:
            server.close()


class DelayProxy:
    """A TCP forwarder on 127.0.0.1 that delays every byte by ``delay`` seconds each way
    (``2 * delay`` of round trip), in front of a real server.

    It stands in for ``tc qdisc … netem delay`` where the kernel has no ``sch_netem`` (this
    CI's does not): the same effect on one TCP stream, data and ordering untouched.
    """

    def __init__(self, target: tuple[str, int], delay: float) -> None:
        self.target = target
        self.delay = delay
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self._threads: list[threading.Thread] = []
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()

    def _spawn(self, fn: Any, *args: Any) -> None:
        thread = threading.Thread(target=fn, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        import queue
        pending: queue.Queue[tuple[float, bytes]] = queue.Queue()

        def deliver() -> None:
            while True:
                due, data = pending.get()
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                try:
                    if not data:
                        dst.shutdown(socket.SHUT_WR)
                        return
                    dst.sendall(data)
                except OSError:
                    return

        self._spawn(deliver)
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            pending.put((time.monotonic() + self.delay, data))
            if not data:
                return

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._socks += [client, upstream]
            self._spawn(self._pipe, client, upstream)
            self._spawn(self._pipe, upstream, client)

    def __enter__(self) -> DelayProxy:
        self._spawn(self._serve)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._listener.close()
        with self._lock:
            socks, threads = list(self._socks), list(self._threads)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        for thread in threads:
            thread.join(2)
