"""Streaming channels: remote commands (:class:`ExecStream`) and PTY shells (:class:`ShellStream`).

*Reading* happens on the Trio thread, without a thread per stream: paramiko's transport
thread files incoming data into the channel's buffers and wakes the reader with
``run_sync_soon`` (a :class:`~linkops.ssh.client.BufferWaker` in place of the buffers' event);
:meth:`receive` takes what is buffered (stdout and stderr in turn, so paramiko never
deadlocks on a full stderr window while we wait on stdout), without blocking
(:func:`~linkops.ssh.client.read_nowait`). The channel's window is only re-opened as we read:
a slow reader stops draining the SSH window, and the remote writer blocks (end-to-end
backpressure). The WINDOW_ADJUST that reading makes due is sent by a worker thread (sending
can wait for a key re-exchange). Measured (docs/performance.md): one wake-up per chunk
instead of a pump thread's select + a thread → Trio round trip per chunk.

*Writing* (stdin, keystrokes, resize) and closing block in paramiko and run in worker threads
under the manager's SSH limiter. The exit status is signalled by a hook on the transport
thread (:data:`~linkops.ssh.client.STATUS_HOOK_ATTR`).

Open streams count against the manager's *stream* limiter (acquired on open, released on
close): each holds a channel and two pipe descriptors.

*Cancellation*: every ``await`` here is a checkpoint. Cancelling :meth:`ExecStream.receive`
loses no data (nothing is taken from the channel after the last checkpoint). :meth:`aclose`
is safe to call from a cancelled scope; it wakes a task blocked in :meth:`receive` (which then
returns the end of the stream) and closes the SSH channel from a worker thread.

*Resource handling*: always ``aclose`` a stream (or use ``async with``). Closing a channel does
**not** kill a remote process that has no PTY: callers that must stop a command (operations)
run it in its own process group and kill the group with a second exec.

*Errors*: :class:`~linkops.ssh.errors.SshError` (reason ``closed``) when the connection was
lost before the command reported its exit status.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from types import TracebackType
from typing import Final

import paramiko
import trio

from linkops.ssh.boundary import Lane
from linkops.ssh.client import (
    EXIT_SIGNAL_ATTR,
    FLOW_VIOLATION_ATTR,
    FLOW_VIOLATION_MESSAGE,
    STATUS_HOOK_ATTR,
    BufferWaker,
    fits_send_window,
    read_nowait,
    send_message,
    transport_lost,
)
from linkops.ssh.errors import SshError

# The most one read takes from paramiko's channel buffer (it returns what is there, never
# waits for more): under load one wake-up carries everything that arrived meanwhile.
CHUNK: Final = 262144
# Exit code reported when the channel closed without an exit status or signal (e.g. we closed
# it first). A command killed by signal N reports 128 + N (see linkops.ssh.client).
NO_EXIT_STATUS: Final = -1

_STREAMS = ("stdout", "stderr")


def _close_quietly(chan: paramiko.Channel) -> None:
    try:
        chan.close()
    except (OSError, EOFError, paramiko.SSHException):
        pass  # the transport is already gone; so is the channel


class _ChannelStream:
    """The shared machinery of both stream kinds (one channel, read on the Trio thread)."""

    def __init__(self, chan: paramiko.Channel, lane: Lane,
                 stream_limiter: trio.CapacityLimiter) -> None:
        self._chan = chan
        self._lane = lane
        self._stream_limiter = stream_limiter
        self._label = lane.label
        self._token = trio.lowlevel.current_trio_token()
        self._ready = trio.Event()
        self._waker = BufferWaker(partial(self._call_soon, self._wake))
        self._waker.watch(chan)
        self._next = 0  # which stream to read first: stdout and stderr take turns
        self._ended = [False, False]
        self._status = trio.Event()
        self._closed = False
        self._close_sent = trio.Event()
        self._gone = trio.Event()  # the channel closed (by the peer, us, or a dead transport)
        self._started = False
        setattr(chan, STATUS_HOOK_ATTR, partial(self._call_soon, self._status_news))

    async def start(self) -> None:
        await self._stream_limiter.acquire_on_behalf_of(self)
        self._started = True

    def _call_soon(self, fn: Callable[[], object]) -> None:
        """From another thread (paramiko's, a worker): run ``fn`` on the Trio thread."""
        try:
            self._token.run_sync_soon(fn)
        except trio.RunFinishedError:
            pass  # the run is over; nobody is waiting any more

    def _status_news(self) -> None:
        self._status.set()
        if self._chan.closed:
            self._gone.set()

    def _wake(self) -> None:
        self._waker.rearm()
        self._ready.set()
        if self._chan.closed:
            self._gone.set()
        # A channel closing (by the peer, or its transport dying: paramiko then unlinks every
        # channel) closes its buffers, which fires the waker: that is also news for _wait().
        self._status.set()

    # -- reading (Trio thread) -------------------------------------------------------------

    def _take(self) -> tuple[str, bytes] | None:
        """One buffered chunk, or None; marks streams that ended."""
        for turn in (self._next, 1 - self._next):
            if self._ended[turn]:
                continue
            data, ack = read_nowait(self._chan, turn == 1, CHUNK)
            if ack is not None:
                trio.lowlevel.start_thread_soon(partial(send_message, self._chan, ack),
                                                lambda _outcome: None)
            if data is None:
                continue
            if not data:
                self._ended[turn] = True
                continue
            self._next = 1 - turn
            return _STREAMS[turn], data
        return None

    async def _receive(self) -> tuple[str, bytes] | None:
        await trio.lowlevel.checkpoint_if_cancelled()
        while not self._closed:
            # A fresh event first, then look: data fed after the look wakes this event.
            self._ready = trio.Event()
            item = self._take()
            if item is not None:
                await trio.lowlevel.cancel_shielded_checkpoint()
                return item
            if all(self._ended):
                self._check_flow()
                break
            await self._ready.wait()
        await trio.lowlevel.cancel_shielded_checkpoint()
        return None

    async def wait_protocol_error(self) -> SshError:
        """Returns (does not raise) the error once the peer broke flow control, even while
        nobody reads: a pane whose browser is slow still ends at once. Waits forever for a
        channel that ends normally."""
        await self._gone.wait()
        try:
            self._check_flow()
        except SshError as exc:
            return exc
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    def _check_flow(self) -> None:
        excess = getattr(self._chan, FLOW_VIOLATION_ATTR, None)
        if excess is not None:
            raise SshError(f"{self._label}: {FLOW_VIOLATION_MESSAGE} (data beyond the "
                           "advertised window); the connection was closed", reason="protocol",
                           details={"target": self._label})

    # -- writing and closing (worker threads) ----------------------------------------------

    async def _send_input(self, data: bytes, *, eof: bool = False) -> None:
        chan = self._chan

        def work() -> None:
            if data:
                chan.sendall(data)
            if eof:
                chan.shutdown_write()

        if self._closed or chan.closed:
            raise SshError(f"cannot write to {self._label}: the channel is closed",
                           reason="closed", details={"target": self._label})
        # No deadline: a remote program that does not read its input is not a fault (the
        # window stays shut, this waits); the pane's input pump holds one thread meanwhile.
        await self._lane.call(work, what="a write", timeout=math.inf)

    async def _wait(self) -> int:
        chan = self._chan
        while not chan.status_event.is_set() and not self._closed:
            # A fresh event first, then look (the hooks set the current one).
            self._status = trio.Event()
            if chan.status_event.is_set() or chan.closed:
                break
            await self._status.wait()
        if self._closed:
            await self._close_sent.wait()
        if chan.exit_status_ready() and chan.exit_status != NO_EXIT_STATUS:
            return int(chan.exit_status)
        if self._closed:
            return NO_EXIT_STATUS
        self._check_flow()
        if transport_lost(chan):
            raise SshError(f"connection to {self._label} was lost while the command was "
                           "running", reason="closed", details={"target": self._label})
        return NO_EXIT_STATUS

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._ready.set()  # a task blocked in receive() returns the end of the stream
        chan = self._chan
        done = self._close_sent
        if chan.closed:
            # The peer closed it (the usual end of a command) and paramiko answered already:
            # nothing is left to send, so nothing can block.
            _close_quietly(chan)
            done.set()
        else:
            # Sending CHANNEL_CLOSE may wait for the transport lock: off the Trio thread,
            # fire-and-forget, so aclose works in cancelled scopes (wait_exit() waits for it).
            trio.lowlevel.start_thread_soon(lambda: _close_quietly(chan),
                                            lambda _outcome: self._call_soon(done.set))
        if self._started:
            self._stream_limiter.release_on_behalf_of(self)
        await trio.lowlevel.checkpoint()


class ExecStream(_ChannelStream):
    """A running remote command. Read with :meth:`receive` until it returns ``None``."""

    #: True when the stdin given to ``open_exec`` went out (with EOF) when the channel opened.
    stdin_done: bool = False

    def can_send_now(self, size: int) -> bool:
        """``size`` bytes of stdin fit the peer's window: sending them cannot wait on it."""
        return fits_send_window(self._chan, size)

    async def receive(self) -> tuple[str, bytes] | None:
        """The next ``("stdout" | "stderr", chunk)``; ``None`` at EOF (both streams ended)."""
        return await self._receive()

    async def send_stdin(self, data: bytes, *, eof: bool = False) -> None:
        """Write to the command's stdin (blocks while the remote window is full); with
        ``eof``, then send EOF (one worker-thread hop for both)."""
        await self._send_input(data, eof=eof)

    async def close_stdin(self) -> None:
        """Send EOF on stdin."""
        await self._send_input(b"", eof=True)

    async def wait_exit(self) -> int:
        """The exit code, once the output was read and the command ended.

        A command killed by a signal reports ``128 + signal number`` (143 for SIGTERM, as
        ``$?`` in a shell; :attr:`exit_signal` names it); ``-1`` means the channel closed
        without either (e.g. closed by us). Read the output first (until ``None``): unread
        output keeps the SSH window shut, so the command cannot finish.

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


class ShellStream(_ChannelStream):
    """An interactive PTY shell (stderr is merged into the PTY by the server)."""

    async def receive_some(self) -> bytes:
        """The next chunk of terminal output; ``b""`` once the shell ended."""
        item = await self._receive()
        return b"" if item is None else item[1]

    def _shell_ended(self) -> bool:
        # The peer's EOF or exit status means the shell is gone even while its CHANNEL_CLOSE
        # is still on the way: paramiko would still accept keystrokes then (and refuse a
        # window-change), so both are refused alike, at once.
        chan = self._chan
        return bool(self._closed or chan.closed or chan.eof_received or chan.exit_status_ready())

    async def send(self, data: bytes) -> None:
        """Keystrokes to the shell."""
        if self._shell_ended():
            raise SshError(f"cannot write to {self._label}: the shell ended",
                           reason="closed", details={"target": self._label})
        await self._send_input(data)

    async def resize(self, cols: int, rows: int) -> None:
        """Tell the remote PTY its new size (SIGWINCH on the remote side)."""
        if self._shell_ended():
            raise SshError(f"cannot resize the terminal on {self._label}: the shell ended",
                           reason="closed", details={"target": self._label})
        await self._lane.call(self._chan.resize_pty, cols, rows, what="a window-change")

    async def wait_exit(self) -> int:
        """Exit status of the shell after :meth:`receive_some` returned ``b""``."""
        return await self._wait()

    async def __aenter__(self) -> ShellStream:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()
