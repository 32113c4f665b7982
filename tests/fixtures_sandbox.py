"""Fixtures for the sandbox area: a fleet of real sshd servers and SSH settings in tmp.

* ``sandbox_fleet`` (session): 3 loopback hosts ``sbx-01..03`` on 127.0.0.1 and, as root,
  ``sbx-bastion`` plus ``sbx-inner-01..02`` in network namespaces, reachable only through the
  bastion. **Shared: do not modify it** (no host key rotation, no client-ID rewrites, no
  stopping hosts); use ``private_fleet`` (module) for destructive tests.
* ``ssh_env`` (function): an :class:`SshEnv` on the shared fleet with its own keys dir and a
  known_hosts pre-filled with the fleet's host keys; ``ssh_env.manager()`` makes an
  :class:`~linkops.ssh.SshManager` (close it with ``await manager.aclose()``).
* :func:`make_ssh_env` builds the same for any fleet; :func:`fleet_links` gives ``Link``
  objects; :func:`insert_machines` writes ``machines`` rows for DB-backed tests.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from linkops.config import SshSettings
from linkops.db import Database
from linkops.models import Enrollment, Link, SshOptions
from linkops.sandbox import Sandbox, netns_available
from linkops.ssh.bridge import SshManager
from linkops.ssh.machines import insert_links_sync


def fleet_links(fleet: Sandbox, *, pin: bool = False) -> dict[str, Link]:
    """``Link`` objects for every host of ``fleet`` (``pin=True`` pins each host key)."""
    out: dict[str, Link] = {}
    for d in fleet.links():
        out[d["id"]] = Link(
            id=d["id"], type=d["type"], host=d["host"], port=d["port"], user=d["user"],
            name=d["id"], provider="sandbox",
            enrollment=Enrollment(clientId=d["clientId"], clientIdPath=d["clientIdPath"]),
            ssh=SshOptions(keyRef=d["keyRef"], proxyJump=d["proxyJump"],
                           hostKey=d["hostKey"] if pin else None),
        )
    return out


@attrs.define
class SshEnv:
    fleet: Sandbox
    keys_dir: Path
    known_hosts: Path
    links: dict[str, Link]

    def settings(self, **overrides: Any) -> SshSettings:
        values: dict[str, Any] = {
            "keys_directory": self.keys_dir, "known_hosts_path": self.known_hosts,
            "default_key": "sandbox_ed25519", "connection_timeout": 10.0,
            "max_retries": 1, "keepalive_interval": 5,
        }
        values.update(overrides)
        return SshSettings(**values)

    def manager(self, **overrides: Any) -> SshManager:
        return SshManager(self.settings(**overrides))


def make_ssh_env(fleet: Sandbox, directory: Path, *, known: bool = True) -> SshEnv:
    """Keys dir (a 0600 copy of the fleet key) and known_hosts (filled when ``known``)."""
    keys = directory / "keys"
    keys.mkdir(mode=0o700, parents=True, exist_ok=True)
    shutil.copyfile(fleet.key_path, keys / fleet.key_path.name)
    (keys / fleet.key_path.name).chmod(0o600)
    known_hosts = directory / "known_hosts"
    known_hosts.write_text(fleet.known_hosts_text() if known else "")
    return SshEnv(fleet=fleet, keys_dir=keys, known_hosts=known_hosts, links=fleet_links(fleet))


def insert_machines(db: Database, links: Iterable[Link]) -> None:
    """Rows in ``machines`` for ``links`` (what inventory sync would write)."""
    db.write_sync(lambda c: insert_links_sync(c, links))


@pytest.fixture(scope="session")
def sandbox_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    root = tmp_path_factory.mktemp("sandbox-fleet")
    with Sandbox(root, hosts=3, netns_inner=2 if netns_available() else 0) as fleet:
        yield fleet


@pytest.fixture(scope="module")
def private_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """Two loopback hosts a test module may break (rotate keys, stop hosts, edit IDs)."""
    root = tmp_path_factory.mktemp("private-fleet")
    with Sandbox(root, hosts=2, prefix="prv") as fleet:
        yield fleet


@pytest.fixture
def ssh_env(sandbox_fleet: Sandbox, tmp_path: Path) -> SshEnv:
    return make_ssh_env(sandbox_fleet, tmp_path / "ssh")
