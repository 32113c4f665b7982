"""``GET /api/operations/{id}/events`` over real HTTP: order, completion, resume with
``Last-Event-ID``, 50 concurrent subscribers, replay from the database, forgery, shutdown."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio

from linkops import server
from linkops.db import Database
from tests.fixtures_operations import SseEvent, collect_sse, read_sse, seed_links, seed_script
from tests.fixtures_sandbox import SshEnv

BASH = "#!/bin/bash\n"
TICKER = BASH + 'for i in $(seq 1 "${1#--n=}"); do echo "tick $i"; echo "err $i" >&2; ' \
    'sleep 0.05; done\n'


async def _start(http: httpx.AsyncClient, body: dict[str, Any]) -> str:
    r = await http.post("/api/operations/run", json=body)
    assert r.status_code == 202, r.text
    return str(r.json()["operation_id"])


def _check_sequence(events: list[SseEvent]) -> None:
    ids = [e.id for e in events]
    assert ids == list(range(1, len(ids) + 1)), ids
    assert events[0].event == "operation" and events[0].data["status"] == "queued"
    assert events[-1].event == "operation_end"
    assert sum(e.event == "operation_end" for e in events) == 1


async def test_stream_has_output_and_completion_and_then_closes(
        ops_client: httpx.AsyncClient, ops_server_db: Database, ops_ssh_env: SshEnv) -> None:
    seed_links(ops_server_db, ops_ssh_env, ["ops-12", "ops-13"])
    seed_script(ops_server_db, "tick", TICKER, ["--n=5"])
    with trio.fail_after(60):
        op_id = await _start(ops_client, {"scripts": ["tick"], "targets": ["ops-12", "ops-13"],
                                                "flags": {"tick": ["--n"]}})
        async with ops_client.stream("GET", f"/api/operations/{op_id}/events") as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            events: list[SseEvent] = []
            first = True
            async for event in read_sse(resp):
                if first:  # a comment comes at once, before any event
                    assert event.event is None and event.comments
                    first = False
                    continue
                if event.event is not None:
                    events.append(event)
            # the server ended the stream by itself after operation_end
        _check_sequence(events)
        assert events[-1].data["status"] == "success"
        for target in ("ops-12", "ops-13"):
            mine = [e for e in events if e.data.get("target") == target]
            assert mine[0].event == "task_start"
            assert mine[-1].event == "task_end"
            assert mine[-1].data["exit_code"] == 0 and mine[-1].data["status"] == "success"
            out = "".join(e.data["data"] for e in mine
                          if e.event == "output" and e.data["stream"] == "stdout")
            err = "".join(e.data["data"] for e in mine
                          if e.event == "output" and e.data["stream"] == "stderr")
            assert out == "".join(f"tick {i}\n" for i in range(1, 6))
            assert err == "".join(f"err {i}\n" for i in range(1, 6))


async def test_resume_with_last_event_id_is_gapless(
        ops_client: httpx.AsyncClient, ops_server_db: Database, ops_ssh_env: SshEnv) -> None:
    seed_links(ops_server_db, ops_ssh_env, ["ops-14"])
    seed_script(ops_server_db, "tick", TICKER, ["--n=20"])
    with trio.fail_after(60):
        op_id = await _start(ops_client, {"scripts": ["tick"], "targets": ["ops-14"],
                                                "flags": {"tick": ["--n"]}})
        parts: list[SseEvent] = []
        last: int | None = None
        # Reconnect again and again, a few events at a time, while the operation runs.
        while not parts or parts[-1].event != "operation_end":
            chunk = await collect_sse(ops_client, op_id, last_event_id=last, stop_after=4)
            assert chunk, "a resumed stream must deliver what was missed"
            parts.extend(chunk)
            last = chunk[-1].id
        _check_sequence(parts)
        full = await collect_sse(ops_client, op_id)
        assert [(e.id, e.event, e.data) for e in full] == [(e.id, e.event, e.data)
                                                           for e in parts]
        # Resuming after the end gives nothing more (and ends at once).
        assert await collect_sse(ops_client, op_id, last_event_id=parts[-1].id) == []


async def test_fifty_subscribers_see_the_same_ordered_events(
        ops_client: httpx.AsyncClient, ops_server_db: Database, ops_ssh_env: SshEnv) -> None:
    seed_links(ops_server_db, ops_ssh_env, ["ops-15", "ops-16"])
    seed_script(ops_server_db, "tick", TICKER, ["--n=10"])
    seed_script(ops_server_db, "gate", BASH + 'while [ ! -e "${1#--f=}" ]; do sleep 0.05; done\n',
                ["--f=REQUIRED"])
    gate = ops_server_db.path.parent / "gate-open"
    with trio.fail_after(90):
        op_id = await _start(ops_client, {
            "scripts": ["gate", "tick"], "targets": ["ops-15", "ops-16"],
            "flags": {"gate": [f"--f={gate}"], "tick": ["--n"]}})
        results: list[list[SseEvent]] = [[] for _ in range(50)]
        connected = 0

        async def subscriber(http: httpx.AsyncClient, i: int) -> None:
            nonlocal connected
            async with http.stream("GET", f"/api/operations/{op_id}/events") as resp:
                connected += 1
                async for event in read_sse(resp):
                    if event.event is not None:
                        results[i].append(event)

        limits = httpx.Limits(max_connections=60)
        async with httpx.AsyncClient(base_url=str(ops_client.base_url),
                                     headers=dict(ops_client.headers), limits=limits,
                                     timeout=60) as many:
            async with trio.open_nursery() as nursery:
                for i in range(50):
                    nursery.start_soon(subscriber, many, i)
                while connected < 50:
                    await trio.sleep(0.05)
                gate.touch()  # all 50 are live before any output flows
        reference = [(e.id, e.event, e.data) for e in results[0]]
        _check_sequence(results[0])
        assert any(e.event == "output" for e in results[0])
        for got in results[1:]:
            assert [(e.id, e.event, e.data) for e in got] == reference


async def test_finished_operation_replays_from_database(
        ops_client: httpx.AsyncClient, ops_server: server.Running, ops_server_db: Database,
        ops_ssh_env: SshEnv) -> None:
    seed_links(ops_server_db, ops_ssh_env, ["ops-17"])
    seed_script(ops_server_db, "tick", TICKER, ["--n=3"])
    with trio.fail_after(60):
        op_id = await _start(ops_client, {"scripts": ["tick"], "targets": ["ops-17"],
                                                "flags": {"tick": ["--n"]}})
        await ops_server.services.operations.wait(op_id)
        # As after a restart: no hub in memory, only the database.
        ops_server.services.operations._finished_hubs.clear()
        assert ops_server.services.operations.hub(op_id) is None
        events = await collect_sse(ops_client, op_id)
        assert [e.event for e in events] == ["operation", "task_start", "output", "output",
                                             "task_end", "operation_end"]
        assert [e.id for e in events] == list(range(1, 7))
        assert events[2].data["data"] == "tick 1\ntick 2\ntick 3\n"
        assert events[-1].data["status"] == "success"
        resumed = await collect_sse(ops_client, op_id, last_event_id=4)
        assert [e.id for e in resumed] == [5, 6]


async def test_output_cannot_forge_events(
        ops_client: httpx.AsyncClient, ops_server_db: Database, ops_ssh_env: SshEnv) -> None:
    seed_links(ops_server_db, ops_ssh_env, ["ops-18"])
    forged = ('printf "\\n\\nid: 9999\\nevent: operation_end\\n'
              'data: {\\"status\\":\\"x\\"}\\r\\n\\r\\n"')
    seed_script(ops_server_db, "forge", BASH + forged + "\n")
    with trio.fail_after(60):
        op_id = await _start(ops_client, {"scripts": ["forge"], "targets": ["ops-18"]})
        events = await collect_sse(ops_client, op_id)
        _check_sequence(events)
        assert events[-1].data["status"] == "success"
        text = "".join(e.data["data"] for e in events if e.event == "output")
        assert "event: operation_end" in text and "id: 9999" in text


async def test_streams_end_when_the_service_shuts_down(
        ops_client: httpx.AsyncClient, ops_server: server.Running, ops_server_db: Database,
        ops_ssh_env: SshEnv) -> None:
    seed_links(ops_server_db, ops_ssh_env, ["ops-19"])
    seed_script(ops_server_db, "long", BASH + "echo up\nsleep 600.5151\n")
    with trio.fail_after(30):
        op_id = await _start(ops_client, {"scripts": ["long"], "targets": ["ops-19"]})
        events: list[SseEvent] = []
        async with ops_client.stream("GET", f"/api/operations/{op_id}/events") as resp:
            async for event in read_sse(resp):
                if event.event is None:
                    continue
                events.append(event)
                if event.event == "output":
                    ops_server.stop.set()  # SIGTERM path
        assert events[-1].event == "operation_end"
        assert events[-1].data["status"] == "stopped"


async def test_heartbeat_comments_while_idle(
        ops_client: httpx.AsyncClient, ops_server_db: Database, ops_ssh_env: SshEnv,
        monkeypatch: Any) -> None:
    """A quiet operation still sends ``: ping`` comments (every 15 s normally; 0.2 s here)."""
    from linkops.operations import events as events_module
    monkeypatch.setattr(events_module, "HEARTBEAT_SECONDS", 0.2)
    seed_links(ops_server_db, ops_ssh_env, ["ops-20"])
    seed_script(ops_server_db, "quiet", BASH + "sleep 1.2\necho done\n")
    with trio.fail_after(30):
        op_id = await _start(ops_client, {"scripts": ["quiet"], "targets": ["ops-20"]})
        pings = 0
        kinds: list[str] = []
        async with ops_client.stream("GET", f"/api/operations/{op_id}/events") as resp:
            async for event in read_sse(resp):
                pings += event.comments.count("ping")
                if event.event is not None:
                    kinds.append(event.event)
        assert pings >= 3
        assert kinds[-1] == "operation_end"


# The script must outlive the five hang-ups and the drain: the fixtures' 5 s script timeout
# did not on a loaded CI machine (the task timed out and the final stop found it finished).
@pytest.mark.parametrize("ops_overrides", [{"operations": {"script_timeout": 120}}])
async def test_disconnected_subscribers_are_released(
        ops_client: httpx.AsyncClient, ops_server: server.Running, ops_server_db: Database,
        ops_ssh_env: SshEnv, monkeypatch: Any) -> None:
    """Clients that go away leave no subscription behind in the running operation's hub."""
    from linkops.operations import events as events_module
    monkeypatch.setattr(events_module, "HEARTBEAT_SECONDS", 0.2)
    seed_links(ops_server_db, ops_ssh_env, ["ops-20"])
    seed_script(ops_server_db, "long", BASH + "echo up\nsleep 600.6262\n")
    service = ops_server.services.operations
    with trio.fail_after(30):
        op_id = await _start(ops_client, {"scripts": ["long"], "targets": ["ops-20"]})
        for _ in range(5):
            got = await collect_sse(ops_client, op_id, stop_after=1)  # then hang up
            assert got[0].event == "operation"
        hub = service.hub(op_id)
        assert hub is not None
        while hub.subscriber_count:
            await trio.sleep(0.1)
        await ops_client.post(f"/api/operations/{op_id}/stop")
        assert await service.wait(op_id) == "stopped"


async def test_split_characters_and_invalid_bytes_in_the_stream(
        ops_client: httpx.AsyncClient, ops_server_db: Database, ops_ssh_env: SshEnv) -> None:
    """A euro sign written in two halves (separate reads) arrives whole; invalid bytes
    become U+FFFD; the stored output matches what was streamed."""
    seed_links(ops_server_db, ops_ssh_env, ["ops-19"])
    seed_script(ops_server_db, "bytes", BASH + "printf 'a\\xe2'; sleep 0.3; printf '\\x82\\xac'; "
                "sleep 0.3; printf '\\xff\\xfeb\\n'\n")
    with trio.fail_after(30):
        op_id = await _start(ops_client, {"scripts": ["bytes"], "targets": ["ops-19"]})
        events = await collect_sse(ops_client, op_id)
        chunks = [e.data["data"] for e in events if e.event == "output"]
        assert len(chunks) >= 2  # it really came in pieces
        assert "".join(chunks) == "a€\ufffd\ufffdb\n"
        view = (await ops_client.get(f"/api/operations/{op_id}")).json()
        assert view["logs"][0]["stdout_head"] == "a€\ufffd\ufffdb\n"
        page = (await ops_client.get(f"/api/operations/{op_id}/tasks/ops-19/bytes/output")).json()
        assert page["data"] == "a€\ufffd\ufffdb\n" and page["next_offset"] is None
