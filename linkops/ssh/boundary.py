"""The one boundary between blocking paramiko and the async service.

Every blocking paramiko call of the SSH layer (connect, open a channel and its requests, write,
resize, keepalive) runs through :meth:`Lane.call`, which gives it

1. **one exception mapping** (:func:`map_ssh_errors`, in the spirit of httpx's
   ``map_exceptions``): whatever paramiko, the socket or paramiko's own bugs raise becomes an
   :class:`~linkops.ssh.errors.SshError` (reason ``timeout``, ``closed`` or ``connect``), so
   nothing from paramiko reaches a service;
2. **a deadline** that counts from the moment the caller asks (waiting for a thread included).
   A call that *started* and outlives it means the peer does not answer: the lane's
   ``on_deadline`` closes the connection (closing a paramiko transport unlinks its channels,
   which wakes every thread blocked on any of them) from a thread of its own, never under a
   limiter. A call that never got a thread raises the same error but closes nothing (the link
   is merely busy);
3. **a fair share**: threads come from a :class:`LinkLimiter`, the link's own small limiter
   (``[ssh] max_per_link``) in front of the process-wide one (``[ssh] max_threads``). An
   abandoned call keeps its thread until paramiko returns — and the deadline makes sure it
   does — so a mute link can hold at most its own share, never the threads other links need.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

import attrs
import paramiko
import trio

from linkops.errors import LinkOpsError
from linkops.ssh.errors import SshError

T = TypeVar("T")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timeout"
    text = str(exc).lower()
    if "timed out" in text or "timeout" in text:
        return "timeout"
    if isinstance(exc, EOFError | paramiko.ChannelException) or "closed" in text \
            or "not open" in text:
        return "closed"
    return "connect"


@contextmanager
def map_ssh_errors(label: str, what: str) -> Iterator[None]:
    """Turn anything but a LinkOps error or a cancellation into an :class:`SshError`.

    ``Exception`` and not a list of paramiko types on purpose: paramiko also raises
    AttributeError, ValueError or struct.error from a connection a peer tore down mid-packet;
    to a service that is a lost connection all the same.
    """
    try:
        yield
    except LinkOpsError:
        raise
    except Exception as exc:
        detail = str(exc) or type(exc).__name__
        raise SshError(f"{what} on {label} failed: {detail}", reason=_reason(exc),
                       details={"target": label}) from exc


@attrs.define(eq=False)
class LinkLimiter:
    """A per-link limiter in front of the process-wide one (trio's limiter protocol)."""

    link: trio.CapacityLimiter
    shared: trio.CapacityLimiter

    async def acquire_on_behalf_of(self, borrower: object) -> None:
        await self.link.acquire_on_behalf_of(borrower)
        try:
            await self.shared.acquire_on_behalf_of(borrower)
        except BaseException:
            self.link.release_on_behalf_of(borrower)
            raise

    def release_on_behalf_of(self, borrower: object) -> None:
        self.shared.release_on_behalf_of(borrower)
        self.link.release_on_behalf_of(borrower)


@attrs.define(eq=False)
class Lane:
    """Blocking SSH work for one connection: its limiter, deadline and abort."""

    label: str
    limiter: LinkLimiter
    deadline: float
    # Called (on the Trio thread) when a started call outlived its deadline; must not block.
    on_deadline: Callable[[], None] = lambda: None
    # Once a deadline closed the connection, every later or concurrent call on it fails with
    # that reason (not with whatever paramiko says about a closed transport).
    aborted: SshError | None = None
    # A call missed its deadline (started or not): the connection is not shared any more.
    timed_out: bool = False

    def _abort_error(self) -> SshError:
        assert self.aborted is not None
        return SshError(self.aborted.message, reason=self.aborted.reason,
                        details=dict(self.aborted.details))

    async def call(self, fn: Callable[..., T], *args: Any, what: str,
                   timeout: float | None = None) -> T:  # noqa: ASYNC109 - the contract
        """``fn(*args)`` in a worker thread (see the module docstring).

        *Errors*: :class:`SshError` (reason ``timeout`` on the deadline).
        """
        limit = self.deadline if timeout is None else timeout
        started = False

        def work() -> T:
            nonlocal started
            started = True
            return fn(*args)

        if self.aborted is not None:
            raise self._abort_error()
        try:
            with map_ssh_errors(self.label, what), trio.move_on_after(limit) as scope:
                # trio documents the limiter as anything with these two methods; its type
                # hint says CapacityLimiter.
                return await trio.to_thread.run_sync(
                    work, limiter=cast(trio.CapacityLimiter, self.limiter),
                    abandon_on_cancel=True)
        except SshError as exc:
            if self.aborted is not None:
                raise self._abort_error() from exc
            raise
        assert scope.cancelled_caught
        self.timed_out = True
        if started:
            self.aborted = SshError(
                f"{self.label} did not answer {what} within {limit:g} s (connection closed)",
                reason="timeout", details={"target": self.label, "request": what})
            self.on_deadline()
            raise self._abort_error()
        raise SshError(f"{self.label} is busy: {what} could not start within {limit:g} s",
                       reason="timeout", details={"target": self.label, "request": what})


def close_soon(close: Callable[[], None]) -> None:
    """Run ``close`` in a thread of its own (no limiter: it is what frees the limiters)."""
    def quietly() -> None:
        try:
            close()
        except Exception:  # noqa: S110 - closing what is already broken; nothing to report
            pass

    trio.lowlevel.start_thread_soon(quietly, lambda _outcome: None)
