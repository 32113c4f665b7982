"""linkops.sdnotify against real AF_UNIX datagram sockets (filesystem and abstract namespace)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from linkops import sdnotify


def _receive(sock: socket.socket) -> str:
    sock.settimeout(5)
    return sock.recv(4096).decode()


@pytest.fixture
def path_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    sock.bind(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


@pytest.fixture
def abstract_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    name = f"linkops-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    yield sock
    sock.close()


def test_ready_reaches_a_filesystem_socket(path_socket: socket.socket) -> None:
    assert sdnotify.ready() is True
    assert _receive(path_socket) == "READY=1"


def test_ready_with_status(path_socket: socket.socket) -> None:
    assert sdnotify.ready("serving on 127.0.0.1:8000")
    assert _receive(path_socket).split("\n") == ["READY=1", "STATUS=serving on 127.0.0.1:8000"]


def test_abstract_namespace_socket(abstract_socket: socket.socket) -> None:
    assert sdnotify.stopping() is True
    assert _receive(abstract_socket) == "STOPPING=1"


def test_each_message_kind(path_socket: socket.socket) -> None:
    assert sdnotify.status("syncing git")
    assert _receive(path_socket) == "STATUS=syncing git"
    assert sdnotify.watchdog()
    assert _receive(path_socket) == "WATCHDOG=1"
    assert sdnotify.stopping("draining 2 streams")
    assert _receive(path_socket) == "STOPPING=1\nSTATUS=draining 2 streams"


def test_status_cannot_forge_another_assignment(path_socket: socket.socket) -> None:
    # An output line or error message put in STATUS must never become READY=1 or MAINPID=…
    assert sdnotify.status("boom\nREADY=1\r\nMAINPID=1")
    received = _receive(path_socket)
    assert "\n" not in received
    assert received.startswith("STATUS=boom")


def test_unset_socket_is_a_noop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.ready() is False
    assert sdnotify.stopping() is False
    assert sdnotify.status("x") is False
    assert sdnotify.watchdog() is False


def test_unreachable_or_malformed_socket_never_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    assert sdnotify.ready() is False
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    assert sdnotify.ready() is False
    monkeypatch.setenv("NOTIFY_SOCKET", "relative/path")
    assert sdnotify.ready() is False


def test_full_peer_queue_does_not_block(path_socket: socket.socket) -> None:
    # Nobody reads: the kernel queue fills, sendto must fail fast instead of blocking.
    results = [sdnotify.watchdog() for _ in range(2000)]
    assert results[0] is True
    assert results[-1] is False


def test_explicit_environ_mapping(path_socket: socket.socket) -> None:
    address = os.environ["NOTIFY_SOCKET"]
    assert sdnotify.notify("READY=1", environ={}) is False
    assert sdnotify.notify("READY=1", environ={"NOTIFY_SOCKET": address}) is True
    assert _receive(path_socket) == "READY=1"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "nope"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "500000"}, 0.25),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    assert sdnotify.watchdog_interval(env) == expected


def test_watchdog_interval_reads_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert sdnotify.watchdog_interval() == 2.0


async def test_watchdog_loop_pings_periodically(
    path_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # 0.1 s timeout: a ping every 0.05 s
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    receiver = trio.socket.from_stdlib_socket(path_socket)
    pings: list[tuple[float, str]] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sdnotify.watchdog_loop)
            while len(pings) < 6:
                data = await receiver.recv(64)
                pings.append((trio.current_time(), data.decode()))
            nursery.cancel_scope.cancel()
    assert {message for _, message in pings} == {"WATCHDOG=1"}
    # Paced by the interval, not a busy loop: 5 gaps of 0.05 s were sent (the bound leaves
    # room for a late first receive on a loaded machine).
    assert pings[-1][0] - pings[0][0] >= 3 * 0.05


async def test_watchdog_loop_returns_without_watchdog(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    with trio.fail_after(1):
        await sdnotify.watchdog_loop()
