"""Login rate limits and fair lockout as properties (SPEC §10.2), pure logic under MockClock.

No sockets, no threads, no database: :class:`linkops.ratelimit.LoginRateLimiter` reads
``trio.current_time`` of a ``MockClock`` run, and :class:`linkops.lockout.LockoutPolicy` gets
failure times. The same code decides real logins (tests/test_login_attack.py).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from linkops.lockout import LockoutPolicy, lock_until
from linkops.ratelimit import LoginRateLimiter, TokenBuckets, retry_after_seconds

PROPS = settings(max_examples=100, deadline=None)

# An attempt: (seconds after the previous one, client index).
attempts = st.lists(
    st.tuples(st.floats(min_value=0, max_value=20, allow_nan=False), st.integers(0, 4)),
    max_size=120,
)


def run_clocked(fn: object) -> None:
    """``fn`` (an async function of no arguments) in a Trio run on a fresh MockClock."""
    trio.run(fn, clock=trio.testing.MockClock(autojump_threshold=0))  # type: ignore[arg-type]


@PROPS
@given(per_ip=st.integers(1, 30), everyone=st.integers(1, 60), steps=attempts)
def test_accepted_attempts_never_exceed_the_buckets(per_ip: int, everyone: int,
                                                    steps: list[tuple[float, int]]) -> None:
    """Over any interval of t seconds a client gets at most per_ip + per_ip·t/60 attempts
    through, and everybody together at most everyone + everyone·t/60; every refusal says
    Retry-After ≥ 1."""

    async def main() -> None:
        limiter = LoginRateLimiter(per_ip, everyone)
        accepted: list[tuple[float, int]] = []
        for gap, client in steps:
            await trio.sleep(gap)
            wait = limiter.check(f"10.0.0.{client}")
            if wait is None:
                accepted.append((trio.current_time(), client))
            else:
                assert wait >= 1
        for i, (start, _) in enumerate(accepted):
            for j in range(i, len(accepted)):
                t = accepted[j][0] - start
                window = accepted[i:j + 1]
                assert len(window) <= everyone + everyone * t / 60 + 1e-6
                for client in {c for _, c in window}:
                    mine = [a for a in window if a[1] == client]
                    span = mine[-1][0] - mine[0][0]
                    assert len(mine) <= per_ip + per_ip * span / 60 + 1e-6

    run_clocked(main)


@PROPS
@given(per_ip=st.integers(1, 30), burst=st.integers(0, 60), gap=st.floats(0, 5))
def test_retry_after_is_honest(per_ip: int, burst: int, gap: float) -> None:
    """A client refused with Retry-After: n, and quiet for n seconds, is let through; and it
    is never told to wait longer than one token's refill time (rounded up)."""

    async def main() -> None:
        limiter = LoginRateLimiter(per_ip, 10**6)
        for _ in range(burst):
            limiter.check("10.1.1.1")
            await trio.sleep(gap / 10)
        while (wait := limiter.check("10.1.1.1")) is None:
            pass
        assert wait <= math.ceil(60 / per_ip)
        await trio.sleep(wait)
        assert limiter.check("10.1.1.1") is None
        # Other clients were never affected by this one's exhaustion.
        assert limiter.check("10.2.2.2") is None

    run_clocked(main)


@PROPS
@given(per_ip=st.integers(1, 30), clients=st.integers(1, 400))
def test_refused_clients_do_not_drain_the_global_bucket(per_ip: int, clients: int) -> None:
    """A flood from one address uses only its own bucket; the global one is charged only for
    attempts that got through the per-IP check."""

    async def main() -> None:
        limiter = LoginRateLimiter(per_ip, per_ip * 2)
        for _ in range(clients):
            limiter.check("10.9.9.9")
        assert limiter.check("10.8.8.8") is None

    run_clocked(main)


@PROPS
@given(keys=st.integers(1, 300), per_minute=st.integers(1, 100))
def test_bucket_memory_is_bounded(keys: int, per_minute: int) -> None:
    """Full buckets are forgotten; never more than max_keys are kept."""

    async def main() -> None:
        buckets = TokenBuckets(per_minute, max_keys=50)
        for i in range(keys):
            buckets.take(f"k{i}")
            assert len(buckets) <= 50
        await trio.sleep(60 / per_minute * per_minute + 1)
        buckets.take("last")
        assert len(buckets) == 1

    run_clocked(main)


def test_retry_after_rounding() -> None:
    assert retry_after_seconds(0.01) == 1
    assert retry_after_seconds(1.0) == 1
    assert retry_after_seconds(1.2) == 2


# -- lockout --------------------------------------------------------------------------------

T0 = datetime(2026, 12, 1, tzinfo=UTC)
POLICY = LockoutPolicy(max_failed=5, window=timedelta(minutes=5),
                       duration=timedelta(minutes=5), ceiling=50)

failures = st.lists(st.tuples(st.integers(0, 900), st.integers(0, 30)), max_size=200)


def _split(items: list[tuple[int, int]]) -> dict[int, list[datetime]]:
    by_client: dict[int, list[datetime]] = {}
    for sec, client in sorted(items):
        by_client.setdefault(client, []).append(T0 + timedelta(seconds=sec))
    return by_client


@PROPS
@given(items=failures, at=st.integers(0, 1200), other=st.integers(31, 40))
def test_lockout_from_one_client_never_locks_another_below_the_ceiling(
        items: list[tuple[int, int]], at: int, other: int) -> None:
    """Below the ceiling, a client without failures of its own is never locked out, whatever
    the others did; a client with max_failed failures inside the window is locked until the
    last of them + the duration."""
    now = T0 + timedelta(seconds=at)
    relevant = [(s, c) for s, c in items if s <= at]
    by_client = _split(relevant)
    every = sorted(t for ts in by_client.values() for t in ts)
    ceiling_lock = lock_until(every, now, threshold=POLICY.ceiling, window=POLICY.window,
                              duration=POLICY.duration)
    if ceiling_lock is None:
        assert POLICY.state([], every, now) is None
    for times in by_client.values():
        state = POLICY.state(times, every, now)
        own = lock_until(times, now, threshold=5, window=POLICY.window,
                         duration=POLICY.duration)
        assert state == max([t for t in (own, ceiling_lock) if t is not None], default=None)
        if state is not None:
            assert now < state <= now + POLICY.duration
    assert other not in by_client


@PROPS
@given(start=st.integers(0, 600), spacing=st.floats(0, 6), clients=st.integers(13, 50))
def test_the_ceiling_locks_everybody(start: int, spacing: float, clients: int) -> None:
    """ceiling failures within the window from many clients (none of them locked on its own)
    lock the name for a client that never failed; it unlocks duration after the last one."""
    times = [T0 + timedelta(seconds=start + i * spacing) for i in range(POLICY.ceiling)]
    last = times[-1]
    # Spread over enough clients that none reaches max_failed by itself.
    per_client = [times[i::clients] for i in range(clients)]
    assert all(len(t) < POLICY.max_failed for t in per_client)
    now = last + timedelta(seconds=1)
    if times[-1] - times[0] <= POLICY.window:
        assert POLICY.state([], times, now) == last + POLICY.duration
        assert all(POLICY.state(mine, times, now) == last + POLICY.duration
                   for mine in per_client)
        assert POLICY.state([], times, last + POLICY.duration) is None
    else:
        assert POLICY.state([], times, now) is None


@PROPS
@given(gaps=st.lists(st.tuples(st.floats(0, 120), st.integers(0, 3)), min_size=1,
                     max_size=150),
       owner_at=st.floats(0, 3600))
def test_guesses_from_a_few_addresses_never_lock_the_owner(
        gaps: list[tuple[float, int]], owner_at: float) -> None:
    """The weapon of issue #19, simulated the way AuthService decides: an attacker guessing
    from up to four addresses, as often as it likes, never locks the owner at another address
    (a locked client's refusals are not stored as failures, so each address adds at most
    2·max_failed failures to any window, below the ceiling)."""
    t = T0
    stored: list[tuple[datetime, int]] = []
    owner = T0 + timedelta(seconds=owner_at)
    for gap, client in gaps:
        t += timedelta(seconds=gap)
        every = [at for at, _ in stored]
        own = [at for at, c in stored if c == client]
        if POLICY.state(own, every, t) is None:
            stored.append((t, client))
        if t <= owner:
            assert POLICY.state([], [at for at, _ in stored], owner) is None
    assert POLICY.state([], [at for at, _ in stored], t) is None
