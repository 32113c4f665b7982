"""One pane's live SSH shell: PTY output → scrollback + the attached socket, input → PTY.

A :class:`PaneSession` is created by :class:`~linkops.terminal.service.TerminalService` once
the connection is made, the client ID checked and the shell opened; :meth:`PaneSession.run`
then lives in the service's nursery (not in a request or a socket) so the shell survives a
page reload. It runs two pumps:

- *output*: ``shell.receive_some()`` → incremental UTF-8 decode → scrollback ring → the
  attached socket's :class:`~linkops.terminal.buffers.Outbox` for this pane. Putting into a full
  outbox waits, so a slow browser stops this reader (and only this one); the SSH layer's own
  bounded buffer then fills, paramiko's window closes and the remote program blocks. While no
  socket is attached the output still goes to the scrollback ring (bounded), so remote programs
  are never frozen by a closed tab.
- *input*: stdin and resize requests, in order, from a bounded queue to the shell. The socket
  enqueues without waiting (:meth:`PaneSession.write` / :meth:`resize`): a pane whose remote has
  stopped reading never blocks the socket's other panes; when its queue is full the input is
  refused with an error status instead.

*Cancellation*: :meth:`close` cancels both pumps; the shell and connection are closed and the
audit row written under a shielded scope with a deadline (:data:`CLEANUP_SECONDS`).

*Resource handling*: the session owns its :class:`~linkops.ssh.bridge.SshConnection` (a
dedicated, non-pooled one: a shell's lifetime is the user's, not a pool's).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol

import trio

from linkops.errors import LinkOpsError
from linkops.jsontext import json_string
from linkops.terminal import protocol
from linkops.terminal.buffers import Outbox, Scrollback, frame_pieces
from linkops.terminal.recording import Recorder

log = logging.getLogger("linkops.terminal")

INPUT_QUEUE: Final = 256
# Keystrokes (and pastes) waiting for a remote that does not read them: beyond this much,
# input is refused with an error status rather than queued.
INPUT_LIMIT_BYTES: Final = 256 * 1024
CLEANUP_SECONDS: Final = 5.0
CHANNEL_CLOSE_SECONDS: Final = 1.0


class Shell(Protocol):
    async def receive_some(self) -> bytes: ...
    async def send(self, data: bytes) -> None: ...
    async def resize(self, cols: int, rows: int) -> None: ...
    async def wait_exit(self) -> int: ...
    async def wait_protocol_error(self) -> Exception: ...
    async def aclose(self) -> None: ...


class Connection(Protocol):
    async def aclose(self) -> None: ...


InputItem = tuple[str, Any]


class PaneSession:
    """One live shell (see the module docstring)."""

    def __init__(
        self,
        *,
        workspace_id: str,
        pane: str,
        target: str,
        username: str,
        connection: Connection,
        shell: Shell,
        audit_id: int,
        cols: int,
        rows: int,
        scrollback_chars: int,
        on_closed: Callable[[PaneSession, str, str | None], Awaitable[None]],
    ) -> None:
        self.workspace_id = workspace_id
        self.pane = pane
        self.target = target
        self.username = username
        self.audit_id = audit_id
        self.cols = cols
        self.rows = rows
        self._connection = connection
        self._shell = shell
        self._on_closed = on_closed
        self.scrollback = Scrollback(scrollback_chars)
        self._decoder = protocol.OutputDecoder()
        self._outbox: Outbox | None = None
        self._input_send, self._input_recv = trio.open_memory_channel[InputItem](INPUT_QUEUE)
        self._scope = trio.CancelScope()
        self._close_reason = "remote_exit"
        self._close_error: str | None = None
        self.finished = trio.Event()
        self.bytes_out = 0
        self._input_bytes = 0
        # Set by the service right after creation when the session is recorded (recording.py).
        self.recorder: Recorder | None = None

    # -- attach / detach (called from the Trio thread, never awaits) -----------------------

    def attach(self, outbox: Outbox) -> None:
        """Send this pane's state and recent scrollback to a new socket, then live output.

        Atomic with respect to the output pump (no checkpoint): every chunk is either in the
        snapshot or will be put into the new outbox, never both, never neither.
        """
        self._outbox = outbox
        outbox.put_message(protocol.status(self.pane, "connected", f"connected to {self.target}",
                                           target=self.target, cols=self.cols, rows=self.rows,
                                           recording=self.recorder is not None))
        outbox.put_replay(self.scrollback.snapshot())

    def detach(self, outbox: Outbox) -> None:
        if self._outbox is outbox:
            self._outbox = None

    def notify(self, message: dict[str, Any]) -> None:
        if self._outbox is not None:
            self._outbox.put_message(message)

    # -- input ------------------------------------------------------------------------------

    def write(self, data: str) -> bool:
        """Queue keystrokes; ``False`` when the pane is not keeping up (input refused)."""
        raw = data.encode("utf-8", "surrogatepass")
        if self._input_bytes + len(raw) > INPUT_LIMIT_BYTES:
            return False
        if not self._enqueue(("stdin", raw)):
            return False
        self._input_bytes += len(raw)
        if self.recorder is not None:
            self.recorder.input(data)
        return True

    def can_accept(self, size: int) -> bool:
        """Whether :meth:`write` of ``size`` bytes would be queued now (broadcast.py checks
        every pane before writing to any)."""
        return (self._input_bytes + size <= INPUT_LIMIT_BYTES
                and self._input_send.statistics().current_buffer_used < INPUT_QUEUE)

    def resize(self, cols: int, rows: int) -> bool:
        self.cols, self.rows = cols, rows
        if self.recorder is not None:
            self.recorder.resize(cols, rows)
        return self._enqueue(("resize", (cols, rows)))

    def _enqueue(self, item: InputItem) -> bool:
        try:
            self._input_send.send_nowait(item)
        except trio.WouldBlock:
            return False
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return False
        return True

    # -- lifetime ---------------------------------------------------------------------------

    def close(self, reason: str, error: str | None = None) -> None:
        """Ask the session to end; :attr:`finished` is set once everything is released."""
        if not self._scope.cancel_called:
            self._close_reason = reason
            self._close_error = error
        self._scope.cancel()

    async def run(self) -> None:
        """Pump until the shell ends or :meth:`close`; then release and record everything."""
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._input_pump)
                    nursery.start_soon(self._protocol_watch)
                    await self._output_pump()
                    nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(CLEANUP_SECONDS):
                self._input_send.close()
                await self._release()
                await self._on_closed(self, self._close_reason, self._close_error)
            self.finished.set()

    async def _release(self) -> None:
        try:
            await self._shell.aclose()
            # The SSH layer sends CHANNEL_CLOSE from a worker thread (sshd then hangs up the
            # shell at once); closing the transport before that would leave the remote shell
            # to linger until sshd notices the dead TCP connection (~2 s).
            with trio.move_on_after(CHANNEL_CLOSE_SECONDS):
                await self._shell.wait_exit()
        except Exception as exc:  # a dead connection may fail to close; log, go on
            log.info("terminal.close_failed", extra={"context": {
                "target": self.target, "error": repr(exc)}})
        try:
            await self._connection.aclose()
        except Exception as exc:
            log.info("terminal.close_failed", extra={"context": {
                "target": self.target, "error": repr(exc)}})

    async def _output_pump(self) -> None:
        while True:
            try:
                data = await self._shell.receive_some()
            except Exception as exc:  # the pane's guard: a failure ends this pane, only it
                self._fail(exc)
                return
            if not data:
                await self._publish(self._decoder.flush())
                return
            self.bytes_out += len(data)
            await self._publish(self._decoder.feed(data))

    async def _publish(self, text: str) -> None:
        if not text:
            return
        # Scrollback first, then the socket: attach() snapshots the scrollback, so a chunk
        # queued to an outbox that is closed meanwhile is not lost for the next socket.
        self.scrollback.append(text)
        outbox = self._outbox
        if self.recorder is None:
            if outbox is not None:
                await outbox.put_output(text)
            return
        # Recorded: each piece is JSON-encoded once, here, for the recording's file and for
        # the socket's frames alike (encoding is most of what recording costs a flood, and
        # it holds the GIL the terminal needs).
        pieces = frame_pieces(text)
        encoded = [json_string(piece) for piece in pieces]
        for piece, literal in zip(pieces, encoded, strict=True):
            self.recorder.output(piece, literal)  # never waits (recording.py)
        if outbox is not None:
            await outbox.put_output(text, encoded)

    async def _protocol_watch(self) -> None:
        """A peer that ignores flow control ends the pane now, not once the (maybe slow)
        browser has read what was buffered before it."""
        try:
            exc = await self._shell.wait_protocol_error()
        except Exception as bug:
            exc = bug
        self._fail(exc)

    async def _input_pump(self) -> None:
        async for kind, value in self._input_recv:
            try:
                if kind == "stdin":
                    self._input_bytes -= len(value)
                    await self._shell.send(value)
                else:
                    cols, rows = value
                    await self._shell.resize(cols, rows)
            except Exception as exc:  # the pane's guard (SshError, or a bug of ours)
                self._fail(exc)
                return

    def _fail(self, exc: Exception) -> None:
        """End this pane with status ``error`` and one log line (never its parent)."""
        message = exc.message if isinstance(exc, LinkOpsError) else (
            f"internal error ({type(exc).__name__})")
        log.warning("terminal.session_error", extra={"context": {
            "workspace": self.workspace_id, "pane": self.pane, "target": self.target,
            "error": message if isinstance(exc, LinkOpsError) else repr(exc)}})
        self.close("error", message)
