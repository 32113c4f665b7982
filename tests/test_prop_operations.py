"""SPEC §9 properties 13–20 and 31–34 (operations), hypothesis with >=100 examples each.

Cheap properties (17, 32, 34) run on pure functions or the database directly. The SSH ones run
every example on the real sandbox fleet, reusing one service/server per test (pooled SSH
connections keep each example to a few tens of milliseconds).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from linkops.db import Database, dumps
from linkops.errors import ForbiddenError, ValidationError
from linkops.operations import history
from linkops.operations.status import OPERATION_STATUSES, operation_outcome
from linkops.operations.validate import is_bash
from linkops.timeutil import to_iso
from tests.fixtures_operations import OpsHarness, collect_sse, seed_links, seed_script
from tests.fixtures_sandbox import SshEnv
from tests.strategies import PROP, call, run_property

BASH = "#!/bin/bash\n"
# Examples run per property (run_property hides them from --hypothesis-show-statistics).
RUNS: list[int] = []
HOSTS = [f"ops-{i:02d}" for i in range(1, 21)]
TASK_STATUSES = ("success", "failed", "timeout", "stopped", "skipped")

# Printable text without NUL (a bash argument cannot hold NUL) nor surrogates.
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
               max_size=40)


# -- 17 (pure) ------------------------------------------------------------------------------

@PROP
@given(results=st.dictionaries(st.sampled_from(HOSTS),
                               st.lists(st.sampled_from(TASK_STATUSES), min_size=1,
                                        max_size=4), min_size=1),
       stopped=st.booleans())
def test_property_17_status_from_results(results: dict[str, list[str]], stopped: bool) -> None:
    """Property 17: the operation status is success/failed/partial from the task results
    (stopped when stopped)."""
    good = [all(s == "success" for s in statuses) for statuses in results.values()]
    expected = ("stopped" if stopped else "success" if all(good)
                else "failed" if not any(good) else "partial")
    assert operation_outcome(results, stopped=stopped) == expected


# -- 32 and 34 (database) -------------------------------------------------------------------

BASE = datetime(2026, 1, 1, tzinfo=UTC)
OPS = st.lists(st.tuples(st.integers(0, 30), st.sampled_from(OPERATION_STATUSES)),
               min_size=0, max_size=25)


def _fill(db: Database, ops: list[tuple[int, str]]) -> list[dict[str, Any]]:
    """Insert operations with the given (minute offset, status); returns them with seq."""
    rows: list[dict[str, Any]] = []

    def write(conn: Any) -> None:
        conn.execute("DELETE FROM operation_logs")
        conn.execute("DELETE FROM operations")
        for i, (minute, status) in enumerate(ops):
            created = to_iso(BASE + timedelta(minutes=minute))
            cur = conn.execute(
                "INSERT INTO operations (id, status, scripts, targets, concurrency, "
                "created_at, started_at) VALUES (?, ?, '[]', '[]', 1, ?, ?)",
                (f"T-{i}-{minute}", status, created, created))
            rows.append({"id": f"T-{i}-{minute}", "seq": cur.lastrowid, "created": created,
                         "status": status})

    db.write_sync(write)
    return rows


def _page_all(db: Database, params: Mapping[str, str | None], limit: int) -> list[str]:
    got: list[str] = []
    cursor: str | None = None
    for _ in range(100):
        query = {**params, "limit": str(limit), "cursor": cursor}
        page = db.read_sync(lambda c, q=query: history.list_operations(c, q))
        got.extend(o["id"] for o in page["operations"])
        cursor = page["page"]["next_cursor"]
        if cursor is None:
            return got
    raise AssertionError("pagination did not end")


@PROP
@given(ops=OPS, limit=st.integers(1, 7))
def test_property_32_history_newest_first(database: Database, ops: list[tuple[int, str]],
                                          limit: int) -> None:
    """Property 32: history is newest-first (ties by insertion order, newest first), and
    paging with the cursor neither skips nor repeats."""
    rows = _fill(database, ops)
    expected = [r["id"] for r in sorted(rows, key=lambda r: (r["created"], r["seq"]),
                                        reverse=True)]
    assert _page_all(database, {}, limit) == expected


@PROP
@given(ops=OPS, statuses=st.lists(st.sampled_from(OPERATION_STATUSES), max_size=3),
       start=st.none() | st.integers(0, 30), end=st.none() | st.integers(0, 30),
       limit=st.integers(1, 10))
def test_property_34_history_filters(database: Database, ops: list[tuple[int, str]],
                                     statuses: list[str], start: int | None, end: int | None,
                                     limit: int) -> None:
    """Property 34: history filters (status, date range) return exactly the matching
    subset, newest first."""
    rows = _fill(database, ops)
    frm = None if start is None else to_iso(BASE + timedelta(minutes=start))
    to = None if end is None else to_iso(BASE + timedelta(minutes=end))
    matching = [r for r in rows
                if (not statuses or r["status"] in statuses)
                and (frm is None or r["created"] >= frm) and (to is None or r["created"] <= to)]
    expected = [r["id"] for r in sorted(matching, key=lambda r: (r["created"], r["seq"]),
                                        reverse=True)]
    params = {"status": ",".join(statuses) or None, "from": frm, "to": to}
    assert _page_all(database, params, limit) == expected


# -- 13, 14, 15 (service, validation before anything runs) ----------------------------------

async def test_property_13_unenrolled_targets_rejected(ops: OpsHarness) -> None:
    """Property 13: an operation with unenrolled targets is rejected, listing exactly them,
    and nothing is recorded."""
    seed_script(ops.db, "noop", BASH + "true\n")

    @PROP
    @given(flags=st.lists(st.tuples(st.sampled_from(HOSTS), st.booleans()), min_size=1,
                          max_size=8, unique_by=lambda t: t[0]))
    def prop(flags: list[tuple[str, bool]]) -> None:
        assume(not all(enrolled for _, enrolled in flags))
        RUNS.append(1)
        for host, enrolled in flags:
            seed_links(ops.db, ops.env, [host], enrolled=enrolled)
        targets = [h for h, _ in flags]
        with pytest.raises(ForbiddenError) as info:
            call(ops.submit, {"scripts": ["noop"], "targets": targets})
        assert info.value.code == "ENROLLMENT_REQUIRED"
        assert info.value.details["targets"] == [h for h, e in flags if not e]
        assert ops.db.read_sync(lambda c: c.execute(
            "SELECT COUNT(*) FROM operations").fetchone()[0]) == 0

    await run_property(prop)
    assert len(RUNS) >= 100, len(RUNS)
    RUNS.clear()


async def test_property_14_valid_operation_is_queued(ops: OpsHarness) -> None:
    """Property 14: a valid operation creates a ``queued`` record (who, commit, script
    hashes, tasks) and returns its monotonic ``OP-<n>`` id."""
    seed_links(ops.db, ops.env, HOSTS)
    for name in ("a", "b", "c"):
        seed_script(ops.db, name, BASH + f"echo {name}\n", ["--v=REQUIRED", "--dry-run"])
    seen: list[int] = []

    async def submit_and_read(body: dict[str, Any], user: str) -> tuple[str, Any, int]:
        op_id = await ops.service.submit(body, user)
        # Read on this thread before any checkpoint: the operation has not started yet.
        row = ops.db.read_sync(lambda c: c.execute(
            "SELECT * FROM operations WHERE id = ?", (op_id,)).fetchone())
        logs = ops.db.read_sync(lambda c: c.execute(
            "SELECT COUNT(*) FROM operation_logs WHERE operation_id = ? AND status = 'pending'",
            (op_id,)).fetchone()[0])
        await ops.service.stop(op_id)
        await ops.service.wait(op_id)
        return op_id, dict(row), logs

    @PROP
    @given(scripts=st.lists(st.sampled_from("abc"), min_size=1, max_size=3, unique=True),
           targets=st.lists(st.sampled_from(HOSTS), min_size=1, max_size=5, unique=True),
           value=TEXT.filter(lambda v: "\r" not in v and "\n" not in v and v != ""),
           user=st.sampled_from(["admin", "ops", "ünïcode"]), concurrency=st.integers(1, 20))
    def prop(scripts: list[str], targets: list[str], value: str, user: str,
             concurrency: int) -> None:
        RUNS.append(1)
        body = {"scripts": scripts, "targets": targets, "concurrency": concurrency,
                "flags": {s: [f"--v={value}"] for s in scripts}}
        op_id, row, pending = call(submit_and_read, body, user)
        assert re.fullmatch(r"OP-\d+", op_id)
        number = int(op_id[3:])
        assert not seen or number > seen[-1]
        seen.append(number)
        assert row["status"] == "queued" and row["triggered_by"] == user
        assert row["scripts"] == dumps(scripts) and row["targets"] == dumps(targets)
        assert row["concurrency"] == concurrency
        hashes = json.loads(row["script_hashes"])
        assert set(hashes) == set(scripts) and all(len(h) == 64 for h in hashes.values())
        assert pending == len(scripts) * len(targets)

    await run_property(prop)
    assert len(RUNS) >= 100, len(RUNS)
    RUNS.clear()


SHEBANGS_NOT_BASH = st.sampled_from([
    "#!/usr/bin/python3", "#!/bin/sh", "#!/usr/bin/env python3", "#!/bin/zsh", "#!/usr/bin/perl",
    "#!/usr/bin/env node", "#!/bin/bashful", "echo no shebang", "", "#!/usr/bin/env sh -e",
    "# !/bin/bash", " #!/bin/bash",
])


async def test_property_15_non_bash_rejected(ops: OpsHarness) -> None:
    """Property 15: a script whose first line is not a bash shebang is rejected
    (``NON_BASH_SCRIPT``) before anything runs; bash shebangs are accepted."""
    seed_links(ops.db, ops.env, ["ops-01"])

    @PROP
    @given(first=SHEBANGS_NOT_BASH | st.text(max_size=30).filter(lambda t: not is_bash(t)),
           body=TEXT, good=st.sampled_from(["#!/bin/bash", "#!/usr/bin/env bash",
                                            "#!/bin/bash -eu", "#! /usr/bin/bash"]))
    def prop(first: str, body: str, good: str) -> None:
        RUNS.append(1)
        content = first.split("\n")[0] + "\n" + body
        assert is_bash(good + "\n" + body)
        seed_script(ops.db, "candidate", content)
        with pytest.raises(ValidationError) as info:
            call(ops.submit, {"scripts": ["candidate"], "targets": ["ops-01"]})
        assert info.value.code == "NON_BASH_SCRIPT"
        assert info.value.details["scripts"] == ["candidate"]

    await run_property(prop)
    assert len(RUNS) >= 100, len(RUNS)
    RUNS.clear()
    assert await ops.db.fetchone("SELECT 1 FROM operations") is None


# -- 16, 31, 33 (real runs) -----------------------------------------------------------------

def _script_for(stdout: str, stderr: str, codes: Mapping[str, int]) -> str:
    cases = "".join(f"  {host}) exit {code};;\n" for host, code in codes.items())
    return (BASH + f"printf '%s' {shlex.quote(stdout)}\nprintf '%s' {shlex.quote(stderr)} >&2\n"
            f'case "$LINKOPS_SANDBOX_HOST" in\n{cases}esac\n')


async def test_property_16_31_33_execution_is_captured_and_stored(ops: OpsHarness) -> None:
    """Properties 16, 31 and 33: execution captures stdout, stderr, exit code and duration;
    the finished operation is stored with its logs; the operation view has every log
    (targets × scripts), with skipped tasks after a failure."""
    seed_links(ops.db, ops.env, HOSTS)

    @PROP
    @given(data=st.data())
    def prop(data: st.DataObject) -> None:
        RUNS.append(1)
        targets = data.draw(st.lists(st.sampled_from(HOSTS[:6]), min_size=1, max_size=3,
                                     unique=True))
        count = data.draw(st.integers(1, 3))
        specs = []
        for i in range(count):
            out, err = data.draw(TEXT), data.draw(TEXT)
            codes = {t: data.draw(st.sampled_from([0, 0, 0, 1, 2, 42, 255])) for t in targets}
            seed_script(ops.db, f"p{i}", _script_for(out, err, codes))
            specs.append((out, err, codes))
        op_id, view = call(ops.run, {"scripts": [f"p{i}" for i in range(count)],
                                     "targets": targets, "concurrency": 3})
        stored = call(ops.service.detail, op_id, full_output=True)
        assert stored == view and view["ended"] is not None
        assert len(view["logs"]) == len(targets) * count
        per_target: dict[str, list[str]] = {}
        for log in view["logs"]:
            i = int(log["script"][1:])
            out, err, codes = specs[i]
            earlier = [specs[j][2][log["target"]] for j in range(i)]
            if any(code != 0 for code in earlier):
                assert log["status"] == "skipped" and log["exit_code"] is None
            else:
                code = codes[log["target"]]
                assert log["exit_code"] == code
                assert log["status"] == ("success" if code == 0 else "failed")
                assert log["stdout"] == out
                assert log["stderr"] == err
                assert log["duration"] is not None and log["duration"] >= 0
                assert log["started"] <= log["ended"]
            per_target.setdefault(log["target"], []).append(log["status"])
        assert view["status"] == operation_outcome(per_target)

    await run_property(prop)
    assert len(RUNS) >= 100, len(RUNS)
    RUNS.clear()


# -- 18 (concurrency, measured on the hosts) ------------------------------------------------

COUNTER = BASH + """d="${1#--dir=}"
exec 9>>"$d/lock"
flock 9; n=$(( $(cat "$d/count" 2>/dev/null || echo 0) + 1 )); echo $n > "$d/count"
echo "$n" >> "$d/starts"; flock -u 9
sleep "${2#--nap=}"
flock 9; n=$(( $(cat "$d/count") - 1 )); echo $n > "$d/count"; flock -u 9
"""


async def test_property_18_never_more_than_n_in_parallel(ops: OpsHarness,
                                                         tmp_path: Path) -> None:
    """Property 18: with concurrency N, never more than N hosts run at once — counted on the
    hosts themselves (flock-protected counter in a shared directory; every sandbox host
    runs on this machine)."""
    seed_links(ops.db, ops.env, HOSTS)
    seed_script(ops.db, "count", COUNTER, ["--dir=REQUIRED", "--nap=REQUIRED"])
    example = iter(range(10**6))

    @PROP
    @given(n=st.integers(1, 5), hosts=st.integers(1, 8),
           nap=st.sampled_from(["0", "0.01", "0.03"]))
    def prop(n: int, hosts: int, nap: str) -> None:
        RUNS.append(1)
        shared = tmp_path / f"ex{next(example)}"
        shared.mkdir()
        _, view = call(ops.run, {
            "scripts": ["count"], "targets": HOSTS[:hosts], "concurrency": n,
            "flags": {"count": [f"--dir={shared}", f"--nap={nap}"]}})
        assert view["status"] == "success", view["logs"]
        starts = [int(x) for x in (shared / "starts").read_text().split()]
        assert len(starts) == hosts
        assert max(starts) <= n
        assert (shared / "count").read_text().strip() == "0"

    await run_property(prop)
    assert len(RUNS) >= 100, len(RUNS)
    RUNS.clear()


# -- 19, 20 (SSE over HTTP) -----------------------------------------------------------------

@pytest.fixture
def sse_seeded(ops_server_db: Database, ops_ssh_env: SshEnv) -> None:
    seed_links(ops_server_db, ops_ssh_env, HOSTS[:3])
    seed_script(ops_server_db, "lines", BASH + 'n="${1#--n=}"; c="${2#--code=}"\n'
                'for i in $(seq 1 "$n"); do echo "line $i"; done\necho "bye" >&2\nexit "$c"\n',
                ["--n=REQUIRED", "--code=REQUIRED"])


async def test_property_19_20_sse_streams_output_and_closes(
        ops_client: httpx.AsyncClient, sse_seeded: None) -> None:
    """Properties 19 and 20: the SSE stream carries the output and completion events of every
    task, in order, and closes after ``operation_end`` when the operation finishes."""

    @PROP
    @given(lines=st.integers(0, 30), code=st.sampled_from([0, 1, 3]),
           targets=st.lists(st.sampled_from(HOSTS[:3]), min_size=1, max_size=2, unique=True))
    def prop(lines: int, code: int, targets: list[str]) -> None:
        RUNS.append(1)
        r = call(ops_client.post, "/api/operations/run", json={
            "scripts": ["lines"], "targets": targets,
            "flags": {"lines": [f"--n={lines}", f"--code={code}"]}})
        assert r.status_code == 202, r.text
        events = call(collect_sse, ops_client, r.json()["operation_id"])  # returns = closed
        assert [e.id for e in events] == list(range(1, len(events) + 1))
        assert events[-1].event == "operation_end"
        assert events[-1].data["status"] == ("success" if code == 0 else "failed")
        for target in targets:
            mine = [e for e in events if e.data.get("target") == target]
            assert mine[0].event == "task_start" and mine[-1].event == "task_end"
            assert mine[-1].data["exit_code"] == code
            out = "".join(e.data["data"] for e in mine
                          if e.event == "output" and e.data["stream"] == "stdout")
            err = "".join(e.data["data"] for e in mine
                          if e.event == "output" and e.data["stream"] == "stderr")
            assert out == "".join(f"line {i}\n" for i in range(1, lines + 1))
            assert err == "bye\n"

    await run_property(prop)
    assert len(RUNS) >= 100, len(RUNS)
    RUNS.clear()
