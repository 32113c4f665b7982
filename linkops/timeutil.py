"""One time format for the whole service: ISO-8601 UTC with microseconds and a ``Z``.

Fixed width, so the strings sort the same way as the instants they name (SQLite compares them
as text).
"""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def to_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_iso() -> str:
    return to_iso(utcnow())


def parse_iso(text: str) -> datetime:
    """Parse an ISO-8601 string (``Z`` or offset; naive means UTC). Raises ValueError."""
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
