"""Session recordings on the real sshd fleet (SPEC §10.4): asciicast v2 files that the
asciinema tool itself accepts, cap, retention, opt-out, and a full disk that cuts the recording
but never the session."""

from __future__ import annotations

import ctypes
import mmap
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from linkops import config
from linkops.db import Database
from linkops.jsontext import json_string
from linkops.models import Enrollment, Link
from linkops.sandbox import Sandbox
from linkops.terminal import recording
from linkops.terminal.recording import (
    INDEX_BUDGET_CHARS,
    INDEX_CHARS_PER_SECOND,
    QUEUE_LIMIT_CHARS,
    CastFile,
    Recorder,
    Recordings,
)
from linkops.timeutil import now_iso
from tests.fixtures_core import require_root, write_config
from tests.fixtures_recording import finished_recordings, read_cast, recording_env
from tests.strategies import PROP

pytestmark = pytest.mark.usefixtures("sandbox_fleet")

ASCIINEMA = str(Path(sys.executable).with_name("asciinema"))


async def _disconnect(http: httpx.AsyncClient, ws_id: str, pane: str = "A") -> None:
    r = await http.post(f"/api/terminal/workspaces/{ws_id}/panes/{pane}/disconnect")
    assert r.status_code == 200, r.text


async def test_typed_session_becomes_an_asciicast_that_asciinema_accepts(
        sandbox_fleet: Sandbox, tmp_path: Path, nursery: trio.Nursery) -> None:
    with trio.fail_after(60):
        async with recording_env(sandbox_fleet, tmp_path, nursery) as env:
            term = env.term
            ws_id = await term.workspace("grid2x1", A="sbx-01")
            await term.connect_all(ws_id)
            async with term.socket(ws_id) as sock:
                await sock.until_status("A", "connected")
                await sock.send({"pane": "A", "type": "resize", "cols": 101, "rows": 33})
                await sock.stdin("A", "echo secret-typed-$((6*7))-word\r")
                await sock.until_output("A", "secret-typed-42-word")
            await _disconnect(term.http, ws_id)
            (row,) = await finished_recordings(term.db)
        assert (row["target"], row["username"], row["pane"]) == ("sbx-01", "admin", "A")
        path = env.recordings / row["path"]
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(env.recordings.stat().st_mode) == 0o700
        assert row["bytes"] == path.stat().st_size and row["cut_reason"] is None
        header, events = read_cast(path)
        assert header["version"] == 2 and header["env"] == {"TERM": "xterm-256color"}
        assert isinstance(header["width"], int) and isinstance(header["timestamp"], int)
        assert "sbx-01" in header["title"]
        codes = {e[1] for e in events}
        assert "i" not in codes  # no input events by default: typed secrets are not kept
        assert [e[2] for e in events if e[1] == "r"] == ["101x33"]
        times = [e[0] for e in events]
        assert times == sorted(times)
        # The asciinema tool itself reads the file and prints what the screen showed.
        result = await trio.run_process([ASCIINEMA, "cat", str(path)], capture_stdout=True,
                                        capture_stderr=True, stdin=subprocess.DEVNULL)
        assert result.returncode == 0, result.stderr
        assert "secret-typed-42-word" in result.stdout.decode()


async def test_record_input_on_keeps_input_events(
        sandbox_fleet: Sandbox, tmp_path: Path, nursery: trio.Nursery) -> None:
    with trio.fail_after(60):
        async with recording_env(sandbox_fleet, tmp_path, nursery, record_input="true") as env:
            term = env.term
            ws_id = await term.workspace("grid2x1", A="sbx-01")
            await term.connect_all(ws_id)
            async with term.socket(ws_id) as sock:
                await sock.until_status("A", "connected")
                await sock.stdin("A", "echo in-$((2+3))\r")
                await sock.until_output("A", "in-5")
            await _disconnect(term.http, ws_id)
            (row,) = await finished_recordings(term.db)
        _, events = read_cast(env.recordings / row["path"])
        assert "".join(e[2] for e in events if e[1] == "i") == "echo in-$((2+3))\r"


async def test_opt_out_per_link_and_recording_off(
        sandbox_fleet: Sandbox, tmp_path: Path, nursery: trio.Nursery) -> None:
    with trio.fail_after(90):
        async with recording_env(sandbox_fleet, tmp_path / "a", nursery,
                                 metadata={"sbx-02": {"recording": False}}) as env:
            term = env.term
            ws_id = await term.workspace("grid2x1", A="sbx-01", B="sbx-02")
            await term.connect_all(ws_id)
            async with term.socket(ws_id) as sock:
                for pane in "AB":
                    await sock.stdin(pane, f"echo opt-{pane}-$((1+1))\r")
                    await sock.until_output(pane, f"opt-{pane}-2")
            await _disconnect(term.http, ws_id, "A")
            await _disconnect(term.http, ws_id, "B")
            rows = await finished_recordings(term.db)
            await trio.sleep(0.5)
            rows = await term.db.fetchall("SELECT target FROM terminal_recordings")
            assert [r["target"] for r in rows] == ["sbx-01"]  # sbx-02 opted out
        async with recording_env(sandbox_fleet, tmp_path / "b", nursery,
                                 recording="off") as env:
            term = env.term
            ws_id = await term.workspace("grid2x1", A="sbx-01")
            await term.connect_all(ws_id)
            async with term.socket(ws_id) as sock:
                await sock.stdin("A", "echo off-$((1+1))\r")
                await sock.until_output("A", "off-2")
            await _disconnect(term.http, ws_id)
            await trio.sleep(0.5)
            assert await term.db.fetchall("SELECT id FROM terminal_recordings") == []
            assert not env.recordings.exists() or not list(env.recordings.iterdir())


async def test_size_cap_cuts_with_a_marker_and_the_session_goes_on(
        sandbox_fleet: Sandbox, tmp_path: Path, nursery: trio.Nursery) -> None:
    with trio.fail_after(60):
        async with recording_env(sandbox_fleet, tmp_path, nursery, recording_max_mb=1,
                                 recordings_total_max_mb=1) as env:
            term = env.term
            ws_id = await term.workspace("grid2x1", A="sbx-01")
            await term.connect_all(ws_id)
            async with term.socket(ws_id) as sock:
                await sock.stdin("A", "head -c 3000000 /dev/zero | base64; echo flood-done\r")
                await sock.until_output("A", "\r\nflood-done")
                await sock.stdin("A", "echo after-$((3*3))\r")
                await sock.until_output("A", "after-9")
            await _disconnect(term.http, ws_id)
            (row,) = await finished_recordings(term.db)
        path = env.recordings / row["path"]
        assert row["cut_reason"] == "size cap of 1 MB reached"
        assert path.stat().st_size <= 1024 * 1024
        _, events = read_cast(path)
        assert events[-1][1] == "m" and "size cap" in events[-1][2]
        assert "after-9" not in "".join(e[2] for e in events if e[1] == "o")


async def test_retention_by_age_then_total_size_oldest_first(
        sandbox_fleet: Sandbox, tmp_path: Path, nursery: trio.Nursery) -> None:
    with trio.fail_after(90):
        async with recording_env(sandbox_fleet, tmp_path, nursery, recording_retention_days=7,
                                 recording_max_mb=1, recordings_total_max_mb=1) as env:
            term = env.term
            ws_id = await term.workspace("grid2x1", A="sbx-01")
            for i in range(3):
                await term.connect(ws_id, "A")
                async with term.socket(ws_id) as sock:
                    await sock.stdin("A", f"head -c 300000 /dev/zero | base64; echo done-{i}x\r")
                    await sock.until_output("A", f"\r\ndone-{i}x")
                await _disconnect(term.http, ws_id)
                await finished_recordings(term.db, i + 1)
            rows = await finished_recordings(term.db, 3)
            recordings = term.running.services.terminal.recordings
            # Nothing is old yet; ~420 KB each: three exceed the 1 MB total, two do not, so
            # exactly the oldest one goes.
            sizes = [r["bytes"] for r in rows]
            assert sum(sizes) > 1024 * 1024 >= sum(sizes[1:]), sizes
            deleted = await recordings.enforce_retention()
            assert deleted == [rows[0]["id"]]
            survivors = rows[1:]
            for r in rows:
                assert (env.recordings / r["path"]).exists() == (r in survivors)
            # Eight days later every recording is past the 7-day retention.
            gone = await recordings.enforce_retention(now=time.time() + 8 * 86400)
            assert gone == [r["id"] for r in survivors]
            assert await term.db.fetchall("SELECT id FROM terminal_recordings") == []
            assert await term.db.fetchall("SELECT id FROM terminal_recording_lines") == []
            assert list(env.recordings.iterdir()) == []


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs: the recordings' disk fills after a few screens of output."""
    require_root("a full disk: mount -t tmpfs -o size=64k")
    assert shutil.which("mount") is not None, "the full-disk test needs mount(8)"
    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs",
                    str(mountpoint)], check=True, timeout=30)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False, timeout=30)


async def test_full_disk_cuts_the_recording_with_its_marker_and_the_pane_keeps_working(
        sandbox_fleet: Sandbox, tmp_path: Path, nursery: trio.Nursery, tiny_disk: Path) -> None:
    with trio.fail_after(60):
        async with recording_env(sandbox_fleet, tmp_path, nursery,
                                 recordings_path=tiny_disk / "rec") as env:
            term = env.term
            ws_id = await term.workspace("grid2x1", A="sbx-01")
            await term.connect_all(ws_id)
            async with term.socket(ws_id) as sock:
                await sock.stdin("A", "head -c 400000 /dev/zero | base64; echo full-done\r")
                await sock.until_output("A", "\r\nfull-done")
                # The pane keeps working: echo still round-trips, more than once.
                for i in range(3):
                    await sock.stdin("A", f"echo still-$((10+{i}))\r")
                    await sock.until_output("A", f"still-{10 + i}")
            await _disconnect(term.http, ws_id)
            (row,) = await finished_recordings(term.db)
        assert row["cut_reason"] is not None and "write failed" in row["cut_reason"]
        path = env.recordings / row["path"]
        header, events = read_cast(path)  # still valid JSON lines after the cut
        assert header["version"] == 2
        assert events[-1][1] == "m" and "recording cut" in events[-1][2]
        result = await trio.run_process([ASCIINEMA, "cat", str(path)], capture_stdout=True,
                                        capture_stderr=True, stdin=subprocess.DEVNULL)
        assert result.returncode == 0, result.stderr


async def test_unusable_recordings_path_leaves_terminals_working(
        sandbox_fleet: Sandbox, tmp_path: Path, nursery: trio.Nursery) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with trio.fail_after(60):
        async with recording_env(sandbox_fleet, tmp_path, nursery,
                                 recordings_path=blocker / "rec") as env:
            term = env.term
            ws_id = await term.workspace("grid2x1", A="sbx-01")
            await term.connect_all(ws_id)
            async with term.socket(ws_id) as sock:
                await sock.stdin("A", "echo works-$((2*4))\r")
                await sock.until_output("A", "works-8")
            await _disconnect(term.http, ws_id)
            await trio.sleep(0.5)
            assert await term.db.fetchall("SELECT id FROM terminal_recordings") == []
            r = await term.http.get("/api/health")
            assert r.status_code == 200


async def test_recordings_left_open_by_a_dead_process_are_ended_at_start(
        sandbox_fleet: Sandbox, tmp_path: Path, nursery: trio.Nursery) -> None:
    def leftover(db: Database) -> None:
        (tmp_path / "recordings").mkdir(mode=0o700)
        (tmp_path / "recordings" / "old.cast").write_text('{"version": 2}\n')
        db.write_sync(lambda c: c.execute(
            "INSERT INTO terminal_recordings (workspace_id, pane, target, username, path,"
            " started_at, width, height) VALUES ('w', 'A', 'sbx-01', 'admin', 'old.cast',"
            " ?, 80, 24)", (now_iso(),)))  # recent: retention (30 days) keeps it

    with trio.fail_after(30):
        async with recording_env(sandbox_fleet, tmp_path, nursery,
                                 before_start=leftover) as env:
            (row,) = await finished_recordings(env.term.db)
    assert row["cut_reason"] == "interrupted: the service stopped"
    assert row["bytes"] == len('{"version": 2}\n')


@asynccontextmanager
async def _lone_recorder(tmp_path: Path) -> AsyncIterator[tuple[Database, Recordings,
                                                                 Recorder]]:
    """A real :class:`Recordings` (no terminal service) and one recorder of it; the caller
    feeds the recorder as a pane would, then closes it."""
    settings = config.load(write_config(tmp_path), check=False)
    db = Database(settings.database.path)
    try:
        async with trio.open_nursery() as nursery:
            recordings = Recordings(db, settings)
            await nursery.start(recordings.run)
            link = Link(id="sbx-01", type="vps", host="127.0.0.1", port=22, user="root",
                        enrollment=Enrollment(clientId="LINKOPS-x"))
            recorder = recordings.start(link=link, workspace_id="w", pane="A",
                                        username="admin", session_id=1, cols=80, rows=24)
            assert recorder is not None
            yield db, recordings, recorder
            await recorder.finished.wait()
            nursery.cancel_scope.cancel()
    finally:
        db.close()


async def test_a_burst_faster_than_the_writer_cuts_with_a_marker(tmp_path: Path) -> None:
    """More output waiting than the recorder may queue: the recording is cut ("recorder fell
    behind") with its marker; the calls made by the pane never wait or fail."""
    with trio.fail_after(30):
        async with _lone_recorder(tmp_path) as (db, recordings, recorder):
            chunk = "x" * 65536 + "\r\n"
            t0 = time.perf_counter()
            for _ in range(QUEUE_LIMIT_CHARS // len(chunk) + 10):  # no checkpoint: a burst
                recorder.output(chunk)
            assert time.perf_counter() - t0 < 5  # the pane's calls never wait on the disk
            recorder.close()
        (row,) = await db.fetchall("SELECT * FROM terminal_recordings")
    assert row["cut_reason"] == "recorder fell behind the terminal"
    _, events = read_cast(recordings.directory / row["path"])
    assert events[-1][1] == "m" and "fell behind" in events[-1][2]
    assert sum(len(e[2]) for e in events if e[1] == "o") <= QUEUE_LIMIT_CHARS


async def test_a_flood_at_twice_the_terminals_speed_is_recorded_whole(tmp_path: Path) -> None:
    """40 MB/s of output for half a second (the bench's terminal peaks near 20 MB/s): the
    writer does not sit out its 250 ms batch while a flood piles up (BATCH_CHARS), so the
    recording is not cut and has every character, in order, at non-decreasing times."""
    rate, total = 40e6, 20_000_000
    tick = 0.01
    per_tick = int(rate * tick)
    line = "0123456789abcdef" * 4 + "\r\n"
    with trio.fail_after(30):
        async with _lone_recorder(tmp_path) as (db, recordings, recorder):
            recorder.output("$ cat big-file\r\n")  # a session under way, its file open
            await trio.sleep(0.5)
            sent = len("$ cat big-file\r\n")
            start = trio.current_time()
            n = 0
            while sent < total:
                n += 1
                chunk = (line * (per_tick // len(line) + 1))[:per_tick]
                for i in range(0, len(chunk), 32768):  # the SSH layer's reads
                    recorder.output(chunk[i:i + 32768])
                sent += len(chunk)
                await trio.sleep_until(start + n * tick)
            recorder.close()
        (row,) = await db.fetchall("SELECT * FROM terminal_recordings")
    assert row["cut_reason"] is None
    _, events = read_cast(recordings.directory / row["path"])
    output = [e for e in events if e[1] == "o"]
    assert sum(len(e[2]) for e in output) == sent
    assert "".join(e[2] for e in output[:3]).startswith("$ cat big-file\r\n" + line * 3)
    times = [e[0] for e in output]
    assert times == sorted(times)
    # Merged (COALESCE_SECONDS): far fewer events than the 32 KiB chunks fed.
    assert len(output) < sent // 32768 // 2


def test_output_events_close_in_time_merge_into_valid_asciicast(tmp_path: Path) -> None:
    """Consecutive output events less than 5 ms after the first of their run become one
    event at its time; resize and input events are never merged and split runs. A lone
    surrogate in typed input (valid in the socket's JSON) is written as a JSON escape, so the
    file is valid UTF-8 — the asciinema tool itself reads the file."""
    path = tmp_path / "merged.cast"
    cast = CastFile(path, {"version": 2, "width": 80, "height": 24}, 1 << 20)
    cast.write([(0.0, "o", "ab"), (0.001, "o", "c"), (0.0049, "o", "d\x1b[1m"),
                (0.005, "o", "e"), (0.0051, "r", "90x30"), (0.0052, "o", "f\r\n"),
                (0.0053, "i", "\ud800x"), (0.0054, "o", "g\u00e9\r\n")])
    cast.finish()
    _, events = read_cast(path)
    assert events == [[0.0, "o", "abcd\x1b[1m"], [0.005, "o", "e"], [0.0051, "r", "90x30"],
                      [0.0052, "o", "f\r\n"], [0.0053, "i", "\ud800x"],
                      [0.0054, "o", "g\u00e9\r\n"]]
    result = subprocess.run([ASCIINEMA, "cat", str(path)], capture_output=True, timeout=30,
                            stdin=subprocess.DEVNULL, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().replace("\x1b[1m", "") == "abcdef\r\ng\u00e9\r\n"



def _index_of(cast: CastFile, events: list[tuple[float, str, str]]) -> list[str]:
    """The index text of ``events`` written one by one (one event per batch)."""
    found: list[str] = []
    for event in events:
        found += [text for _, text in cast.write([event]).lines]
    found += [text for _, text in cast.finish()]
    return found


def _flood(lines: list[str], start: float, chunk: int,
           rate: float = 20e6) -> tuple[list[tuple[float, str, str]], float]:
    """``lines`` as output events of ``chunk`` characters at ``rate``; and the end time."""
    text = "".join(lines)
    events, t = [], start
    for i in range(0, len(text), chunk):
        events.append((t, "o", text[i:i + chunk]))
        t += chunk / rate
    return events, t


def test_a_flood_is_indexed_in_whole_lines_and_the_command_typed_after_it(
        tmp_path: Path) -> None:
    """A flood of searchable text past the index's allowance: the file has all of it, the
    index only whole lines of it (never a piece of a line cut where the allowance ran out or
    where indexing resumed), about as much as the allowance gives. The prompt printed at the
    flood's end and the command typed a second later are one line, indexed whole."""
    cast = CastFile(tmp_path / "flood.cast", {"version": 2, "width": 80, "height": 24}, 1 << 30)
    lines = [f"line {i:07d} of the journal: unit nginx.service reloaded\r\n"
             for i in range(40_000)]
    events, end = _flood([*lines, "root@h:~# "], 1.0, 32_749)  # reads never line up
    typed = [(end + 1.0, "o", "sys"), (end + 1.1, "o", "temctl restart nginx\r\n")]
    texts = _index_of(cast, events + typed)
    _, recorded = read_cast(tmp_path / "flood.cast")
    assert "".join(str(e[2]) for e in recorded if e[1] == "o") == "".join(
        e[2] for e in events + typed)
    assert texts[-1] == "root@h:~# systemctl restart nginx"
    whole = {line.strip() for line in lines}
    assert all(text in whole for text in texts[:-1]), [x for x in texts if x not in whole][:3]
    kept = sum(len(x) + 2 for x in texts[:-1])
    assert kept <= INDEX_BUDGET_CHARS + INDEX_CHARS_PER_SECOND * (end - 1.0)
    assert kept >= INDEX_BUDGET_CHARS // 2  # the first part of the flood is searchable
    assert cast.unindexed >= len("".join(lines)) - kept - len(lines[0]) * 4


@PROP
@given(st.lists(st.integers(1, 400), min_size=1, max_size=300),
       st.lists(st.sampled_from([0.0, 0.0005, 0.002, 0.05, 0.5]), min_size=1, max_size=40),
       st.integers(200, 70_000))
def test_the_index_never_holds_part_of_a_line(lengths: list[int], gaps: list[float],
                                              chunk: int) -> None:
    """Lines of any length, read in chunks of any size at any pace, past or within the
    index's allowance: every line the index holds is a whole line of the output (SPEC §10.4
    search; not one of §9's numbered properties)."""
    with tempfile.TemporaryDirectory() as tmp:
        cast = CastFile(Path(tmp) / "x.cast", {"version": 2}, 1 << 30)
        lines = [f"{i} " + "word " * (n // 5) + f"end{i}\r\n" for i, n in enumerate(lengths)]
        one = "".join(lines)
        text = one * (3 * INDEX_BUDGET_CHARS // len(one) + 1)  # past the allowance
        events, t = [], 0.0
        for k, i in enumerate(range(0, len(text), chunk)):
            t += gaps[k % len(gaps)]
            events.append((t, "o", text[i:i + chunk]))
        whole = {line.strip() for line in lines}
        assert set(_index_of(cast, events)) <= whole


def test_pre_encoded_output_is_written_as_the_same_asciicast(tmp_path: Path) -> None:
    """Output events that carry their JSON literal (a recorded pane encodes once, for the
    socket and the file) give byte for byte the file that plain events give, merged alike."""
    events = [(0.0, "o", "ab"), (0.001, "o", 'c"\\'), (0.0049, "o", "d\x1b[1m\u00e9"),
              (0.005, "o", "e\r\n"), (0.0051, "r", "90x30"), (0.0052, "o", "f" * 70_000),
              (0.0053, "o", "g🙂\r\n"), (0.3, "o", "h")]
    plain = CastFile(tmp_path / "plain.cast", {"version": 2}, 1 << 20)
    plain.write(events)
    plain.finish()
    encoded = CastFile(tmp_path / "encoded.cast", {"version": 2}, 1 << 20)
    encoded.write([(t, code, text, json_string(text)) if code == "o" else (t, code, text)
                   for t, code, text in events])
    encoded.finish()
    data = (tmp_path / "encoded.cast").read_bytes()
    assert data == (tmp_path / "plain.cast").read_bytes()
    _, recorded = read_cast(tmp_path / "encoded.cast")
    assert recorded[0] == [0.0, "o", 'abc"\\d\x1b[1m\u00e9']
    assert "".join(str(e[2]) for e in recorded if e[1] == "o") == "".join(
        text for _, code, text in events if code == "o")


def test_a_line_ended_inside_a_merged_event_is_indexed_at_that_events_time(
        tmp_path: Path) -> None:
    """A line completed by a later read of the same merged line (within 5 ms) is indexed at
    the merged event's time: a search hit's offset is always the time of an event in the
    file (the player seeking there draws the whole line)."""
    cast = CastFile(tmp_path / "x.cast", {"version": 2}, 1 << 20)
    written = cast.write([(1.0, "o", "$ echo zeb"), (1.003, "o", "ra\r\n"),
                          (1.5, "o", "zebra\r\n")])
    cast.finish()
    assert written.lines == [(1.0, "$ echo zebra"), (1.5, "zebra")]
    _, events = read_cast(tmp_path / "x.cast")
    assert [e[0] for e in events] == [1.0, 1.5]


def _resident_fraction(path: Path, start: int, end: int) -> float:
    """Share of the file's pages in [start, end) that are in the page cache (mincore(2))."""
    page = mmap.PAGESIZE
    start, end = -(-start // page) * page, end // page * page
    assert end > start, (start, end)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    with path.open("r+b") as f:
        # Mapping faults no page in; mincore then reads the cache's state of each one.
        m = mmap.mmap(f.fileno(), end - start, offset=start)
        buf = (ctypes.c_char * (end - start)).from_buffer(m)
        vec = (ctypes.c_ubyte * ((end - start) // page))()
        try:
            assert libc.mincore(ctypes.addressof(buf), end - start, vec) == 0, ctypes.get_errno()
        finally:
            del buf
            m.close()
    return sum(v & 1 for v in vec) / len(vec)


@pytest.mark.parametrize("release", [True, False])
def test_written_pages_leave_the_page_cache(tmp_path: Path, release: bool,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A recording's pages are given back to the kernel once on disk: a flood of GBs neither
    pushes the database out of the page cache nor costs a fresh page per 4 K written (the
    bench's writer CPU). ``release=False`` (the release turned off) is the control: the same
    writes stay cached, so the measure below can tell the two apart. The file is intact."""
    fs = subprocess.run(["stat", "-f", "-c", "%T", str(tmp_path)], capture_output=True,
                        text=True, check=True).stdout.strip()
    assert fs not in {"tmpfs", "ramfs"}, f"{tmp_path} is on {fs}: it keeps every page"
    if not release:
        monkeypatch.setattr(recording, "CACHE_RELEASE_BYTES", 1 << 62)
    path = tmp_path / "flood.cast"
    cast = CastFile(path, {"version": 2}, 1 << 30)
    line = "QUJD" * 19 + "\r\n"  # like base64 -w 76
    text = line * (1024 * 1024 // len(line))
    t = 0.0
    for _ in range(40):
        cast.write([(t, "o", text)])
        t += 0.05
    os.fsync(cast._fd)  # every page written so far is clean: a release can drop them all
    clean_end, released = cast.size, cast._released
    for _ in range(5):  # past CACHE_RELEASE_BYTES: one release over the clean range
        cast.write([(t, "o", text)])
        t += 0.05
    cast.finish()
    window = (max(0, released - recording.CACHE_RELEASE_LAG), clean_end)
    resident = _resident_fraction(path, *window)
    if release:
        assert resident < 0.05, f"{resident:.0%} of {window} still cached"
    else:
        assert resident > 0.95, f"control: only {resident:.0%} of {window} cached"
    _, events = read_cast(path)
    assert "".join(str(e[2]) for e in events) == text * 45
