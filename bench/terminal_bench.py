"""Terminal WebSocket: throughput of one flooding pane, and keystroke latency with and without
a flood in a neighbouring pane — the real service, real sshd (a 2-host sandbox fleet), a real
WebSocket client.

Reports:
- *throughput*: ``head -c N /dev/urandom | base64`` in pane A, bytes/s of terminal text the
  client receives, frames received and the mean frame size (coalescing at work: the SSH layer
  reads <= 32 KiB chunks; the socket sends up to 32 KiB per pane per round).
- *latency*: the time from sending ``echo`` + Enter in pane B to seeing its output, p50/p95,
  first with A idle, then while A floods (round-robin fairness: B must stay interactive).
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from linkops import config, server
from linkops.db import Database
from linkops.sandbox import Sandbox

FLOOD_BYTES = 16 * 1024 * 1024
LATENCY_SAMPLES = 40


async def _read_until(ws: WebSocketConnection, pane: str, needle: str, buf: dict[str, str],
                      counts: dict[str, int]) -> None:
    while needle not in buf.get(pane, ""):
        msg = json.loads(await ws.get_message())
        if msg.get("type") == "stdout":
            p = msg["pane"]
            buf[p] = buf.get(p, "")[-4096:] + msg["data"]
            counts[p] = counts.get(p, 0) + 1
            counts[p + "_chars"] = counts.get(p + "_chars", 0) + len(msg["data"])


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


async def _run(fleet: Sandbox, root: Path) -> None:
    from tests.fixtures_core import add_admin, login, write_config
    from tests.fixtures_sandbox import fleet_links, insert_machines, make_ssh_env

    env = make_ssh_env(fleet, root / "sshenv")
    settings = config.load(write_config(
        root, ssh={"keys_directory": env.keys_dir, "known_hosts_path": env.known_hosts,
                   "default_key": fleet.key_path.name},
        logging={"level": "WARNING"}))
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
            r = await http.post("/api/terminal/workspaces", json={"layout": "grid2x1"})
            ws_id = r.json()["workspace_id"]
            names = sorted(fleet.hosts)
            await http.put(f"/api/terminal/workspaces/{ws_id}/panes", json={"panes": [
                {"pane": "A", "target": names[0]}, {"pane": "B", "target": names[1]}]})
            r = await http.post(f"/api/terminal/workspaces/{ws_id}/connect-all")
            assert all(p["status"] == "connected" for p in r.json()["panes"]), r.text
            url = base.replace("http://", "ws://") + f"/api/terminal/workspaces/{ws_id}/ws"
            async with open_websocket_url(
                    url, extra_headers=[(b"Authorization", f"Bearer {token}".encode())],
                    max_message_size=1 << 24) as ws:
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
                await ws.send_message(json.dumps({"pane": "A", "type": "stdin", "data": "\x03"}))
        running.stop.set()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="linkops-term-bench-") as tmp:
        root = Path(tmp)
        with Sandbox(root / "fleet", hosts=2) as fleet:
            trio.run(_run, fleet, root / "svc")


if __name__ == "__main__":
    main()
