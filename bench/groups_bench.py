"""Output groups (SPEC §10.3): ``GET …/groups`` latency and the grouping cost per task.

- *Groups p95*: an operation of 1,000 finished tasks (one script; 4 KB of output each, 90 %
  identical up to the host's own id and address, 8 % in 40 variants, 2 % failed) is written
  into the real server's SQLite database with the orchestrator's own store functions; then
  ``GET /api/operations/{id}/groups`` over HTTP against the server process, median and p95.
  Goal: p95 < 50 ms. Baseline: ``GET /api/operations/{id}`` of the same operation.
- *Grouping CPU per task*: what the server adds when a task ends — normalise and fingerprint
  (``task_columns``), fold into the live ``Grouping``, build and encode the ``groups`` event —
  measured with ``time.process_time`` over the same 1,000 outputs. Goal: < 0.2 ms per task.
  Baseline: a plain sha256 of the raw output (the least any fingerprint costs).

``--quick``: fewer rounds (the sizes stay, the goals are about 1,000 tasks).
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs

from bench.common import ServerProcess, Table, median, percentile, quick_mode
from linkops.db import Database
from linkops.models import Enrollment, Link
from linkops.operations import store
from linkops.operations.event_types import Groups, payload
from linkops.operations.events import Event, encode_sse
from linkops.operations.groups import Grouping, TaskResult, task_columns
from linkops.operations.validate import Plan, PlannedScript
from linkops.sandbox import Sandbox
from linkops.timeutil import now_iso

TASKS = 1000
BODY = "".join(f"line {i:03d}: service ok, 3 workers, queue empty\n" for i in range(80))


def outputs(n: int) -> list[tuple[Link, str, str, int]]:
    """``(link, stdout, status, exit_code)`` for ``n`` tasks (see the module docstring)."""
    base = Link(id="x", type="vps", host="h", port=22, user="root",
                enrollment=Enrollment(clientId="c"))
    out = []
    for i in range(n):
        link = attrs.evolve(base, id=f"web-{i:04d}", host=f"10.{i // 65536}.{i // 256 % 256}."
                            f"{i % 256}")
        head = f"hello from {link.id} ({link.host})\n"
        if i % 50 == 7:
            out.append((link, head + BODY[:2000] + "error: disk full\n", "failed", 1))
        elif i % 12 == 5:
            out.append((link, head + BODY + f"note: variant {i % 40}\n", "success", 0))
        else:
            out.append((link, head + BODY, "success", 0))
    return out


def populate(db_path: Path, n: int) -> str:
    tasks = outputs(n)
    links = tuple(link for link, _, _, _ in tasks)
    plan = Plan(scripts=(PlannedScript("check", "check", "#!/bin/bash\n", "0" * 64, ()),),
                targets=links, flags={}, concurrency=50, require_enrollment=False)
    db = Database(db_path)
    try:
        op_id = db.write_sync(lambda c: store.insert_operation(c, plan, "bench"))
        for link, stdout, status, code in tasks:
            _, columns = task_columns(stdout, "", link.id, link.host)
            now = now_iso()
            db.write_sync(store.task_finished(op_id, link.id, 0, {
                "status": status, "exit_code": code, "stdout": stdout, "stderr": "",
                "output_truncated": 0, "duration": 0.1, "started_at": now, "ended_at": now,
                **columns}))
        db.write_sync(store.finish_operation(op_id, "partial", {}, now_iso(), 1.0))
    finally:
        db.close()
    return op_id


def request_latency(server: ServerProcess, path: str, rounds: int) -> list[float]:
    times = []
    with server.client(timeout=60) as http:
        http.get(path).raise_for_status()  # warm
        for _ in range(rounds):
            t0 = time.perf_counter()
            r = http.get(path)
            times.append(time.perf_counter() - t0)
            r.raise_for_status()
    return times


def grouping_cpu(n: int) -> dict[str, float]:
    """CPU seconds per task: the whole task-end grouping path, and a bare sha256."""
    tasks = outputs(n)
    grouping = Grouping([link.id for link, _, _, _ in tasks])
    t0 = time.process_time()
    for i, (link, stdout, status, code) in enumerate(tasks):
        fp, _ = task_columns(stdout, "", link.id, link.host)
        grouping.add(TaskResult(link.id, "check", 0, status, code, fp))
        data = payload(Groups(operation_id="OP-1", finished=i + 1, total=n,
                            script_groups=grouping.counts()))
        encode_sse(Event(i + 1, "groups", data))
    ours = (time.process_time() - t0) / n
    t0 = time.process_time()
    for _, stdout, _, _ in tasks:
        hashlib.sha256(stdout.encode()).hexdigest()
    bare = (time.process_time() - t0) / n
    return {"per_task": ours, "sha256": bare, "groups": len(grouping.by_script()[0][2])}


def report(table: Table, groups: list[float], view: list[float], cpu: dict[str, Any],
           n: int) -> None:
    p95 = percentile(groups, 95) * 1000
    table.add(f"GET …/groups, {n} tasks (median / p95)",
              f"{median(groups) * 1000:.1f} / {p95:.1f} ms",
              f"GET …/{{id}} {median(view) * 1000:.1f} / {percentile(view, 95) * 1000:.1f} ms",
              "", "p95 < 50 ms", p95 < 50)
    per_task = cpu["per_task"] * 1000
    table.add(f"grouping CPU per task ({cpu['groups']} groups)", f"{per_task:.3f} ms",
              f"sha256 only {cpu['sha256'] * 1000:.3f} ms",
              f"{cpu['per_task'] / max(cpu['sha256'], 1e-9):.1f}x", "< 0.2 ms",
              per_task < 0.2)


def main() -> None:
    rounds = 30 if quick_mode() else 200
    with tempfile.TemporaryDirectory(prefix="linkops-groups-bench-") as tmp:
        root = Path(tmp)
        with Sandbox(root / "fleet", hosts=1, prefix="grp") as fleet, \
                ServerProcess(root / "server", fleet) as server:
            op_id = populate(server.db_path, TASKS)
            groups = request_latency(server, f"/api/operations/{op_id}/groups", rounds)
            view = request_latency(server, f"/api/operations/{op_id}", rounds)
        cpu = grouping_cpu(TASKS)
    table = Table("Output groups (SPEC §10.3)")
    report(table, groups, view, cpu, TASKS)
    table.print()


if __name__ == "__main__":
    main()
