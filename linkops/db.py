"""SQLite storage: schema migrations, one writer, a few readers, all off the Trio thread.

*Concurrency*: SQLite allows one writer at a time. Writes go through :meth:`Database.write`:
the function runs in a worker thread inside a ``BEGIN IMMEDIATE`` transaction that is
committed before ``write`` returns (so whatever the caller reports as done is on disk).
*Group commit*: writes that queue up while another is running go together — one worker-thread
hop and one COMMIT for the whole group, each function in its own SAVEPOINT, so one that raises
rolls back only its own changes and gets its own exception. Fifty hosts finishing at once cost
a handful of commits instead of fifty (docs/performance.md). Reads use a small pool of
separate connections; WAL lets them run while a write is in progress.

*Cancellation*: a caller cancelled while its write is still queued writes nothing; once its
group has started, it waits (shielded, transactions are short) for the group to end, then
Cancelled propagates; the group commits or rolls back as a unit.

*Errors*: :class:`sqlite3.Error` propagates; the web layer turns it into a 500 without details.
"""

from __future__ import annotations

import importlib.resources
import json
import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Generic, TypeVar

import trio

T = TypeVar("T")

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
READ_POOL_SIZE = 4


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def migrations() -> list[tuple[int, str, str]]:
    """All migrations shipped with the package as ``(version, name, sql)``, in order."""
    found = []
    for entry in importlib.resources.files("linkops.migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    # Numbers are reserved per change and may land out of order, so gaps are allowed; a
    # number used twice is not (one of the two would never run).
    for (version, name, _), (previous, other, _) in zip(found[1:], found, strict=False):
        if version == previous:
            raise RuntimeError(f"migrations {other} and {name} share the number {version:04d}")
    return found


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to date; each migration runs in its own transaction."""
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    for version, _name, sql in migrations():
        if version <= current:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            # executescript would COMMIT our transaction first; run statements one by one.
            for statement in _split_sql(sql):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version:d}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        current = version
    return int(current)


def _split_sql(script: str) -> Iterator[str]:
    buffer = ""
    for line in script.splitlines(keepends=True):
        if line.lstrip().startswith("--"):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                yield buffer.strip()
            buffer = ""
    if buffer.strip():
        raise RuntimeError(f"incomplete SQL statement in migration: {buffer.strip()[:60]}")


class _WriteJob(Generic[T]):
    """One queued :meth:`Database.write` (see *Group commit* in the module docstring)."""

    __slots__ = ("done", "error", "fn", "started", "value")

    def __init__(self, fn: Callable[[sqlite3.Connection], T]) -> None:
        self.fn = fn
        self.started = False
        self.done = trio.Event()
        self.value: T | None = None
        self.error: BaseException | None = None

    def run(self, conn: sqlite3.Connection) -> None:
        try:
            self.value = self.fn(conn)
        except Exception as exc:
            self.error = exc

    def unwrap(self) -> T:
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]  # T may include None


class Database:
    """The service's SQLite database (see the module docstring for the rules)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer = _connect(path)
        self._writer.execute("PRAGMA journal_mode = WAL")
        self.schema_version = migrate(self._writer)
        self._write_lock = trio.Lock()
        self._queued: list[_WriteJob[Any]] = []
        self._readers: list[sqlite3.Connection] = []
        self._reader_slots = trio.Semaphore(READ_POOL_SIZE)
        self._closed = False

    # -- async API -------------------------------------------------------------------------

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` in a committed transaction; returns its result (or raises its
        exception). See *Group commit* and *Cancellation* in the module docstring."""
        job = _WriteJob(fn)
        self._queued.append(job)
        try:
            async with self._write_lock:
                if not job.started:  # nobody took it into their group: lead a new one
                    group, self._queued = self._queued, []
                    for queued in group:
                        queued.started = True
                    try:
                        await trio.to_thread.run_sync(self._write_group, group)
                    finally:
                        for queued in group:
                            queued.done.set()
        except BaseException:
            if not job.started:
                self._queued.remove(job)
                raise
            with trio.CancelScope(shield=True):
                await job.done.wait()
            raise
        return job.unwrap()

    def _write_group(self, group: list[_WriteJob[Any]]) -> None:
        """Worker thread: every job of the group in one transaction, each in a savepoint."""
        conn = self._writer
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for job in group:
                    conn.execute("SAVEPOINT linkops_write")
                    job.run(conn)
                    if job.error is not None:
                        conn.execute("ROLLBACK TO linkops_write")
                    conn.execute("RELEASE linkops_write")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except BaseException as exc:  # nothing of the group was committed: tell them all
            for job in group:
                job.error = exc

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` on a reader connection (a consistent snapshot for its duration)."""
        async with self._reader_slots:
            conn = self._readers.pop() if self._readers else _connect(self.path)
            try:
                return await trio.to_thread.run_sync(self._read_in_thread, conn, fn)
            finally:
                self._readers.append(conn)

    async def fetchall(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        return await self.read(lambda c: c.execute(sql, params).fetchall())

    async def fetchone(self, sql: str, params: Any = ()) -> sqlite3.Row | None:
        row: sqlite3.Row | None = await self.read(lambda c: c.execute(sql, params).fetchone())
        return row

    async def execute(self, sql: str, params: Any = ()) -> int:
        """One write statement; returns the number of rows changed."""
        return await self.write(lambda c: c.execute(sql, params).rowcount)

    # -- blocking API (CLI, start-up, and the worker threads above) ------------------------

    def write_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._transaction(self._writer) as conn:
            return fn(conn)

    @staticmethod
    def _read_in_thread(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn.execute("BEGIN")
        try:
            return fn(conn)
        finally:
            conn.execute("COMMIT")

    @staticmethod
    @contextmanager
    def _transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def read_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return self._read_in_thread(self._writer, fn)

    def integrity_check(self) -> str:
        return str(self._writer.execute("PRAGMA integrity_check").fetchone()[0])

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for conn in self._readers:
            conn.close()
        self._readers.clear()
        self._writer.close()


def dumps(value: Any) -> str:
    """JSON for a TEXT column: compact, UTF-8 kept readable, stable key order."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def loads(text: str | None, default: Any = None) -> Any:
    return default if text is None else json.loads(text)
