"""API tokens: how scripts and CI talk to LinkOps (SPEC §10.2, docs/api.md).

- A token is ``lkp_`` + 43 URL-safe characters (32 random bytes). It is shown once, at
  creation; only its SHA-256 is stored (32 random bytes need no slow hash: there is nothing to
  guess). It is sent as ``Authorization: Bearer lkp_…`` on REST, SSE and the WebSocket
  handshake, like a login token.
- Its role is at most its creator's (``admin`` > ``operator`` > ``viewer``) and, at use, at
  most its user's current role. It expires after ``expires_in_days`` (1–366, default 30).
- ``last_used_at`` is written at most once a minute per token (a busy CI job must not turn
  every request into a database write).
- Revoking (API or CLI) refuses it at once for new requests; live streams end within
  ``[api] session_recheck_seconds`` (:mod:`linkops.live_sessions`), at once when revoked
  through this process's API.

Request bodies are attrs classes structured by the strict converter
(:mod:`linkops.converters`): :class:`CreateTokenBody`.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import uuid
from datetime import datetime, timedelta
from typing import Any

import attrs

from linkops.errors import ForbiddenError, NotFoundError, ValidationError
from linkops.timeutil import to_iso, utcnow

TOKEN_PREFIX = "lkp_"  # noqa: S105 - a prefix, not a secret
TOKEN_BYTES = 32
MAX_DAYS = 366
DEFAULT_DAYS = 30
ROLE_RANK = {"viewer": 1, "operator": 2, "admin": 3}
LAST_USED_EVERY_SECONDS = 60.0


@attrs.frozen
class CreateTokenBody:
    """``POST /api/auth/tokens`` body."""

    name: str
    role: str | None = None
    expires_in_days: int = DEFAULT_DAYS


@attrs.frozen
class ApiToken:
    id: str
    name: str
    username: str
    role: str
    created_at: str
    created_by: str
    expires_at: str
    last_used_at: str | None
    revoked_at: str | None

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


# Response shapes of /api/auth/tokens (the OpenAPI document is generated from these).
@attrs.frozen
class CreatedToken(ApiToken):
    """The new token: ``token`` is in this answer only."""

    token: str


@attrs.frozen
class TokenList:
    tokens: list[ApiToken]


@attrs.frozen
class RevokedToken(ApiToken):
    success: bool


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def looks_like_api_token(token: str) -> bool:
    return token.startswith(TOKEN_PREFIX)


def _row(row: sqlite3.Row) -> ApiToken:
    return ApiToken(id=row["id"], name=row["name"], username=row["username_norm"],
                    role=row["role"], created_at=row["created_at"],
                    created_by=row["created_by"], expires_at=row["expires_at"],
                    last_used_at=row["last_used_at"], revoked_at=row["revoked_at"])


def create_token(conn: sqlite3.Connection, *, username: str, creator_role: str, name: str,
                 role: str | None, days: int, created_by: str,
                 now: datetime | None = None) -> tuple[ApiToken, str]:
    """Insert a token for ``username``; returns it and the secret (shown once)."""
    name = name.strip()
    if not name or len(name) > 100 or not name.isprintable():
        raise ValidationError("name must be 1-100 printable characters",
                              details={"field": "name"})
    role = role or creator_role
    if role not in ROLE_RANK:
        raise ValidationError(f"role must be one of {', '.join(ROLE_RANK)}",
                              details={"field": "role"})
    if ROLE_RANK[role] > ROLE_RANK.get(creator_role, 0):
        raise ForbiddenError(f"a token's role cannot exceed its creator's ({creator_role})",
                             code="FORBIDDEN", details={"role": role})
    if type(days) is not int or not 1 <= days <= MAX_DAYS:
        raise ValidationError(f"expires_in_days must be 1-{MAX_DAYS}",
                              details={"field": "expires_in_days"})
    user = conn.execute("SELECT 1 FROM users WHERE username_norm = ?", (username,)).fetchone()
    if user is None:
        raise NotFoundError(f"no user {username!r}", code="USER_NOT_FOUND")
    issued = (now or utcnow()).replace(microsecond=0)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
    token = ApiToken(id=f"tok_{uuid.uuid4().hex[:16]}", name=name, username=username, role=role,
                     created_at=to_iso(issued), created_by=created_by,
                     expires_at=to_iso(issued + timedelta(days=days)), last_used_at=None,
                     revoked_at=None)
    conn.execute(
        "INSERT INTO api_tokens (id, name, username_norm, role, token_hash, created_at,"
        " created_by, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (token.id, token.name, username, role, hash_secret(secret), token.created_at,
         created_by, token.expires_at),
    )
    return token, secret


def list_tokens(conn: sqlite3.Connection, username: str | None) -> list[ApiToken]:
    """``username``'s tokens (None: everybody's), newest first; never a secret or a hash."""
    if username is None:
        rows = conn.execute("SELECT * FROM api_tokens ORDER BY created_at DESC, id").fetchall()
    else:
        rows = conn.execute(
            "SELECT * FROM api_tokens WHERE username_norm = ? ORDER BY created_at DESC, id",
            (username,)).fetchall()
    return [_row(r) for r in rows]


def revoke_token(conn: sqlite3.Connection, token_id: str, username: str | None) -> ApiToken:
    """Revoke ``token_id`` (only ``username``'s unless None); idempotent."""
    row = conn.execute("SELECT * FROM api_tokens WHERE id = ?", (token_id,)).fetchone()
    if row is None or (username is not None and row["username_norm"] != username):
        raise NotFoundError(f"no token {token_id!r}", code="TOKEN_NOT_FOUND")
    if row["revoked_at"] is None:
        conn.execute("UPDATE api_tokens SET revoked_at = ? WHERE id = ?",
                     (to_iso(utcnow()), token_id))
        row = conn.execute("SELECT * FROM api_tokens WHERE id = ?", (token_id,)).fetchone()
    return _row(row)


def lookup(conn: sqlite3.Connection, secret: str) -> sqlite3.Row | None:
    """The token row joined with its user's current role, or None."""
    row: sqlite3.Row | None = conn.execute(
        "SELECT t.id, t.role, t.expires_at, t.revoked_at, u.username_norm, u.role AS user_role,"
        " u.password_version FROM api_tokens AS t JOIN users AS u"
        " ON u.username_norm = t.username_norm WHERE t.token_hash = ?",
        (hash_secret(secret),)).fetchone()
    return row


def effective_role(token_role: str, user_role: str) -> str:
    """A token never acts above its user's *current* role."""
    return token_role if ROLE_RANK[token_role] <= ROLE_RANK.get(user_role, 0) else user_role
