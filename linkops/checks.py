"""What ``linkops check-config`` and ``linkops sync`` do beyond loading the settings."""

from __future__ import annotations

import os
from pathlib import Path

from linkops.config import Settings
from linkops.db import Database
from linkops.errors import LinkOpsError
from linkops.inventory.remote import parse_remote_url
from linkops.ssh.keys import check_key_file


async def check_all(settings: Settings) -> list[str]:
    """Everything that would stop the service from working; an empty list means ok."""
    problems: list[str] = []
    db_path = settings.database.path
    if db_path.exists() and not os.access(db_path, os.R_OK | os.W_OK):
        problems.append(f"[database] path: {db_path} is not readable and writable")
    elif not os.access(db_path.parent, os.W_OK):
        problems.append(f"[database] path: directory {db_path.parent} is not writable")
    if settings.logging.path is not None:
        log_dir = settings.logging.path.parent
        if not log_dir.is_dir() or not os.access(log_dir, os.W_OK):
            problems.append(f"[logging] path: directory {log_dir} is not writable")
    if not settings.git.repository_url:
        problems.append("[git] repository_url: not set (no inventory can be synced)")
    else:
        try:
            parse_remote_url(settings.git.repository_url)
        except LinkOpsError as exc:
            problems.append(exc.message)
    keys: list[tuple[str, Path]] = []
    if settings.git.ssh_key_path is not None:
        keys.append(("[git] ssh_key_path", settings.git.ssh_key_path))
    default_key = settings.ssh.keys_directory / settings.ssh.default_key
    if default_key.exists():
        keys.append(("[ssh] default_key", default_key))
    for where, path in keys:
        try:
            check_key_file(path)
        except LinkOpsError as exc:
            problems.append(f"{where}: {exc.message}")
    return problems


async def sync_once(settings: Settings) -> str:
    """One Git sync (``linkops sync``); returns a one-line summary or raises LinkOpsError."""
    from linkops.inventory.sync import sync_once as inventory_sync

    db = Database(settings.database.path)
    try:
        result = await inventory_sync(settings, db, trigger="cli")
    finally:
        db.close()
    result.raise_for_error()
    changes = result.changes
    summary = ", ".join(
        f"{kind} +{len(changes[kind]['added'])} -{len(changes[kind]['removed'])} "
        f"~{len(changes[kind]['updated'])}"
        for kind in ("links", "scripts")
        if kind in changes
    )
    forced = " (forced update)" if result.forced else ""
    return f"synced {result.commit_hash or '?'}{forced}: {summary}"
