"""Raw sockets against a real ``linkops serve``: connections close when HTTP says they must
(SPEC §10.1), and a response sent before the request body was read never poisons a kept-alive
connection. See linkops/web/connections.py and docs/decisions/http-connections.md."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from tests.serve_process import ServeProcess, serving

MAX_BODY = 4096
STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3}) ")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with serving(tmp_path_factory.mktemp("serve"), api={"max_body_bytes": MAX_BODY}) as proc:
        yield proc


class Exchange:
    """One client connection: what it received, and whether the server closed it."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock
        self.data = b""
        self.closed = False

    async def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            sent = await self.sock.send(view)
            view = view[sent:]

    async def read_until(self, *, statuses: int, seconds: float) -> None:
        """Read until ``statuses`` complete responses arrived, or the server closes, or
        ``seconds`` pass."""
        with trio.move_on_after(seconds):
            while not self.closed and not self.complete(statuses):
                await self.recv_once()

    async def read_to_close(self, seconds: float) -> None:
        with trio.move_on_after(seconds):
            while not self.closed:
                await self.recv_once()

    async def recv_once(self) -> None:
        try:
            chunk = await self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if chunk:
            self.data += chunk
        else:
            self.closed = True

    def statuses(self) -> list[int]:
        return [int(m.group(1)) for m in STATUS_LINE.finditer(self.data)]

    def complete(self, count: int) -> bool:
        """``count`` responses with their whole bodies (every response here has a
        Content-Length)."""
        rest = self.data
        for _ in range(count):
            head, sep, body = rest.partition(b"\r\n\r\n")
            if not sep:
                return False
            length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            size = int(length.group(1)) if length else 0
            if len(body) < size:
                return False
            rest = body[size:]
        return True

    def header(self, name: str) -> list[str]:
        return [m.decode().strip().lower() for m in
                re.findall(rb"(?im)^" + name.encode() + rb": *([^\r\n]*)", self.data)]


async def connect(served: ServeProcess) -> Exchange:
    sock = trio.socket.socket()
    await sock.connect((served.host, served.port))
    return Exchange(sock)


def get_health(extra: str = "") -> bytes:
    return f"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode()


def post(path: str, length: int, extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n{extra}\r\n").encode()


async def test_http_1_0_is_answered_then_closed(served: ServeProcess) -> None:
    with trio.fail_after(15):
        conn = await connect(served)
        await conn.send(b"GET /api/health HTTP/1.0\r\n\r\n")
        await conn.read_to_close(5)
        assert conn.statuses() == [200]
        assert b'"status":"ok"' in conn.data
        assert conn.closed, "the server kept an HTTP/1.0 connection open"


async def test_connection_close_is_answered_then_closed(served: ServeProcess) -> None:
    with trio.fail_after(15):
        conn = await connect(served)
        await conn.send(get_health("Connection: close\r\n"))
        await conn.read_to_close(5)
        assert conn.statuses() == [200]
        assert conn.closed, "the server ignored Connection: close"


async def test_keep_alive_still_reuses_the_connection(served: ServeProcess) -> None:
    """The control: without a reason to close, two requests share one open connection."""
    with trio.fail_after(15):
        conn = await connect(served)
        await conn.send(get_health())
        await conn.read_until(statuses=1, seconds=5)
        await conn.send(get_health())
        await conn.read_until(statuses=2, seconds=5)
        assert conn.statuses() == [200, 200]
        await conn.read_to_close(1)
        assert not conn.closed


def _server_sockets(served: ServeProcess) -> int:
    assert served.proc is not None
    fd_dir = Path(f"/proc/{served.proc.pid}/fd")
    count = 0
    for fd in fd_dir.iterdir():
        with contextlib.suppress(OSError):
            count += os.readlink(fd).startswith("socket:")
    return count


async def test_kept_alive_connections_the_client_closes_are_released(
        served: ServeProcess) -> None:
    """The hostile side of shielding the close: 20 clients that each make one kept-alive
    request and hang up must not leave 20 sockets in CLOSE-WAIT on the server (a descriptor
    leak any client could drive to the process limit)."""
    with trio.fail_after(30):
        before = _server_sockets(served)
        for _ in range(20):
            conn = await connect(served)
            await conn.send(get_health())
            await conn.read_until(statuses=1, seconds=5)
            assert conn.statuses() == [200]
            conn.sock.close()
        with trio.move_on_after(10):
            while _server_sockets(served) > before:
                await trio.sleep(0.1)
        assert _server_sockets(served) <= before, "closed keep-alive connections leaked"


async def test_413_then_a_second_request_is_answered_or_closed(served: ServeProcess) -> None:
    """Only the headers of an oversized body, then another request: the 413 comes, and the
    second request is answered or the connection closed — it never hangs."""
    with trio.fail_after(20):
        conn = await connect(served)
        await conn.send(post("/api/auth/login", 10 * MAX_BODY))
        await conn.read_until(statuses=1, seconds=8)
        assert conn.statuses() == [413]
        assert conn.header("connection") == ["close"]
        if not conn.closed:
            try:
                await conn.send(get_health())
            except (BrokenPipeError, ConnectionResetError):
                conn.closed = True
            await conn.read_until(statuses=2, seconds=8)
        assert conn.closed or conn.statuses() == [413, 200]
        await conn.read_to_close(5)
        assert conn.closed


async def test_413_with_its_small_body_sent_keeps_the_connection(served: ServeProcess) -> None:
    """A client that sends the whole (too large, but drainable) body at once, pipelining the
    next request: the body is drained, so both get their answer."""
    with trio.fail_after(20):
        conn = await connect(served)
        body = b"x" * (2 * MAX_BODY)
        await conn.send(post("/api/auth/login", len(body)) + body + get_health())
        await conn.read_until(statuses=2, seconds=10)
        assert conn.statuses() == [413, 200]


async def test_401_before_a_large_body_closes(served: ServeProcess) -> None:
    """10 MB announced, its first 4 KiB sent (with the headers, so the server has read every
    byte sent and its close cannot turn into a reset), no token: the 401 arrives without the
    body being read, says Connection: close, and the server closes."""
    with trio.fail_after(20):
        conn = await connect(served)
        await conn.send(post("/api/tables/query", 10_000_000) + b"{" + b" " * 4095)
        await conn.read_to_close(8)
        assert conn.statuses() == [401]
        assert b"TOKEN_INVALID" in conn.data
        assert conn.header("connection") == ["close"]
        assert conn.closed


@pytest.mark.parametrize("body_first", [True, False])
async def test_405_to_a_post_then_a_second_request(served: ServeProcess,
                                                    body_first: bool) -> None:
    """The report's case: 405 to a POST, then the next request on the same connection.
    Body sent with the headers → drained, both answered; body sent only after the 405 →
    the 405 said Connection: close and the connection is closed, never left hanging."""
    body = b'{"a": 1}'
    with trio.fail_after(20):
        conn = await connect(served)
        if body_first:
            await conn.send(post("/api/health", len(body)) + body + get_health())
            await conn.read_until(statuses=2, seconds=10)
            assert conn.statuses() == [405, 200]
            return
        await conn.send(post("/api/health", len(body)))
        await conn.read_until(statuses=1, seconds=10)
        assert conn.statuses() == [405]
        assert conn.header("connection") == ["close"]
        try:
            await conn.send(body + post("/api/git/sync", 0))
        except (BrokenPipeError, ConnectionResetError):
            conn.closed = True
        await conn.read_to_close(8)
        assert conn.closed, "a connection with an unread body stayed open"

