"""A real ``linkops serve`` subprocess for tests that talk to it from outside (raw sockets,
schemathesis): its own config and database under a temp dir, one admin, ended by its PID."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from linkops import config
from tests.fixtures_core import ADMIN, ADMIN_PASSWORD, add_admin, write_config

ROOT = Path(__file__).resolve().parents[1]


class ServeProcess:
    def __init__(self, root: Path, **sections: dict[str, Any]) -> None:
        self.config_path = write_config(root, **sections)
        self.settings = config.load(self.config_path)
        self.host = self.settings.api.host
        self.port = self.settings.api.port
        self.base_url = f"http://{self.host}:{self.port}"
        self.log = root / "serve.out"
        self.proc: subprocess.Popen[bytes] | None = None
        add_admin(self.settings)

    def start(self, timeout: float = 30) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "linkops", "serve", "--config", str(self.config_path)],
                cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": str(ROOT)})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"{self.base_url}/api/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"linkops serve not healthy in {timeout} s: {self.log.read_text()}")

    def token(self) -> str:
        response = httpx.post(f"{self.base_url}/api/auth/login", timeout=20,
                              json={"username": ADMIN, "password": ADMIN_PASSWORD})
        assert response.status_code == 200, response.text
        return str(response.json()["token"])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@contextmanager
def serving(root: Path, **sections: dict[str, Any]) -> Iterator[ServeProcess]:
    process = ServeProcess(root, **sections)
    try:
        process.start()
        yield process
    finally:
        process.stop()
