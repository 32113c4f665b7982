"""Database.write: group commit on a real SQLite file (see linkops/db.py, *Group commit*)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from linkops.db import Database


class RecordingDatabase(Database):
    """A real Database that remembers the size of every group it committed."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.groups: list[int] = []

    def _write_group(self, group: list[Any]) -> None:
        self.groups.append(len(group))
        super()._write_group(group)


@pytest.fixture
def db(tmp_path: Path) -> RecordingDatabase:
    database = RecordingDatabase(tmp_path / "linkops.db")
    database.write_sync(lambda c: c.execute("CREATE TABLE t (v INTEGER UNIQUE)"))
    return database


def _values(db: Database) -> list[int]:
    return [row[0] for row in db.read_sync(lambda c: c.execute(
        "SELECT v FROM t ORDER BY v").fetchall())]


def _insert(value: int, delay: float = 0.0) -> Any:
    def fn(conn: sqlite3.Connection) -> int:
        if delay:
            time.sleep(delay)  # worker thread: keeps the group open while others queue
        conn.execute("INSERT INTO t (v) VALUES (?)", (value,))
        return value * 10
    return fn


async def test_queued_writes_share_one_commit_and_get_their_own_results(
        db: RecordingDatabase) -> None:
    results: dict[int, int] = {}

    async def one(value: int, delay: float = 0.0) -> None:
        results[value] = await db.write(_insert(value, delay))

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(one, 0, 0.3)
            await trio.sleep(0.05)  # the first group is running in its thread now
            for value in range(1, 41):
                nursery.start_soon(one, value)
    assert results == {v: v * 10 for v in range(41)}
    assert _values(db) == list(range(41))
    # The 40 that queued behind the slow one went in far fewer groups than 40.
    assert db.groups[0] == 1 and sum(db.groups) == 41 and len(db.groups) <= 4, db.groups


async def test_a_failing_write_rolls_back_only_itself(db: RecordingDatabase) -> None:
    outcomes: dict[int, object] = {}
    db.write_sync(lambda c: c.execute("INSERT INTO t (v) VALUES (50)"))

    def half_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t (v) VALUES (100)")
        conn.execute("INSERT INTO t (v) VALUES (50)")  # UNIQUE: already there

    async def one(value: int) -> None:
        try:
            outcomes[value] = await db.write(half_then_fail if value == 100 else _insert(value))
        except sqlite3.IntegrityError as exc:
            outcomes[value] = exc

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: db.write(_insert(-1, 0.3)))
            await trio.sleep(0.05)
            for value in (1, 2, 100, 3):
                nursery.start_soon(one, value)
    assert isinstance(outcomes[100], sqlite3.IntegrityError)
    assert outcomes[1] == 10 and outcomes[2] == 20 and outcomes[3] == 30
    # 100 was inserted by the failing job before it failed: rolled back with it, alone.
    assert _values(db) == [-1, 1, 2, 3, 50]
    assert any(size >= 4 for size in db.groups), db.groups


async def test_a_write_cancelled_while_queued_writes_nothing(db: RecordingDatabase) -> None:
    started = threading.Event()

    def slow(conn: sqlite3.Connection) -> None:
        started.set()
        time.sleep(0.3)
        conn.execute("INSERT INTO t (v) VALUES (1)")

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(db.write, slow)
            await trio.to_thread.run_sync(started.wait)
            with trio.move_on_after(0.05) as scope:
                await db.write(_insert(2))
            assert scope.cancelled_caught
        await db.write(_insert(3))
    assert _values(db) == [1, 3]


async def test_a_caller_cancelled_after_its_group_started_still_commits(
        db: RecordingDatabase) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(db.write, _insert(7, 0.3))  # leads the first group
            await trio.sleep(0.05)
            nursery.start_soon(db.write, _insert(8, 0.3))  # will lead the second group
            await trio.sleep(0.05)
            with trio.move_on_after(0.4) as scope:
                # Queued behind 8, so it goes in 8's group (which sleeps 0.3 s in its thread):
                # the deadline passes while that group runs; it still commits, then Cancelled.
                await db.write(_insert(9))
            assert scope.cancelled_caught
    assert _values(db) == [7, 8, 9]
    assert db.groups == [1, 2]
