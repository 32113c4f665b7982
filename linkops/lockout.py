"""Fair lockout: per (username, client IP), plus a per-username ceiling (SPEC §10.2).

Pure logic over failure times; :mod:`linkops.auth` reads the times and records attempts.
The model (docs/security.md, docs/decisions/lockout.md):

- ``max_failed_attempts`` failures for one name *from one client* within
  ``failure_window_minutes`` lock that name *for that client* for ``lockout_duration_minutes``
  after the last of them. Someone guessing from elsewhere therefore cannot lock the owner out.
- ``lockout_ceiling`` failures for one name from *all* clients together within the window lock
  the name for everybody for the same duration: a distributed guesser (many addresses) is
  stopped too, at the price that it can lock the account — but only by spending the ceiling's
  worth of guesses per lock period, against per-IP and global rate limits.
- Failures count after the name's last successful login. While locked, even the right
  password is refused; refused attempts are counted, not stored as failures, and do not extend
  the lock. ``linkops user unlock NAME`` and a password change clear the history.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import attrs


def lock_until(times: Sequence[datetime], now: datetime, *, threshold: int,
               window: timedelta, duration: timedelta) -> datetime | None:
    """When the lock made by ``times`` (sorted failure times) ends, or None if not locked.

    Locked when some ``threshold`` consecutive failures lie within ``window`` and the last of
    them is less than ``duration`` before ``now``; the latest such group decides.
    """
    for i in range(len(times) - threshold, -1, -1):
        if times[i + threshold - 1] - times[i] <= window:
            unlock = times[i + threshold - 1] + duration
            return unlock if unlock > now else None
    return None


@attrs.frozen
class LockoutPolicy:
    max_failed: int
    window: timedelta
    duration: timedelta
    ceiling: int

    def lookback(self, now: datetime) -> datetime:
        """Failures older than this cannot lock anything any more."""
        return now - self.duration - self.window

    def state(self, from_client: Sequence[datetime], from_all: Sequence[datetime],
              now: datetime) -> datetime | None:
        """When the name is unlocked again for this client (None: it is not locked).

        ``from_client``: sorted failure times of this name from this client; ``from_all``:
        from every client (this one included).
        """
        own = lock_until(from_client, now, threshold=self.max_failed, window=self.window,
                         duration=self.duration)
        everyone = lock_until(from_all, now, threshold=self.ceiling, window=self.window,
                              duration=self.duration)
        found = [t for t in (own, everyone) if t is not None]
        return max(found) if found else None
