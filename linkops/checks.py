"""What ``linkops check-config`` and ``linkops sync`` do beyond loading the settings."""

from __future__ import annotations

import os

from linkops.config import Settings
from linkops.db import Database


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
    return problems


async def sync_once(settings: Settings) -> str:
    """One Git sync; returns a one-line summary or raises LinkOpsError."""
    from linkops.errors import UnavailableError

    db = Database(settings.database.path)
    try:
        raise UnavailableError("inventory sync is not available in this build", code="NOT_BUILT")
    finally:
        db.close()
