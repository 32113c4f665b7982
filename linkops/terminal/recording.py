"""Session recordings: every pane session written as an asciicast v2 file (SPEC §10.4).

::

    Recordings (one per TerminalService; its run() lives in the service's nursery)
      ├─ start(session, link) → Recorder | None     (None: [terminal] recording = off, or the
      │                                              link says metadata.recording: false)
      ├─ Recorder.run()        the writer task of one recording (in Recordings' nursery)
      └─ retention loop        by age (recording_retention_days), then by total size
                               (recordings_total_max_mb), oldest first

The pane's output path makes one call per chunk, :meth:`Recorder.output`, which never waits
and never does I/O: it appends ``(time, code, text)`` to a bounded in-memory list and wakes
the writer task. The writer gathers events for :data:`BATCH_SECONDS`, then in a worker thread
(``trio.to_thread``) serializes them, appends them to the file and turns the output into plain
text lines for the search index; the lines go to SQLite in one batch through the database's
writer. So the terminal never waits for the disk.

*Indexing* costs CPU (Python text extraction, FTS5 tokenizing) that the terminal needs, so
each batch indexes at most :data:`INDEX_BUDGET_CHARS` of output: typed commands and their
answers are always indexed, a flood (``cat`` of a big file) is in the file in full but in the
index only in part.

*Falling behind*: when more than :data:`QUEUE_LIMIT_CHARS` of events wait (the disk or the
writer is slower than the shell), or a write fails (disk full, I/O error), the recording is
*cut*: a marker event ``[t, "m", "linkops: recording cut (…)"]`` is written where it stopped
and nothing more is recorded for this session; the session itself goes on. A full disk may
leave no room even for the marker: the file is then truncated back to earlier whole lines
until the marker fits (the last events are lost, the file stays valid asciicast). The size cap
(``recording_max_mb``) cuts the same way with its own marker.

*Files*: ``recordings_path`` is created 0700, each file 0600 (it holds whatever the screen
showed). Names are random; the database row says whose session it was.

*Cancellation*: :meth:`Recorder.close` lets the writer flush what is queued, close the file
and record the end (shielded, with :data:`FINISH_SECONDS`).
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import secrets
import sqlite3
import time
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import attrs
import trio

from linkops.config import Settings, recordings_dir
from linkops.db import Database
from linkops.models import Link
from linkops.terminal.recording_text import LineAssembler
from linkops.timeutil import now_iso, to_iso, utcnow

log = logging.getLogger("linkops.terminal")

TERM: Final = "xterm-256color"
# Events waiting for the writer beyond this many characters: the recorder is behind → cut.
QUEUE_LIMIT_CHARS: Final = 8 * 1024 * 1024
BATCH_SECONDS: Final = 0.25
# Index lines go to SQLite at most this often (or when this many wait, or at the end).
INDEX_SECONDS: Final = 1.0
INDEX_LINES: Final = 2000
# Output characters per batch that go to the search index; the rest of a flood is recorded
# but not indexed (at most ~1 MB/s of text is indexed per pane).
INDEX_BUDGET_CHARS: Final = 256 * 1024
FINISH_SECONDS: Final = 5.0
RETENTION_INTERVAL: Final = 600.0
# How many recent line starts are remembered for truncating back on a full disk.
_LINE_HISTORY: Final = 256
MB: Final = 1024 * 1024

Event = tuple[float, str, str]


@attrs.define
class _Written:
    lines: list[tuple[float, str]]
    cut: str | None


class CastFile:
    """The open ``.cast`` file of one recording; used only from worker threads, one at a time."""

    def __init__(self, path: Path, header: dict[str, Any], max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.size = 0
        self.last_time = 0.0
        self.cut: str | None = None
        self.unindexed = 0  # output characters left out of the search index (floods)
        self._starts: deque[int] = deque(maxlen=_LINE_HISTORY)
        self._text = LineAssembler()
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            data = (json.dumps(header, separators=(", ", ": ")) + "\n").encode()
            self._write_all(data)
        except OSError as exc:
            # Not even the header fits: the recording is a header-less stub; report it cut.
            self.cut = f"write failed: {os.strerror(exc.errno or errno.EIO)}"
            os.ftruncate(self._fd, 0)
            self.size = 0

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
            self.size += n

    def write(self, events: Iterable[Event]) -> _Written:
        """Append ``events`` (until a cut); return the finished text lines and any cut."""
        lines: list[tuple[float, str]] = []
        if self.cut is not None:
            return _Written(lines, None)
        chunk: list[bytes] = []
        chunk_events: list[Event] = []
        size = self.size
        cut: str | None = None
        for event in events:
            line = (json.dumps(list(event), ensure_ascii=False) + "\n").encode(
                "utf-8", "surrogatepass")
            if size + len(line) > self.max_bytes:
                cut = f"size cap of {self.max_bytes // MB} MB reached"
                break
            chunk.append(line)
            chunk_events.append(event)
            size += len(line)
        good = self.size
        try:
            for line in chunk:
                self._starts.append(self.size)
                self._write_all(line)
        except OSError as exc:
            os.ftruncate(self._fd, good)
            self.size = good
            os.lseek(self._fd, good, os.SEEK_SET)
            cut = f"write failed: {os.strerror(exc.errno or errno.EIO)}"
            chunk_events = []
        budget = INDEX_BUDGET_CHARS
        skipping = False
        for t, code, data in chunk_events:
            self.last_time = t
            if code != "o":
                continue
            if budget > 0:
                budget -= len(data)
                lines.extend(self._text.feed(t, data))
            else:
                # A flood: in the file in full, in the search index only its first part per
                # batch (indexing costs CPU the terminal needs; see the module docstring).
                if not skipping:
                    lines.extend(self._text.flush())
                    self._text.drop()
                    skipping = True
                self.unindexed += len(data)
        if cut is not None:
            lines.extend(self._text.flush())
            self._cut(cut)
        return _Written(lines, cut)

    def cut_now(self, t: float, reason: str) -> list[tuple[float, str]]:
        """Cut from outside (the recorder fell behind)."""
        if self.cut is not None:
            return []
        self.last_time = max(self.last_time, t)
        lines = self._text.flush()
        self._cut(reason)
        return lines

    def _cut(self, reason: str) -> None:
        self.cut = reason
        marker = (json.dumps([self.last_time, "m", f"linkops: recording cut ({reason})"])
                  + "\n").encode()
        while True:
            position = self.size
            try:
                self._write_all(marker)
                return
            except OSError:
                # Full disk: give back the last whole lines until the marker fits.
                os.ftruncate(self._fd, position)
                self.size = position
                while self._starts and self._starts[-1] >= position:
                    self._starts.pop()
                if not self._starts:
                    return
                back = self._starts.pop()
                os.ftruncate(self._fd, back)
                os.lseek(self._fd, back, os.SEEK_SET)
                self.size = back

    def finish(self) -> list[tuple[float, str]]:
        lines = [] if self.cut is not None else self._text.flush()
        os.close(self._fd)
        return lines


class Recorder:
    """One pane session's recording (see the module docstring)."""

    def __init__(self, owner: Recordings, *, workspace_id: str, pane: str, target: str,
                 username: str, session_id: int, cols: int, rows: int) -> None:
        self._owner = owner
        self.workspace_id = workspace_id
        self.pane = pane
        self.target = target
        self.username = username
        self.session_id = session_id
        self.cols, self.rows = cols, rows
        self.record_input = owner.settings.terminal.record_input
        self._start = trio.current_time()
        self._started_wall = utcnow()
        self._pending: list[Event] = []
        self._pending_chars = 0
        self._wakeup = trio.Event()
        self._closed = False
        self._behind: float | None = None
        self.recording_id: int | None = None
        self.cut: str | None = None
        self.finished = trio.Event()
        self._lines: list[tuple[float, str]] = []
        self._indexed_at = trio.current_time()

    # -- the pane's calls (Trio thread, never wait) ----------------------------------------

    def output(self, text: str) -> None:
        self._event("o", text)

    def resize(self, cols: int, rows: int) -> None:
        self._event("r", f"{cols}x{rows}")

    def input(self, text: str) -> None:
        if self.record_input:
            self._event("i", text)

    def close(self) -> None:
        self._closed = True
        self._wakeup.set()

    def _event(self, code: str, data: str) -> None:
        if self._closed or self._behind is not None or self.cut is not None:
            return
        t = round(trio.current_time() - self._start, 6)
        if self._pending_chars + len(data) > QUEUE_LIMIT_CHARS:
            self._behind = t
            self._wakeup.set()
            return
        self._pending.append((t, code, data))
        self._pending_chars += len(data)
        self._wakeup.set()

    def _take(self) -> list[Event]:
        batch, self._pending, self._pending_chars = self._pending, [], 0
        self._wakeup = trio.Event()
        return batch

    # -- the writer task ----------------------------------------------------------------------

    async def run(self) -> None:
        owner = self._owner
        cast: CastFile | None = None
        try:
            name = f"{self._started_wall:%Y%m%dT%H%M%S}-{secrets.token_hex(6)}.cast"
            header = {"version": 2, "width": self.cols, "height": self.rows,
                      "timestamp": int(self._started_wall.timestamp()),
                      "title": f"{self.username}@{self.target} (pane {self.pane})",
                      "env": {"TERM": TERM}}
            path = owner.directory / name
            max_bytes = int(owner.settings.terminal.recording_max_mb * MB)
            cast = await trio.to_thread.run_sync(owner.open_file, path, header, max_bytes)
            self.recording_id = await owner.insert_row(self, name)
            while True:
                if not self._pending and not self._closed and self._behind is None:
                    await self._wakeup.wait()
                if not self._closed:
                    await trio.sleep(BATCH_SECONDS)  # gather a batch
                await self._write_batch(cast)
                if self.cut is not None or (self._closed and not self._pending):
                    break
            if self.cut is not None:
                log.warning("terminal.recording_cut", extra={"context": {
                    "recording": self.recording_id, "target": self.target,
                    "reason": self.cut}})
            # Cut or not, the session may go on: wait for its end to record it.
            while not self._closed:
                self._take()
                await self._wakeup.wait()
        except OSError as exc:
            self.cut = f"cannot write recording: {exc.strerror or exc}"
            log.warning("terminal.recording_failed", extra={"context": {
                "target": self.target, "error": repr(exc)}})
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(FINISH_SECONDS):
                await self._finish(cast)
            self.finished.set()

    async def _write_batch(self, cast: CastFile) -> None:
        batch = self._take()
        written = await trio.to_thread.run_sync(cast.write, batch)
        lines = written.lines
        if written.cut is not None:
            self.cut = written.cut
        elif self._behind is not None:
            self.cut = "recorder fell behind the terminal"
            lines += await trio.to_thread.run_sync(cast.cut_now, self._behind, self.cut)
        await self._index(lines)

    async def _index(self, lines: list[tuple[float, str]], *, final: bool = False) -> None:
        self._lines.extend(lines)
        now = trio.current_time()
        due = final or len(self._lines) >= INDEX_LINES or now - self._indexed_at >= INDEX_SECONDS
        if due and self._lines and self.recording_id is not None:
            lines, self._lines, self._indexed_at = self._lines, [], now
            try:
                await self._owner.index_lines(self.recording_id, lines)
            except sqlite3.Error as exc:  # the index is best effort; the file is the record
                log.warning("terminal.recording_index_failed", extra={"context": {
                    "recording": self.recording_id, "error": repr(exc)}})

    async def _finish(self, cast: CastFile | None) -> None:
        if cast is None:
            return
        try:
            if self.cut is None and self._pending:
                await self._write_batch(cast)
            await self._index(await trio.to_thread.run_sync(cast.finish), final=True)
        except OSError as exc:
            log.warning("terminal.recording_failed", extra={"context": {
                "target": self.target, "error": repr(exc)}})
        if self.recording_id is not None:
            await self._owner.finish_row(self.recording_id, cast.size,
                                         trio.current_time() - self._start, self.cut)


class Recordings:
    """Starts recorders, stores their rows and index lines, applies retention."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.directory = recordings_dir(settings)
        self._nursery: trio.Nursery | None = None
        self.active: set[Recorder] = set()

    @property
    def enabled(self) -> bool:
        return self.settings.terminal.recording

    def wanted(self, link: Link) -> bool:
        """``[terminal] recording`` is on and the link did not opt out."""
        return self.enabled and link.metadata.get("recording", True) is not False

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        try:
            if self.enabled:
                await trio.to_thread.run_sync(self._make_directory)
            await self._close_interrupted()
        except (OSError, sqlite3.Error) as exc:
            # Recording trouble never stops the terminals: each recorder then fails alone.
            log.warning("terminal.recordings_unavailable", extra={"context": {
                "path": str(self.directory), "error": repr(exc)}})
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                while self.enabled:
                    try:
                        await self.enforce_retention()
                    except (OSError, sqlite3.Error) as exc:
                        log.warning("terminal.recording_retention_failed",
                                    extra={"context": {"error": repr(exc)}})
                    await trio.sleep(RETENTION_INTERVAL)
                await trio.sleep_forever()
            finally:
                self._nursery = None
                for recorder in self.active:
                    recorder.close()

    def _make_directory(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.directory.chmod(0o700)

    def start(self, *, link: Link, workspace_id: str, pane: str, username: str,
              session_id: int, cols: int, rows: int) -> Recorder | None:
        """A recorder for a new pane session, or ``None`` when it is not to be recorded."""
        if not self.wanted(link) or self._nursery is None:
            return None
        recorder = Recorder(self, workspace_id=workspace_id, pane=pane, target=link.id,
                            username=username, session_id=session_id, cols=cols, rows=rows)
        self.active.add(recorder)

        async def run() -> None:
            try:
                await recorder.run()
            except Exception as exc:  # a database error: lose the recording, not the service
                log.warning("terminal.recording_failed", extra={"context": {
                    "target": recorder.target, "error": repr(exc)}})
            finally:
                self.active.discard(recorder)

        self._nursery.start_soon(run)
        return recorder

    # -- storage (called by recorders) --------------------------------------------------------

    def open_file(self, path: Path, header: dict[str, Any], max_bytes: int) -> CastFile:
        self._make_directory()
        return CastFile(path, header, max_bytes)

    async def insert_row(self, recorder: Recorder, name: str) -> int:
        def insert(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "INSERT INTO terminal_recordings (session_id, workspace_id, pane, target,"
                " username, path, started_at, width, height) VALUES (?,?,?,?,?,?,?,?,?)",
                (recorder.session_id, recorder.workspace_id, recorder.pane, recorder.target,
                 recorder.username, name, to_iso(recorder._started_wall), recorder.cols,
                 recorder.rows))
            return int(cursor.lastrowid or 0)

        return await self.db.write(insert)

    async def index_lines(self, recording_id: int, lines: list[tuple[float, str]]) -> None:
        # Rounded *up* to the millisecond: a player asked for that moment has drawn the event
        # that completed the line (rounding down could land just before it).
        rows = [(recording_id, math.ceil(offset * 1000) / 1000, line) for offset, line in lines]
        await self.db.write(lambda c: c.executemany(
            "INSERT INTO terminal_recording_lines (recording_id, offset_seconds, line)"
            " VALUES (?,?,?)", rows))

    async def finish_row(self, recording_id: int, size: int, duration: float,
                         cut: str | None) -> None:
        await self.db.execute(
            "UPDATE terminal_recordings SET ended_at = ?, bytes = ?, duration = ?,"
            " cut_reason = ? WHERE id = ?",
            (now_iso(), size, round(duration, 3), cut, recording_id))

    async def _close_interrupted(self) -> None:
        """Recordings left open by a process that died: end them with their file's size, so
        retention sees them and the list does not show them as live forever."""
        rows = await self.db.fetchall(
            "SELECT id, path FROM terminal_recordings WHERE ended_at IS NULL")
        if not rows:
            return

        def sizes() -> list[int]:
            found = []
            for row in rows:
                try:
                    found.append(self.file_path(str(row["path"])).stat().st_size)
                except FileNotFoundError:
                    found.append(0)
            return found

        measured = await trio.to_thread.run_sync(sizes)
        now = now_iso()
        await self.db.write(lambda c: c.executemany(
            "UPDATE terminal_recordings SET ended_at = ?, bytes = ?,"
            " cut_reason = 'interrupted: the service stopped' WHERE id = ? AND ended_at IS NULL",
            [(now, size, int(row["id"])) for row, size in zip(rows, measured, strict=True)]))

    # -- retention ----------------------------------------------------------------------------

    async def enforce_retention(self, now: float | None = None) -> list[int]:
        """Delete recordings older than the retention, then the oldest while all of them
        together exceed ``recordings_total_max_mb``. Returns the deleted ids."""
        t = self.settings.terminal
        moment = time.time() if now is None else now
        cutoff = to_iso(datetime.fromtimestamp(moment - t.recording_retention_days * 86400,
                                               tz=UTC))
        total_cap = int(t.recordings_total_max_mb * MB)
        rows = await self.db.fetchall(
            "SELECT id, path, started_at, bytes FROM terminal_recordings"
            " WHERE ended_at IS NOT NULL ORDER BY started_at, id")
        doomed: list[sqlite3.Row] = []
        total = sum(int(r["bytes"]) for r in rows)
        for row in rows:
            if row["started_at"] < cutoff or total > total_cap:
                doomed.append(row)
                total -= int(row["bytes"])
        if not doomed:
            return []
        ids = [int(r["id"]) for r in doomed]

        def delete(conn: sqlite3.Connection) -> None:
            conn.executemany("DELETE FROM terminal_recording_lines WHERE recording_id = ?",
                             [(i,) for i in ids])
            conn.executemany("DELETE FROM terminal_recordings WHERE id = ?",
                             [(i,) for i in ids])

        await self.db.write(delete)
        await trio.to_thread.run_sync(self._unlink, [str(r["path"]) for r in doomed])
        log.info("terminal.recordings_deleted", extra={"context": {"ids": ids}})
        return ids

    def _unlink(self, names: list[str]) -> None:
        for name in names:
            try:
                (self.directory / Path(name).name).unlink()
            except FileNotFoundError:
                pass

    def file_path(self, name: str) -> Path:
        return self.directory / Path(name).name
