"""Script output streaming: MB/s from a real sshd to the operation's events, and peak memory.

One local sshd (:class:`linkops.sandbox.Sandbox`). For each payload (:data:`MEGABYTES` of
text lines, then of random bytes — invalid UTF-8), three ways to read it, same connection:

- *raw*: the SSH layer's :class:`ExecStream` read loop, bytes thrown away (the floor);
- *operations*: :class:`~linkops.operations.remote.RemoteScript` with the wrapper, incremental
  decoding, the bounded head+tail buffer and an :class:`EventHub` with one live subscriber
  (what an operation does);
- *naive*: ``conn.run`` keeping everything (unbounded: what we avoid), for memory.

Prints MB/s and the growth of this process' peak RSS during each run.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import psutil
import trio

from linkops.operations.events import EventHub, follow
from linkops.operations.output import TaskOutput
from linkops.operations.remote import RemoteScript
from linkops.sandbox import Sandbox
from linkops.ssh.bridge import SshConnection
from tests.fixtures_sandbox import make_ssh_env

MEGABYTES = 100
PAYLOADS = {
    "text": f"yes 'linkops benchmark line with some text' | head -c {MEGABYTES}M",
    "random": f"head -c {MEGABYTES}M /dev/urandom",
}


class Peak:
    def __init__(self) -> None:
        self.proc = psutil.Process()
        self.base = self.proc.memory_info().rss
        self.peak = self.base

    async def watch(self, done: trio.Event) -> None:
        while not done.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            await trio.sleep(0.05)

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.base) / 2**20


async def measure(label: str, run: object) -> None:
    peak = Peak()
    done = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(peak.watch, done)
        t0 = time.perf_counter()
        received = await run()  # type: ignore[operator]
        elapsed = time.perf_counter() - t0
        done.set()
    rate = received / 2**20 / elapsed
    print(f"  {label:<11} {rate:8.1f} MB/s   peak RSS +{peak.growth_mb:7.1f} MB")


async def raw(conn: SshConnection, command: str) -> int:
    total = 0
    async with await conn.open_exec(command) as stream:
        while (item := await stream.receive()) is not None:
            total += len(item[1])
        await stream.wait_exit()
    return total


async def operations_path(conn: SshConnection, command: str) -> int:
    output = TaskOutput(1_048_576)
    hub = EventHub(task_output_limit=1_048_576, total_output_limit=8 * 1_048_576)
    base = {"target": "bench", "script": "s", "position": 0}

    async def sink(stream: str, chunk: bytes) -> None:
        text = output.feed(stream, chunk)
        if text:
            hub.publish("output", {**base, "stream": stream, "data": text})

    async def on_pgid(_pgid: int) -> None:
        return None

    async def subscriber() -> None:
        async for _ in follow(hub, 0):
            pass

    script = f"#!/bin/bash\n{command}\n"

    async def reconnect() -> SshConnection:
        raise RuntimeError("not needed")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(subscriber)
        remote = RemoteScript(conn, reconnect, script, (), sink=sink, on_pgid=on_pgid)
        await remote.run(600)
        output.finish()
        hub.publish("operation_end", {"status": "success"})
    return sum(output.bytes_received.values())


async def naive(conn: SshConnection, command: str) -> int:
    result = await conn.run(command, timeout=600, max_output=2**40)
    return len(result.stdout)


async def amain(env_dir: Path) -> None:
    with Sandbox(env_dir / "fleet", hosts=1, prefix="bench") as fleet:
        env = make_ssh_env(fleet, env_dir / "ssh")
        manager = env.manager()
        link = env.links["bench-01"]
        conn = await manager.connect(link, env.links)
        try:
            for name, command in PAYLOADS.items():
                print(f"{MEGABYTES} MB of {name}:")
                await measure("raw", lambda c=command: raw(conn, c))
                await measure("operations", lambda c=command: operations_path(conn, c))
                await measure("naive", lambda c=command: naive(conn, c))
        finally:
            await conn.aclose()
            await manager.aclose()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="linkops-bench-") as tmp:
        trio.run(amain, Path(tmp))


if __name__ == "__main__":
    main()
