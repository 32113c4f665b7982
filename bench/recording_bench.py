"""Session recordings: what recording costs the terminal, and how fast search answers.

*Recording on vs off* (:func:`on_off`, same run): the real service in its own process
(``bench.common.ServerProcess``, as in production), real sshd (a 1-host sandbox fleet), one
workspace of two panes on the same host: pane A's link is recorded, pane B's opted out
(``metadata.recording: false``). The panes take turns, in pairs, the order inside a pair
alternating (A B, B A, A B, …: neither always goes first or gets the warmer machine). Per
sample: throughput of ``head -c N /dev/urandom | base64`` in the pane (characters/s
received), keystroke echo latency (``echo`` + Enter to its output), the service's CPU per MB
of the flood. Reported: the geometric mean of the per-pair ratios on/off with its 95 %
bootstrap interval (a pair's two samples are seconds apart, so the machine's load moves both),
the medians per mode, and whether the recording was cut (a cut recording stops costing
anything: the "on" samples after it measure no recording). Goals (SPEC §10.4 / issue #18):
throughput with recording within 5 % of without (the whole interval at or above 0.95), echo
p50 within 1 ms, no cut.

*Search* (:func:`search_p95`): a database filled with generated recordings — N MB of plain
text lines (words from a fixed vocabulary plus a rare marker per recording) through the same
FTS5 schema the service uses — then searches as an admin and as a user who owns a small share
of the recordings: a rare word, a common word, two words, a prefix. Goal: p95 < 100 ms over
1 GB of text. ``--quick`` (or ``CI=true``): 8 MB, 2 pairs of 4 MB floods; full: 1 GB, 96 pairs
of 32 MB floods. ``--on-off``: only the on/off part (the 1 GB search database takes ~20 min
to generate on a 2-core machine).
"""

from __future__ import annotations

import json
import math
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from bench.common import (
    ServerProcess,
    Table,
    fleet_links,
    machine_busy_seconds,
    percentile,
    quick_mode,
)
from linkops.config import DatabaseSettings, Settings
from linkops.db import Database
from linkops.sandbox import Sandbox
from linkops.terminal.recording import Recordings
from linkops.terminal.recording_index import RecordingIndex, Viewer

MB = 1024 * 1024


# == recording on vs off ==========================================================================

@attrs.define
class Sample:
    throughput: float     # characters/s received during the flood
    cpu_per_mb: float     # CPU seconds of the service's process per MB flooded
    echo: list[float]     # seconds per echo round trip
    cut: str | None       # the recording's cut reason ("on" only)
    # The same CPU by thread: the Trio thread, the SSH transport thread that did the most
    # (the flooding pane's connection), and all others (worker threads: the recorder's
    # writer, the database writer).
    threads_per_mb: dict[str, float] = attrs.field(factory=dict)
    # CPU seconds of the whole machine (every process and the kernel: sshd, base64, the
    # bench's client, the kernel's write-out of the recording) per MB flooded.
    machine_per_mb: float = 0.0


@attrs.define
class OnOff:
    on: list[Sample] = attrs.field(factory=list)
    off: list[Sample] = attrs.field(factory=list)

    def ratios(self) -> list[float]:
        """Throughput on/off of each pair (same position in both lists)."""
        return [a.throughput / b.throughput for a, b in zip(self.on, self.off, strict=True)]

    def cuts(self) -> int:
        return sum(s.cut is not None for s in self.on)


# Pane A's link is recorded, pane B's link (the same host) opted out with ``metadata.recording:
# false``: one service, one socket, the two panes take turns. The service runs in its own
# process (bench.common.ServerProcess), as in production: the client's JSON decoding does not
# share its GIL, and the CPU figure is the service's alone.
RECORDED, UNRECORDED = "A", "B"
SETTLE = 0.5  # between samples: the recorder's last batch is written before the next flood


@attrs.define
class PaneClient:
    """One WebSocket to a workspace; reads every frame, counts and keeps a tail per pane."""

    ws: WebSocketConnection
    chars: dict[str, int] = attrs.field(factory=lambda: {RECORDED: 0, UNRECORDED: 0})
    tails: dict[str, str] = attrs.field(factory=lambda: {RECORDED: "", UNRECORDED: ""})

    async def until(self, pane: str, needle: str) -> None:
        while needle not in self.tails[pane]:
            msg = json.loads(await self.ws.get_message())
            if msg.get("type") == "stdout":
                got = str(msg["pane"])
                self.chars[got] += len(msg["data"])
                self.tails[got] = (self.tails[got] + msg["data"])[-4096:]

    async def stdin(self, pane: str, data: str) -> None:
        await self.ws.send_message(json.dumps({"pane": pane, "type": "stdin", "data": data}))


async def _sample(client: PaneClient, server: ServerProcess, pane: str, flood_bytes: int,
                  samples: int, n: int) -> Sample:
    echo: list[float] = []
    for i in range(samples):
        client.tails[pane] = ""
        t0 = time.perf_counter()
        await client.stdin(pane, f"echo e{n}x{i}-$((1+{i}))\r")
        await client.until(pane, f"e{n}x{i}-{1 + i}\r\n")
        echo.append(time.perf_counter() - t0)
    client.tails[pane] = ""
    before = client.chars[pane]
    cpu0 = server.cpu_seconds()
    threads0 = server.thread_cpu_seconds()
    machine0 = machine_busy_seconds()
    t0 = time.perf_counter()
    await client.stdin(pane, f"head -c {flood_bytes} /dev/urandom | base64 -w 76; "
                             f"echo flood{n}-$((4*4))\r")
    await client.until(pane, f"flood{n}-16\r\n")
    chars = client.chars[pane] - before
    throughput = chars / (time.perf_counter() - t0)
    cpu_per_mb = (server.cpu_seconds() - cpu0) / (chars / 1e6)
    threads = _by_thread(server, threads0, server.thread_cpu_seconds())
    machine_per_mb = (machine_busy_seconds() - machine0) / (chars / 1e6)
    await trio.sleep(SETTLE)
    return Sample(throughput, cpu_per_mb, echo, None,
                  {name: seconds / (chars / 1e6) for name, seconds in threads.items()},
                  machine_per_mb)


THREAD_KINDS = ("Trio thread", "SSH transport", "other threads")


def _by_thread(server: ServerProcess, before: dict[int, float],
               after: dict[int, float]) -> dict[str, float]:
    """CPU seconds between two snapshots, as :data:`THREAD_KINDS`."""
    assert server.proc is not None
    spent = {tid: seconds - before.get(tid, 0.0) for tid, seconds in after.items()}
    main = spent.pop(server.proc.pid, 0.0)
    # paramiko runs one transport thread per connection; the flooding pane's is the busiest.
    busiest = max(spent, key=lambda tid: spent[tid], default=None)
    transport = spent.pop(busiest, 0.0) if busiest is not None else 0.0
    return dict(zip(THREAD_KINDS, (main, transport, sum(spent.values())), strict=True))


async def _on_off(server: ServerProcess, pairs: int, flood_bytes: int,
                  samples: int) -> OnOff:
    found = OnOff()
    auth_header = {"Authorization": f"Bearer {server.token}"}
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60,
                                 headers=auth_header) as http:
        r = await http.post("/api/terminal/workspaces", json={"layout": "grid2x1"})
        r.raise_for_status()
        ws_id = r.json()["workspace_id"]
        r = await http.put(f"/api/terminal/workspaces/{ws_id}/panes", json={"panes": [
            {"pane": RECORDED, "target": "recb-0001"},
            {"pane": UNRECORDED, "target": "recb-0002"}]})
        r.raise_for_status()
        r = await http.post(f"/api/terminal/workspaces/{ws_id}/connect-all")
        panes = {p["pane"]: p for p in r.json()["panes"]}
        assert all(p["status"] == "connected" for p in panes.values()), r.text
        url = server.base_url.replace("http://", "ws://") + f"/api/terminal/workspaces/{ws_id}/ws"
        async with open_websocket_url(
                url, extra_headers=[(b"Authorization", auth_header["Authorization"].encode())],
                max_message_size=1 << 24) as ws:
            client = PaneClient(ws)
            for pane in (RECORDED, UNRECORDED):
                await client.stdin(pane, "echo ready-$((1+1))\r")
                await client.until(pane, "ready-2\r\n")
            # One flood each first: the first big write of a process is not what is compared.
            for pane in (RECORDED, UNRECORDED):
                await _sample(client, server, pane, flood_bytes // 4, 2, -1)
            for i in range(pairs):
                for mode in (("on", "off") if i % 2 == 0 else ("off", "on")):
                    pane = RECORDED if mode == "on" else UNRECORDED
                    sample = await _sample(client, server, pane, flood_bytes, samples, i)
                    getattr(found, mode).append(sample)
                    print(f"  pair {i + 1}/{pairs} {mode:>3}: {sample.throughput / 1e6:.1f} MB/s,"
                          f" {sample.cpu_per_mb * 1000:.1f} ms service CPU/MB,"
                          f" echo p50 {_ms(statistics.median(sample.echo))}", flush=True)
    return found


async def on_off(fleet: Sandbox, root: Path, *, pairs: int, flood_bytes: int,
                 samples: int) -> OnOff:
    """``pairs`` on/off pairs in one service, interleaved, the order alternating pair by pair:
    pane A's link recorded, pane B's (the same host) opted out."""
    recorded, unrecorded = fleet_links(fleet, 2, prefix="recb")
    host = recorded.host, recorded.port
    assert (unrecorded.host, unrecorded.port) == host, "both panes must reach the same host"
    unrecorded = attrs.evolve(unrecorded, metadata={"recording": False})
    server = ServerProcess(root / "server", fleet, overrides={"terminal": {
        # One recording takes every "on" flood: 96 × 32 MB of base64 is ~4.3 GB of asciicast,
        # past 4 GB the size cap would cut it (and the later "on" samples record nothing).
        "recording": "on", "recording_max_mb": 16384, "recordings_total_max_mb": 32768}})
    await trio.to_thread.run_sync(server.start)
    try:
        await trio.to_thread.run_sync(server.seed, [recorded, unrecorded])
        found = await _on_off(server, pairs, flood_bytes, samples)
    finally:
        await trio.to_thread.run_sync(server.stop)
    # The service has stopped: every recording's row is finished.
    with closing(sqlite3.connect(server.db_path)) as conn:
        rows = conn.execute("SELECT target, cut_reason FROM terminal_recordings").fetchall()
    assert {str(r[0]) for r in rows} == {recorded.id}, f"recorded: {rows}"
    cut = next((str(r[1]) for r in rows if r[1] is not None), None)
    if cut is not None:
        # One recording for every "on" sample: after its cut they measured no recording.
        for sample in found.on:
            sample.cut = cut
    return found


def geometric_ci95(ratios: list[float], resamples: int = 4000,
                   seed: int = 18) -> tuple[float, float, float]:
    """Geometric mean of ``ratios`` and its 95 % bootstrap interval (percentile method,
    seeded: the same samples always give the same interval)."""
    logs = [math.log(r) for r in ratios]
    rng = random.Random(seed)
    means = sorted(statistics.fmean(rng.choices(logs, k=len(logs))) for _ in range(resamples))
    low, high = means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]
    return math.exp(statistics.fmean(logs)), math.exp(low), math.exp(high)


def report_on_off(table: Table, got: OnOff, flood_mb: int) -> None:
    """Rows: throughput (the pairs' geometric mean ratio: the goal is met when its whole 95 %
    interval is at or above 0.95), echo p50, recordings cut."""
    on_t = statistics.median(s.throughput for s in got.on)
    off_t = statistics.median(s.throughput for s in got.off)
    ratios = got.ratios()
    mean, low, high = geometric_ci95(ratios)
    table.add(f"throughput, recording on vs off ({len(got.on)} pairs, {flood_mb} MB; "
              "mean pair ratio [95 % interval], median pair ratio, range)",
              f"{on_t / 1e6:.1f} MB/s", f"{off_t / 1e6:.1f} MB/s",
              f"{mean:.3f} [{low:.3f}, {high:.3f}], median {statistics.median(ratios):.3f}, "
              f"{min(ratios):.2f}-{max(ratios):.2f}", "interval >= 0.95", low >= 0.95)
    on_cpu = statistics.median(s.cpu_per_mb for s in got.on)
    off_cpu = statistics.median(s.cpu_per_mb for s in got.off)
    cpu_ratio = statistics.median(a.cpu_per_mb / b.cpu_per_mb
                                  for a, b in zip(got.on, got.off, strict=True))
    # Not a goal of its own: what recording costs in CPU. Machine load moves it too (ratios
    # 0.82-1.20 in the runs of 2026-12-02), so it is a second view, not a quieter one.
    table.add("service CPU per MB flooded, on vs off",
              f"{on_cpu * 1000:.1f} ms", f"{off_cpu * 1000:.1f} ms", f"{cpu_ratio:.3f}")
    on_m = statistics.median(s.machine_per_mb for s in got.on)
    off_m = statistics.median(s.machine_per_mb for s in got.off)
    table.add("machine CPU per MB flooded (all processes and the kernel), on vs off",
              f"{on_m * 1000:.1f} ms", f"{off_m * 1000:.1f} ms", f"{(on_m - off_m) * 1000:+.1f} ms")
    # Where the difference is: the recorder's writer and the database writer run on worker
    # threads ("other threads"); what the terminal itself runs on is the other two.
    for kind in THREAD_KINDS:
        on_k = statistics.median(s.threads_per_mb[kind] for s in got.on)
        off_k = statistics.median(s.threads_per_mb[kind] for s in got.off)
        table.add(f"  of which {kind} (median)", f"{on_k * 1000:.1f} ms", f"{off_k * 1000:.1f} ms",
                  f"{(on_k - off_k) * 1000:+.1f} ms")
    on_p50 = statistics.median(e for s in got.on for e in s.echo)
    off_p50 = statistics.median(e for s in got.off for e in s.echo)
    table.add("echo p50, recording on vs off", _ms(on_p50), _ms(off_p50),
              f"{(on_p50 - off_p50) * 1000:+.2f} ms", "<= +1 ms", on_p50 - off_p50 <= 0.001)
    table.add("recordings cut under the flood", f"{got.cuts()} of {len(got.on)}",
              goal="0", met=got.cuts() == 0)


# == search over generated recordings ==============================================================

VOCABULARY_SIZE = 20_000
LINE_WORDS = 9
USERS = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi")


def _vocabulary(rng: random.Random) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(3, 9)))
            for _ in range(VOCABULARY_SIZE)]


def generate(db_path: Path, text_mb: float, *, per_recording_mb: float = 2.0,
             seed: int = 18) -> dict[str, Any]:
    """Fill a new database with ``text_mb`` MB of indexed lines; returns what to search."""
    rng = random.Random(seed)
    words = _vocabulary(rng)
    db = Database(db_path)
    recordings = max(1, int(text_mb / per_recording_mb))
    per = int(text_mb * MB / recordings)
    markers: list[tuple[str, str]] = []
    try:
        for rec in range(recordings):
            user = USERS[rec % len(USERS)]
            marker = f"marker{rec:06d}x"

            def add(conn: sqlite3.Connection, rec: int = rec, user: str = user,
                    marker: str = marker) -> None:
                cur = conn.execute(
                    "INSERT INTO terminal_recordings (workspace_id, pane, target, username,"
                    " path, started_at, ended_at, width, height) VALUES"
                    " ('w', 'A', ?, ?, ?, ?, ?, 80, 24)",
                    (f"host-{rec % 50:02d}", user, f"gen-{rec}.cast",
                     f"2026-11-{1 + rec % 28:02d}T10:00:00.000000Z",
                     f"2026-11-{1 + rec % 28:02d}T11:00:00.000000Z"))
                rid = cur.lastrowid
                size, offset = 0, 0.0
                rows: list[tuple[int | None, float, str]] = []
                while size < per:
                    line = " ".join(rng.choice(words) for _ in range(LINE_WORDS))
                    if not rows:
                        line += " " + marker
                    offset += 0.05
                    rows.append((rid, round(offset, 3), line))
                    size += len(line) + 1
                conn.executemany("INSERT INTO terminal_recording_lines (recording_id,"
                                 " offset_seconds, line) VALUES (?,?,?)", rows)

            db.write_sync(add)
            markers.append((marker, user))
        db.write_sync(lambda c: c.execute(
            "INSERT INTO terminal_recording_fts (terminal_recording_fts) VALUES ('optimize')"))
    finally:
        db.close()
    return {"words": words, "markers": markers, "recordings": recordings}


async def search_p95(db_path: Path, plan: dict[str, Any], queries: int = 100,
                     seed: int = 7) -> dict[str, list[float]]:
    """Time ``queries`` searches per kind; ``{kind: [seconds]}``. Checks rare-word hits."""
    rng = random.Random(seed)
    db = Database(db_path)
    settings = Settings(database=DatabaseSettings(path=db_path))
    index = RecordingIndex(db, Recordings(db, settings))
    words: list[str] = plan["words"]
    markers: list[tuple[str, str]] = plan["markers"]
    timings: dict[str, list[float]] = {}
    try:
        kinds: dict[str, Callable[[], tuple[str, Viewer]]] = {
            "rare word (admin)": lambda: (rng.choice(markers)[0], Viewer("admin", True)),
            "rare word (owner)": lambda: (lambda m: (m[0], Viewer(m[1], False)))(
                rng.choice(markers)),
            "common word (admin)": lambda: (rng.choice(words), Viewer("admin", True)),
            "two words (user)": lambda: (f"{rng.choice(words)} {rng.choice(words)}",
                                         Viewer(rng.choice(USERS), False)),
            "prefix (admin)": lambda: (rng.choice(words)[:3] + "*", Viewer("admin", True)),
        }
        for kind, make in kinds.items():
            found = timings[kind] = []
            for _ in range(queries):
                q, viewer = make()
                t0 = time.perf_counter()
                result = await index.search(viewer, q)
                found.append(time.perf_counter() - t0)
                if kind.startswith("rare"):
                    assert result["hits"], (kind, q)
    finally:
        db.close()
    return timings


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def run(quick: bool, search: bool = True) -> Table:
    table = Table("recordings: cost to the terminal, search speed")
    with tempfile.TemporaryDirectory(prefix="linkops-recbench-") as tmp:
        root = Path(tmp)
        flood_mb = 4 if quick else 32
        with Sandbox(root / "fleet", hosts=1, prefix="recb") as fleet:
            got = trio.run(lambda: on_off(
                fleet, root, pairs=2 if quick else 96, flood_bytes=flood_mb * MB,
                samples=20 if quick else 60))
        report_on_off(table, got, flood_mb)
        if not search:
            return table
        text_mb = 8 if quick else 1024
        db_path = root / "search.db"
        t0 = time.perf_counter()
        plan = generate(db_path, text_mb)
        print(f"  generated {text_mb} MB of text in {plan['recordings']} recordings "
              f"({time.perf_counter() - t0:.1f} s, database "
              f"{db_path.stat().st_size / MB:.0f} MB)", flush=True)
        timings = trio.run(search_p95, db_path, plan, 40 if quick else 100)
        everything: list[float] = []
        for kind, samples in timings.items():
            everything.extend(samples)
            table.add(f"search p95, {kind}, {text_mb} MB", _ms(percentile(samples, 95)))
        p95 = percentile(everything, 95)
        table.add(f"search p95, all kinds, {text_mb} MB", _ms(p95), goal="< 100 ms (1 GB)",
                  met=p95 < 0.1)
    return table


def main() -> None:
    run(quick_mode(), search="--on-off" not in sys.argv[1:]).print()


if __name__ == "__main__":
    main()
