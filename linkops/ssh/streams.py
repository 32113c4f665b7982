"""Streaming channels: remote commands (:class:`ExecStream`) and PTY shells (:class:`ShellStream`).

Each open stream owns one paramiko channel and one *pump thread* that reads stdout and stderr
concurrently (one ``select`` on the channel covers both windows, so paramiko never deadlocks
on a full stderr window while we wait on stdout) and hands chunks to Trio through a bounded
memory channel with ``trio.from_thread.run(send.send, chunk)``: a slow reader slows the pump,
the pump stops draining the SSH window, and the remote writer blocks (end-to-end backpressure).

Pump threads live as long as their stream, so they count against the manager's *stream*
limiter (``acquire_on_behalf_of`` on open, released when the thread ends), not against the
limiter for short blocking calls (connect, write, resize): a hundred open terminals must not
starve new connections. The pump alone touches the channel's poll pipe and closes the channel
when it ends, so ``aclose`` never races a ``select`` on a closed descriptor.

*Cancellation*: every ``await`` here is a checkpoint. Cancelling :meth:`ExecStream.receive`
loses no data (the chunk stays in the memory channel). :meth:`aclose` is safe to call from a
cancelled scope; it closes the receive side (which wakes a pump blocked on backpressure) and
the SSH channel.

*Resource handling*: always ``aclose`` a stream (or use ``async with``); a stream that is
dropped while its pump is blocked on a full buffer keeps its thread until the connection dies.
Closing a channel does **not** kill a remote process that has no PTY: callers that must stop a
command (operations) run it under ``setsid`` and kill the process group with a second exec.

*Errors*: :class:`~linkops.ssh.errors.SshError` (reason ``closed``) when the connection was
lost before the command reported its exit status.
"""

from __future__ import annotations

import select
import threading
from types import TracebackType
from typing import Final

import paramiko
import trio

from linkops.ssh.client import EXIT_SIGNAL_ATTR
from linkops.ssh.errors import SshError

# The most one read takes from paramiko's channel buffer (it returns what is there, never
# waits for more): under load one hand-off to Trio carries everything that arrived meanwhile,
# instead of one 32 KiB packet per thread round trip (which capped a stream at ~20 MB/s when
# the Trio thread was busy; see docs/performance.md).
CHUNK: Final = 262144
POLL_SECONDS: Final = 0.25
BUFFERED_CHUNKS: Final = 16
# Exit code reported when the channel closed without an exit status or signal (e.g. we closed
# it first). A command killed by signal N reports 128 + N (see linkops.ssh.client).
NO_EXIT_STATUS: Final = -1

_STOP_PUMP = (trio.BrokenResourceError, trio.ClosedResourceError, trio.RunFinishedError,
              trio.Cancelled)


def _close_quietly(chan: paramiko.Channel) -> None:
    try:
        chan.close()
    except (OSError, EOFError, paramiko.SSHException):
        pass  # the transport is already gone; so is the channel


class _ChannelPump:
    """The shared machinery of both stream kinds (one channel, one pump thread)."""

    def __init__(self, chan: paramiko.Channel, limiter: trio.CapacityLimiter,
                 pump_limiter: trio.CapacityLimiter, label: str) -> None:
        self._chan = chan
        self._limiter = limiter
        self._pump_limiter = pump_limiter
        self._pump_exited = threading.Event()
        self._label = label
        self._token = trio.lowlevel.current_trio_token()
        self._send, self._recv = trio.open_memory_channel[tuple[str, bytes]](BUFFERED_CHUNKS)
        self._done = trio.Event()
        self._exit_code: int | None = None
        self._error: SshError | None = None
        self._stopping = threading.Event()
        self._closed = False
        self._started = False

    async def start(self) -> None:
        await self._pump_limiter.acquire_on_behalf_of(self)
        self._started = True
        trio.lowlevel.start_thread_soon(self._pump, lambda _outcome: None,
                                        name=f"linkops-ssh-pump {self._label}")

    # -- worker thread ---------------------------------------------------------------------

    def _deliver(self, name: str, data: bytes) -> bool:
        try:
            trio.from_thread.run(self._send.send, (name, data), trio_token=self._token)
        except _STOP_PUMP:
            return False
        return True

    def _pump(self) -> None:
        chan = self._chan
        code: int | None = None
        error: SshError | None = None
        try:
            while not self._stopping.is_set():
                got = False
                if chan.recv_ready():
                    data = chan.recv(CHUNK)
                    if data:
                        got = True
                        if not self._deliver("stdout", data):
                            break
                if chan.recv_stderr_ready():
                    data = chan.recv_stderr(CHUNK)
                    if data:
                        got = True
                        if not self._deliver("stderr", data):
                            break
                if got:
                    continue
                if chan.eof_received or chan.closed:
                    if not (chan.recv_ready() or chan.recv_stderr_ready()):
                        break
                    continue
                select.select([chan], [], [], POLL_SECONDS)
            while not self._stopping.is_set() and not chan.status_event.wait(POLL_SECONDS):
                pass
            if chan.exit_status_ready() and chan.exit_status != NO_EXIT_STATUS:
                code = chan.exit_status
            elif self._stopping.is_set():
                code = NO_EXIT_STATUS
            else:
                transport = chan.get_transport()
                if transport is None or not transport.is_active():
                    error = SshError(f"connection to {self._label} was lost while the command "
                                     "was running", reason="closed",
                                     details={"target": self._label})
                else:
                    code = NO_EXIT_STATUS
        except (OSError, EOFError, paramiko.SSHException) as exc:
            error = SshError(f"connection to {self._label} failed: {exc}", reason="closed",
                             details={"target": self._label})
        finally:
            self._pump_exited.set()
            _close_quietly(chan)
            try:
                self._token.run_sync_soon(self._finish, code, error)
            except trio.RunFinishedError:
                pass

    # -- trio thread -----------------------------------------------------------------------

    def _finish(self, code: int | None, error: SshError | None) -> None:
        self._exit_code = code
        self._error = error
        self._send.close()
        self._done.set()
        self._pump_limiter.release_on_behalf_of(self)

    async def _receive(self) -> tuple[str, bytes] | None:
        try:
            return await self._recv.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            return None

    async def _send_input(self, data: bytes) -> None:
        try:
            await trio.to_thread.run_sync(self._chan.sendall, data, limiter=self._limiter,
                                          abandon_on_cancel=True)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise SshError(f"cannot write to {self._label}: {exc}", reason="closed",
                           details={"target": self._label})

    async def _wait(self) -> int:
        await self._done.wait()
        if self._error is not None:
            raise self._error
        assert self._exit_code is not None
        return self._exit_code

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        self._recv.close()  # wakes a pump blocked on backpressure (BrokenResourceError)
        if self._pump_exited.is_set() or not self._started:
            # No pump will close it. Sending CHANNEL_CLOSE may wait for the transport lock:
            # off the trio thread, fire-and-forget, so aclose works in cancelled scopes.
            chan = self._chan
            trio.lowlevel.start_thread_soon(lambda: _close_quietly(chan), lambda _outcome: None)
        # Otherwise the pump sees the stop flag within POLL_SECONDS and closes the channel.
        await trio.lowlevel.checkpoint()


class ExecStream(_ChannelPump):
    """A running remote command. Read with :meth:`receive` until it returns ``None``."""

    async def receive(self) -> tuple[str, bytes] | None:
        """The next ``("stdout" | "stderr", chunk)``; ``None`` at EOF (both streams ended)."""
        return await self._receive()

    async def send_stdin(self, data: bytes) -> None:
        """Write to the command's stdin (blocks while the remote window is full)."""
        await self._send_input(data)

    async def close_stdin(self) -> None:
        """Send EOF on stdin."""
        await trio.to_thread.run_sync(self._chan.shutdown_write, limiter=self._limiter,
                                      abandon_on_cancel=True)

    async def wait_exit(self) -> int:
        """The exit code, once the output was read and the command ended.

        A command killed by a signal reports ``128 + signal number`` (143 for SIGTERM, as
        ``$?`` in a shell; :attr:`exit_signal` names it); ``-1`` means the channel closed
        without either (e.g. closed by us). Read the output first (until ``None``): the pump
        does not drop output, so an unread buffer keeps the command from finishing.

        *Errors*: :class:`SshError` (reason ``closed``) when the connection died first.
        """
        return await self._wait()

    @property
    def exit_signal(self) -> str | None:
        """The signal that killed the command (``"TERM"``, ``"KILL"``…), once it ended."""
        name = getattr(self._chan, EXIT_SIGNAL_ATTR, None)
        return name if isinstance(name, str) else None

    async def __aenter__(self) -> ExecStream:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()


class ShellStream(_ChannelPump):
    """An interactive PTY shell (stderr is merged into the PTY by the server)."""

    async def receive_some(self) -> bytes:
        """The next chunk of terminal output; ``b""`` once the shell ended."""
        item = await self._receive()
        return b"" if item is None else item[1]

    async def send(self, data: bytes) -> None:
        """Keystrokes to the shell."""
        await self._send_input(data)

    async def resize(self, cols: int, rows: int) -> None:
        """Tell the remote PTY its new size (SIGWINCH on the remote side)."""
        await trio.to_thread.run_sync(self._chan.resize_pty, cols, rows, limiter=self._limiter,
                                      abandon_on_cancel=True)

    async def wait_exit(self) -> int:
        """Exit status of the shell after :meth:`receive_some` returned ``b""``."""
        return await self._wait()

    async def __aenter__(self) -> ShellStream:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()
