"""Hypothesis helpers shared by the property tests (SPEC §9).

Async fixtures (a running service, an httpx client, a sandbox fleet) live in one Trio run, but
hypothesis wants to call the test body once per example. ``run_property`` bridges the two: it
runs a synchronous ``@given`` function in a worker thread, and the body uses ``call(afn, ...)``
to run async steps back on the Trio loop where the fixtures live::

    async def test_property_x(client):
        @PROP
        @given(n=st.integers())
        def prop(n):
            r = call(client.get, f"/api/x/{n}")
            assert r.status_code == 404

        await run_property(prop)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio
from hypothesis import HealthCheck, settings

T = TypeVar("T")

PROP = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


async def run_property(test: Callable[[], None], *, timeout: float = 300) -> None:
    with trio.fail_after(timeout):
        await trio.to_thread.run_sync(test)


def call(afn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """Run ``await afn(*args, **kwargs)`` on the Trio loop from the hypothesis thread."""

    async def runner() -> T:
        return await afn(*args, **kwargs)

    return trio.from_thread.run(runner)
