"""Baselines the benchmarks compare LinkOps with, each run in its own subprocess.

``python -m bench.baselines MODE -`` reads a JSON job on stdin and prints one JSON line
``{elapsed, cpu, ok, bytes}``; ``elapsed`` starts after the imports and the key load (what a
long-running tool would have done already) and ends when the last target's output was read
and its exit status seen.

Modes (every one opens a **fresh** connection per target and checks the host key against the
known_hosts file, like LinkOps):

* ``paramiko`` — raw paramiko (Transport, exec channel) in ``concurrency`` threads;
* ``asyncssh`` — a minimal asyncssh script, ``concurrency`` at a time (semaphore);
* ``paramiko-stream`` — one exec, stdout read with ``recv(32768)`` until EOF, bytes counted;
* ``paramiko-shell`` — ``invoke_shell`` on a PTY, the command typed in, output read naively
  (``recv(N)`` in a loop, N = ``recv``, default 32768) until a marker appears;
* ``paramiko-echo`` — ``invoke_shell`` running ``cat >/dev/null``: one key at a time, seconds
  until its echo comes back (the floor for the terminal's keystroke latency).

The OpenSSH baseline (``xargs -P C ssh …``) needs no Python: see :mod:`bench.fanout_bench`.
"""

from __future__ import annotations

import json
import resource
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _paramiko_transport(spec: dict[str, Any], key: Any, host_keys: Any) -> Any:
    import paramiko

    sock = socket.create_connection((spec["host"], spec["port"]), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    transport = paramiko.Transport(sock)
    transport.start_client(timeout=30)
    name = f"[{spec['host']}]:{spec['port']}" if spec["port"] != 22 else spec["host"]
    server_key = transport.get_remote_server_key()
    known = host_keys.lookup(name)
    if known is None or known.get(server_key.get_name()) != server_key:
        transport.close()
        raise RuntimeError(f"host key of {name} not in known_hosts")
    transport.auth_publickey(spec["user"], key)
    return transport


def _exec_counting(transport: Any, command: str) -> tuple[int, int]:
    """Run ``command`` on a new exec channel, read stdout with ``recv(32768)`` until EOF
    (then drain stderr); (stdout bytes, exit status)."""
    chan = transport.open_session()
    chan.exec_command(command)
    got = 0
    while data := chan.recv(32768):
        got += len(data)
    while chan.recv_stderr(32768):
        pass  # nothing to keep: the baselines count stdout only
    return got, chan.recv_exit_status()


def paramiko_fanout(job: dict[str, Any]) -> dict[str, Any]:
    import paramiko

    key = paramiko.Ed25519Key.from_private_key_file(job["key"])
    host_keys = paramiko.HostKeys(job["known_hosts"])

    def one(spec: dict[str, Any]) -> int:
        transport = _paramiko_transport(spec, key, host_keys)
        try:
            return int(_exec_counting(transport, job["command"])[1] == 0)
        finally:
            transport.close()

    t0 = time.perf_counter()
    cpu0 = _cpu()
    with ThreadPoolExecutor(max_workers=job["concurrency"]) as pool:
        ok = sum(pool.map(one, job["targets"]))
    return {"elapsed": time.perf_counter() - t0, "cpu": _cpu() - cpu0, "ok": ok}


def asyncssh_fanout(job: dict[str, Any]) -> dict[str, Any]:
    import asyncio

    import asyncssh

    key = asyncssh.read_private_key(job["key"])

    async def main() -> int:
        gate = asyncio.Semaphore(job["concurrency"])

        async def one(spec: dict[str, Any]) -> int:
            async with gate, asyncssh.connect(
                    spec["host"], spec["port"], username=spec["user"], client_keys=[key],
                    known_hosts=job["known_hosts"], agent_path=None, config=[]) as conn:
                result = await conn.run(job["command"])
                return int(result.exit_status == 0)

        results = await asyncio.gather(*(one(s) for s in job["targets"]))
        return sum(results)

    t0 = time.perf_counter()
    cpu0 = _cpu()
    ok = asyncio.run(main())
    return {"elapsed": time.perf_counter() - t0, "cpu": _cpu() - cpu0, "ok": ok}


def paramiko_stream(job: dict[str, Any]) -> dict[str, Any]:
    import paramiko

    key = paramiko.Ed25519Key.from_private_key_file(job["key"])
    host_keys = paramiko.HostKeys(job["known_hosts"])
    t0 = time.perf_counter()
    cpu0 = _cpu()
    transport = _paramiko_transport(job["targets"][0], key, host_keys)
    try:
        got, code = _exec_counting(transport, job["command"])
    finally:
        transport.close()
    return {"elapsed": time.perf_counter() - t0, "cpu": _cpu() - cpu0, "ok": int(code == 0),
            "bytes": got}


def paramiko_shell(job: dict[str, Any]) -> dict[str, Any]:
    """Type ``command`` into an interactive shell; read until ``marker`` (naive loop)."""
    import paramiko

    key = paramiko.Ed25519Key.from_private_key_file(job["key"])
    host_keys = paramiko.HostKeys(job["known_hosts"])
    transport = _paramiko_transport(job["targets"][0], key, host_keys)
    try:
        chan = transport.open_session()
        chan.get_pty(term="xterm-256color", width=120, height=40)
        chan.invoke_shell()
        ready = job["marker"].replace("done", "ready").encode()
        chan.sendall(job["ready_command"].encode())
        tail = b""
        while ready not in tail:
            tail = (tail + chan.recv(32768))[-4096:]
        t0 = time.perf_counter()
        cpu0 = _cpu()
        chan.sendall(job["command"].encode())
        marker = job["marker"].encode()
        got = 0
        tail = b""
        size = int(job.get("recv", 32768))
        while marker not in tail:
            data = chan.recv(size)
            if not data:
                break
            got += len(data)
            tail = (tail[-4096:] + data)[-8192:]
        elapsed = time.perf_counter() - t0
    finally:
        transport.close()
    return {"elapsed": elapsed, "cpu": _cpu() - cpu0, "ok": int(marker in tail), "bytes": got}


def paramiko_echo(job: dict[str, Any]) -> dict[str, Any]:
    import paramiko

    key = paramiko.Ed25519Key.from_private_key_file(job["key"])
    host_keys = paramiko.HostKeys(job["known_hosts"])
    transport = _paramiko_transport(job["targets"][0], key, host_keys)
    samples: list[float] = []
    try:
        chan = transport.open_session()
        chan.get_pty(term="xterm-256color", width=120, height=40)
        chan.invoke_shell()
        chan.sendall(b"stty -icanon; echo ready-$((6*7)); cat >/dev/null\r")
        tail = b""
        while b"ready-42" not in tail:
            tail = (tail + chan.recv(32768))[-4096:]
        time.sleep(0.3)
        while chan.recv_ready():
            chan.recv(32768)
        for i in range(10 + job["samples"]):
            char = b"abcdefghijklmnopqrstuvwxyz"[i % 26:i % 26 + 1]
            t0 = time.perf_counter()
            chan.sendall(char)
            while char not in chan.recv(32768):
                pass
            if i >= 10:
                samples.append(time.perf_counter() - t0)
            if i % 60 == 59:
                chan.sendall(b"\r")
                while b"\n" not in chan.recv(32768):
                    pass
    finally:
        transport.close()
    return {"samples": samples, "ok": 1}


MODES = {"paramiko": paramiko_fanout, "asyncssh": asyncssh_fanout,
         "paramiko-stream": paramiko_stream, "paramiko-shell": paramiko_shell,
         "paramiko-echo": paramiko_echo}


def main() -> None:
    mode, source = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "-"
    job = json.loads(sys.stdin.read() if source == "-" else source)
    print(json.dumps(MODES[mode](job)), flush=True)


if __name__ == "__main__":
    main()
