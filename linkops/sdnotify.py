"""Our own small sd_notify(3): readiness, stopping, status and watchdog pings to systemd.

systemd (``Type=notify``) passes a socket path in ``$NOTIFY_SOCKET``; a message is one
datagram of newline-separated ``KEY=VALUE`` assignments sent to it. A path starting with ``@``
names a socket in Linux's abstract namespace (the ``@`` becomes a NUL byte). When the variable
is unset (a shell, the tests, ``linkops demo``) every function here is a silent no-op, so
callers never need to ask whether they run under systemd.

Why not libsystemd or a PyPI package: the protocol is one ``sendto`` on an ``AF_UNIX``
datagram socket; twenty lines of our own beat a C dependency (see ARCHITECTURE, the design
card lists sd_notify among our hand-rolled protocols).

*Cancellation*: every function is a plain synchronous call made of one non-blocking
``sendto``; it never waits, so calling it from the Trio thread is fine and there is nothing
to cancel.

*Resource handling*: a fresh socket is opened and closed per message (a handful of messages
per minute at most), so nothing leaks across ``fork`` or outlives the process.

*Errors*: sending is best effort. A missing or unreachable socket (systemd restarted, the
variable inherited by a stray child) must not take the service down, so ``OSError`` is
swallowed and the call returns ``False``; a malformed ``$NOTIFY_SOCKET`` also returns
``False``. Functions return ``True`` only when a datagram was handed to the kernel.

Usage in :mod:`linkops.server`::

    sdnotify.ready()          # after the port is bound and migrations ran
    sdnotify.status("serving on 127.0.0.1:8000")
    sdnotify.stopping()       # first thing on SIGTERM
    background.start_soon(sdnotify.watchdog_loop)  # returns at once without WatchdogSec=
"""

from __future__ import annotations

import os
import socket

import trio

__all__ = [
    "notify",
    "ready",
    "status",
    "stopping",
    "watchdog",
    "watchdog_interval",
    "watchdog_loop",
]


def _address(raw: str) -> str | bytes | None:
    """Turn ``$NOTIFY_SOCKET`` into a ``sendto`` address, or ``None`` when unusable."""
    if raw.startswith("@"):
        # Abstract namespace: a leading NUL, no filesystem entry, no trailing NUL.
        return b"\0" + raw[1:].encode()
    if raw.startswith("/"):
        return raw
    # systemd also knows vsock: addresses ("vsock:CID:PORT") for VMs; an LXC service never
    # gets one, so we treat anything else as not for us rather than guessing.
    return None


def notify(message: str, *, environ: dict[str, str] | None = None) -> bool:
    """Send one sd_notify message (``"READY=1"``, ``"STATUS=…"``, several joined by ``\\n``).

    Returns ``True`` when the datagram was sent, ``False`` when ``$NOTIFY_SOCKET`` is unset,
    malformed or unreachable. Never raises ``OSError``.
    """
    env = os.environ if environ is None else environ
    raw = env.get("NOTIFY_SOCKET", "")
    if not raw:
        return False
    address = _address(raw)
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            # A datagram socket whose peer queue is full would block; never stall the
            # event loop for a notification.
            sock.setblocking(False)
            sock.sendto(message.encode("utf-8", "replace"), address)
    except OSError:
        return False
    return True


def ready(status_text: str | None = None) -> bool:
    """Tell systemd the service is up (``READY=1``), optionally with a status line.

    Call it only once the port is bound and migrations ran: ``systemctl start`` returns
    (and units ordered after us start) at this moment.
    """
    message = "READY=1"
    if status_text is not None:
        message += "\nSTATUS=" + _one_line(status_text)
    return notify(message)


def stopping(status_text: str | None = None) -> bool:
    """Tell systemd a graceful shutdown has begun (``STOPPING=1``)."""
    message = "STOPPING=1"
    if status_text is not None:
        message += "\nSTATUS=" + _one_line(status_text)
    return notify(message)


def status(text: str) -> bool:
    """Set the free-form status line shown by ``systemctl status linkopsd``."""
    return notify("STATUS=" + _one_line(text))


def watchdog() -> bool:
    """Ping the watchdog (``WATCHDOG=1``); do it every :func:`watchdog_interval` seconds."""
    return notify("WATCHDOG=1")


def watchdog_interval(environ: dict[str, str] | None = None) -> float | None:
    """Seconds between watchdog pings, or ``None`` when no watchdog is armed for us.

    systemd sets ``WATCHDOG_USEC`` (the ``WatchdogSec=`` timeout in microseconds) and
    ``WATCHDOG_PID``. Like ``sd_watchdog_enabled(3)`` we ignore them when ``WATCHDOG_PID``
    names another process (the variables leaked into a child). The interval returned is half
    the timeout, the margin systemd's documentation recommends.
    """
    env = os.environ if environ is None else environ
    raw_usec = env.get("WATCHDOG_USEC", "")
    try:
        usec = int(raw_usec)
    except ValueError:
        return None
    if usec <= 0:
        return None
    raw_pid = env.get("WATCHDOG_PID", "")
    if raw_pid:
        try:
            if int(raw_pid) != os.getpid():
                return None
        except ValueError:
            return None
    return usec / 1_000_000 / 2


async def watchdog_loop() -> None:
    """Ping the watchdog every :func:`watchdog_interval` seconds, forever.

    Returns at once when no watchdog is armed. Run it in the nursery of the background
    services (cancelled when shutdown begins; a task that never ends in the root nursery
    would hold the shutdown until its deadline). It pings from the Trio thread, so a loop
    blocked by a synchronous call stops the pings and systemd restarts the service, which is
    the point of having a watchdog.

    *Cancellation*: cancelled at its ``trio.sleep``; cancelling it stops the pings (do that
    only when the process is about to exit, or systemd kills it after ``WatchdogSec=``).
    """
    interval = watchdog_interval()
    if interval is None:
        return
    while True:
        watchdog()
        await trio.sleep(interval)


def _one_line(text: str) -> str:
    # A newline would start a new assignment: STATUS text must never forge READY=1 etc.
    return " ".join(text.splitlines())
