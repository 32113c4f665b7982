"""Session recordings: every pane session written as an asciicast v2 file (SPEC §10.4).

::

    Recordings (one per TerminalService; its run() lives in the service's nursery)
      ├─ start(session, link) → Recorder | None     (None: [terminal] recording = off, or the
      │                                              link says metadata.recording: false)
      ├─ Recorder.run()        the writer task of one recording (in Recordings' nursery)
      └─ retention loop        by age (recording_retention_days), then by total size
                               (recordings_total_max_mb), oldest first

The pane's output path makes one call per chunk, :meth:`Recorder.output`, which never waits
and never does I/O: it appends ``(time, code, text, literal)`` to a bounded in-memory list and
wakes the writer task. The literal is the text as a JSON string, made once by the pane for its
socket's frames and for this file alike (session.py): encoding is what a flood's recording
cost most, and it holds the GIL the terminal needs. The writer gathers events for
:data:`BATCH_SECONDS` — or less, as soon as :data:`BATCH_CHARS` wait (a flood is written as
fast as it comes, not every 250 ms) — then in a worker thread (``trio.to_thread``) merges
consecutive output events less than :data:`COALESCE_SECONDS` apart into one line (joining
their literals), appends the batch to the file with one writev, and turns the output into
plain text lines for the search index; the lines go to SQLite in one batch through the
database's writer. So the terminal never waits for the disk.

*Indexing* costs CPU (Python text extraction, FTS5 tokenizing) that the terminal needs, so
the output indexed is limited by time: :data:`INDEX_BUDGET_CHARS` at once, refilled at
:data:`INDEX_CHARS_PER_SECOND` of recording time. Typed commands and their answers are always
indexed, a flood (``cat`` of a big file) is in the file in full but in the index only in part,
and that part in whole lines (:meth:`CastFile._index`).

*Falling behind*: when more than :data:`QUEUE_LIMIT_CHARS` of events wait (the disk or the
writer is slower than the shell), or a write fails (disk full, I/O error), the recording is
*cut*: a marker event ``[t, "m", "linkops: recording cut (…)"]`` is written where it stopped
and nothing more is recorded for this session; the session itself goes on. A full disk may
leave no room even for the marker: the file is then truncated back to earlier whole lines
until the marker fits (the last events are lost, the file stays valid asciicast). The size cap
(``recording_max_mb``) cuts the same way with its own marker.

*Files*: ``recordings_path`` is created 0700, each file 0600 (it holds whatever the screen
showed). Names are random; the database row says whose session it was. Written pages are
given back to the kernel as the file grows (:meth:`CastFile._release_cache`): a recording is
read rarely, and a flood's gigabytes must not push the database out of the page cache.

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
import orjson
import trio

from linkops.config import Settings, recordings_dir
from linkops.db import Database
from linkops.jsontext import json_string
from linkops.models import Link
from linkops.terminal.recording_text import LineAssembler
from linkops.timeutil import now_iso, to_iso, utcnow

log = logging.getLogger("linkops.terminal")

TERM: Final = "xterm-256color"
# Events waiting for the writer beyond this many characters: the recorder is behind → cut.
QUEUE_LIMIT_CHARS: Final = 8 * 1024 * 1024
# The writer gathers events this long, or until this many characters wait (a flood: write
# now; with 8 M allowed to wait, the writer may then stall ~0.4 s at 20 MB/s before a cut).
BATCH_SECONDS: Final = 0.25
BATCH_CHARS: Final = 1024 * 1024
# Consecutive output events less than this apart (from the first) become one event of the
# first one's time, up to COALESCE_CHARS: the live socket sends frames at the same pace
# (socket.py COALESCE_SECONDS), and one line per SSH read costs calls for nothing a player
# could show.
COALESCE_SECONDS: Final = 0.005
COALESCE_CHARS: Final = 256 * 1024
# Index lines go to SQLite at most this often (or when this many wait, or at the end).
INDEX_SECONDS: Final = 1.0
INDEX_LINES: Final = 2000
# Index lines waiting for SQLite beyond this many characters (~10 s of a flood's share, see
# INDEX_CHARS_PER_SECOND) are dropped: the index is best effort, the file is the record.
INDEX_QUEUE_CHARS: Final = 4 * 1024 * 1024
# Output characters that go to the search index: up to INDEX_BUDGET_CHARS at once (a few
# thousand lines: every interactive exchange), refilled at INDEX_CHARS_PER_SECOND of
# recording time; the rest of a flood is recorded but not indexed. Measured here: text
# extraction 15-55 ms of CPU per MB, FTS5 inserts 30-45 us of CPU per line (~0.5 s per MB of
# 70-character lines), so a flood of indexable text costs ~3-4 % of a core for its index.
INDEX_BUDGET_CHARS: Final = 256 * 1024
INDEX_CHARS_PER_SECOND: Final = 64 * 1024
# Once a flood used the allowance up, indexing resumes only when this much has refilled, and
# at a line start: a flood is indexed in spans of whole lines, not a trickle of fragments
# (one per event, each a piece of a line cut at an arbitrary character: useless to search,
# and ~0.6 ms of CPU per MB of a flood in FTS5 inserts).
INDEX_RESUME_CHARS: Final = 4 * 1024
INDEX_TAIL_CHARS: Final = 4 * 1024
FINISH_SECONDS: Final = 5.0
RETENTION_INTERVAL: Final = 600.0
# Buffers per writev call (the system's limit, usually 1024).
_IOV_MAX: Final = max(16, min(1024, os.sysconf("SC_IOV_MAX")))
# How many recent line starts are remembered for truncating back on a full disk.
_LINE_HISTORY: Final = 256
# The file's pages are given back to the kernel once written (see CastFile._release_cache):
# every CACHE_RELEASE_BYTES written, the range from CACHE_RELEASE_LAG before the previous
# release to the end (a page still being written out is dropped by a later call).
CACHE_RELEASE_BYTES: Final = 4 * 1024 * 1024
CACHE_RELEASE_LAG: Final = 32 * 1024 * 1024
_FADVISE: Final = getattr(os, "posix_fadvise", None)  # Linux, BSD; not macOS
MB: Final = 1024 * 1024

Event = tuple[float, str, str]
# An output event with its text's JSON string literal (the pane encoded it for the socket).
Encoded = tuple[float, str, str, bytes]


def encode_lines(events: Iterable[Event | Encoded]) -> list[tuple[bytes, list[Event]]]:
    """The asciicast lines for ``events``, each with the events it holds.

    Consecutive ``"o"`` events less than :data:`COALESCE_SECONDS` after the first of their
    run (and at most :data:`COALESCE_CHARS` together) become one line at that first one's
    time. Valid asciicast v2 (an event is any text at a time); a player shows merged output
    at most 5 ms early, the pace of the live socket's frames. Other events (resize, input,
    marker) are never merged. A merged line joins its events' JSON literals (taken from the
    event when the pane encoded it already, see session.py): the text is neither joined nor
    encoded again. The events returned with a line carry the line's time.
    """
    out: list[tuple[bytes, list[Event]]] = []
    run: list[Event | Encoded] = []
    run_chars = 0

    def end_run() -> None:
        # The events of a merged line are at its time, for the index too: a search hit's
        # offset is then the time of an event in the file.
        if run:
            out.append((_output_line(run), [(run[0][0], e[1], e[2]) for e in run]))

    for event in events:
        t, code, data = event[0], event[1], event[2]
        if code == "o":
            if (run and t - run[0][0] < COALESCE_SECONDS
                    and run_chars + len(data) <= COALESCE_CHARS):
                run.append(event)
                run_chars += len(data)
                continue
            end_run()
            run, run_chars = [event], len(data)
            continue
        end_run()
        run = []
        out.append((encode_event((t, code, data)), [(t, code, data)]))
    end_run()
    return out


def _output_line(run: list[Event | Encoded]) -> bytes:
    literals = [e[3] if len(e) == 4 else json_string(e[2]) for e in run]
    inner = [memoryview(lit)[1:-1] for lit in literals]
    return b"".join([b"[", orjson.dumps(run[0][0]), b',"o","', *inner, b'"]\n'])


def encode_event(event: Event) -> bytes:
    """One asciicast line. The text goes through :func:`linkops.jsontext.json_string`
    (orjson; a lone surrogate in typed input becomes a ``\\ud800`` escape, so the file stays
    valid UTF-8 for every reader)."""
    t, code, data = event
    return b"".join([b"[", orjson.dumps(t), b",", orjson.dumps(code), b",", json_string(data),
                     b"]\n"])


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
        self._allowance = float(INDEX_BUDGET_CHARS)  # characters the index may take now
        self._allowance_at = 0.0
        # While the index leaves a flood out: the line in progress kept aside ("" when none
        # or lost), else None; see _index.
        self._skipping: str | None = None
        self._skip_lost_line = False
        self._starts: deque[int] = deque(maxlen=_LINE_HISTORY)
        self._released = 0  # the file's size at the last _release_cache
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

    def _write_lines(self, lines: list[bytes]) -> None:
        """``lines`` in as few ``writev`` calls as the system allows (no joined copy)."""
        for i in range(0, len(lines), _IOV_MAX):
            group = lines[i:i + _IOV_MAX]
            total = sum(map(len, group))
            n = os.writev(self._fd, group)
            self.size += n
            if n < total:  # a short write (a nearly full disk): the rest the slow way
                self._write_all(b"".join(group)[n:])

    def write(self, events: Iterable[Event | Encoded]) -> _Written:
        """Append ``events`` (until a cut); return the finished text lines and any cut.

        Consecutive output events are merged first (:func:`encode_lines`), the batch goes to the
        file in one ``writev``: a flood costs one encoding call per merged event and one
        system call per batch, not one of each per chunk the SSH layer happened to read.
        """
        lines: list[tuple[float, str]] = []
        if self.cut is not None:
            return _Written(lines, None)
        encoded: list[bytes] = []
        kept: list[Event] = []
        size = self.size
        cut: str | None = None
        for line, members in encode_lines(events):
            if size + len(line) > self.max_bytes:
                cut = f"size cap of {self.max_bytes // MB} MB reached"
                break
            encoded.append(line)
            kept.extend(members)
            size += len(line)
        good = self.size
        try:
            self._write_lines(encoded)
        except OSError as exc:
            os.ftruncate(self._fd, good)
            self.size = good
            os.lseek(self._fd, good, os.SEEK_SET)
            cut = f"write failed: {os.strerror(exc.errno or errno.EIO)}"
            kept = []
        else:
            start = good
            for line in encoded:  # the line starts a full disk may truncate back to
                self._starts.append(start)
                start += len(line)
            self._release_cache()
        for t, code, data in kept:
            self.last_time = t
            if code == "o":
                lines.extend(self._index(t, data))
        if cut is not None:
            lines.extend(self._text.flush())
            self._cut(cut)
        return _Written(lines, cut)

    def _release_cache(self) -> None:
        """Give the pages written so far back to the kernel (``POSIX_FADV_DONTNEED``).

        A recording is written once and read rarely: cached, a flood's gigabytes would push
        the database and the rest of the machine out of the page cache, and each new page
        costs the kernel a fresh allocation (2.5-2.8 ms of CPU per MB written here, against
        0.3-0.5 ms when written pages are given back and reused: docs/performance.md). On
        Linux the call starts the write-out of dirty pages and drops the clean ones; a page
        still being written out stays, and the next call (which covers the last
        :data:`CACHE_RELEASE_LAG` again) drops it. Advice only: nothing written is lost, on
        any file system (tmpfs keeps its pages).
        """
        if _FADVISE is None or self.size - self._released < CACHE_RELEASE_BYTES:
            return
        start = max(0, self._released - CACHE_RELEASE_LAG)
        try:
            _FADVISE(self._fd, start, self.size - start, os.POSIX_FADV_DONTNEED)
        except OSError as exc:  # advice only: the recording goes on without it
            log.debug("terminal.recording_fadvise_failed", extra={"context": {
                "path": str(self.path), "error": repr(exc)}})
        self._released = self.size

    def _index(self, t: float, data: str) -> list[tuple[float, str]]:
        """The finished text lines of one output event, within the index's allowance.

        A flood is in the file in full, in the search index only as far as the allowance
        goes (indexing costs CPU the terminal needs; see the module docstring). What is left
        out is left out in whole lines: the event is cut after its last newline within the
        allowance; while indexing is off, the line in progress is kept aside (up to
        :data:`INDEX_TAIL_CHARS`), and once :data:`INDEX_RESUME_CHARS` have refilled,
        indexing resumes with it (a prompt printed during a flood and the command typed
        after it are one line, indexed whole) or, when that line was lost, at the next
        line start. A line is never indexed in part.
        """
        self._allowance = min(float(INDEX_BUDGET_CHARS), self._allowance
                              + (t - self._allowance_at) * INDEX_CHARS_PER_SECOND)
        self._allowance_at = t
        if self._skipping is not None:
            if self._allowance < INDEX_RESUME_CHARS:
                self._skip(data)
                return []
            if self._skip_lost_line:
                start = data.find("\n") + 1
                if start == 0:  # still inside the line that was lost
                    self._skip(data)
                    return []
                self.unindexed += start
                data = data[start:]
            else:  # the line kept aside starts at a line start: it is indexed after all
                self.unindexed -= len(self._skipping)
                data = self._skipping + data
            self._skipping = None
        if len(data) <= self._allowance:
            self._allowance -= len(data)
            return self._text.feed(t, data)
        end = data.rfind("\n", 0, int(self._allowance)) + 1
        lines = self._text.feed(t, data[:end]) if end else []
        self._allowance -= end
        # The line in progress goes aside with the rest, unless part of it is in the
        # assembler already (end == 0): that line is lost, indexing resumes after it.
        lost = end == 0 and self._text.in_line()
        self._text.drop()
        self._skipping, self._skip_lost_line = "", lost
        self._skip(data[end:])
        return lines

    def _skip(self, data: str) -> None:
        """``data`` left out of the index; what follows its last newline is kept aside."""
        self.unindexed += len(data)
        newline = data.rfind("\n")
        if newline >= 0:
            tail, self._skip_lost_line = data[newline + 1:], False
        elif self._skip_lost_line:
            tail = ""
        else:
            tail = (self._skipping or "") + data
        if len(tail) > INDEX_TAIL_CHARS:  # no line worth indexing is this long
            tail, self._skip_lost_line = "", True
        self._skipping = tail

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
        self._pending: list[Event | Encoded] = []
        self._pending_chars = 0
        self._wakeup = trio.Event()
        self._full = trio.Event()  # BATCH_CHARS wait (or closed, or behind): write now
        self._closed = False
        self._behind: float | None = None
        self.recording_id: int | None = None
        self.cut: str | None = None
        self.finished = trio.Event()
        # Index lines waiting for the indexer task (bounded by INDEX_QUEUE_CHARS).
        self._lines: list[tuple[float, str]] = []
        self._lines_chars = 0
        self._lines_ready = trio.Event()  # some lines wait
        self._index_due = trio.Event()    # INDEX_LINES wait, or the recording ends
        self._index_closing = False
        self._index_stopped = trio.Event()
        self._index_dropped = 0
        self._indexed_at = trio.current_time()

    # -- the pane's calls (Trio thread, never wait) ----------------------------------------

    def output(self, text: str, encoded: bytes | None = None) -> None:
        """Output; ``encoded``: its JSON string literal, when the pane has it already."""
        self._event("o", text, encoded)

    def resize(self, cols: int, rows: int) -> None:
        self._event("r", f"{cols}x{rows}")

    def input(self, text: str) -> None:
        if self.record_input:
            self._event("i", text)

    def close(self) -> None:
        self._closed = True
        self._wakeup.set()
        self._full.set()

    def _event(self, code: str, data: str, encoded: bytes | None = None) -> None:
        if self._closed or self._behind is not None or self.cut is not None:
            return
        t = round(trio.current_time() - self._start, 6)
        if self._pending_chars + len(data) > QUEUE_LIMIT_CHARS:
            self._behind = t
            self._wakeup.set()
            self._full.set()
            return
        self._pending.append((t, code, data) if encoded is None else (t, code, data, encoded))
        self._pending_chars += len(data)
        self._wakeup.set()
        if self._pending_chars >= BATCH_CHARS:
            self._full.set()

    def _take(self) -> list[Event | Encoded]:
        batch, self._pending, self._pending_chars = self._pending, [], 0
        self._wakeup = trio.Event()
        if not self._closed:
            self._full = trio.Event()
        return batch

    # -- the writer task ----------------------------------------------------------------------

    async def run(self) -> None:
        owner = self._owner
        cast: CastFile | None = None
        file_done = False
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
            # The indexer is a task of its own: SQLite (FTS5) may take a second for a flood's
            # lines, and the file's writer must not wait for it meanwhile.
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._index_loop)
                try:
                    await self._write_loop(cast)
                finally:
                    with trio.CancelScope(shield=True), trio.move_on_after(FINISH_SECONDS):
                        file_done = True
                        await self._finish_file(cast)
                        self._close_index()
                        await self._index_stopped.wait()
                        await self._index_now()  # what a cancelled indexer left
        except OSError as exc:
            self.cut = f"cannot write recording: {exc.strerror or exc}"
            log.warning("terminal.recording_failed", extra={"context": {
                "target": self.target, "error": repr(exc)}})
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(FINISH_SECONDS):
                if cast is not None and not file_done:
                    await self._finish_file(cast)
                if cast is not None and self.recording_id is not None:
                    await owner.finish_row(self.recording_id, cast.size,
                                           trio.current_time() - self._start, self.cut)
            self.finished.set()

    async def _write_loop(self, cast: CastFile) -> None:
        try:
            while True:
                if not self._pending and not self._closed and self._behind is None:
                    await self._wakeup.wait()
                # Gather a batch: BATCH_SECONDS, or less once BATCH_CHARS wait.
                with trio.move_on_after(BATCH_SECONDS):
                    await self._full.wait()
                await self._write_batch(cast)
                if self.cut is not None or (self._closed and not self._pending):
                    break
        except OSError as exc:
            self.cut = f"cannot write recording: {exc.strerror or exc}"
        if self.cut is not None:
            log.warning("terminal.recording_cut", extra={"context": {
                "recording": self.recording_id, "target": self.target, "reason": self.cut}})
        # Cut or not, the session may go on: wait for its end to record it.
        while not self._closed:
            self._take()
            await self._wakeup.wait()

    async def _write_batch(self, cast: CastFile) -> None:
        batch = self._take()
        written = await trio.to_thread.run_sync(cast.write, batch)
        lines = written.lines
        if written.cut is not None:
            self.cut = written.cut
        elif self._behind is not None:
            self.cut = "recorder fell behind the terminal"
            lines += await trio.to_thread.run_sync(cast.cut_now, self._behind, self.cut)
        self._queue_lines(lines)

    async def _finish_file(self, cast: CastFile) -> None:
        """The last batch (unless cut) and the file's close; shielded by the caller."""
        try:
            if self.cut is None and self._pending:
                await self._write_batch(cast)
            self._queue_lines(await trio.to_thread.run_sync(cast.finish))
        except OSError as exc:
            log.warning("terminal.recording_failed", extra={"context": {
                "target": self.target, "error": repr(exc)}})

    # -- the indexer task ---------------------------------------------------------------------

    def _queue_lines(self, lines: list[tuple[float, str]]) -> None:
        """Lines for the index, unless INDEX_QUEUE_CHARS already wait (SQLite is behind: the
        lines are dropped and counted; the file still has the output)."""
        for line in lines:
            if self._lines_chars + len(line[1]) > INDEX_QUEUE_CHARS:
                self._index_dropped += 1
                continue
            self._lines.append(line)
            self._lines_chars += len(line[1])
        if self._lines:
            self._lines_ready.set()
            if len(self._lines) >= INDEX_LINES:
                self._index_due.set()

    def _close_index(self) -> None:
        self._index_closing = True
        self._lines_ready.set()
        self._index_due.set()

    async def _index_loop(self) -> None:
        """Index lines go to SQLite at most once per INDEX_SECONDS (sooner when INDEX_LINES
        wait, and at the end)."""
        try:
            while not (self._index_closing and not self._lines):
                await self._lines_ready.wait()
                wait = self._indexed_at + INDEX_SECONDS - trio.current_time()
                with trio.move_on_after(max(0.0, wait)):
                    await self._index_due.wait()
                await self._index_now()
        finally:
            self._index_stopped.set()

    async def _index_now(self) -> None:
        lines, self._lines, self._lines_chars = self._lines, [], 0
        if not self._index_closing:
            self._lines_ready, self._index_due = trio.Event(), trio.Event()
        self._indexed_at = trio.current_time()
        if self._index_dropped:
            log.warning("terminal.recording_index_behind", extra={"context": {
                "recording": self.recording_id, "dropped_lines": self._index_dropped}})
            self._index_dropped = 0
        if not lines or self.recording_id is None:
            return
        try:
            await self._owner.index_lines(self.recording_id, lines)
        except sqlite3.Error as exc:  # the index is best effort; the file is the record
            log.warning("terminal.recording_index_failed", extra={"context": {
                "recording": self.recording_id, "error": repr(exc)}})


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
