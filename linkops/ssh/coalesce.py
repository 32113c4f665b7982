"""Concurrent identical SSH checks of one link coalesced into one (single flight).

A verification or health check asked for while the same one is running for that link waits
for it and shares its result, instead of opening another connection: a hundred clicks on
"verify" of a mute host cost one attempt (and one share of its threads), not a hundred.

*Cancellation*: a waiter that is cancelled just stops waiting. When the one running the
check is cancelled, the waiters do not inherit the cancellation: the next of them runs the
check itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import trio

T = TypeVar("T")


class _Flight(Generic[T]):
    def __init__(self) -> None:
        self.done = trio.Event()
        self.finished = False  # False after a cancelled runner: the waiters try again
        self.value: T | None = None
        self.error: Exception | None = None


class Coalescer(Generic[T]):
    """``await coalescer.run(key, fn)``: ``fn()``, or the result of the running ``fn`` for
    ``key``."""

    def __init__(self) -> None:
        self._flights: dict[str, _Flight[T]] = {}

    def running(self, key: str) -> bool:
        return key in self._flights

    async def run(self, key: str, fn: Callable[[], Awaitable[T]]) -> T:
        while True:
            flight = self._flights.get(key)
            if flight is None:
                break
            await flight.done.wait()
            if flight.finished:
                if flight.error is not None:
                    raise flight.error
                return flight.value  # type: ignore[return-value]  # set with finished
        flight = self._flights[key] = _Flight()
        try:
            value = await fn()
        except Exception as exc:
            flight.error, flight.finished = exc, True
            raise
        else:
            flight.value, flight.finished = value, True
            return value
        finally:
            del self._flights[key]
            flight.done.set()
