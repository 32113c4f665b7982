"""The health monitor: every link, every ``[health] check_interval_minutes``, at most
``[health] concurrency`` at a time.

A check opens a *fresh* connection (never a pooled one: the question is whether the host
accepts connections now) within ``[health] check_timeout`` (connect retries included), then
measures ``latency_ms`` as the round trip of an SSH keepalive request on it (network + sshd;
no remote shell, no handshake crypto), and closes it.

* success: ``status='online'``, ``reachable=1``, ``latency_ms``, ``last_seen`` and
  ``last_check`` = now, ``health_error`` cleared;
* failure: ``status='offline'``, ``reachable=0``, ``latency_ms`` cleared, ``last_check`` = now,
  ``health_error`` = why; ``last_seen`` keeps the last success.

*Cancellation*: :meth:`HealthMonitor.run` is meant for the root nursery and ends when it is
cancelled; a check cancelled half-way stores nothing for the links it had not finished.

*Errors*: a failing round (e.g. the database is locked) is logged and the loop goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import attrs
import trio

from linkops.config import HealthSettings
from linkops.db import Database
from linkops.errors import NotFoundError
from linkops.models import Link
from linkops.ssh.bridge import Resolver, SshManager
from linkops.ssh.coalesce import Coalescer
from linkops.ssh.errors import SshError
from linkops.ssh.machines import load_links, store_health
from linkops.timeutil import now_iso

log = logging.getLogger("linkops.ssh.health")


@attrs.frozen
class HealthResult:
    target: str
    online: bool
    latency_ms: float | None
    checked_at: str
    error: str | None = None
    reason: str | None = None

    @property
    def status(self) -> str:
        return "online" if self.online else "offline"


async def check_link(ssh: SshManager, link: Link, resolve: Resolver,
                     timeout: float) -> HealthResult:  # noqa: ASYNC109
    """One health check (see the module docstring); never raises for an unreachable host."""
    try:
        with trio.fail_after(timeout):
            conn = await ssh.connect(link, resolve)
            try:
                rtt = await conn.ping(timeout=timeout)
            finally:
                await conn.aclose()
    except trio.TooSlowError:
        return HealthResult(link.id, False, None, now_iso(),
                            f"{link.id}: no answer within {timeout:g} s", "timeout")
    except SshError as exc:
        return HealthResult(link.id, False, None, now_iso(), exc.message, exc.reason)
    return HealthResult(link.id, True, round(rtt * 1000.0, 3), now_iso())


class HealthMonitor:
    """The periodic health service (``run``) and on-demand checks (``check_now``)."""

    def __init__(self, db: Database, ssh: SshManager, settings: HealthSettings) -> None:
        self.db = db
        self.ssh = ssh
        self.settings = settings
        self.rounds = 0
        # Concurrent checks of one link share one attempt (see coalesce.py).
        self._flights: Coalescer[HealthResult] = Coalescer()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Check everything now, then every interval, until cancelled."""
        task_status.started()
        while True:
            try:
                results = await self.check_now()
                offline = [r.target for r in results if not r.online]
                log.info("health round done", extra={"links": len(results),
                                                     "offline": offline})
            except Exception:
                log.exception("health round failed")
            self.rounds += 1
            await trio.sleep(self.settings.check_interval_minutes * 60.0)

    async def check_now(self, link_ids: Iterable[str] | None = None) -> list[HealthResult]:
        """Check ``link_ids`` (default: all) concurrently and store each result as it comes.

        *Errors*: :class:`NotFoundError` listing unknown ids (nothing is checked then).
        """
        links = await load_links(self.db)
        ids = list(links) if link_ids is None else list(dict.fromkeys(link_ids))
        unknown = [i for i in ids if i not in links]
        if unknown:
            raise NotFoundError(f"unknown link(s): {', '.join(unknown)}", code="LINK_NOT_FOUND",
                                details={"targets": unknown})
        limiter = trio.CapacityLimiter(max(1, self.settings.concurrency))
        results: dict[str, HealthResult] = {}

        async def one(link_id: str) -> None:
            async def attempt() -> HealthResult:
                async with limiter:
                    result = await check_link(self.ssh, links[link_id], links,
                                              self.settings.check_timeout)
                    await self.db.write(lambda c: store_health(
                        c, result.target, result.online, result.latency_ms,
                        result.checked_at, result.error))
                    if not result.online:
                        log.warning("link offline", extra={"target": link_id,
                                                           "reason": result.reason,
                                                           "error": result.error})
                    return result

            results[link_id] = await self._flights.run(link_id, attempt)

        async with trio.open_nursery() as nursery:
            for link_id in ids:
                nursery.start_soon(one, link_id)
        return [results[i] for i in ids]
