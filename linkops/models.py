"""Value types shared by every layer (attrs, frozen). No I/O here.

``Link`` and ``Script`` are the validated form of one entry of ``links.yaml`` /
``scripts.yaml`` (SPEC §2); the database rows and API shapes are derived from them.
"""

from __future__ import annotations

from typing import Any

import attrs

DEFAULT_CLIENT_ID_PATH = "/etc/linkops/client_id"
KNOWN_LINK_TYPES = ("VPS", "Proxmox", "VM")
PANES = ("A", "B", "C", "D")
LAYOUT_PANES = {"single": 1, "grid2x1": 2, "grid1x3": 3, "grid2x2": 4}


@attrs.frozen
class Enrollment:
    clientId: str
    required: bool = True
    clientIdPath: str = DEFAULT_CLIENT_ID_PATH


@attrs.frozen
class SshOptions:
    keyRef: str | None = None
    proxyJump: str | None = None
    # A pinned host key ("ssh-ed25519 AAAA…") or fingerprint ("SHA256:…").
    hostKey: str | None = None


@attrs.frozen
class Link:
    id: str
    type: str
    host: str
    port: int
    user: str
    enrollment: Enrollment
    provider: str | None = None
    name: str | None = None
    tags: tuple[str, ...] = ()
    ssh: SshOptions = SshOptions()
    metadata: dict[str, Any] = attrs.field(factory=dict)

    @property
    def display_name(self) -> str:
        return self.name or self.id


@attrs.frozen
class Script:
    id: str
    name: str
    description: str
    path: str
    emoji: str | None = None
    flags: tuple[str, ...] = ()
    estimatedDuration: int | None = None
    tags: tuple[str, ...] = ()
    # Filled by the inventory loader from the file at `path`.
    sha256: str = ""
    content: str = ""


@attrs.frozen
class FlagSpec:
    """One declared flag: ``--dry-run`` (switch), ``--x=default`` or ``--x=REQUIRED``."""

    name: str
    default: str | None = None

    @property
    def takes_value(self) -> bool:
        return self.default is not None

    @property
    def required(self) -> bool:
        return self.default == "REQUIRED"

    @classmethod
    def parse(cls, declared: str) -> FlagSpec:
        name, sep, default = declared.partition("=")
        return cls(name=name, default=default if sep else None)
