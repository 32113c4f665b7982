"""Blocking paramiko connections: one hop, a ProxyJump chain, and command channels.

This module imports no trio; everything here runs in worker threads started by
:mod:`linkops.ssh.bridge`. It owns *how* one SSH connection is made:

1. TCP connect (``connection_timeout``) — or, for a hop behind a ProxyJump, a ``direct-tcpip``
   channel opened on the previous hop's transport;
2. SSH handshake with banner/handshake timeouts, host key types we already know preferred;
3. host key decision (:class:`~linkops.ssh.known_hosts.KnownHosts`) **before** authentication,
   so a changed key never sees our public key or signature;
4. public-key authentication (``auth_timeout``) and keepalives every ``keepalive`` seconds;
   with ``TCP_USER_TIMEOUT`` at three intervals a peer that vanished (cable, firewall, VM
   paused) is detected within about four intervals instead of TCP's ~15 minutes.

One attempt only: retries with backoff belong to the caller (the bridge), which can sleep
cancellably between attempts.

*Errors*: every failure is a :class:`~linkops.ssh.errors.SshError` whose ``reason`` says
``timeout``, ``connect``, ``host_key``, ``auth`` or ``key``; ``details`` names the hop.

*Resource handling*: a failed attempt closes every transport and socket it opened.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import paramiko
from paramiko.buffered_pipe import PipeTimeout
from paramiko.common import (
    MSG_CHANNEL_CLOSE,
    MSG_CHANNEL_DATA,
    MSG_CHANNEL_EXTENDED_DATA,
    MSG_CHANNEL_REQUEST,
    cMSG_CHANNEL_WINDOW_ADJUST,
)

from linkops.ssh.errors import HostKeyMismatchError, SshAuthError, SshError
from linkops.ssh.keys import HostKeyPin, load_private_key
from linkops.ssh.known_hosts import KnownHosts

# paramiko logs every failed handshake as an ERROR with a traceback; our SshError already says
# what failed, with the link's name, so its chatter stays out of the service log.
PARAMIKO_LOG = "linkops.ssh.paramiko"
logging.getLogger(PARAMIKO_LOG).setLevel(logging.CRITICAL)


# How often an authenticated transport's reader thread wakes up when nothing arrives
# (paramiko's own is 0.1 s). Keepalives (>= 1 s) and closing still work at this granularity.
IDLE_POLL_SECONDS = 1.0

# Exit status reported for a remote process killed by a signal: 128 + signal number, the
# shell's convention ($? is 143 after SIGTERM). The signal name is kept on the channel.
EXIT_SIGNAL_ATTR = "linkops_exit_signal"


# A callable stored on a channel under this name is called (on the transport's thread) when
# the channel's exit status arrives or the channel closes: streams read channels from the Trio
# thread and need a wake-up for those, which paramiko only signals with a threading.Event.
STATUS_HOOK_ATTR = "linkops_on_status"


def _notify_status(chan: paramiko.Channel) -> None:
    hook = getattr(chan, STATUS_HOOK_ATTR, None)
    if hook is not None:
        hook()


def _handle_channel_request(chan: paramiko.Channel, m: paramiko.Message) -> None:
    # paramiko ignores "exit-signal" (RFC 4254 §6.10), leaving a killed command without any
    # status; record it, and hand every other request to paramiko unchanged.
    start = m.packet.tell()
    if m.get_text() == "exit-signal":
        m.get_boolean()  # want_reply: always false for exit-signal
        name = m.get_text()
        try:
            number = int(signal.Signals[f"SIG{name}"])
        except KeyError:
            number = 0  # an unknown signal: 128 still says "killed"
        setattr(chan, EXIT_SIGNAL_ATTR, name)
        chan.exit_status = 128 + number
        chan.status_event.set()
        _notify_status(chan)
        return
    m.packet.seek(start)
    paramiko.Channel._handle_request(chan, m)  # type: ignore[attr-defined]
    _notify_status(chan)


def _handle_channel_close(chan: paramiko.Channel, m: paramiko.Message) -> None:
    paramiko.Channel._handle_close(chan, m)  # type: ignore[attr-defined]
    _notify_status(chan)


# Set on a channel (to the number of bytes in excess) when its peer sent data beyond the
# window we advertised: the streams report it as the channel's error.
FLOW_VIOLATION_ATTR = "linkops_flow_violation"
FLOW_VIOLATION_MESSAGE = "peer ignored flow control"


def _window_allows(chan: paramiko.Channel, size: int) -> bool:
    """Whether ``size`` more bytes fit what we let the peer send (window plus one packet).

    What the peer sent since our last WINDOW_ADJUST is what is still buffered plus what was
    read but not yet acknowledged (``in_window_sofar``). paramiko itself never checks this:
    it buffers whatever arrives, so a peer ignoring the window could fill our memory.
    """
    used = len(chan.in_buffer) + len(chan.in_stderr_buffer) + chan.in_window_sofar
    limit = chan.in_window_size + chan.in_max_packet_size
    return bool(used + size <= limit)


def _flow_violation(chan: paramiko.Channel, size: int) -> None:
    """Drop the data and close the whole connection: a peer that ignores flow control on one
    channel is not to be trusted with the others (transport thread; closes off it)."""
    if getattr(chan, FLOW_VIOLATION_ATTR, None) is None:
        setattr(chan, FLOW_VIOLATION_ATTR, size)
        transport = chan.get_transport()
        if transport is not None:
            threading.Thread(target=transport.close, name="linkops-flow-close",
                             daemon=True).start()


def _handle_channel_data(chan: paramiko.Channel, m: paramiko.Message) -> None:
    start = m.packet.tell()
    size = len(m.get_binary())
    if getattr(chan, FLOW_VIOLATION_ATTR, None) is not None or not _window_allows(chan, size):
        _flow_violation(chan, size)
        return
    m.packet.seek(start)
    paramiko.Channel._feed(chan, m)  # type: ignore[attr-defined]


def _handle_channel_extended_data(chan: paramiko.Channel, m: paramiko.Message) -> None:
    start = m.packet.tell()
    m.get_int()
    size = len(m.get_binary())
    if getattr(chan, FLOW_VIOLATION_ATTR, None) is not None or not _window_allows(chan, size):
        _flow_violation(chan, size)
        return
    m.packet.seek(start)
    paramiko.Channel._feed_extended(chan, m)  # type: ignore[attr-defined]


class _Transport(paramiko.Transport):
    """paramiko's Transport plus exit-signal handling and flow-control enforcement (pinned
    paramiko: see pyproject)."""

    _channel_handler_table = {  # noqa: RUF012 - paramiko's own class-level dispatch table
        **paramiko.Transport._channel_handler_table,  # type: ignore[attr-defined]
        MSG_CHANNEL_REQUEST: _handle_channel_request,
        MSG_CHANNEL_CLOSE: _handle_channel_close,
        MSG_CHANNEL_DATA: _handle_channel_data,
        MSG_CHANNEL_EXTENDED_DATA: _handle_channel_extended_data,
    }


class BufferWaker:
    """Stands in for the ``threading.Event`` paramiko's channel buffers set when data (or the
    end) arrives: calls ``notify()`` instead, once until :meth:`rearm`.

    *Why not* ``Channel.fileno()``: its poll pipe is closed by ``Channel.close()`` while the
    transport thread may still be writing to it (paramiko does not serialise the two): that
    killed the transport with EBADF in our tests, and could write into a reused descriptor.
    This costs no descriptors either.
    """

    def __init__(self, notify: Callable[[], None]) -> None:
        self._notify = notify
        self._pending = False

    def set(self) -> None:  # transport thread (or the reader, in set_event)
        if not self._pending:
            self._pending = True
            self._notify()

    def clear(self) -> None:
        """paramiko calls this when a buffer runs empty; :meth:`rearm` is what counts."""

    def rearm(self) -> None:
        """Called by the reader once woken, *before* it looks at the buffers again."""
        self._pending = False

    def watch(self, chan: paramiko.Channel) -> None:
        """Be the wake-up of both of ``chan``'s buffers (set at once if data is waiting)."""
        # Duck-typed: BufferedPipe only ever calls set() and clear() on its event.
        chan.in_buffer.set_event(self)  # type: ignore[arg-type]
        chan.in_stderr_buffer.set_event(self)  # type: ignore[arg-type]


def read_nowait(chan: paramiko.Channel, stderr: bool,
                nbytes: int) -> tuple[bytes | None, paramiko.Message | None]:
    """Take what ``chan`` has buffered on stdout (or stderr) without ever blocking.

    Returns ``(data, window_adjust)``: ``data`` is None when nothing is buffered yet and
    ``b""`` once the stream ended; ``window_adjust`` is the WINDOW_ADJUST message this read
    made due (or None), for the caller to send with :func:`send_message` *off* its thread:
    sending can wait for a key re-exchange or a full socket. This is ``Channel.recv`` split
    in two (its buffer and window bookkeeping; paramiko is pinned, see pyproject), so that
    the Trio thread can read channels itself instead of through a thread per stream.
    """
    buffer = chan.in_stderr_buffer if stderr else chan.in_buffer
    try:
        out: bytes = buffer.read(nbytes, 0.0)
    except PipeTimeout:
        return None, None
    ack = chan._check_add_window(len(out))  # type: ignore[attr-defined]
    if ack <= 0:
        return out, None
    m = paramiko.Message()
    m.add_byte(cMSG_CHANNEL_WINDOW_ADJUST)
    m.add_int(chan.remote_chanid)
    m.add_int(ack)
    return out, m


def fits_send_window(chan: paramiko.Channel, size: int) -> bool:
    """True when ``size`` bytes can be sent on ``chan`` without waiting for the peer's window
    (the peer's announced window and packet size allow it right now)."""
    window = getattr(chan, "out_window_size", 0)
    return isinstance(window, int) and size <= window


def transport_lost(chan: paramiko.Channel) -> bool:
    """True when ``chan``'s connection died (not merely the channel closing).

    paramiko unlinks the channels of a dead transport *before* it marks the transport
    inactive, but records why it died (``saved_exception``) first: read that too, so a waiter
    woken by the unlink does not mistake a lost connection for a command without status.
    """
    transport = chan.get_transport()
    if transport is None or not transport.is_active():
        return True
    # Also saved on a live transport: a refused channel open, an authentication detail.
    saved = getattr(transport, "saved_exception", None)
    return saved is not None and not isinstance(
        saved, paramiko.ChannelException | paramiko.AuthenticationException)


def send_message(chan: paramiko.Channel, message: paramiko.Message) -> None:
    """Send a channel message built by :func:`read_nowait` (blocking; errors ignored)."""
    transport = chan.get_transport()
    if transport is None:
        return
    try:
        transport._send_user_message(message)  # type: ignore[attr-defined]
    except (OSError, EOFError, paramiko.SSHException):
        pass  # the connection is going away; so is the window


class QuickAckSocket(socket.socket):
    """A TCP socket that acknowledges every segment at once (``TCP_QUICKACK`` after each read).

    *Why*: sshd sets ``TCP_NODELAY`` only for PTY sessions. Right after authentication it
    writes several small packets (host keys, debug notes, then our channel confirmation); Nagle
    holds the last ones until our ACK, and Linux delays that ACK by ~40 ms because we have
    nothing to send. Measured on loopback: the first channel of every fresh connection took
    45 ms instead of 3 ms (OpenSSH's own client and plain paramiko pay it too). Linux leaves
    quick-ACK mode by itself, so it is set again after every read: one cheap syscall per read.
    """

    @classmethod
    def adopt(cls, sock: socket.socket) -> QuickAckSocket:
        """Take over ``sock``'s descriptor (its socket options stay; ``sock`` is detached)."""
        timeout = sock.gettimeout()
        new = cls(sock.family, sock.type, sock.proto, fileno=sock.detach())
        new.settimeout(timeout)
        return new

    def recv(self, size: int, flags: int = 0) -> bytes:
        data = super().recv(size, flags)
        try:
            self.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        except OSError:
            pass  # closed meanwhile: the next recv reports it
        return data


@attrs.frozen
class HopSpec:
    """Everything that identifies one SSH hop (hashable: part of the pool key)."""

    link_id: str
    host: str
    port: int
    user: str
    key_path: Path
    host_key_pin: str | None = None

    @property
    def label(self) -> str:
        return f"{self.link_id} ({self.user}@{self.host}:{self.port})"


@attrs.frozen
class Timeouts:
    connect: float = 30.0
    banner: float = 30.0
    auth: float = 30.0
    keepalive: int = 15


def _fail(hop: HopSpec, target: str, what: str, reason: str, exc: BaseException | None) -> SshError:
    detail = f": {exc}" if exc is not None and str(exc) else (
        f": {type(exc).__name__}" if exc is not None else "")
    return SshError(
        f"SSH to {hop.label} failed ({what}){detail}",
        reason=reason,
        details={"target": target, "hop": hop.link_id, "host": hop.host, "port": hop.port},
    )


def _is_timeout(exc: BaseException) -> bool:
    if isinstance(exc, TimeoutError | socket.timeout):
        return True
    text = str(exc).lower()
    return "timed out" in text or "timeout" in text or "banner" in text


def _open_socket(hop: HopSpec, target: str, timeouts: Timeouts,
                 via: paramiko.Transport | None) -> socket.socket | paramiko.Channel:
    if via is None:
        try:
            sock = socket.create_connection((hop.host, hop.port), timeout=timeouts.connect)
            # Small request/reply packets (keystrokes, keepalives, exec requests) would
            # otherwise wait ~40 ms for Nagle + delayed ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if timeouts.keepalive > 0 and hasattr(socket, "TCP_USER_TIMEOUT"):
                # Dead-peer detection: paramiko's keepalives only send. With unacknowledged
                # data (a keepalive at least) older than 3 intervals, the kernel drops the
                # connection, the transport dies and every stream on it ends with an error.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT,
                                int(timeouts.keepalive * 3 * 1000))
            return QuickAckSocket.adopt(sock) if hasattr(socket, "TCP_QUICKACK") else sock
        except OSError as exc:
            reason = "timeout" if _is_timeout(exc) else "connect"
            raise _fail(hop, target, "TCP connect", reason, exc)
    try:
        return via.open_channel(
            "direct-tcpip", (hop.host, hop.port), ("127.0.0.1", 0), timeout=timeouts.connect
        )
    except (paramiko.SSHException, OSError, EOFError) as exc:
        reason = "timeout" if _is_timeout(exc) else "connect"
        raise _fail(hop, target, "ProxyJump tunnel", reason, exc)


def open_hop(
    hop: HopSpec,
    *,
    target: str,
    timeouts: Timeouts,
    known_hosts: KnownHosts,
    via: paramiko.Transport | None = None,
    track: list[Any] | None = None,
) -> paramiko.Transport:
    """Open, verify and authenticate one hop. See the module docstring for the steps.

    ``track`` (if given) receives the socket and the transport as soon as they exist, so that
    a caller whose deadline passed can close them from another thread (which wakes this one).

    *Errors*: :class:`SshError` and subclasses; nothing is left open on failure.
    """
    key = load_private_key(hop.key_path)
    try:
        pin = HostKeyPin.parse(hop.host_key_pin) if hop.host_key_pin else None
    except ValueError as exc:
        # A pin we cannot read must never degrade to "no pin".
        raise HostKeyMismatchError(f"pinned host key of {hop.label} is invalid: {exc}",
                                   details={"target": target, "hop": hop.link_id})
    sock = _open_socket(hop, target, timeouts, via)
    if track is not None:
        track.append(sock)
    transport: paramiko.Transport | None = None
    try:
        transport = _Transport(sock)
        if track is not None:
            track.append(transport)
        transport.set_log_channel(PARAMIKO_LOG)
        transport.banner_timeout = timeouts.banner
        transport.handshake_timeout = timeouts.banner
        transport.auth_timeout = timeouts.auth
        preferred = [pin.key_type] if pin is not None and pin.key_type else (
            known_hosts.preferred_key_types(hop.host, hop.port))
        if preferred:
            _prefer_host_key_types(transport, preferred)
        _prefer_aead_ciphers(transport)
        # start_client(timeout=…) returns silently on timeout: wait on our own event.
        negotiated = threading.Event()
        try:
            transport.start_client(event=negotiated)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise _fail(hop, target, "SSH handshake", "connect", exc)
        if not negotiated.wait(timeouts.connect):
            raise _fail(hop, target, f"no SSH handshake within {timeouts.connect:g} s",
                        "timeout", None)
        if not transport.is_active():
            cause = transport.get_exception() or paramiko.SSHException("negotiation failed")
            raise _fail(hop, target, "SSH handshake", "timeout" if _is_timeout(cause) else
                        "connect", cause)
        server_key = transport.get_remote_server_key()
        known_hosts.verify(hop.host, hop.port, server_key, pin=pin, target=target,
                           hop=hop.link_id)
        try:
            transport.auth_publickey(hop.user, key)
        except paramiko.AuthenticationException as exc:
            raise SshAuthError(
                f"SSH to {hop.label}: the server refused key {hop.key_path.name} for user "
                f"{hop.user} ({exc})",
                details={"target": target, "hop": hop.link_id, "key": hop.key_path.name},
            )
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise _fail(hop, target, "authentication", "timeout" if _is_timeout(exc) else
                        "connect", exc)
        if not transport.is_authenticated():
            raise SshAuthError(f"SSH to {hop.label}: authentication did not complete",
                               details={"target": target, "hop": hop.link_id})
        if timeouts.keepalive > 0:
            transport.set_keepalive(timeouts.keepalive)
        # paramiko's reader thread wakes every 0.1 s to see whether it should stop (and to
        # send keepalives); idle pooled connections did that 10 times a second each, competing
        # for the GIL with the Trio thread. close() does not need it (it marks the packetizer
        # closed and returns); the thread then ends within this interval.
        transport.sock.settimeout(IDLE_POLL_SECONDS)
        return transport
    except BaseException:
        if transport is not None:
            transport.close()
        sock.close()
        raise


# Authenticated encryption first (OpenSSH's own order puts these before the CTR modes).
# paramiko lists them last; with a CTR cipher every packet also gets an HMAC that paramiko
# compares byte by byte in Python (util.constant_time_bytes_eq): measured as a third of the
# service's CPU per fan-out link, gone with GCM (the tag is checked by the cipher, in C).
AEAD_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


def _prefer_aead_ciphers(transport: paramiko.Transport) -> None:
    options = transport.get_security_options()
    current = list(options.ciphers)
    first = [c for c in AEAD_CIPHERS if c in current]
    options.ciphers = first + [c for c in current if c not in first]


def _prefer_host_key_types(transport: paramiko.Transport, preferred: Sequence[str]) -> None:
    # RSA keys are negotiated as rsa-sha2-*; paramiko lists those, not "ssh-rsa".
    wanted: list[str] = []
    for name in preferred:
        wanted.extend(["rsa-sha2-512", "rsa-sha2-256"] if name == "ssh-rsa" else [name])
    options = transport.get_security_options()
    current = list(options.key_types)
    first = [k for k in wanted if k in current]
    if first:
        options.key_types = first + [k for k in current if k not in first]


def open_chain(
    hops: Sequence[HopSpec],
    *,
    target: str,
    timeouts: Timeouts,
    known_hosts: KnownHosts,
    track: list[Any] | None = None,
) -> list[paramiko.Transport]:
    """Open the hops in order (outermost ProxyJump first); the last one is the target.

    *Errors*: the first hop's :class:`SshError`; hops already opened are closed.
    """
    opened: list[paramiko.Transport] = []
    try:
        for hop in hops:
            opened.append(open_hop(hop, target=target, timeouts=timeouts,
                                   known_hosts=known_hosts, via=opened[-1] if opened else None,
                                   track=track))
        return opened
    except BaseException:
        close_chain(opened)
        raise


def close_chain(transports: Sequence[paramiko.Transport]) -> None:
    """Close the target first, then the hops it was tunnelled through."""
    for transport in reversed(transports):
        try:
            transport.close()
        except Exception:  # noqa: S110 - closing a dead transport may raise; nothing to do
            pass
