"""Login rate limits: token buckets per client IP and one for everybody (SPEC §10.2).

Pure logic over a clock (``trio.current_time`` by default, a ``MockClock`` in the property
tests); no I/O, so the answer is known before any password is hashed or any row is read.

- A bucket holds at most ``per_minute`` tokens and refills at ``per_minute / 60`` per second;
  an attempt takes one token. Over any interval of ``t`` seconds a key therefore gets at most
  ``per_minute + per_minute * t / 60`` attempts through.
- A refused attempt takes nothing and is told how long until one token is there again
  (``retry_after``, whole seconds rounded up, at least 1): the ``Retry-After`` header.
- The per-IP check comes first and the global bucket is only charged for attempts the IP
  bucket let through, so one noisy client cannot drain the global budget for everyone.
- Memory is bounded: a bucket that has refilled completely is indistinguishable from a new
  one and is dropped; beyond ``max_keys`` live buckets the oldest are dropped (an attacker
  with that many addresses is held back by the global bucket anyway).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable

import attrs
import trio

MAX_KEYS = 50_000
EPSILON = 1e-9


@attrs.define
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """One token bucket per key, ``per_minute`` capacity and refill per minute."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = trio.current_time,
                 max_keys: int = MAX_KEYS) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def _refilled(self, key: str, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            return _Bucket(self.capacity, now)
        bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        return bucket

    def peek(self, key: str) -> float:
        """Seconds until ``key`` may make an attempt (0.0: now)."""
        bucket = self._refilled(key, self.clock())
        if bucket.tokens >= 1.0 - EPSILON:  # float refill must not cost an extra second
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def take(self, key: str) -> None:
        """Charge one attempt to ``key`` (callers :meth:`peek` first)."""
        now = self.clock()
        bucket = self._refilled(key, now)
        bucket.tokens = max(0.0, bucket.tokens - 1.0)
        self._buckets[key] = bucket
        self._buckets.move_to_end(key)
        self._prune(now)

    def _prune(self, now: float) -> None:
        # Oldest-updated first: drop buckets that would be full by now, and any beyond max_keys.
        while self._buckets:
            key, bucket = next(iter(self._buckets.items()))
            full = bucket.tokens + (now - bucket.updated) * self.rate >= self.capacity
            if not full and len(self._buckets) <= self.max_keys:
                break
            del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)


def retry_after_seconds(wait: float) -> int:
    """What ``Retry-After`` says for a wait of ``wait`` seconds: whole seconds, at least 1."""
    return max(1, math.ceil(wait - 1e-9))


class LoginRateLimiter:
    """The per-IP and global login buckets; :meth:`check` answers before any hashing."""

    def __init__(self, per_ip_per_minute: int, global_per_minute: int, *,
                 clock: Callable[[], float] = trio.current_time) -> None:
        self.per_ip = TokenBuckets(per_ip_per_minute, clock=clock)
        self.everyone = TokenBuckets(global_per_minute, clock=clock, max_keys=1)

    def check(self, client: str) -> int | None:
        """None when the attempt may go ahead (and it is charged), else the seconds to wait
        (``Retry-After``); a refused attempt is charged to nobody."""
        wait_ip = self.per_ip.peek(client)
        if wait_ip > 0:
            return retry_after_seconds(wait_ip)
        wait_all = self.everyone.peek("*")
        if wait_all > 0:
            return retry_after_seconds(wait_all)
        self.per_ip.take(client)
        self.everyone.take("*")
        return None
