"""The root nursery: services, ``hypercorn.trio.serve``, signals and readiness.

Shape (modelled on hypercorn's ``worker_serve``)::

    run(settings)
      └─ root nursery
           ├─ signal watcher        SIGTERM/SIGINT → graceful shutdown
           ├─ background services   git sync loop, health monitor, … (each ``run(task_status)``)
           └─ hypercorn.trio.serve  shutdown_trigger = ``shutdown_requested.wait``

*Shutdown* (SIGTERM or SIGINT): log it, tell systemd STOPPING=1, set ``services.closing`` (SSE
streams and terminal sockets end cleanly), let each service stop its work (operations kill
their remote processes and record ``stopped``), then trigger Hypercorn's graceful shutdown and
finally cancel the background services. Every step has a deadline, so the process exits 0
within :data:`SHUTDOWN_SECONDS` plus ``[api] graceful_timeout``.
"""

from __future__ import annotations

import logging
import signal
from typing import Any, Protocol

import attrs
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from linkops import __version__, sdnotify
from linkops.config import Settings
from linkops.db import Database
from linkops.services import Services, build_services
from linkops.web.app import create_app
from linkops.web.connections import CloseDelimitedConnections

log = logging.getLogger("linkops.server")

SHUTDOWN_SECONDS = 8.0


def background_services(services: Services) -> list[BackgroundService]:
    """What runs in the background nursery, each started with ``nursery.start(x.run)``."""
    return [services.ssh, services.inventory, services.health, services.operations,
            services.terminal, services.auth]


async def _shutdown_services(services: Services) -> None:
    """Ask the services that own remote work to wind it down (operations kill their remote
    process groups, terminals close their shells), concurrently."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(services.operations.shutdown)
        nursery.start_soon(services.terminal.shutdown)


class BackgroundService(Protocol):
    async def run(self, *, task_status: trio.TaskStatus[None] = ...) -> None: ...


async def _first_signal(signals: Any, stop: trio.Event) -> None:
    async for signum in signals:
        log.info("service.signal", extra={"context": {"signal": signal.Signals(signum).name}})
        stop.set()
        return


def hypercorn_config(settings: Settings) -> HypercornConfig:
    config = HypercornConfig()
    config.bind = [f"{settings.api.host}:{settings.api.port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = settings.api.graceful_timeout
    config.keep_alive_timeout = 75
    config.websocket_ping_interval = settings.terminal.websocket_ping_interval
    # Terminal frames are small (the protocol refuses frames over 64 KiB itself); Hypercorn's
    # 16 MiB default would let one frame cost that much memory before we see it.
    config.websocket_max_message_size = 256 * 1024
    config.include_server_header = False
    return config


@attrs.frozen
class Running:
    """What :func:`run` hands to ``task_status.started``: where it listens and how to stop it."""

    binds: list[str]
    services: Services
    stop: trio.Event


async def run(
    settings: Settings,
    *,
    handle_signals: bool = True,
    task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the service until SIGTERM/SIGINT (or ``Running.stop`` is set); returns normally
    after a graceful shutdown."""
    db = Database(settings.database.path)
    services = build_services(settings, db)
    if services.frontend_missing:
        # The service still starts (the API works), but the UI would fail in the browser.
        log.error("service.frontend_incomplete", extra={"context": {
            "missing": services.frontend_missing,
            "fix": "install a wheel built by pip or `nox -s package` (it runs frontend/build.py)",
        }})
    app = create_app(services)
    shutdown_requested = trio.Event()
    stop = trio.Event()

    async def watch_signals(*, task_status: trio.TaskStatus[None]) -> None:
        if handle_signals:
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                task_status.started()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_first_signal, signals, stop)
                    await stop.wait()
                    nursery.cancel_scope.cancel()
        else:
            task_status.started()
            await stop.wait()
        await graceful_shutdown()

    async def graceful_shutdown() -> None:
        sdnotify.stopping()
        services.closing.set()
        with trio.move_on_after(SHUTDOWN_SECONDS) as scope:
            await _shutdown_services(services)
        if scope.cancelled_caught:
            log.warning(
                "service.shutdown_deadline", extra={"context": {"seconds": SHUTDOWN_SECONDS}}
            )
        shutdown_requested.set()

    try:
        async with trio.open_nursery() as root:
            await root.start(watch_signals)
            async with trio.open_nursery() as background:
                background.start_soon(sdnotify.watchdog_loop)
                for service in background_services(services):
                    await background.start(service.run)
                binds: list[str] = await root.start(
                    lambda task_status: hypercorn_serve(
                        # Closes Connection: close / HTTP/1.0 / unread-body connections; see
                        # linkops/web/connections.py for the upstream cause.
                        CloseDelimitedConnections(app),
                        hypercorn_config(settings),
                        shutdown_trigger=shutdown_requested.wait,
                        task_status=task_status,
                    )
                )
                log.info(
                    "service.start",
                    extra={
                        "context": {
                            "version": __version__,
                            "binds": binds,
                            "config": str(settings.source),
                            "database": str(settings.database.path),
                        }
                    },
                )
                sdnotify.ready(f"serving on {', '.join(binds)}")
                task_status.started(Running(binds=binds, services=services, stop=stop))
                await shutdown_requested.wait()
                background.cancel_scope.cancel()
            # Hypercorn finishes its graceful shutdown; then nothing is left but the watcher.
            root.cancel_scope.deadline = trio.current_time() + settings.api.graceful_timeout + 2
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await services.ssh.aclose()
        db.close()
        log.info("service.stop", extra={"context": {"version": __version__}})
