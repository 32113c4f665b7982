"""The async face of the SSH layer: connections made in worker threads, pooled, cancellable.

Owns the SSH thread limiter (``[ssh] max_threads``, for short blocking calls: connect, open a
channel, write, resize, close; paramiko never uses Trio's default 40-thread limiter, which the
database and everything else share), the stream limiter (open streams, :data:`MAX_STREAMS`:
each holds a channel), the process-wide
:class:`~linkops.ssh.known_hosts.KnownHosts`, and a small pool of authenticated connections.

Public surface::

    manager = SshManager(settings.ssh)
    conn = await manager.connect(link, resolve)           # a connection you own: aclose() it
    async with manager.connection(link, resolve) as conn:  # pooled, shared while healthy
        result = await conn.run("uname -a")               # ExecResult(exit_code, stdout, ...)
        stream = await conn.open_exec(f"bash -s -- {shlex.quote(arg)}")   # ExecStream
        shell = await conn.open_shell(cols=120, rows=40)  # ShellStream (PTY)
    await manager.aclose()

**Commands are one string run by the remote user's shell** (sshd runs ``$SHELL -c STRING``;
SSH has no argv): quote every variable part with :func:`shlex.quote`. Many channels (exec and
shell) may run at once on one connection, up to the server's ``MaxSessions`` (OpenSSH default
10); the pool opens another connection when a shared one carries :data:`MAX_SHARED_USERS`
borrowers.

``resolve`` maps a link id to its :class:`~linkops.models.Link` (a mapping or a callable); it
is used to follow ``ssh.proxyJump`` chains, outermost hop first. Every hop's host key is
checked; a cycle or an unknown hop is an :class:`SshError`.

*Retries*: connection setup only (never a command): ``[ssh] max_retries`` further attempts
with exponential backoff (0.5 s, 1 s, 2 s, … capped at 8 s), and none for failures that would
repeat (host key, authentication, key file).

*Liveness*: keepalives every ``[ssh] keepalive_interval`` seconds and ``TCP_USER_TIMEOUT`` at
three intervals (see :mod:`.client`): a vanished peer ends every stream on the connection with
an :class:`SshError` (reason ``closed``) instead of hanging.

*Deadlines and shares*: every blocking call runs through :class:`~linkops.ssh.boundary.Lane`
(one exception mapping, a deadline of ``[ssh] connection_timeout`` per request and per hop of
a connect, the link's ``[ssh] max_per_link`` share of threads). A request that outlives its
deadline closes its connection; one that only waited for a thread marks it unshared.

*Cancellation*: connecting runs with ``abandon_on_cancel=True``: a cancelled caller returns
at once; the abandoned attempt's sockets are closed (which ends its thread), and if it
succeeds meanwhile, what it opened is closed. Closing is shielded, bounded and needs no
thread slot. :meth:`SshManager.aclose` closes every connection, borrowed or owned.

*Pool*: keyed by the full hop chain (link ids, hosts, ports, users, key files, pins), so a
link whose parameters change gets a new connection. A pooled connection is reused while its
transports are active; one idle for more than :data:`PING_AFTER_IDLE` seconds is pinged
first, one idle for more than ``idle_timeout`` is closed on the next pool access.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, Final

import attrs
import paramiko
import trio

from linkops.config import SshSettings
from linkops.errors import ExecutionTimeoutError
from linkops.models import Link
from linkops.ssh.boundary import Lane, LinkLimiter, close_soon
from linkops.ssh.client import HopSpec, Timeouts, close_chain, fits_send_window, open_chain
from linkops.ssh.errors import PERMANENT, SshError
from linkops.ssh.keys import resolve_key_path
from linkops.ssh.known_hosts import KnownHosts
from linkops.ssh.streams import ExecStream, ShellStream

__all__ = ["ExecResult", "ExecStream", "Resolver", "ShellStream", "SshConnection",
           "SshManager", "hop_chain"]

Resolver = Callable[[str], Link] | Mapping[str, Link]
DEFAULT_MAX_OUTPUT: Final = 1_048_576
MAX_SHARED_USERS: Final = 4
# Open exec/shell streams (a channel each) across the process.
MAX_STREAMS: Final = 512
PING_AFTER_IDLE: Final = 30.0
# Idle connections kept (one per recently used link, mostly): a fleet operation on 500 links
# that runs again within ``idle_timeout`` reuses every connection (bench/fanout_bench.py).
# An idle one costs a paramiko thread waking once per second (see client.IDLE_POLL_SECONDS).
POOL_SIZE: Final = 1024
# Returning a connection checks the pool at most this often (unless it is over size): a full
# scan per return made a 500-link operation O(N²) on the Trio thread.
REAP_EVERY: Final = 1.0
MAX_CHAIN: Final = 8
BACKOFF_BASE: Final = 0.5
BACKOFF_CAP: Final = 8.0


@attrs.frozen
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes
    duration: float
    truncated: bool = False


def _lookup(resolve: Resolver, link_id: str) -> Link:
    try:
        return resolve[link_id] if isinstance(resolve, Mapping) else resolve(link_id)
    except KeyError:
        raise SshError(f"ProxyJump target {link_id!r} is not in the inventory",
                       details={"hop": link_id})


def hop_chain(link: Link, resolve: Resolver, settings: SshSettings) -> tuple[HopSpec, ...]:
    """The hops to reach ``link``: its ProxyJump chain outermost first, then the link itself."""
    chain: list[Link] = [link]
    seen = {link.id}
    while chain[0].ssh.proxyJump:
        jump = chain[0].ssh.proxyJump
        if jump in seen or len(chain) >= MAX_CHAIN:
            raise SshError(f"ProxyJump chain of {link.id} loops or is too long at {jump!r}",
                           details={"target": link.id, "hop": jump})
        seen.add(jump)
        chain.insert(0, _lookup(resolve, jump))
    return tuple(
        HopSpec(
            link_id=hop.id, host=hop.host, port=hop.port, user=hop.user,
            key_path=resolve_key_path(settings.keys_directory,
                                      hop.ssh.keyRef or settings.default_key),
            host_key_pin=hop.ssh.hostKey,
        )
        for hop in chain
    )


class _Handoff:
    """Lets an abandoned connect attempt learn that nobody will take its result."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.abandoned = False
        self.result: list[paramiko.Transport] | None = None
        # Sockets and transports as the attempt creates them (closed on its deadline).
        self.opened: list[Any] = []

    def abandon(self) -> None:
        """Nobody waits any more: close what was made (and so wake the thread still in it)."""
        with self.lock:
            self.abandoned = True
            # What the attempt is still making, or all of it if it finished meanwhile.
            opened = list(self.opened) + list(self.result or [])
            self.opened, self.result = [], None
        if opened:
            close_soon(lambda: _close_all(opened))


def _close_all(objects: list[Any]) -> None:
    for obj in reversed(objects):
        try:
            obj.close()
        except Exception:  # noqa: S110 - closing what is already broken
            pass


class SshConnection:
    """An authenticated connection to one link (through its ProxyJump hops).

    All its blocking work goes through :attr:`lane` (see :mod:`.boundary`): a channel request
    that outlives ``[ssh] connection_timeout`` closes the whole connection (:meth:`abort`).
    """

    def __init__(self, manager: SshManager, hops: tuple[HopSpec, ...],
                 transports: list[paramiko.Transport]) -> None:
        self.manager = manager
        self.hops = hops
        self.link_id = hops[-1].link_id
        self._transports = transports
        self._ping_lock = threading.Lock()
        self._closed = False
        self.lane = Lane(self.link_id, manager.link_limiter(self.link_id),
                         manager.settings.connection_timeout, self.abort)
        manager._live.add(self)

    @property
    def transport(self) -> paramiko.Transport:
        return self._transports[-1]

    def is_healthy(self) -> bool:
        """Open, authenticated, and no request on it missed its deadline (not even waiting
        for a thread: then the link is too busy or too slow to share this connection)."""
        return not self._closed and not self.lane.timed_out and all(
            t.is_active() and t.is_authenticated() for t in self._transports)

    def abort(self) -> None:
        """Close at once, never waiting (Trio thread): every thread blocked on one of the
        connection's channels wakes with an error; the pool drops it on return."""
        self.manager._live.discard(self)
        if self._closed:
            return
        self._closed = True
        close_soon(partial(close_chain, list(self._transports)))

    async def _open_channel(self, *, pty: bool, term: str, cols: int, rows: int,
                            command: str | None, stdin: bytes | None = None,
                            progress: set[str] | None = None
                            ) -> tuple[paramiko.Channel, bool]:
        """The channel, and whether ``stdin`` (then EOF) was sent with it (see open_exec).

        ``progress`` (if given) receives ``"request"`` once the exec or shell request is
        about to be sent: before that, a command provably cannot have started."""
        timeout = self.manager.settings.connection_timeout
        if self._closed:
            raise SshError(f"the connection to {self.link_id} is closed", reason="closed",
                           details={"target": self.link_id})

        def work() -> tuple[paramiko.Channel, bool]:
            chan = self.transport.open_session(timeout=timeout)
            sent = False
            try:
                if pty:
                    chan.get_pty(term=term, width=cols, height=rows)
                if progress is not None:
                    progress.add("request")
                if command is None:
                    chan.invoke_shell()
                else:
                    chan.exec_command(command)
                if stdin is not None and fits_send_window(chan, len(stdin)):
                    chan.sendall(stdin)
                    chan.shutdown_write()
                    sent = True
            except BaseException:
                chan.close()
                raise
            return chan, sent

        what = "a shell request" if command is None else "an exec request"
        return await self.lane.call(work, what=what)

    async def open_exec(self, command: str, *, pty: bool = False,
                        stdin: bytes | None = None,
                        progress: set[str] | None = None) -> ExecStream:
        """Start ``command`` (one shell string: quote with shlex) and stream its output.

        With ``pty=True`` the server merges stderr into stdout and closing the channel
        hangs up the remote process (SIGHUP). With ``stdin``, that and EOF are sent in the
        same worker-thread hop as the exec when the server's window takes it all at once
        (:attr:`ExecStream.stdin_done`); otherwise the caller still has to send it, while
        reading (a remote that writes before it reads would otherwise deadlock).
        """
        chan, sent = await self._open_channel(pty=pty, term="xterm-256color", cols=80,
                                              rows=24, command=command, stdin=stdin,
                                              progress=progress)
        stream = ExecStream(chan, self.lane, self.manager.stream_limiter)
        stream.stdin_done = sent
        await _start_or_close(stream)
        return stream

    async def open_shell(self, *, term: str = "xterm-256color", cols: int = 80,
                         rows: int = 24) -> ShellStream:
        """An interactive login shell on a PTY of ``cols`` x ``rows``."""
        chan, _ = await self._open_channel(pty=True, term=term, cols=cols, rows=rows,
                                           command=None)
        stream = ShellStream(chan, self.lane, self.manager.stream_limiter)
        await _start_or_close(stream)
        return stream

    async def run(self, command: str, *, stdin: bytes | None = None,
                  # The deadline is part of the contract (EXECUTION_TIMEOUT, not Cancelled).
                  timeout: float | None = None,  # noqa: ASYNC109
                  max_output: int = DEFAULT_MAX_OUTPUT) -> ExecResult:
        """Run ``command`` to completion and collect its output.

        ``command`` is one string for the remote shell: quote variable parts with shlex.
        stdin gets ``stdin`` (if any) then EOF. Output beyond ``max_output`` bytes per stream
        is read and dropped (``truncated=True``). ``timeout`` defaults to
        ``[ssh] command_timeout``; ``math.inf`` disables it.

        *Errors*: :class:`ExecutionTimeoutError` when the deadline passes (the channel is
        closed; a remote process without PTY may keep running), :class:`SshError` when the
        connection breaks.
        """
        limit = self.manager.settings.command_timeout if timeout is None else timeout
        started = trio.current_time()
        out = {"stdout": bytearray(), "stderr": bytearray()}
        truncated = False
        stream = await self.open_exec(command, stdin=stdin or b"")
        async with stream:
            with trio.move_on_after(limit) as scope:
                async with trio.open_nursery() as nursery:
                    if not stream.stdin_done:
                        nursery.start_soon(_feed_stdin, stream, stdin)
                    while (item := await stream.receive()) is not None:
                        name, chunk = item
                        room = max_output - len(out[name])
                        if len(chunk) > room:
                            truncated = True
                        out[name] += chunk[:max(room, 0)]
                code = await stream.wait_exit()
        if scope.cancelled_caught:
            raise ExecutionTimeoutError(
                f"command on {self.link_id} did not finish within {limit:g} s",
                details={"target": self.link_id, "timeout": limit})
        return ExecResult(exit_code=code, stdout=bytes(out["stdout"]),
                          stderr=bytes(out["stderr"]),
                          duration=trio.current_time() - started, truncated=truncated)

    async def ping(self, timeout: float = 10.0) -> float:  # noqa: ASYNC109
        """Round trip of a no-op global request, in seconds (network + sshd, no shell).

        *Errors*: :class:`SshError` when the connection is dead or the reply is late (a late
        reply closes the connection, see :class:`~linkops.ssh.boundary.Lane`).
        """
        def work() -> float:
            with self._ping_lock:  # paramiko keeps one completion event per transport
                t0 = time.monotonic()
                self.transport.global_request("keepalive@openssh.com", wait=True)
                if not self.transport.is_active():
                    raise SshError(f"connection to {self.link_id} is closed", reason="closed",
                                   details={"target": self.link_id})
                return time.monotonic() - t0

        return await self.lane.call(work, what="a keepalive", timeout=timeout)

    async def aclose(self) -> None:
        """Close the target transport, then the hops (shielded, bounded, no limiter: a
        connection must close even while every SSH thread is taken)."""
        self.manager._live.discard(self)
        if self._closed:
            return
        self._closed = True
        transports = list(self._transports)
        done = trio.Event()
        token = trio.lowlevel.current_trio_token()

        def report(_outcome: object) -> None:
            try:
                token.run_sync_soon(done.set)
            except trio.RunFinishedError:
                pass

        trio.lowlevel.start_thread_soon(partial(close_chain, transports), report)
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            await done.wait()


async def _start_or_close(stream: ExecStream | ShellStream) -> None:
    try:
        await stream.start()
    except BaseException:
        await stream.aclose()
        raise


async def _feed_stdin(stream: ExecStream, data: bytes | None) -> None:
    try:
        await stream.send_stdin(data or b"", eof=True)
    except SshError:
        pass  # the command ended before reading everything; its exit code tells the story


@attrs.define
class _PoolEntry:
    conn: SshConnection
    users: int = 0
    last_used: float = 0.0
    # No new borrowers; closed when the last one returns (broken, or a borrower's request
    # went unanswered: a link that does not answer is not kept for the next one).
    retired: bool = False


class SshManager:
    """Connections for the whole process (see the module docstring)."""

    def __init__(self, settings: SshSettings, *, pool_size: int = POOL_SIZE,
                 idle_timeout: float = 300.0, max_streams: int = MAX_STREAMS) -> None:
        self.settings = settings
        self.limiter = trio.CapacityLimiter(settings.max_threads)
        # Each link's share of those threads (see boundary.py): a mute link cannot take more.
        self._link_limiters: dict[str, LinkLimiter] = {}
        # Every open connection, pooled, borrowed or owned by a caller: closed by aclose().
        self._live: set[SshConnection] = set()
        self.stream_limiter = trio.CapacityLimiter(max_streams)
        self.known_hosts = KnownHosts(settings.known_hosts_path, settings.host_key_policy)
        self.timeouts = Timeouts(connect=settings.connection_timeout,
                                 banner=settings.connection_timeout,
                                 auth=settings.connection_timeout,
                                 keepalive=settings.keepalive_interval)
        self.pool_size = pool_size
        self.idle_timeout = idle_timeout
        self._pool: dict[tuple[HopSpec, ...], list[_PoolEntry]] = {}
        self._key_locks: dict[tuple[HopSpec, ...], trio.Lock] = {}
        self._closed = False
        self._next_reap = 0.0
        self._entries = 0  # len of all pool lists, kept up to date (checked on every return)

    async def connect(self, link: Link, resolve: Resolver) -> SshConnection:
        """A new connection to ``link`` that the caller owns (``aclose`` it).

        *Errors*: :class:`SshError` (subclasses say host key, auth, key, timeout).
        """
        hops = hop_chain(link, resolve, self.settings)
        return await self._open(hops)

    async def _open(self, hops: tuple[HopSpec, ...]) -> SshConnection:
        attempts = self.settings.max_retries + 1
        for attempt in range(attempts):
            try:
                transports = await self._open_once(hops)
                return SshConnection(self, hops, transports)
            except PERMANENT:
                raise
            except SshError as exc:
                if attempt + 1 >= attempts:
                    exc.details["attempts"] = attempts
                    raise
            await trio.sleep(min(BACKOFF_BASE * 2**attempt, BACKOFF_CAP))
        raise AssertionError("unreachable")

    def link_limiter(self, link_id: str) -> LinkLimiter:
        """The thread limiter for ``link_id``'s SSH work (``[ssh] max_per_link`` in front of
        ``[ssh] max_threads``)."""
        limiter = self._link_limiters.get(link_id)
        if limiter is None:
            limiter = self._link_limiters[link_id] = LinkLimiter(
                trio.CapacityLimiter(self.settings.max_per_link), self.limiter)
        return limiter

    def connect_deadline(self, hops: tuple[HopSpec, ...]) -> float:
        """The whole connect (every hop: TCP, handshake, authentication) must end by then."""
        return self.settings.connection_timeout * len(hops)

    async def _open_once(self, hops: tuple[HopSpec, ...]) -> list[paramiko.Transport]:
        if self._closed:
            raise SshError("the SSH manager is closed", reason="closed")
        handoff = _Handoff()
        target = hops[-1].link_id

        def work() -> list[paramiko.Transport]:
            transports = open_chain(hops, target=target, timeouts=self.timeouts,
                                    known_hosts=self.known_hosts, track=handoff.opened)
            with handoff.lock:
                if handoff.abandoned:
                    close_chain(transports)
                else:
                    handoff.result = transports
                    handoff.opened = []
            return transports

        lane = Lane(target, self.link_limiter(target), self.connect_deadline(hops))
        try:
            return await lane.call(work, what="connect")
        except BaseException:
            # Cancelled or past the deadline: the attempt closes what it made (now or when
            # it gets that far), which also wakes its thread.
            handoff.abandon()
            raise

    @asynccontextmanager
    async def connection(self, link: Link, resolve: Resolver) -> AsyncIterator[SshConnection]:
        """Borrow a pooled connection to ``link`` for the duration of the block.

        Do not ``aclose`` it; a connection found broken (or one of whose requests missed its
        deadline) is dropped from the pool on return, and closed once nobody uses it.
        """
        hops = hop_chain(link, resolve, self.settings)
        entry = await self._acquire(hops)
        try:
            yield entry.conn
        finally:
            entry.users -= 1
            entry.last_used = time.monotonic()
            if entry.retired or not entry.conn.is_healthy():
                entry.retired = True
                await self._drop(hops, entry)
            if time.monotonic() >= self._next_reap or self._entries > self.pool_size:
                await self._reap()

    async def _acquire(self, hops: tuple[HopSpec, ...]) -> _PoolEntry:
        if self._closed:
            raise SshError("the SSH manager is closed", reason="closed")
        lock = self._key_locks.setdefault(hops, trio.Lock())
        async with lock:
            for entry in list(self._pool.get(hops, [])):
                if entry.users >= MAX_SHARED_USERS or entry.retired:
                    continue
                if entry.conn.is_healthy() and (
                    entry.users > 0 or time.monotonic() - entry.last_used < PING_AFTER_IDLE
                    or await self._answers(entry.conn)
                ):
                    entry.users += 1
                    return entry
                await self._drop(hops, entry)
            conn = await self._open(hops)
            entry = _PoolEntry(conn=conn, users=1, last_used=time.monotonic())
            self._pool.setdefault(hops, []).append(entry)
            self._entries += 1
            return entry

    @staticmethod
    async def _answers(conn: SshConnection) -> bool:
        try:
            await conn.ping(timeout=5.0)
        except SshError:
            return False
        return True

    async def _drop(self, hops: tuple[HopSpec, ...], entry: _PoolEntry) -> None:
        entries = self._pool.get(hops, [])
        if entry in entries:
            entries.remove(entry)
            self._entries -= 1
        if not entries:
            self._pool.pop(hops, None)
        if entry.users == 0:
            await entry.conn.aclose()

    async def _reap(self) -> None:
        now = time.monotonic()
        self._next_reap = now + REAP_EVERY
        idle = sorted(((e.last_used, hops, e) for hops, es in self._pool.items() for e in es
                       if e.users == 0), key=lambda item: item[0])
        excess = max(0, sum(len(es) for es in self._pool.values()) - self.pool_size)
        for i, (last_used, hops, entry) in enumerate(idle):
            if i < excess or now - last_used > self.idle_timeout or not entry.conn.is_healthy():
                await self._drop(hops, entry)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
                  interval: float = 30.0) -> None:
        """Optional root-nursery service: close idle or dead pooled connections every
        ``interval`` seconds (without it they are reaped on the next pool access)."""
        task_status.started()
        while True:
            await trio.sleep(interval)
            await self._reap()

    def pooled_count(self) -> int:
        return sum(len(es) for es in self._pool.values())

    async def aclose(self) -> None:
        """Close every connection: pooled, borrowed and owned ones (shutdown).

        Never waits for a stuck thread: transports are closed from threads of their own, which
        wakes every thread blocked on one of their channels.
        """
        self._closed = True
        self._pool.clear()
        self._entries = 0
        for conn in list(self._live):  # borrowed ones too: their borrowers see it closed
            conn.abort()
        await trio.lowlevel.checkpoint()

