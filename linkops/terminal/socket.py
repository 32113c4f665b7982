"""The two pumps of one terminal WebSocket (after the handshake was authorized and accepted).

::

    serve_socket(ws, service, attachment)
      └─ nursery
           ├─ _reader   ws.receive() → protocol.parse_client_message → service.handle
           │            (no message for [terminal] websocket_timeout → close 4000 "idle timeout")
           ├─ _writer   attachment.take_round() → ws.send(json), round-robin over panes,
           │            while output streams, small output is gathered for
           │            COALESCE_SECONDS into fewer, larger frames
           └─ (waits for attachment.closed or the service's `closing` event)

When either pump ends (client gone, idle, protocol violation, workspace deleted, another socket
took over, shutdown) the attachment is closed, both pumps are cancelled, the service detaches
the socket (shells stay alive for the grace period) and the socket is closed with the
attachment's code: 1001 at shutdown, 1003 binary frame, 1008 policy, 1009 frame too big,
4000 idle, 4001 replaced, 4004 workspace deleted, 4401 session ended (logout, password or role
change, token revoked, expiry: :mod:`linkops.live_sessions` sets ``live.ended``, and every
stdin first asks ``live.alive()``).

*Cancellation*: the web server cancels the handler when the client disconnects; detaching is
synchronous, and the close is shielded with a short deadline.
"""

from __future__ import annotations

import logging
from typing import Final, Protocol

import trio

from linkops.terminal import protocol
from linkops.terminal.buffers import Attachment
from linkops.terminal.service import TerminalService

log = logging.getLogger("linkops.terminal")

COALESCE_SECONDS: Final = 0.005
STREAMING_SECONDS: Final = 0.02
CLOSE_IDLE: Final = 4000
CLOSE_SESSION_ENDED: Final = 4401
CLOSE_SECONDS: Final = 2.0


class WebSocketLike(Protocol):
    """What we need of ``quart.websocket`` (kept abstract so services never import Quart)."""

    async def receive(self) -> str | bytes: ...
    async def send(self, data: str) -> None: ...
    async def close(self, code: int, reason: str = "") -> None: ...


class LiveSessionLike(Protocol):
    """What we need of :class:`linkops.live_sessions.LiveSession`."""

    ended: trio.Event

    def alive(self) -> bool: ...


async def serve_socket(ws: WebSocketLike, service: TerminalService, attachment: Attachment,
                       *, closing: trio.Event | None = None,
                       live: LiveSessionLike | None = None) -> None:
    """Run the socket until it must end; always detaches and closes."""
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_reader, ws, service, attachment, live)
            nursery.start_soon(_writer, ws, attachment)
            if closing is not None:
                nursery.start_soon(_watch_closing, closing, attachment)
            if live is not None:
                nursery.start_soon(_watch_session, live, attachment)
            await attachment.closed.wait()
            nursery.cancel_scope.cancel()
    finally:
        service.detach(attachment)
        with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_SECONDS):
            try:
                await ws.close(attachment.close_code, attachment.close_reason)
            except Exception:  # noqa: S110 - the peer may already be gone; nothing to tell it
                pass


async def _watch_closing(closing: trio.Event, attachment: Attachment) -> None:
    await closing.wait()
    attachment.close(protocol.CLOSE_GOING_AWAY, "server shutting down")


async def _watch_session(live: LiveSessionLike, attachment: Attachment) -> None:
    await live.ended.wait()
    attachment.close(CLOSE_SESSION_ENDED, "session ended")


async def _reader(ws: WebSocketLike, service: TerminalService, attachment: Attachment,
                  live: LiveSessionLike | None = None) -> None:
    idle = service.terminal.websocket_timeout
    panes = tuple(attachment.outboxes)
    try:
        while True:
            with trio.move_on_after(idle) as scope:
                raw = await ws.receive()
            if scope.cancelled_caught:
                attachment.close(CLOSE_IDLE, "idle timeout")
                return
            try:
                message = protocol.parse_client_message(raw, panes)
            except protocol.ProtocolError as exc:
                if exc.close_code is not None:
                    attachment.close(exc.close_code, exc.message)
                    return
                attachment.send_control(protocol.error(exc))
                continue
            if live is not None and isinstance(message, protocol.Stdin) and not live.alive():
                attachment.close(CLOSE_SESSION_ENDED, "session ended")
                return
            await service.handle(attachment, message)
    finally:
        # The client is gone (or misbehaved): make the other pumps stop too.
        attachment.close(attachment.close_code, attachment.close_reason)


async def _writer(ws: WebSocketLike, attachment: Attachment) -> None:
    while not attachment.closed.is_set():
        if not attachment.can_send():
            # New output, an ack, or closing sets the wakeup.
            await attachment.wakeup.wait()
            continue
        # While a pane is streaming (it sent output moments ago) and only a little of it is
        # waiting, gather what it produces in the next few ms into fewer, larger frames. A
        # keystroke echo from a quiet pane goes out at once, even beside a flood.
        if attachment.coalescing_useful(trio.current_time(), STREAMING_SECONDS):
            await trio.sleep(COALESCE_SECONDS)
        for frame in attachment.take_round():
            await ws.send(protocol.encode(frame))
            attachment.sent(frame, trio.current_time())
