"""Script output streaming: MB/s from a real sshd to an SSE client, and peak memory.

*End to end* (:func:`end_to_end`, first): the real server as a subprocess, 64 and 640 MiB
through ``GET /api/operations/{id}/events``, against raw paramiko in the same run; peak
server RSS. ``--quick`` (or ``CI=true``): 16 MiB once.

*In process* (:func:`amain`, second): the layers one by one.

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

import httpx
import psutil  # type: ignore[import-untyped]
import trio

from bench.common import (
    ServerProcess,
    Table,
    check_lean_shell,
    client_files,
    fleet_links,
    median,
    quick_mode,
    run_baseline,
    run_operation,
    stdout_chars,
)
from linkops.models import Link
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
        return float(self.peak - self.base) / 2**20


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


# == End to end: one host's output through the real server to an SSE client ===================
#
# ``head -c K /dev/zero | base64`` on one sandbox host (K = 3/4 of the size: base64 makes it
# 64 MiB or 640 MiB of text, plus a newline per 76 characters) as an operation, followed on
# ``GET /api/operations/{id}/events``; MB/s is the output characters the SSE client received
# divided by the time from the API call to ``operation_end``. Baseline in the same run: raw
# paramiko reading the same command's stdout (fresh connection, ``recv(32768)`` until EOF).
# Peak server RSS: the server subprocess' VmHWM, reset before each run.

E2E_SIZES_FULL = (64, 640)
E2E_SIZES_QUICK = (16,)


def stream_command(mebibytes: int) -> str:
    return f"head -c {mebibytes * 1024 * 1024 * 3 // 4} /dev/zero | base64"


def linkops_stream(server: ServerProcess, http: httpx.Client, link_id: str, script: str
                   ) -> dict[str, float]:
    received = 0

    def count(payload: bytes) -> None:
        nonlocal received
        received += stdout_chars(payload)

    server.reset_peak_rss()
    rss0 = server.rss()
    cpu0 = server.cpu_seconds()
    elapsed, end = run_operation(http, {"scripts": [script], "targets": [link_id],
                                        "concurrency": 1}, on_output=count)
    if end.get("status") != "success":
        raise RuntimeError(f"stream operation ended {end.get('status')}: {end.get('error')}")
    return {"elapsed": elapsed, "bytes": received, "peak_rss": server.peak_rss(),
            "rss_before": rss0, "cpu": server.cpu_seconds() - cpu0}


def paramiko_stream(key: Path, known_hosts: Path, link: Link, command: str) -> dict[str, float]:
    job = {"key": str(key), "known_hosts": str(known_hosts), "command": command,
           "targets": [{"host": link.host, "port": link.port, "user": link.user}]}
    result: dict[str, float] = run_baseline("paramiko-stream", job)
    return result


def expected_bytes(mebibytes: int) -> int:
    raw = mebibytes * 1024 * 1024 * 3 // 4
    encoded = (raw + 2) // 3 * 4
    return encoded + (encoded + 75) // 76


def end_to_end(quick: bool) -> Table:
    sizes = E2E_SIZES_QUICK if quick else E2E_SIZES_FULL
    repeats = 1 if quick else 3
    table = Table(f"Streaming end to end ({'quick' if quick else 'full'}: median of {repeats}; "
                  "base64 text from one host)")
    with tempfile.TemporaryDirectory(prefix="linkops-stream-bench-") as tmp:
        root = Path(tmp)
        with Sandbox(root / "fleet", hosts=1, prefix="stream") as fleet:
            key, known_hosts = client_files(fleet, root / "client")
            check_lean_shell(fleet, key, known_hosts)
            link = fleet_links(fleet, 1, prefix="stream")[0]
            scripts = {f"bench-stream-{m}": f"#!/bin/bash\n{stream_command(m)}\n"
                       for m in sizes}
            with ServerProcess(root / "server", fleet) as server:
                server.seed([link], scripts)
                idle_rss = server.rss()
                with server.client() as http:
                    for mib in sizes:
                        reps = repeats if mib < 200 else max(1, repeats - 1)
                        ours, theirs = [], []
                        for _ in range(reps):
                            ours.append(linkops_stream(server, http, link.id,
                                                       f"bench-stream-{mib}"))
                            theirs.append(paramiko_stream(key, known_hosts, link,
                                                          stream_command(mib)))
                        report_stream(table, mib, ours, theirs, idle_rss)
    return table


def report_stream(table: Table, mib: int, ours: list[dict[str, float]],
                  theirs: list[dict[str, float]], idle_rss: int) -> None:
    want = expected_bytes(mib)
    rate = median(o["bytes"] / o["elapsed"] for o in ours) / 2**20
    base = median(t["bytes"] / t["elapsed"] for t in theirs) / 2**20
    got = min(o["bytes"] for o in ours)
    complete = "" if got == want else f" (client got {got / want:.0%} of the output)"
    table.add(f"stream {mib} MiB to SSE client", f"{rate:.1f} MB/s{complete}",
              f"paramiko {base:.1f} MB/s", f"{rate / base:.2f}x", ">= 0.80x",
              rate / base >= 0.8 and got == want)
    peak = max(o["peak_rss"] for o in ours) / 2**20
    table.add(f"stream {mib} MiB server peak RSS", f"{peak:.0f} MB",
              f"idle {idle_rss / 2**20:.0f} MB", "", "< 150 MB", peak < 150)
    cpu = median(o["cpu"] for o in ours)
    table.add(f"stream {mib} MiB server CPU", f"{cpu:.1f} s",
              f"paramiko client {median(t['cpu'] for t in theirs):.1f} s")


def main() -> None:
    end_to_end(quick_mode()).print()
    with tempfile.TemporaryDirectory(prefix="linkops-bench-") as tmp:
        trio.run(amain, Path(tmp))


if __name__ == "__main__":
    main()
