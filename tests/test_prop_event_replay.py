"""A finished operation's replay (rebuilt from the database) equals its live SSE stream, up to
what linkops/operations/event_types.py documents as legitimately different: event ids, how
output is chunked and interleaved, the queued/running pair of ``operation`` events, and the
``replayed`` marker. Real sshd fleet, real HTTP, real SQLite."""

from __future__ import annotations

import shlex
from typing import Any

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from linkops import server
from linkops.db import Database
from tests.fixtures_operations import SseEvent, collect_sse, seed_links, seed_script
from tests.fixtures_sandbox import SshEnv
from tests.strategies import PROP, call, run_property

HOSTS = ["ops-18", "ops-19"]
lines = st.lists(st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF,
                                       exclude_categories=["Cs"]), max_size=20), max_size=4)


@st.composite
def scripts(draw: st.DrawFn) -> dict[str, Any]:
    out, err = draw(lines), draw(lines)
    code = draw(st.sampled_from([0, 0, 1, 3]))
    body = "".join(f"printf '%s\\n' {shlex.quote(line)}\n" for line in out)
    body += "".join(f"printf '%s\\n' {shlex.quote(line)} >&2\n" for line in err)
    return {"content": f"#!/bin/bash\n{body}exit {code}\n", "name": draw(
        st.sampled_from(["Alpha", "Beta 2", "Gamma ☃"]))}


def canonical(events: list[SseEvent]) -> dict[str, Any]:
    """What must be equal: every payload, with output joined per task and stream."""
    state = [e.data for e in events if e.event == "operation"][-1]
    operation = {k: v for k, v in state.items() if k not in ("status", "replayed")}
    tasks: dict[tuple[str, int], dict[str, Any]] = {}
    for event in events:
        if event.event in ("task_start", "output", "task_end"):
            key = (event.data["target"], event.data["position"])
            task = tasks.setdefault(key, {"stdout": "", "stderr": ""})
            if event.event == "output":
                task[event.data["stream"]] += event.data["data"]
            else:
                task[event.event] = event.data
    ends = [e.data for e in events if e.event == "operation_end"]
    assert len(ends) == 1 and events[-1].event == "operation_end"
    return {"operation": operation, "tasks": tasks, "end": ends[0]}


async def test_replay_equals_the_live_stream(
        ops_client: httpx.AsyncClient, ops_server: server.Running, ops_server_db: Database,
        ops_ssh_env: SshEnv) -> None:
    seed_links(ops_server_db, ops_ssh_env, HOSTS)
    service = ops_server.services.operations
    counter = iter(range(1_000_000))

    @settings(PROP, max_examples=8)
    @given(st.lists(scripts(), min_size=1, max_size=2),
           st.lists(st.sampled_from(HOSTS), min_size=1, max_size=2, unique=True))
    def prop(chosen: list[dict[str, Any]], targets: list[str]) -> None:
        ids = []
        for script in chosen:
            script_id = f"s{next(counter)}"
            seed_script(ops_server_db, script_id, script["content"], name=script["name"])
            ids.append(script_id)
        r = call(ops_client.post, "/api/operations/run",
                 json={"scripts": ids, "targets": targets})
        assert r.status_code == 202, r.text
        op_id = r.json()["operation_id"]
        live = call(collect_sse, ops_client, op_id)
        call(service.wait, op_id)
        service._finished_hubs.clear()  # as after a restart: only the database is left
        assert service.hub(op_id) is None
        replayed = call(collect_sse, ops_client, op_id)
        assert replayed[0].data["replayed"] is True
        assert [e.id for e in replayed] == list(range(1, len(replayed) + 1))
        assert canonical(replayed) == canonical(live)
        assert len(canonical(live)["tasks"]) == len(ids) * len(targets)
        assert canonical(live)["operation"]["triggered_by"] == "admin"
        # Every task_start names its script, live and replayed alike.
        starts = [e.data["name"] for e in replayed if e.event == "task_start"]
        assert starts and all(name in ("Alpha", "Beta 2", "Gamma ☃") for name in starts)

    await run_property(prop, timeout=240)
