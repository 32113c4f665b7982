"""ASGI middleware that makes HTTP/1.1 connections close when they must (SPEC §10.1).

Two faults, both found by raw-socket tests (tests/test_http_connections.py); the full story
is in docs/decisions/http-connections.md:

1. **The close is cancelled.** Hypercorn (0.18, ``protocol/h11.py`` ``_maybe_recycle`` and
   ``trio/tcp_server.py`` ``protocol_send(Closed)``) closes a connection that cannot be
   reused — ``Connection: close``, HTTP/1.0, a request body not read — *inside the app's
   last ``send()`` call*, on the app's own task. In the same step it hands the app
   ``http.disconnect``; quart-trio's ``TrioASGIHTTPConnection.handle_messages`` reacts to that
   by cancelling the nursery the sending task runs in, so ``send_eof()``/``aclose()`` are
   cancelled at their first checkpoint and the socket stays open until the client gives up
   (hypercorn issue #330 describes the symptom; plain hypercorn with an ASGI app that does
   not cancel itself closes fine). We shield the sends of a response that ends its
   connection: Hypercorn already shields the socket write itself, so this only lets the close
   finish. (Shielding every send leaked kept-alive connections: see ``__call__``.)
2. **An unread body is not announced.** A response sent before the app received the whole
   request body (413, an early 401, a 405 to a POST) leaves h11 waiting for the rest of that
   body, so a reused connection would feed the next request into it. Like Go's net/http, we
   first drain a small body (at most :data:`DRAIN_BYTES`, for at most :data:`DRAIN_SECONDS`):
   the connection then stays reusable, and closing it cannot reset a client that is still
   sending (a close with unread data makes the kernel send RST, and the client may lose our
   response). Otherwise we add ``Connection: close``; h11 then closes the connection after
   the response, deterministically, and the client knows not to reuse it.
"""

from __future__ import annotations

from typing import Any, cast

import trio
from hypercorn.typing import (
    ASGIFramework,
    ASGIReceiveCallable,
    ASGIReceiveEvent,
    ASGISendCallable,
    ASGISendEvent,
    Scope,
)

DRAIN_BYTES = 256 * 1024
DRAIN_SECONDS = 2.0


def _declared_body(scope: Scope) -> int | None:
    """0 for no body, the Content-Length, or None for a body of unknown length (chunked)."""
    headers: Any = scope.get("headers", ())
    for name, value in headers:
        if name.lower() == b"transfer-encoding":
            return None
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:  # h11 refuses these before we see them
                return None
    return 0


def _client_closes(scope: Scope) -> bool:
    """HTTP/1.0 (no keep-alive here) or ``Connection: close``: the response ends it."""
    if scope.get("http_version") == "1.0":
        return True
    headers: Any = scope.get("headers", ())
    return any(name.lower() == b"connection" and b"close" in value.lower()
               for name, value in headers)


class CloseDelimitedConnections:
    """Wraps the Quart-Trio app for Hypercorn; WebSocket and lifespan scopes pass through."""

    def __init__(self, app: ASGIFramework) -> None:
        self.app = app

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_body(scope)
        # Only a connection that ends with this response needs its last send shielded. A
        # kept-alive one must not be: after its response quart-trio cancels the request's
        # nursery, and that cancellation is what ends the app's part of the exchange — with a
        # shield there the connection was never released, and every socket the client closed
        # stayed in CLOSE-WAIT (tests/test_http_connections.py, the keep-alive leak test).
        closing = _client_closes(scope)
        body_complete = trio.Event()
        if declared == 0:
            body_complete.set()

        async def tracked_receive() -> ASGIReceiveEvent:
            message = await receive()
            if message["type"] == "http.disconnect" or (
                message["type"] == "http.request" and not message.get("more_body", False)
            ):
                body_complete.set()
            return message

        async def shielded_send(message: ASGISendEvent) -> None:
            if message["type"] == "http.response.start" and not body_complete.is_set():
                if declared is not None and declared <= DRAIN_BYTES:
                    # Quart-Trio keeps receiving (and discarding) the body meanwhile.
                    with trio.move_on_after(DRAIN_SECONDS):
                        await body_complete.wait()
            nonlocal closing
            if message["type"] == "http.response.start":
                if not body_complete.is_set():
                    headers = [(n, v) for n, v in message.get("headers", ())
                               if n.lower() != b"connection"]
                    message = cast(ASGISendEvent,
                                   {**message, "headers": [*headers, (b"connection", b"close")]})
                    closing = True
                elif any(n.lower() == b"connection" and b"close" in v.lower()
                         for n, v in message.get("headers", ())):
                    closing = True
            if closing:
                with trio.CancelScope(shield=True):
                    await send(message)
            else:
                await send(message)

        await self.app(scope, tracked_receive, shielded_send)
