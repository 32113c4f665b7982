"""Terminal WebSocket: echo latency and throughput end to end, then in process.

*End to end* (:func:`end_to_end`, first): the server as a subprocess, a WebSocket client,
against paramiko's own interactive shell read naively in the same run (see the section
comment). ``--quick`` (or ``CI=true``): 40 keystrokes, 4 MiB.

*In process* (:func:`_run`, second): throughput of one flooding pane, and keystroke latency
with and without a flood in a neighbouring pane — the real service in this process, real sshd
(a 2-host sandbox fleet), a real WebSocket client.

Reports:
- *throughput*: ``head -c N /dev/urandom | base64`` in pane A, bytes/s of terminal text the
  client receives, frames received and the mean frame size (coalescing at work: the SSH layer
  reads <= 32 KiB chunks; the socket sends up to 32 KiB per pane per round).
- *latency*: the time from sending ``echo`` + Enter in pane B to seeing its output, p50/p95,
  first with A idle, then while A floods (round-robin fairness: B must stay interactive).
"""

from __future__ import annotations

import base64
import json
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from bench.common import (
    ServerProcess,
    Table,
    check_lean_shell,
    client_files,
    fleet_links,
    median,
    percentile,
    quick_mode,
    run_baseline,
)
from linkops import config, server
from linkops.config import Settings
from linkops.db import Database
from linkops.sandbox import Sandbox

FLOOD_BYTES = 16 * 1024 * 1024
LATENCY_SAMPLES = 40
# The window the web page uses (frontend/js/terminal.js FLOW_WINDOW): measure what ships.
FLOW_WINDOW = 64 * 1024


async def _read_until(ws: WebSocketConnection, pane: str, needle: str, buf: dict[str, str],
                      counts: dict[str, int]) -> None:
    while needle not in buf.get(pane, ""):
        msg = json.loads(await ws.get_message())
        if msg.get("type") == "stdout":
            p = msg["pane"]
            buf[p] = buf.get(p, "")[-4096:] + msg["data"]
            counts[p] = counts.get(p, 0) + 1
            counts[p + "_chars"] = counts.get(p + "_chars", 0) + len(msg["data"])
            if counts.get("acking"):
                # Opt-in flow control: acknowledge output once processed (a browser does this
                # from xterm.js's write callback).
                await ws.send_message(json.dumps({"type": "ack", "chars": len(msg["data"])}))


async def _latency(ws: WebSocketConnection, buf: dict[str, str], counts: dict[str, int],
                   tag: str) -> list[float]:
    samples = []
    for i in range(LATENCY_SAMPLES):
        buf["B"] = ""
        t0 = time.perf_counter()
        await ws.send_message(json.dumps({"pane": "B", "type": "stdin",
                                          "data": f"echo {tag}-$((1000+{i}))\r"}))
        await _read_until(ws, "B", f"{tag}-{1000 + i}\r\n", buf, counts)
        samples.append(time.perf_counter() - t0)
    return samples


def _fmt(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[int(len(ordered) * 0.95) - 1]
    return f"p50 {statistics.median(ordered) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms"


@asynccontextmanager
async def served_panes(
    fleet: Sandbox, root: Path, layout: str, panes: dict[str, str], **sections: dict[str, Any],
) -> AsyncIterator[tuple[Settings, WebSocketConnection]]:
    """The real service in this process over ``fleet`` (every host enrolled, config sections
    ``sections`` added), one workspace of ``layout`` with ``panes`` (pane → host) connected,
    and an admin's WebSocket to it; the service stops when the block ends."""
    from tests.fixtures_core import add_admin, login, write_config
    from tests.fixtures_sandbox import fleet_links, insert_machines, make_ssh_env

    env = make_ssh_env(fleet, root / "sshenv")
    settings = config.load(write_config(
        root, ssh={"keys_directory": env.keys_dir, "known_hosts_path": env.known_hosts,
                   "default_key": fleet.key_path.name},
        logging={"level": "WARNING"}, **sections))
    add_admin(settings)
    db = Database(settings.database.path)
    try:
        insert_machines(db, fleet_links(fleet).values())
        db.write_sync(lambda c: c.execute("UPDATE machines SET enrolled = 1"))
    finally:
        db.close()
    async with trio.open_nursery() as nursery:
        running: server.Running = await nursery.start(
            lambda task_status: server.run(settings, handle_signals=False,
                                           task_status=task_status))
        base = f"http://{running.binds[0].removeprefix('http://')}"
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            token = await login(http)
            http.headers["Authorization"] = f"Bearer {token}"
            http.cookies.clear()
            r = await http.post("/api/terminal/workspaces", json={"layout": layout})
            ws_id = r.json()["workspace_id"]
            await http.put(f"/api/terminal/workspaces/{ws_id}/panes", json={"panes": [
                {"pane": pane, "target": target} for pane, target in panes.items()]})
            r = await http.post(f"/api/terminal/workspaces/{ws_id}/connect-all")
            assert all(p["status"] == "connected" for p in r.json()["panes"]), r.text
            url = base.replace("http://", "ws://") + f"/api/terminal/workspaces/{ws_id}/ws"
            async with open_websocket_url(
                    url, extra_headers=[(b"Authorization", f"Bearer {token}".encode())],
                    max_message_size=1 << 24) as ws:
                yield settings, ws
        running.stop.set()


async def _run(fleet: Sandbox, root: Path) -> None:
    names = sorted(fleet.hosts)
    async with served_panes(fleet, root, "grid2x1", {"A": names[0], "B": names[1]}) as (_, ws):
        buf: dict[str, str] = {}
        counts: dict[str, int] = {}
        await ws.send_message(json.dumps({"pane": "B", "type": "stdin",
                                          "data": "echo ready-$((1+1))\r"}))
        await _read_until(ws, "B", "ready-2\r\n", buf, counts)
        idle = await _latency(ws, buf, counts, "idle")
        print(f"latency, A idle:     {_fmt(idle)}")

        counts.clear()
        t0 = time.perf_counter()
        await ws.send_message(json.dumps({"pane": "A", "type": "stdin", "data":
            f"head -c {FLOOD_BYTES} /dev/urandom | base64 -w 76; echo flood-$((4*4))\r"}))
        await _read_until(ws, "A", "flood-16\r\n", buf, counts)
        elapsed = time.perf_counter() - t0
        chars = counts.get("A_chars", 0)
        frames = counts.get("A", 0)
        print(f"throughput, one pane: {chars / elapsed / 1e6:.1f} MB/s "
              f"({chars / 1e6:.1f} MB in {elapsed:.2f} s, {frames} frames, "
              f"mean {chars / max(frames, 1) / 1024:.1f} KiB/frame)")

        await ws.send_message(json.dumps({"pane": "A", "type": "stdin",
                                          "data": "cat /dev/urandom | base64\r"}))
        await _read_until(ws, "A", "\n", buf, counts)
        flooded = await _latency(ws, buf, counts, "flood")
        print(f"latency, A flooding: {_fmt(flooded)}")
        await ws.send_message(json.dumps({"type": "flow", "window": FLOW_WINDOW}))
        counts["acking"] = 1
        flooded = await _latency(ws, buf, counts, "flow")
        print(f"latency, A flooding, flow control ({FLOW_WINDOW // 1024} KiB window, "
              f"client acks): {_fmt(flooded)}")
        await ws.send_message(json.dumps({"pane": "A", "type": "stdin", "data": "\x03"}))


# == End to end: the server as a subprocess, measured from a WebSocket client ==================
#
# Pane A and pane B on two sandbox hosts, one WebSocket for both (what the browser does).
# * echo latency: pane B runs ``cat >/dev/null``; one printable key every 50 ms, the time until
#   its echo (the PTY's) comes back on the socket; p50/p99; then again while pane A floods
#   (``yes`` of a 100-character line, forever) and the client reads everything.
# * throughput: ``cat`` of a file of base64 lines in pane A, characters received per second
#   until the marker after it; baseline in the same run: paramiko's ``invoke_shell`` read in a
#   plain ``recv(32768)`` loop (bench/baselines.py ``paramiko-shell``), same file, same host.


KEY_PACE = 0.05
E2E_DEADLINE = 300.0  # a stuck socket fails the bench instead of hanging it
FLOW_PHASE_DEADLINE = 90.0


@attrs.define
class PaneReader:
    """Reads every frame of the socket; per pane: characters, frames, a tail to search."""

    ws: WebSocketConnection
    acking: bool = False  # opt-in flow control: ack every stdout frame once processed
    chars: dict[str, int] = attrs.field(factory=dict)
    frames: dict[str, int] = attrs.field(factory=dict)
    tails: dict[str, str] = attrs.field(factory=dict)

    async def until(self, pane: str, needle: str) -> None:
        while needle not in self.tails.get(pane, ""):
            await self.one()

    async def one(self) -> tuple[str, str]:
        msg = json.loads(await self.ws.get_message())
        if msg.get("type") != "stdout":
            return "", ""
        pane, data = str(msg["pane"]), str(msg["data"])
        self.chars[pane] = self.chars.get(pane, 0) + len(data)
        self.frames[pane] = self.frames.get(pane, 0) + 1
        self.tails[pane] = (self.tails.get(pane, "") + data)[-8192:]
        if self.acking:
            # Shielded: the pacing loop cancels reads every 50 ms; a frame received but never
            # acknowledged would shrink the flow window for good (and finally stall it).
            with trio.CancelScope(shield=True):
                await self.ws.send_message(json.dumps({"type": "ack", "chars": len(data)}))
        return pane, data

    async def send(self, pane: str, data: str) -> None:
        await self.ws.send_message(json.dumps({"pane": pane, "type": "stdin", "data": data}))


async def echo_latency(reader: PaneReader, samples: int) -> list[float]:
    """Keystrokes into pane B (``cat`` echoes them): seconds until each echo arrives."""
    out = []
    letters = "abcdefghijklmnopqrstuvwxyz"
    for i in range(samples):
        key = letters[i % 26]
        # Paced like a (fast) typist, reading whatever arrives meanwhile: keys sent back to
        # back would each land within the writer's "output is streaming" window and wait for
        # its 5 ms coalescing (linkops/terminal/socket.py), which a person never sees.
        with trio.move_on_after(KEY_PACE):
            while True:
                await reader.one()
        t0 = time.perf_counter()
        await reader.send("B", key)
        while True:
            pane, data = await reader.one()
            if pane == "B" and key in data:
                break
        out.append(time.perf_counter() - t0)
        if i % 60 == 59:
            await reader.send("B", "\r")
            await reader.until("B", "\r\n")
    return out


@attrs.define
class TerminalResult:
    idle: list[float]
    flooded: list[float]
    flooded_flow: list[float]
    rates: list[float]
    paramiko: list[float]
    paramiko_1k: list[float]
    paramiko_echo: list[float]
    flood_rate: float
    flow_stalled: bool = False


async def terminal_e2e(server: ServerProcess, fleet: Sandbox, big_file: Path, samples: int,
                       repeats: int, key: Path, known_hosts: Path,
                       flood_chars: int = 1_000_000,
                       flow_deadline: float = FLOW_PHASE_DEADLINE) -> TerminalResult:
    phase = ["start"]
    try:
        with trio.fail_after(E2E_DEADLINE):
            return await _terminal_e2e(server, fleet, big_file, samples, repeats, key,
                                       known_hosts, flood_chars, flow_deadline, phase)
    except trio.TooSlowError:
        raise RuntimeError(f"terminal bench stuck for {E2E_DEADLINE:g} s in phase {phase[0]!r}")


async def _terminal_e2e(server: ServerProcess, fleet: Sandbox, big_file: Path, samples: int,
                        repeats: int, key: Path, known_hosts: Path,
                        flood_chars: int, flow_deadline: float,
                        phase: list[str]) -> TerminalResult:
    hosts = sorted(fleet.hosts)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60,
                                 headers={"Authorization": f"Bearer {server.token}"}) as http:
        r = await http.post("/api/terminal/workspaces", json={"layout": "grid2x1"})
        r.raise_for_status()
        ws_id = r.json()["workspace_id"]
        r = await http.put(f"/api/terminal/workspaces/{ws_id}/panes", json={"panes": [
            {"pane": "A", "target": f"term-{1:04d}"}, {"pane": "B", "target": f"term-{2:04d}"}]})
        r.raise_for_status()
        r = await http.post(f"/api/terminal/workspaces/{ws_id}/connect-all")
        assert all(p["status"] == "connected" for p in r.json()["panes"]), r.text
        url = server.base_url.replace("http://", "ws://") + f"/api/terminal/workspaces/{ws_id}/ws"
        async with open_websocket_url(
                url, extra_headers=[(b"Authorization", f"Bearer {server.token}".encode())],
                max_message_size=1 << 24) as ws:
            reader = PaneReader(ws)
            await reader.send("A", "echo ready-$((6*7))\r")
            await reader.until("A", "ready-42\r\n")
            await reader.send("B", "stty -icanon; cat >/dev/null\r")
            await trio.sleep(0.3)
            phase[0] = "idle echo"
            await echo_latency(reader, 10)  # warm-up
            idle = await echo_latency(reader, samples)

            first = fleet.hosts[hosts[0]]
            echo_floor = await trio.to_thread.run_sync(
                paramiko_echo, key, known_hosts, first.address, first.port, fleet.user, samples)
            rates, theirs, theirs_1k = [], [], []
            phase[0] = "cat throughput"
            for _ in range(repeats):
                before = reader.chars.get("A", 0)
                # The previous repeat's marker must not end this one at once.
                reader.tails["A"] = ""
                t0 = time.perf_counter()
                await reader.send("A", f"cat {big_file}; echo done-$((6*7))\r")
                await reader.until("A", "done-42\r\n")
                rates.append((reader.chars["A"] - before) / (time.perf_counter() - t0))
                theirs.append(await trio.to_thread.run_sync(
                    paramiko_shell, key, known_hosts, first.address, first.port, fleet.user,
                    big_file))
                theirs_1k.append(await trio.to_thread.run_sync(
                    paramiko_shell, key, known_hosts, first.address, first.port, fleet.user,
                    big_file, 1024))

            await reader.send("A", "yes " + "x" * 96 + "\r")
            phase[0] = "flood echo"
            flood_from = reader.chars.get("A", 0)
            while reader.chars.get("A", 0) < flood_from + flood_chars:
                await reader.one()
            before = reader.chars.get("A", 0)
            t0 = time.perf_counter()
            flooded = await echo_latency(reader, samples)
            flood_rate = (reader.chars.get("A", 0) - before) / (time.perf_counter() - t0)
            # The same with opt-in flow control (what xterm.js's write callback can drive).
            await ws.send_message(json.dumps({"type": "flow", "window": FLOW_WINDOW}))
            reader.acking = True
            phase[0] = "flood echo with flow control"
            flooded_flow: list[float] = []
            with trio.move_on_after(flow_deadline) as flow_scope:
                flooded_flow = await echo_latency(reader, samples)
            if flow_scope.cancelled_caught:
                # The socket stalled (a lost ack would do it: see PaneReader.one): report it
                # and leave; the server is stopped with its shells.
                return TerminalResult(idle, flooded, [], rates, theirs, theirs_1k, echo_floor,
                                      flood_rate, flow_stalled=True)
            phase[0] = "stopping the flood"
            await reader.send("A", "\x03")
            await reader.send("A", "echo stopped-$((6*7))\r")
            await reader.until("A", "stopped-42\r\n")
    return TerminalResult(idle, flooded, flooded_flow, rates, theirs, theirs_1k, echo_floor,
                          flood_rate)


def _baseline(mode: str, job: dict[str, Any]) -> dict[str, Any]:
    result = run_baseline(mode, job)
    if not result["ok"]:
        raise RuntimeError(f"{mode} never saw its marker")
    return result


def paramiko_shell(key: Path, known_hosts: Path, address: str, port: int, user: str,
                   big_file: Path, recv: int = 32768) -> float:
    """Characters per second of paramiko's own interactive shell, read naively."""
    result = _baseline("paramiko-shell", {
        "key": str(key), "known_hosts": str(known_hosts),
        "targets": [{"host": address, "port": port, "user": user}],
        "ready_command": "echo ready-$((6*7))\r", "recv": recv,
        "command": f"cat {big_file}; echo done-$((6*7))\r", "marker": "done-42"})
    return float(result["bytes"]) / float(result["elapsed"])


def paramiko_echo(key: Path, known_hosts: Path, address: str, port: int, user: str,
                  samples: int) -> list[float]:
    """Keystroke-to-echo seconds on paramiko's own shell (no server in between)."""
    result = _baseline("paramiko-echo", {
        "key": str(key), "known_hosts": str(known_hosts), "samples": samples,
        "targets": [{"host": address, "port": port, "user": user}]})
    return [float(x) for x in result["samples"]]


def write_big_file(path: Path, mebibytes: int) -> None:
    line = base64.b64encode(bytes(range(256)) * 3)[:76] + b"\n"
    with path.open("wb") as fh:
        fh.write(line * (mebibytes * 1024 * 1024 // len(line)))


def end_to_end(quick: bool) -> Table:
    samples, repeats, mib = (40, 1, 4) if quick else (300, 3, 32)
    table = Table(f"Terminal end to end ({'quick' if quick else 'full'}: {samples} keystrokes, "
                  f"cat of {mib} MiB x{repeats}, median)")
    with tempfile.TemporaryDirectory(prefix="linkops-term-bench-") as tmp:
        root = Path(tmp)
        with Sandbox(root / "fleet", hosts=2, prefix="term") as fleet:
            key, known_hosts = client_files(fleet, root / "client")
            check_lean_shell(fleet, key, known_hosts)
            big_file = root / "big.txt"
            write_big_file(big_file, mib)
            with ServerProcess(root / "server", fleet) as server:
                server.seed(fleet_links(fleet, 2, prefix="term"))
                got = trio.run(terminal_e2e, server, fleet, big_file, samples, repeats, key,
                               known_hosts)
    idle = [s * 1000 for s in got.idle]
    flooded = [s * 1000 for s in got.flooded]
    floor = [s * 1000 for s in got.paramiko_echo]
    base = f"paramiko direct p50 {median(floor):.1f}, p99 {percentile(floor, 99):.1f} ms"
    flow = [s * 1000 for s in got.flooded_flow]
    flow_label = f"neighbour flooding, flow control {FLOW_WINDOW // 1024} KiB"
    if got.flow_stalled:
        table.add(f"echo latency, {flow_label}",
                  f"STALLED: no echo within {FLOW_PHASE_DEADLINE:g} s", "", "",
                  "p50 < 5, p99 < 25 ms", False)
    for label, values in (("idle", idle), ("neighbour flooding", flooded), (flow_label, flow)):
        if not values:
            continue
        p50, p99 = median(values), percentile(values, 99)
        table.add(f"echo latency, {label}", f"p50 {p50:.1f} ms, p99 {p99:.1f} ms", base, "",
                  "p50 < 5, p99 < 25 ms", p50 < 5 and p99 < 25)
    ours = median(got.rates) / 1e6
    theirs = median(got.paramiko) / 1e6
    theirs_1k = median(got.paramiko_1k) / 1e6
    table.add(f"terminal cat {mib} MiB", f"{ours:.1f} MB/s",
              f"paramiko shell recv(32768) {theirs:.1f} MB/s", f"{ours / theirs:.2f}x",
              ">= 1.5x", ours / theirs >= 1.5)
    table.add(f"terminal cat {mib} MiB", f"{ours:.1f} MB/s",
              f"paramiko shell recv(1024) {theirs_1k:.1f} MB/s", f"{ours / theirs_1k:.2f}x",
              ">= 1.5x", ours / theirs_1k >= 1.5)
    table.add("flooding pane while measuring", f"{got.flood_rate / 1e6:.1f} MB/s")
    return table


# == A mute machine next door: echo latency while 32 panes hang ================================
#
# 32 panes (8 workspaces x 4) connect to a machine whose SSH server accepts the connection and
# then never answers a channel request (the hostile server of tests/fixtures_hostile.py): each
# hangs until its request deadline ([ssh] connection_timeout, 30 s here). Meanwhile pane B of
# a healthy workspace echoes keystrokes; its p99 against the same pane's idle p99 must stay
# within 2x (issue #20: a mute machine only ever consumes its own share of SSH threads).

HUNG_PANES = 32


async def _mute_neighbour(server: ServerProcess, samples: int) -> tuple[list[float], list[float]]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=120,
                                 headers={"Authorization": f"Bearer {server.token}"}) as http:
        async def workspace(layout: str, panes: dict[str, str]) -> str:
            r = await http.post("/api/terminal/workspaces", json={"layout": layout})
            r.raise_for_status()
            ws_id = str(r.json()["workspace_id"])
            r = await http.put(f"/api/terminal/workspaces/{ws_id}/panes", json={"panes": [
                {"pane": p, "target": t} for p, t in panes.items()]})
            r.raise_for_status()
            return ws_id

        healthy = await workspace("grid2x1", {"A": "term-0001", "B": "term-0002"})
        r = await http.post(f"/api/terminal/workspaces/{healthy}/connect-all")
        assert all(p["status"] == "connected" for p in r.json()["panes"]), r.text
        mute = [await workspace("grid2x2", {p: "mute-0001" for p in "ABCD"})
                for _ in range(HUNG_PANES // 4)]
        url = server.base_url.replace("http://", "ws://") + \
            f"/api/terminal/workspaces/{healthy}/ws"
        async with open_websocket_url(
                url, extra_headers=[(b"Authorization", f"Bearer {server.token}".encode())],
                max_message_size=1 << 24) as ws:
            reader = PaneReader(ws)
            await reader.send("B", "stty -icanon; cat >/dev/null\r")
            await trio.sleep(0.3)
            await echo_latency(reader, 10)  # warm-up
            idle = await echo_latency(reader, samples)
            answered = 0

            async def connect_all(ws_id: str) -> None:
                nonlocal answered
                await http.post(f"/api/terminal/workspaces/{ws_id}/connect-all")
                answered += 1

            async with trio.open_nursery() as nursery:
                for ws_id in mute:
                    nursery.start_soon(connect_all, ws_id)
                await trio.sleep(1.0)  # every mute pane is waiting for its answer now
                hung = await echo_latency(reader, samples)
                # The measurement counts only if the mute panes were hanging all along.
                still_hanging = len(mute) - answered
                nursery.cancel_scope.cancel()
    if still_hanging != len(mute):
        raise RuntimeError(f"only {still_hanging} of {len(mute)} mute workspaces were still "
                           "connecting when the measurement ended: it does not show the goal")
    return idle, hung


def mute_neighbour(quick: bool) -> Table:
    from tests.fixtures_hostile import HostileServer  # the bench extra installs test deps

    samples = 40 if quick else 200
    table = Table(f"Terminal next to a mute machine ({samples} keystrokes, "
                  f"{HUNG_PANES} panes hanging)")
    with tempfile.TemporaryDirectory(prefix="linkops-mute-bench-") as tmp:
        root = Path(tmp)
        with Sandbox(root / "fleet", hosts=2, prefix="term") as fleet, \
                HostileServer("mute", root) as hostile:
            with ServerProcess(root / "server", fleet) as server:
                mute_link = attrs.evolve(fleet_links(fleet, 1, prefix="term")[0],
                                         id="mute-0001", name="mute-0001", port=hostile.port)
                server.seed([*fleet_links(fleet, 2, prefix="term"), mute_link])
                idle, hung = trio.run(_mute_neighbour, server, samples)
    idle_ms = [s * 1000 for s in idle]
    hung_ms = [s * 1000 for s in hung]
    p99_idle, p99_hung = percentile(idle_ms, 99), percentile(hung_ms, 99)
    table.add(f"echo latency, {HUNG_PANES} panes hanging on a mute host",
              f"p50 {median(hung_ms):.1f} ms, p99 {p99_hung:.1f} ms",
              f"idle p50 {median(idle_ms):.1f} ms, p99 {p99_idle:.1f} ms",
              f"{p99_hung / p99_idle:.2f}x", "p99 <= 2x idle", p99_hung <= 2 * p99_idle)
    return table


def main() -> None:
    end_to_end(quick_mode()).print()
    mute_neighbour(quick_mode()).print()
    with tempfile.TemporaryDirectory(prefix="linkops-term-bench-") as tmp:
        root = Path(tmp)
        with Sandbox(root / "fleet", hosts=2) as fleet:
            trio.run(_run, fleet, root / "svc")


if __name__ == "__main__":
    main()
