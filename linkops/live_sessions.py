"""Live revocation: WebSockets and SSE streams end when their session does (SPEC §10.2).

A request is authenticated once; a stream lives on. Every terminal WebSocket and SSE stream
registers its :class:`~linkops.auth.Session` here (:meth:`LiveSessions.track`) and gets a
:class:`LiveSession` whose ``ended`` event is set when the session is no longer valid:

- at once, for what this process does itself: logout (:meth:`LiveSessions.end_jti`) and
  revoking an API token (:meth:`LiveSessions.end_token`);
- within ``[api] session_recheck_seconds`` for everything else — a password or role changed by
  ``linkops user passwd|role`` (another process), expiry, a token revoked from the CLI: the
  background task re-validates every tracked session in one database read per round;
- on stdin, the terminal socket also asks :meth:`LiveSession.alive` (in memory: ended or
  expired) before a keystroke reaches a shell.

The WebSocket is then closed with 4401, the SSE stream ends. When the reason is a password
change, ``on_password_changed(username)`` closes that user's terminal shells as well.

*Cancellation*: :meth:`LiveSessions.guard` runs the event source in this service's nursery and
cancels it when the session ends or the client goes away. The pumps are shielded from the
service's own cancellation at shutdown and get :data:`SHUTDOWN_GRACE` instead, so a stream
still delivers its last events (an operation's ``stopped`` end) as it did before.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from contextlib import aclosing, contextmanager
from typing import TYPE_CHECKING, TypeVar

import trio

from linkops.timeutil import utcnow

if TYPE_CHECKING:
    from linkops.auth import AuthService, Session

log = logging.getLogger("linkops.auth")

T = TypeVar("T")

# At shutdown, how long a stream's pump may go on delivering (operations' follow() ends its
# streams within its closing grace of 6 s).
SHUTDOWN_GRACE = 8.0

REASON_LOGOUT = "logged_out"
REASON_PASSWORD = "password_changed"  # noqa: S105 - a reason, not a secret
REASON_ROLE = "role_changed"
REASON_EXPIRED = "expired"
REASON_REVOKED = "revoked"
REASON_USER_GONE = "user_removed"


class LiveSession:
    """One stream's view of its session."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.ended = trio.Event()
        self.reason: str | None = None
        self._scopes: set[trio.CancelScope] = set()

    def end(self, reason: str) -> None:
        if self.ended.is_set():
            return
        self.reason = reason
        self.ended.set()
        for scope in self._scopes:
            scope.cancel()

    def alive(self) -> bool:
        """In memory only: not ended and not expired (checked on every terminal stdin)."""
        if not self.ended.is_set() and self.session.expires_at <= utcnow():
            self.end(REASON_EXPIRED)
        return not self.ended.is_set()

    def _add_scope(self, scope: trio.CancelScope) -> None:
        self._scopes.add(scope)
        if self.ended.is_set():
            scope.cancel()


class LiveSessions:
    """Every tracked stream session, and the task that re-validates them."""

    def __init__(self, auth: AuthService, interval: float) -> None:
        self.auth = auth
        self.interval = interval
        self._live: set[LiveSession] = set()
        self._nursery: trio.Nursery | None = None
        self._wake = trio.Event()
        self._pumps: set[trio.CancelScope] = set()
        self.on_password_changed: Callable[[str], Awaitable[object]] | None = None

    def __len__(self) -> int:
        return len(self._live)

    @contextmanager
    def track(self, session: Session) -> Iterator[LiveSession]:
        live = LiveSession(session)
        self._live.add(live)
        try:
            yield live
        finally:
            self._live.discard(live)

    def end_jti(self, jti: str, reason: str = REASON_LOGOUT) -> None:
        for live in list(self._live):
            if live.session.jti == jti:
                live.end(reason)

    def end_token(self, token_id: str, reason: str = REASON_REVOKED) -> None:
        for live in list(self._live):
            if live.session.token_id == token_id:
                live.end(reason)

    def recheck_soon(self) -> None:
        """Re-validate everything now instead of at the next interval."""
        self._wake.set()

    async def recheck(self) -> int:
        """One round: re-validate every tracked session; returns how many were ended."""
        tracked = [live for live in self._live if not live.ended.is_set()]
        if not tracked:
            return 0
        reasons = await self.auth.why_ended([live.session for live in tracked])
        changed_passwords: set[str] = set()
        ended = 0
        for live, reason in zip(tracked, reasons, strict=True):
            if reason is None:
                continue
            live.end(reason)
            ended += 1
            if reason == REASON_PASSWORD:
                changed_passwords.add(live.session.user.username)
        if ended:
            log.info("auth.live_sessions_ended", extra={"context": {"count": ended}})
        for username in changed_passwords:
            if self.on_password_changed is not None:
                await self.on_password_changed(username)
        return ended

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                while True:
                    with trio.move_on_after(self.interval):
                        await self._wake.wait()
                    self._wake = trio.Event()
                    try:
                        await self.recheck()
                    except Exception:  # a failed round (database busy) must not end the loop
                        log.exception("auth.recheck_failed")
            finally:
                self._nursery = None
                deadline = trio.current_time() + SHUTDOWN_GRACE
                for scope in self._pumps:
                    scope.deadline = min(scope.deadline, deadline)

    async def guard(self, live: LiveSession, events: AsyncIterator[T]) -> AsyncGenerator[T, None]:
        """``events`` until it ends or ``live`` does (then at once, even between events).

        Takes ownership of ``events`` (an async generator is closed here)."""
        nursery = self._nursery
        if nursery is None:  # not running (a bare app in a test): check between events
            async with aclosing(events):  # type: ignore[type-var]
                async for event in events:
                    if not live.alive():
                        return
                    yield event
            return
        send, receive = trio.open_memory_channel[T](0)
        # Shielded from the nursery's cancellation (see *Cancellation*); ended by the session,
        # by the client going away, or by the shutdown deadline set in run().
        scope = trio.CancelScope(shield=True)
        live._add_scope(scope)
        self._pumps.add(scope)

        async def pump() -> None:
            try:
                with scope:
                    async with send, aclosing(events):  # type: ignore[type-var]
                        try:
                            async for event in events:
                                await send.send(event)
                        except (trio.BrokenResourceError, trio.ClosedResourceError):
                            pass
            finally:
                self._pumps.discard(scope)

        nursery.start_soon(pump)
        try:
            async with receive:
                async for event in receive:
                    yield event
        finally:
            scope.cancel()
            live._scopes.discard(scope)
