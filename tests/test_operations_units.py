"""The parts of operations that need no SSH: output decoding and bounds, the event hub and its
replay log, SSE framing, request validation, and the status rule."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import given as hypothesis_given
from hypothesis import settings
from hypothesis import strategies as st

from linkops.config import Settings
from linkops.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from linkops.operations.events import (
    OUTPUT_NOTICE,
    PACE_BYTES,
    PING,
    Event,
    EventHub,
    encode_sse,
    follow,
    json_payload,
    parse_last_event_id,
)
from linkops.operations.output import TaskOutput
from linkops.operations.remote import identity_length, parse_identity, script_command
from linkops.operations.status import operation_outcome
from linkops.operations.validate import (
    build_plan,
    check_flags,
    is_bash,
    parse_request,
)

# -- output -------------------------------------------------------------------------------


def test_split_multibyte_character_stays_whole() -> None:
    out = TaskOutput(1024)
    raw = "é€😀".encode()
    pieces = [out.feed("stdout", raw[i:i + 1]) for i in range(len(raw))]
    assert "".join(pieces) == "é€😀"
    assert all("\ufffd" not in p for p in pieces)
    assert out.text("stdout") == "é€😀"


def test_invalid_bytes_become_replacement_characters() -> None:
    out = TaskOutput(1024)
    text = out.feed("stderr", b"ok\xff\xfe end") + "".join(out.finish().values())
    assert text == "ok\ufffd\ufffd end"
    dangling = TaskOutput(1024)
    dangling.feed("stdout", b"a\xe2\x82")  # a truncated €
    assert dangling.finish()["stdout"] == "\ufffd"
    assert dangling.text("stdout") == "a\ufffd"


def test_output_bounded_with_head_tail_and_marker() -> None:
    limit = 4096
    out = TaskOutput(limit)
    for i in range(10_000):
        out.feed("stdout", f"line {i:05d}\n".encode())
    text = out.text("stdout")
    assert out.truncated
    assert text.startswith("line 00000\n")
    assert text.endswith("line 09999\n")
    assert "[linkops: output truncated" in text
    assert len(text.encode()) <= limit // 2 + 100
    assert out.kept_bytes <= limit // 2


def test_output_not_truncated_when_small() -> None:
    out = TaskOutput(4096)
    out.feed("stdout", b"hello\n")
    assert not out.truncated and out.text("stdout") == "hello\n"


# -- events -------------------------------------------------------------------------------


def _hub(task_limit: int = 1000, total: int = 10_000) -> EventHub:
    return EventHub(task_output_limit=task_limit, total_output_limit=total)


def _out(text: str, target: str = "h1") -> dict[str, Any]:
    return {"target": target, "script": "s", "position": 0, "stream": "stdout", "data": text}


def test_replay_keeps_lifecycle_and_marks_dropped_output() -> None:
    hub = _hub(task_limit=10)
    hub.publish("task_start", {"target": "h1", "script": "s", "position": 0})
    hub.publish("output", _out("12345"))
    hub.publish("output", _out("67890"))
    hub.publish("output", _out("too much"))  # over the task's replay budget
    hub.publish("output", _out("more"))
    hub.publish("task_end", {"target": "h1", "script": "s", "position": 0, "status": "success"})
    backlog = hub.subscribe(0).backlog
    kinds = [e.kind for e in backlog]
    assert kinds == ["task_start", "output", "output", "output", "task_end"]
    assert backlog[3].data["truncated"] is True and backlog[3].data["data"] == OUTPUT_NOTICE
    assert [e.id for e in backlog] == [1, 2, 3, 4, 6]
    assert [e.id for e in hub.subscribe(3).backlog] == [4, 6]


async def test_follow_resumes_without_gaps_or_duplicates() -> None:
    hub = _hub()
    for i in range(5):
        hub.publish("output", _out(f"{i}"))
    got: list[Event] = []

    async def reader(after: int) -> None:
        async for event in follow(hub, after):
            got.append(event)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader, 2)
            await trio.sleep(0.01)
            for i in range(5, 8):
                hub.publish("output", _out(f"{i}"))
            hub.publish("operation_end", {"status": "success"})
    assert [e.id for e in got] == [3, 4, 5, 6, 7, 8, 9]
    assert got[-1].kind == "operation_end"


async def test_slow_subscriber_is_dropped_then_catches_up_from_log() -> None:
    """The publisher never waits: a subscriber that does not read is dropped, and follow()
    re-reads what it missed from the replay log (no gaps, no duplicates)."""
    hub = _hub(task_limit=10**9, total=10**9)
    hub.publish("output", _out("first"))
    stream = follow(hub, 0)
    first = await stream.__anext__()  # subscribed; now it stops reading for a while
    for i in range(1999):  # far more than one subscriber's buffer
        hub.publish("output", _out(f"{i}"))
    assert hub.dropped_subscribers == 1
    hub.publish("operation_end", {"status": "success"})
    rest = [e async for e in stream]
    ids = [first.id] + [e.id for e in rest]
    assert ids == list(range(1, 2002))


async def test_follow_heartbeats_and_ends_on_closing() -> None:
    hub = _hub()
    closing = trio.Event()
    seen: list[Event] = []
    with trio.fail_after(5):
        async for event in follow(hub, 0, heartbeat=0.05, closing=closing, closing_grace=0.1):
            seen.append(event)
            if len(seen) == 2:
                closing.set()
    assert seen[:2] == [PING, PING]


def test_sse_encoding_cannot_be_forged() -> None:
    evil = "x\n\nevent: operation_end\ndata: {}\r\nid: 999\rretry: 1\n"
    raw = encode_sse(Event(7, "output", {"data": evil}))
    text = raw.decode()
    assert text.endswith("\n\n") and text.count("\n\n") == 1
    lines = text.rstrip("\n").split("\n")
    assert lines[0] == "id: 7" and lines[1] == "event: output"
    assert len(lines) == 3 and lines[2].startswith("data: ")
    assert "\r" not in text
    assert json.loads(lines[2][len("data: "):])["data"] == evil
    assert encode_sse(PING) == b": ping\n\n"


@pytest.mark.parametrize(("raw", "expected"), [(None, 0), ("12", 12), (" 3 ", 3), ("x", 0),
                                               ("-4", 0)])
def test_last_event_id_parsing(raw: str | None, expected: int) -> None:
    assert parse_last_event_id(raw) == expected


# -- validation ---------------------------------------------------------------------------


def test_bash_shebangs() -> None:
    for good in ("#!/bin/bash\n", "#!/usr/bin/env bash\necho", "#! /bin/bash -eu\n",
                 "#!/usr/bin/bash\r\n"):
        assert is_bash(good), good
    for bad in ("#!/usr/bin/python3\n", "#!/bin/sh\n", "echo hi\n", "", "#!/bin/bashx\n"):
        assert not is_bash(bad), bad


def test_flag_rules() -> None:
    declared = ["--dry-run", "--level=3", "--name=REQUIRED"]
    args, problems = check_flags("s", declared, ["--name=a b", "--level", "--dry-run"])
    assert problems == [] and args == ("--name=a b", "--level=3", "--dry-run")
    _, problems = check_flags("s", declared, [])
    assert problems == ["s: required flag --name is missing"]
    cases = {
        "--dry-run=1": "is a switch",
        "--name": "requires a value",
        "--name=": "requires a value",
        "--other=1": "not declared",
        "--name=a\nb": "NUL, CR or LF",
        "--name=a\x00": "NUL, CR or LF",
        "--name=a\rb": "NUL, CR or LF",
    }
    for given, why in cases.items():
        _, problems = check_flags("s", declared, [given, "--name=x"] if given.startswith(
            "--dry") or given.startswith("--other") else [given])
        assert any(why in p for p in problems), (given, problems)
    _, problems = check_flags("s", declared, ["--name=a", "--name=b"])
    assert any("given twice" in p for p in problems)


def _rows(enrolled: dict[str, bool], required: bool = True) -> dict[str, dict[str, Any]]:
    return {
        h: {"id": h, "type": "VPS", "host": "127.0.0.1", "port": 22, "user": "root",
            "name": h, "provider": None, "tags": "[]", "client_id": "LINKOPS-x",
            "enrollment_required": int(required), "client_id_path": "/etc/linkops/client_id",
            "key_ref": None, "proxy_jump": None, "host_key": None, "metadata": "{}",
            "enrolled": int(e), "enrollment_error": None}
        for h, e in enrolled.items()
    }


def _script_row(script_id: str, content: str, flags: str) -> dict[str, Any]:
    digest = hashlib.sha256(content.encode()).hexdigest()
    return {"id": script_id, "name": script_id.upper(), "content": content, "sha256": digest,
            "flags": flags}


SCRIPTS = {"a": _script_row("a", "#!/bin/bash\necho a\n", '["--x=REQUIRED"]'),
           "py": _script_row("py", "#!/usr/bin/python3\n", "[]")}


def test_content_must_match_recorded_sha256(settings: Settings) -> None:
    tampered = {"a": {**SCRIPTS["a"], "content": "#!/bin/bash\nrm -rf /tmp/x\n"}}
    body = {"scripts": ["a"], "targets": ["h1"], "flags": {"a": ["--x=1"]}}
    with pytest.raises(ConflictError) as info:
        build_plan(parse_request(body, settings), tampered, _rows({"h1": True}), settings)
    assert info.value.code == "SCRIPT_HASH_MISMATCH"
    plan = build_plan(parse_request(body, settings), SCRIPTS, _rows({"h1": True}), settings)
    assert plan.script_hashes == {"a": SCRIPTS["a"]["sha256"]}


def test_shape_errors(settings: Settings) -> None:
    bad_bodies = [
        {}, {"scripts": [], "targets": ["h"]}, {"scripts": ["a"], "targets": []},
        {"scripts": ["a"] * 2, "targets": ["h"]}, {"scripts": ["a"], "targets": ["h", "h"]},
        {"scripts": [f"s{i}" for i in range(11)], "targets": ["h"]},
        {"scripts": ["a"], "targets": ["h"], "concurrency": 0},
        {"scripts": ["a"], "targets": ["h"], "concurrency": 51},
        {"scripts": ["a"], "targets": ["h"], "concurrency": True},
        {"scripts": ["a"], "targets": ["h"], "concurrency": "5"},
        {"scripts": ["a"], "targets": ["h"], "flags": {"b": ["--x=1"]}},
        {"scripts": ["a"], "targets": ["h"], "flags": {"a": "--x=1"}},
        {"scripts": ["a"], "targets": ["h"], "require_enrollment": "no"},
        {"scripts": ["a"], "targets": ["h"], "extra": 1},
    ]
    for body in bad_bodies:
        with pytest.raises(ValidationError):
            parse_request(body, settings)
    request = parse_request({"scripts": ["a"], "targets": ["h"]}, settings)
    assert request.concurrency == settings.operations.default_concurrency


def test_unknown_ids_non_bash_and_enrollment(settings: Settings) -> None:
    def plan(body: dict[str, Any], rows: dict[str, dict[str, Any]]) -> Any:
        return build_plan(parse_request(body, settings), SCRIPTS, rows, settings)

    with pytest.raises(NotFoundError) as nf:
        plan({"scripts": ["a", "zz", "yy"], "targets": ["h1"]}, _rows({"h1": True}))
    assert nf.value.code == "SCRIPT_NOT_FOUND" and nf.value.details["scripts"] == ["zz", "yy"]
    with pytest.raises(NotFoundError) as nf:
        plan({"scripts": ["a"], "targets": ["h1", "h9"]}, _rows({"h1": True}))
    assert nf.value.code == "LINK_NOT_FOUND" and nf.value.details["targets"] == ["h9"]
    with pytest.raises(ValidationError) as ve:
        plan({"scripts": ["py"], "targets": ["h1"]}, _rows({"h1": True}))
    assert ve.value.code == "NON_BASH_SCRIPT"
    with pytest.raises(ValidationError) as ve:
        plan({"scripts": ["a"], "targets": ["h1"]}, _rows({"h1": True}))
    assert ve.value.code == "INVALID_FLAG"
    body = {"scripts": ["a"], "targets": ["h1", "h2", "h3"], "flags": {"a": ["--x=1"]}}
    with pytest.raises(ForbiddenError) as fe:
        plan(body, _rows({"h1": False, "h2": True, "h3": False}))
    assert fe.value.code == "ENROLLMENT_REQUIRED"
    assert fe.value.details["targets"] == ["h1", "h3"]
    ok = plan(body, _rows({"h1": True, "h2": True, "h3": True}))
    assert ok.require_enrollment is True and ok.flags == {"a": ["--x=1"]}


def test_request_cannot_loosen_enrollment(settings: Settings) -> None:
    """With [security] enrollment_required = true, require_enrollment=false changes nothing;
    and a link that itself requires enrollment never runs unenrolled."""
    body = {"scripts": ["a"], "targets": ["h1"], "flags": {"a": ["--x=1"]},
            "require_enrollment": False}
    with pytest.raises(ForbiddenError):
        build_plan(parse_request(body, settings), SCRIPTS, _rows({"h1": False}), settings)
    loose = Settings(security=type(settings.security)(enrollment_required=False),
                     operations=settings.operations)
    with pytest.raises(ForbiddenError):
        build_plan(parse_request(body, loose), SCRIPTS, _rows({"h1": False}, required=True),
                   loose)
    plan = build_plan(parse_request(body, loose), SCRIPTS, _rows({"h1": False}, required=False),
                      loose)
    assert plan.require_enrollment is False


def test_script_command_quotes_every_argument() -> None:
    command = script_command(("--x=a'b", "$(id)"))
    assert command.startswith("exec bash -c ")
    assert "'--x=a'\"'\"'b'" in command and "'$(id)'" in command


def test_status_rule_examples() -> None:
    assert operation_outcome({"a": ["success", "success"]}) == "success"
    assert operation_outcome({"a": ["success", "failed"]}) == "failed"
    assert operation_outcome({"a": ["success"], "b": ["timeout", "skipped"]}) == "partial"
    assert operation_outcome({"a": ["success"]}, stopped=True) == "stopped"


def test_result_counts() -> None:
    from linkops.operations.status import result_counts
    counts = result_counts({"a": ["success", "success"], "b": ["failed", "skipped"],
                            "c": ["success", "running"], "d": ["timeout", "pending"]})
    assert counts["targets"] == 4 and counts["success"] == 1
    assert counts["failed"] == 2 and counts["running"] == 1
    assert counts["tasks"] == 8 and counts["tasks_success"] == 3 and counts["tasks_skipped"] == 1


async def test_lagging_subscriber_bound_is_in_bytes() -> None:
    """A few huge chunks (far fewer than the channel's event capacity) are enough to drop a
    subscriber that does not read: what it pins is bounded in bytes."""
    from linkops.operations.events import SUBSCRIBER_MAX_BYTES
    hub = _hub(task_limit=10**9, total=10**9)
    hub.publish("operation", {"status": "running"})
    stream = follow(hub, 0)
    assert (await stream.__anext__()).kind == "operation"
    chunk = "y" * (SUBSCRIBER_MAX_BYTES // 2 + 1)
    hub.publish("output", _out(chunk))
    assert hub.dropped_subscribers == 0
    hub.publish("output", _out(chunk))
    assert hub.dropped_subscribers == 1
    hub.publish("operation_end", {"status": "success"})
    assert [e.id for e in [e async for e in stream]] == [2, 3, 4]  # resumed from the log


@settings(max_examples=300, deadline=None)
@hypothesis_given(text=st.one_of(st.text(max_size=60), st.text(min_size=4096, max_size=6000),
                      st.text(st.characters(codec="ascii"), min_size=4096, max_size=6000),
                      st.text(st.sampled_from('ab+/=\n"\\\t\x7f'), min_size=4096,
                              max_size=6000)),
       extra=st.dictionaries(st.sampled_from(["target", "script", "stream", "truncated"]),
                             st.one_of(st.text(max_size=20), st.booleans(), st.integers())))
def test_json_payload_is_json_dumps(text: str, extra: dict[str, Any]) -> None:
    """The spliced encoding of long output decodes to the same object as json.dumps, and is
    ASCII (nothing a client's line splitter could trip on)."""
    data = {**extra, "data": text}
    payload = json_payload(data)
    assert json.loads(payload) == data
    assert payload.isascii()
    assert b"\n" not in payload and b"\r" not in payload  # escaped, never raw
    if len(text) < 4096:
        assert payload == json.dumps(data, separators=(",", ":")).encode()
    else:
        assert payload.endswith(json.dumps(text).encode() + b"}")  # the same escaping


async def test_slow_subscriber_paces_the_output_instead_of_missing_it() -> None:
    """paced(): output waits while a live subscriber is far behind, and goes on as it reads;
    nobody is dropped and the reader gets every event."""
    hub = _hub(task_limit=10**9, total=10**9)
    hub.publish("operation", {"status": "running"})
    chunk = "z" * (1024 * 1024)
    got: list[Event] = []

    async def reader() -> None:
        async for event in follow(hub, 0):
            got.append(event)
            await trio.sleep(0.002)  # a slow client

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.sleep(0.01)
            waited = 0
            for _ in range(40):  # 40 MiB: more than the drop bound if nobody waited
                if hub._behind():
                    waited += 1
                await hub.paced()
                hub.publish("output", _out(chunk))
                await trio.lowlevel.checkpoint()
            hub.publish("operation_end", {"status": "success"})
    assert waited > 0
    assert hub.dropped_subscribers == 0
    assert [e.id for e in got] == list(range(1, 43))
    assert all(e.data.get("data") == chunk for e in got[1:-1])


async def test_a_stuck_subscriber_costs_one_bounded_stall() -> None:
    hub = _hub(task_limit=10**9, total=10**9)
    hub.publish("operation", {"status": "running"})
    stream = follow(hub, 0)
    await stream.__anext__()  # subscribed, then never reads again
    with trio.fail_after(10):
        for _ in range(PACE_BYTES // (1024 * 1024) + 2):
            hub.publish("output", _out("s" * (1024 * 1024)))
        t0 = trio.current_time()
        await hub.paced(max_wait=0.2)
        assert 0.2 <= trio.current_time() - t0 < 2
        assert hub.dropped_subscribers == 1
        t0 = trio.current_time()
        await hub.paced(max_wait=0.2)  # dropped: nobody to wait for any more
        assert trio.current_time() - t0 < 0.1
    await stream.aclose()


# -- the launch wrapper, run by a local bash (no SSH): the paths sshd does not take ----------

def _run_wrapper(tmp_path: Path, stdin: bytes, client_id_path: str | None,
                 *args: str) -> subprocess.CompletedProcess[bytes]:
    # Started as a plain child: it shares our process group, unlike an sshd session (which
    # sshd makes a session leader), so the wrapper must re-execute itself under setsid.
    return subprocess.run(["bash", "-c", script_command(args, client_id_path)], input=stdin,
                          capture_output=True, timeout=30, cwd=tmp_path, check=False,
                          start_new_session=False)


def test_wrapper_leads_its_own_group_even_when_not_started_as_leader(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    script = (b'echo "args:$1:$2"; read -r _ _ _ _ pg _ </proc/$$/stat; echo "$pg"; '
              b'echo "env:${LINKOPS_SETSID-unset}"; : > ' + str(marker).encode())
    done = _run_wrapper(tmp_path, b"LINKOPS_GO\n" + script + b"\n", None, "a b", "$(id)")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.decode().splitlines()
    assert lines[0].startswith("LINKOPS_PGID ")
    pgid = int(lines[0].split()[1])
    assert pgid != os.getpgrp()  # its own group, not ours
    assert lines[1] == "args:a b:$(id)"  # arguments arrive literally
    assert int(lines[2]) == pgid  # the script runs inside that group
    assert lines[3] == "env:unset"  # the wrapper's own marker does not reach the script
    assert marker.exists()


def test_wrapper_runs_nothing_without_the_go_line(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    for stdin in (b"", b"NOT_GO\n: > " + str(marker).encode() + b"\n"):
        done = _run_wrapper(tmp_path, stdin, None)
        assert done.returncode == 125
        assert b"LINKOPS_PGID" not in done.stdout
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"LINKOPS-abc\n", b"", b"\x00\xff\r\n" * 200,
                                     b"x" * 600])
def test_wrapper_reports_the_client_id_file_exactly(tmp_path: Path, content: bytes) -> None:
    id_file = tmp_path / "client_id"
    id_file.write_bytes(content)
    done = _run_wrapper(tmp_path, b"", str(id_file))
    assert done.returncode == 125  # no LINKOPS_GO: nothing ran after the report
    report = parse_identity(done.stdout)
    assert report is not None and report.exit_code == 0
    assert report.content == content[:513]  # at most 513 bytes, byte for byte
    assert done.stdout[identity_length(done.stdout):] == b""


def test_wrapper_reports_a_missing_client_id_file(tmp_path: Path) -> None:
    done = _run_wrapper(tmp_path, b"", str(tmp_path / "absent"))
    report = parse_identity(done.stdout)
    assert report is not None and report.exit_code != 0
    assert b"No such file or directory" in report.message
