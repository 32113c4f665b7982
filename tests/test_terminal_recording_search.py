"""Searching and reading recordings (SPEC §10.4): the FTS5 index finds what the screen said,
with an offset that lands on it in the file; a user sees only their own; hostile queries are
answered with 200 or a structured 400, never a 500."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import httpx
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from linkops.db import migrate
from linkops.errors import ValidationError
from linkops.sandbox import Sandbox
from linkops.terminal.recording_index import fts_query
from linkops.terminal.recording_text import LineAssembler
from tests.fixtures_recording import finished_recordings, read_cast, recording_env, workspace_as
from tests.fixtures_terminal import TermSocket
from tests.strategies import PROP

HOSTILE = ['"', "*", "NEAR(", "NEAR(a b", 'a"b', "AND", "OR NOT", "col:x", "line:zebra",
           "(", ")", "^", "-x", "''", "\x00", "🙂", "a" * 300, "x " * 2000, "*zebra", "zebra**",
           '"zebra" OR "quokka"', "{line}: x", "%", "\\", "NEAR(zebra1quokka, 5)"]


async def test_search_finds_typed_output_at_its_offset_and_only_for_its_owner(
        sandbox_fleet: Sandbox, tmp_path: Path, nursery: trio.Nursery) -> None:
    with trio.fail_after(60):
        async with recording_env(sandbox_fleet, tmp_path, nursery) as env:
            term = env.term
            ws_id = await workspace_as(env.carol, A="sbx-01")
            async with term.socket(ws_id, env.carol_token) as sock:
                await sock.until_status("A", "connected")
                await sock.stdin("A", "echo zebra$((6*7))quokka\r")
                await sock.until_output("A", "zebra42quokka")
                await _quiet(sock)
            r = await env.carol.post(f"/api/terminal/workspaces/{ws_id}/panes/A/disconnect")
            assert r.status_code == 200
            (row,) = await finished_recordings(term.db)

            r = await env.carol.get("/api/terminal/recordings/search",
                                    params={"q": "zebra42quokka"})
            assert r.status_code == 200, r.text
            hits = r.json()["hits"]
            assert [(h["recording_id"], h["target"], h["user"]) for h in hits] == [
                (row["id"], "sbx-01", "carol")]
            assert hits[0]["line"] == "zebra42quokka" and hits[0]["started"] == row["started_at"]
            # The offset lands on it: the output up to that moment shows the word, and an
            # output event happened at that moment.
            _, events = read_cast(env.recordings / row["path"])
            offset = hits[0]["offset_seconds"]
            output = [e for e in events if e[1] == "o"]
            assert any(abs(e[0] - offset) < 0.001 for e in output)
            # (rounded up to the ms: a player at exactly that moment has drawn the line)
            assert "zebra42quokka" in "".join(e[2] for e in output if e[0] <= offset)
            # Prefix search works; a word never typed is not found.
            r = await env.carol.get("/api/terminal/recordings/search", params={"q": "zebra42*"})
            assert [h["recording_id"] for h in r.json()["hits"]] == [row["id"]]
            r = await env.carol.get("/api/terminal/recordings/search",
                                    params={"q": "neverTypedWord913"})
            assert r.status_code == 200 and r.json()["hits"] == []

            # The owner lists and reads it; the read is audited.
            r = await env.carol.get("/api/terminal/recordings")
            assert [x["id"] for x in r.json()["recordings"]] == [row["id"]]
            assert r.json()["next_cursor"] is None
            r = await env.carol.get(f"/api/terminal/recordings/{row['id']}")
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("application/x-asciicast")
            assert r.content == (env.recordings / row["path"]).read_bytes()
            audit = await term.db.fetchall(
                "SELECT username, details FROM terminal_audit WHERE action = 'recording.read'")
            assert [(a["username"], json.loads(a["details"])["id"]) for a in audit] == [
                ("carol", row["id"])]

            # Another non-admin finds nothing of it and cannot read it (404, not 403: the id
            # does not reveal that it exists).
            r = await env.dave.get("/api/terminal/recordings/search",
                                   params={"q": "zebra42quokka"})
            assert r.status_code == 200 and r.json()["hits"] == []
            r = await env.dave.get(f"/api/terminal/recordings/{row['id']}")
            assert r.status_code == 404 and r.json()["error"]["code"] == "RECORDING_NOT_FOUND"
            r = await env.dave.get("/api/terminal/recordings", params={"user": "carol"})
            assert r.json()["recordings"] == []
            # A viewer sees none at all.
            for path in ("/api/terminal/recordings", f"/api/terminal/recordings/{row['id']}",
                         "/api/terminal/recordings/search?q=zebra42quokka"):
                r = await env.vic.get(path)
                assert r.status_code == 403 and r.json()["error"]["code"] == "FORBIDDEN", path
            # An admin sees everyone's, with filters.
            r = await term.http.get("/api/terminal/recordings/search",
                                    params={"q": "zebra42quokka"})
            assert [h["user"] for h in r.json()["hits"]] == ["carol"]
            r = await term.http.get("/api/terminal/recordings",
                                    params={"user": "carol", "target": "sbx-01",
                                            "from": "2000-01-01T00:00:00Z"})
            assert [x["id"] for x in r.json()["recordings"]] == [row["id"]]
            r = await term.http.get("/api/terminal/recordings", params={"target": "sbx-02"})
            assert r.json()["recordings"] == []
            r = await term.http.get("/api/terminal/recordings", params={"to": "2000-01-01"})
            assert r.json()["recordings"] == []

            # No credential (or a revoked one): 401 before anything is read.
            async with httpx.AsyncClient(base_url=term.base) as anon:
                for path in ("/api/terminal/recordings", f"/api/terminal/recordings/{row['id']}",
                             "/api/terminal/recordings/search?q=zebra42quokka"):
                    r = await anon.get(path)
                    assert r.status_code == 401, path
                    r = await anon.get(path, headers={"Authorization": "Bearer forged.token.x"})
                    assert r.status_code == 401, path
            # Hostile input: a structured 400 or a 200, never a 500.
            for q in HOSTILE:
                r = await env.carol.get("/api/terminal/recordings/search", params={"q": q})
                assert r.status_code in (200, 400), (q, r.text)
                body = r.json()
                assert "hits" in body or body["error"]["code"] == "INVALID_QUERY", (q, body)
            for params in ({"cursor": "abc"}, {"cursor": "9" * 40}, {"from": "yesterday"},
                           {"to": "\x00"}):
                r = await env.carol.get("/api/terminal/recordings", params=params)
                assert r.status_code == 400 and "error" in r.json(), params
            for path in ("/api/terminal/recordings/999999", "/api/terminal/recordings/-1",
                         "/api/terminal/recordings/..%2f..%2fetc%2fpasswd",
                         "/api/terminal/recordings/%C2%B2", "/api/terminal/recordings/1.0",
                         "/api/terminal/recordings/" + "9" * 40, "/api/terminal/recordings/x"):
                r = await env.carol.get(path)
                assert r.status_code == 404, path


async def _quiet(sock: TermSocket) -> None:
    """Let the prompt after the command arrive, so the line is complete in the recording."""
    with trio.move_on_after(0.5):
        while True:
            await sock.pump_one()


@pytest.fixture(scope="module")
def fts_db() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    migrate(conn)
    conn.execute("INSERT INTO terminal_recordings (id, workspace_id, pane, target, username,"
                 " path, started_at, width, height) VALUES (1,'w','A','t','u','p','x',80,24)")
    conn.execute("INSERT INTO terminal_recording_lines (recording_id, offset_seconds, line)"
                 " VALUES (1, 0.5, 'systemctl restart nginx')")
    return conn


@PROP
@given(st.text(max_size=300))
def test_any_query_text_is_a_valid_fts_query_or_a_clear_400(fts_db: sqlite3.Connection,
                                                            text: str) -> None:
    """Whatever a user types, FTS5 never sees syntax it rejects (no 500 from search)."""
    try:
        match = fts_query(text)
    except ValidationError as exc:
        assert exc.code == "INVALID_QUERY"
        return
    fts_db.execute("SELECT rowid FROM terminal_recording_fts WHERE terminal_recording_fts"
                   " MATCH ?", (match,)).fetchall()


def test_phrase_words_match_in_any_order(fts_db: sqlite3.Connection) -> None:
    def hits(q: str) -> int:
        return len(fts_db.execute("SELECT rowid FROM terminal_recording_fts WHERE"
                                  " terminal_recording_fts MATCH ?", (fts_query(q),)).fetchall())

    assert hits("systemctl restart nginx") == 1
    assert hits("nginx systemctl") == 1
    assert hits("restart apache") == 0
    # Syntax characters are separators, FTS5 keywords are plain words.
    assert hits('nginx" (restart*') == 1
    assert hits('"nginx" NEAR(') == 0


def test_a_noise_run_split_across_two_events_is_left_out() -> None:
    """Base64 or hex arriving in two SSH reads: neither half is a 65-character run, the
    assembled line is, and it stays out of the index like an unsplit one."""
    lines = LineAssembler()
    got = lines.feed(1.0, "$ base64 key\r\n" + "QUJD" * 10)
    got += lines.feed(2.0, "REVG" * 10 + "\r\nok done\r\n")
    assert got == [(1.0, "$ base64 key"), (2.0, "ok done")]


def test_escape_sequences_are_stripped_and_lines_keep_their_offsets() -> None:
    lines = LineAssembler()
    got = lines.feed(1.0, "\x1b[01;32mroot@h\x1b[0m:~# sys")
    got += lines.feed(2.0, "temctl restart nginx\r\n\x1b]0;title\x07ok\x1b[")
    got += lines.feed(3.0, "0m\r\n50%\r100%\n")
    assert got == [(2.0, "root@h:~# systemctl restart nginx"), (3.0, "ok"), (3.0, "100%")]
