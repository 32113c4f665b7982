"""Property 37 of SPEC §9: SIGTERM closes connections gracefully.

In-process (cheap enough for 100 examples): the real signal handling of ``server.run`` with a
real SIGTERM sent to this process while clients hold connections open.
tests/test_systemd_service.py does the same against a real ``linkops serve`` subprocess with an
SSE stream and a terminal open (stream ends ``stopped``, exit 0, stop line logged).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import trio
from hypothesis import given
from hypothesis import strategies as st

from linkops import config, server
from linkops.logs import setup_logging
from tests.fixtures_core import write_config
from tests.strategies import PROP, call, run_property


async def _serve_then_sigterm(config_path: Path, idle: int, partial: int, requests: int) -> None:
    settings = config.load(config_path)
    setup_logging(settings.logging, stderr=False)
    async with trio.open_nursery() as nursery:
        handle: server.Running = await nursery.start(server.run, settings)
        host, port = handle.binds[0].removeprefix("http://").rsplit(":", 1)
        streams = []
        for _ in range(idle):
            streams.append(await trio.open_tcp_stream(host, int(port)))
        for _ in range(partial):
            # A request whose headers never finish.
            stream = await trio.open_tcp_stream(host, int(port))
            await stream.send_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")
            streams.append(stream)
        for _ in range(requests):
            stream = await trio.open_tcp_stream(host, int(port))
            await stream.send_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b"200" in await stream.receive_some(4096)
            streams.append(stream)
        with trio.fail_after(server.SHUTDOWN_SECONDS + settings.api.graceful_timeout + 5):
            os.kill(os.getpid(), signal.SIGTERM)
            # Every connection is closed by the server: reads end with EOF, not a hang.
            for stream in streams:
                while await stream.receive_some(4096):
                    pass
                await stream.aclose()
    # run() returned normally (no exception): that is what exits 0 in `linkops serve`.
    log = settings.logging.path.read_text(encoding="utf-8")  # type: ignore[union-attr]
    assert '"event": "service.signal"' in log and '"SIGTERM"' in log
    assert log.rstrip().splitlines()[-1].count('"service.stop"') == 1


async def test_property_37_sigterm_closes_connections_gracefully(tmp_path: Path) -> None:
    """Property 37: SIGTERM closes every client connection and the service stops cleanly."""
    counter = iter(range(10_000))

    @PROP
    @given(idle=st.integers(0, 3), partial=st.integers(0, 2), requests=st.integers(0, 3))
    def prop(idle: int, partial: int, requests: int) -> None:
        root = tmp_path / f"run{next(counter)}"
        root.mkdir()
        # Keep-alive connections wait out the grace period; keep it short to keep 100 cheap.
        path = write_config(root, api={"graceful_timeout": 0.2})
        call(_serve_then_sigterm, path, idle, partial, requests)

    await run_property(prop, timeout=600)
