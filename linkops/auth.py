"""Users, passwords, JWTs, lockout and revocation.

- Passwords: scrypt (stdlib, memory-hard, salted). An unknown user costs the same KDF work as
  a wrong password, and both get the same answer, so the API does not reveal who exists.
- Tokens: HS256 only (the algorithm list is pinned when decoding, so ``alg: none`` and key
  confusion are refused); claims ``sub``, ``role``, ``iat``, ``exp``, ``jti`` and ``pwv`` (the
  user's password version). ``exp`` is exactly ``iat + jwt_expiration_hours``. A token is
  refused when its ``jti`` was revoked (logout) or its ``pwv`` is older than the user's current
  password version (password change).
- Login (SPEC §10.2): rate limits per client IP and global (:mod:`linkops.ratelimit`) are
  decided first, in memory; then one read decides the lock (:mod:`linkops.lockout`: per
  *normalised* username (trim, NFKC, case-fold) and client, plus a per-name ceiling); then
  scrypt runs in a worker thread with bounded parallelism — never inside the database writer;
  then one short write records the outcome. Refusals of a locked name are counted per
  (name, client) instead of stored one row each; attempts are pruned after
  ``attempts_retention_hours``.

*Errors*: :class:`~linkops.errors.AuthError` (401) and
:class:`~linkops.errors.ForbiddenError` ``ACCOUNT_LOCKED`` (403, ``details.unlock_at``),
:class:`~linkops.errors.RateLimitError` ``RATE_LIMITED`` (429, ``details.retry_after_seconds``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import os
import secrets
import sqlite3
import unicodedata
import uuid
from datetime import datetime, timedelta
from typing import Any

import attrs
import jwt
import trio

from linkops import auth_tokens, live_sessions
from linkops.config import ApiSettings, SecuritySettings
from linkops.db import Database
from linkops.errors import (
    AuthError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    RateLimitError,
    ValidationError,
)
from linkops.live_sessions import LiveSessions
from linkops.lockout import LockoutPolicy
from linkops.ratelimit import LoginRateLimiter
from linkops.timeutil import now_iso, parse_iso, to_iso, utcnow

ALGORITHM = "HS256"
MAX_TOKEN_BYTES = 4096
ROLES = ("admin", "operator", "viewer")
# scrypt cost: ~50 ms on a small VM; the parameters are stored with each hash.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
ATTEMPT_FAILED, ATTEMPT_OK, ATTEMPT_REFUSED_LOCKED = 0, 1, 2
# scrypt threads at once: half the cores, so the event loop and the writer always get one.
HASH_PARALLELISM = max(1, (os.cpu_count() or 2) // 2)
PRUNE_EVERY_SECONDS = 60.0
# Logins waiting for a hash slot beyond this are shed with 429 at once: on a loaded machine the
# hashing, not the rate limit, is the bottleneck, and a queue would only grow.
HASH_QUEUE_MAX = 16


def normalize_username(name: str) -> str:
    return unicodedata.normalize("NFKC", name).strip().casefold()


def validate_username(name: str) -> str:
    norm = normalize_username(name)
    if not norm or len(norm) > 64 or any(ch.isspace() or not ch.isprintable() for ch in norm):
        raise ValidationError(
            "username must be 1-64 printable characters without spaces",
            details={"field": "username"},
        )
    return norm


def validate_password(password: str) -> None:
    if len(password) < 8:
        raise ValidationError(
            "password must be at least 8 characters", details={"field": "password"}
        )
    if len(password) > 1024:
        raise ValidationError("password is too long", details={"field": "password"})


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32
    )
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


@attrs.frozen
class NewPassword:
    """A password validated and hashed *before* its write transaction opens: scrypt takes
    ~45 ms, and a transaction that hashed would hold the database's one writer that long
    (the service's task starts, audit rows and sync queue behind a `linkops user passwd`)."""

    hash: str = attrs.field(repr=False)

    @classmethod
    def of(cls, password: str) -> NewPassword:
        validate_password(password)
        return cls(hash_password(password))


def _hashed(password: str | NewPassword) -> str:
    return (password if isinstance(password, NewPassword) else NewPassword.of(password)).hash


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        digest = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt_b64),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=32,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, base64.b64decode(digest_b64))


# A real hash of a random password: unknown users cost the same KDF work as known ones.
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


@attrs.frozen
class User:
    username: str
    role: str
    password_version: int


@attrs.frozen
class Session:
    """What a valid token proves."""

    user: User
    jti: str
    expires_at: datetime
    # Set when the bearer is an API token (``lkp_…``) rather than a login JWT.
    token_id: str | None = None


@attrs.frozen
class LoginResult:
    token: str
    user: User
    expires_at: datetime


# -- user management (blocking; used by the CLI and inside db.write) ------------------------


def add_user(
    conn: sqlite3.Connection, username: str, password: str | NewPassword, role: str = "operator"
) -> User:
    norm = validate_username(username)
    password_hash = _hashed(password)
    if role not in ROLES:
        raise ValidationError(f"role must be one of {', '.join(ROLES)}", details={"field": "role"})
    if conn.execute("SELECT 1 FROM users WHERE username_norm = ?", (norm,)).fetchone():
        raise ConflictError(f"user {username.strip()!r} already exists", code="USER_EXISTS")
    now = now_iso()
    conn.execute(
        "INSERT INTO users (username, username_norm, password_hash, role, password_version,"
        " created_at, updated_at) VALUES (?, ?, ?, ?, 1, ?, ?)",
        (username.strip(), norm, password_hash, role, now, now),
    )
    return User(username=norm, role=role, password_version=1)


def change_password(conn: sqlite3.Connection, username: str,
                    password: str | NewPassword) -> User:
    norm = normalize_username(username)
    password_hash = _hashed(password)
    row = conn.execute(
        "SELECT role, password_version FROM users WHERE username_norm = ?", (norm,)
    ).fetchone()
    if row is None:
        raise NotFoundError(f"no user {username.strip()!r}", code="USER_NOT_FOUND")
    version = int(row["password_version"]) + 1
    conn.execute(
        "UPDATE users SET password_hash = ?, password_version = ?, updated_at = ?"
        " WHERE username_norm = ?",
        (password_hash, version, now_iso(), norm),
    )
    # A new password also ends the lockout and clears the failure history.
    conn.execute("DELETE FROM auth_attempts WHERE username_norm = ?", (norm,))
    conn.execute("DELETE FROM auth_refusals WHERE username_norm = ?", (norm,))
    return User(username=norm, role=str(row["role"]), password_version=version)


def unlock_user(conn: sqlite3.Connection, username: str) -> int:
    """Clear the failure history of ``username`` (every client); returns the rows removed."""
    norm = normalize_username(username)
    if conn.execute("SELECT 1 FROM users WHERE username_norm = ?", (norm,)).fetchone() is None:
        raise NotFoundError(f"no user {username.strip()!r}", code="USER_NOT_FOUND")
    n = conn.execute(
        "DELETE FROM auth_attempts WHERE username_norm = ? AND success != ?", (norm, ATTEMPT_OK)
    ).rowcount
    conn.execute("DELETE FROM auth_refusals WHERE username_norm = ?", (norm,))
    return int(n)


def set_role(conn: sqlite3.Connection, username: str, role: str) -> User:
    """Change a user's role; their live sessions end at the next recheck."""
    norm = normalize_username(username)
    if role not in ROLES:
        raise ValidationError(f"role must be one of {', '.join(ROLES)}", details={"field": "role"})
    row = conn.execute(
        "SELECT password_version FROM users WHERE username_norm = ?", (norm,)
    ).fetchone()
    if row is None:
        raise NotFoundError(f"no user {username.strip()!r}", code="USER_NOT_FOUND")
    conn.execute("UPDATE users SET role = ?, updated_at = ? WHERE username_norm = ?",
                 (role, now_iso(), norm))
    return User(username=norm, role=role, password_version=int(row["password_version"]))


class AuthService:
    """Login, token checks and logout (see the module docstring)."""

    def __init__(self, db: Database, api: ApiSettings, security: SecuritySettings) -> None:
        self.db = db
        self.api = api
        self.security = security
        self._key = api.jwt_secret.encode()
        self.limiter = LoginRateLimiter(security.login_rate_per_minute,
                                        security.login_rate_global_per_minute)
        self.policy = LockoutPolicy(
            max_failed=security.max_failed_attempts,
            window=timedelta(minutes=security.failure_window_minutes),
            duration=timedelta(minutes=security.lockout_duration_minutes),
            ceiling=security.lockout_ceiling,
        )
        self._hash_slots = trio.CapacityLimiter(HASH_PARALLELISM)
        self._pruned_at = -math.inf
        self.live = LiveSessions(self, api.session_recheck_seconds)
        # API token id → when its last_used_at was last written (trio clock).
        self._token_used: dict[str, float] = {}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Background: re-validate live streams' sessions (:mod:`linkops.live_sessions`)."""
        await self.live.run(task_status=task_status)

    async def why_ended(self, sessions: list[Session]) -> list[str | None]:
        """For each session: None while still valid, else why it is not (one read)."""
        now = utcnow()

        def read(conn: sqlite3.Connection) -> list[str | None]:
            out: list[str | None] = []
            for s in sessions:
                out.append(self._why_ended(conn, s, now))
            return out

        return await self.db.read(read)

    @staticmethod
    def _why_ended(conn: sqlite3.Connection, s: Session, now: datetime) -> str | None:
        if s.expires_at <= now:
            return live_sessions.REASON_EXPIRED
        if s.token_id is not None:
            token = conn.execute(
                "SELECT t.revoked_at, t.role, u.role AS user_role FROM api_tokens AS t"
                " JOIN users AS u ON u.username_norm = t.username_norm WHERE t.id = ?",
                (s.token_id,),
            ).fetchone()
            if token is None or token["revoked_at"] is not None:
                return live_sessions.REASON_REVOKED
            if auth_tokens.effective_role(token["role"], token["user_role"]) != s.user.role:
                return live_sessions.REASON_ROLE
        elif conn.execute("SELECT 1 FROM revoked_tokens WHERE jti = ?", (s.jti,)).fetchone():
            return live_sessions.REASON_LOGOUT
        row = conn.execute(
            "SELECT role, password_version FROM users WHERE username_norm = ?",
            (s.user.username,),
        ).fetchone()
        if row is None:
            return live_sessions.REASON_USER_GONE
        if s.token_id is None and row["password_version"] != s.user.password_version:
            return live_sessions.REASON_PASSWORD
        if s.token_id is None and row["role"] != s.user.role:
            return live_sessions.REASON_ROLE
        return None

    # -- tokens ----------------------------------------------------------------------------

    def issue_token(self, user: User, *, now: datetime | None = None) -> LoginResult:
        issued = (now or utcnow()).replace(microsecond=0)
        expires = issued + timedelta(hours=self.api.jwt_expiration_hours)
        claims = {
            "sub": user.username,
            "role": user.role,
            "iat": int(issued.timestamp()),
            "exp": int(expires.timestamp()),
            "jti": uuid.uuid4().hex,
            "pwv": user.password_version,
        }
        token = jwt.encode(claims, self._key, algorithm=ALGORITHM)
        return LoginResult(token=token, user=user, expires_at=expires)

    def decode_token(self, token: str, *, now: datetime | None = None) -> dict[str, Any]:
        """Check signature, algorithm and times; does not consult the database."""
        if not token or len(token) > MAX_TOKEN_BYTES:
            raise AuthError("invalid token", code="TOKEN_INVALID")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                options={
                    "require": ["exp", "iat", "sub", "jti"],
                    "verify_iat": False,
                    "verify_exp": now is None,
                },
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired", code="TOKEN_EXPIRED") from None
        except (jwt.InvalidTokenError, ValueError, TypeError):
            raise AuthError("invalid token", code="TOKEN_INVALID") from None
        if not all(isinstance(claims.get(k), str) for k in ("sub", "jti")) or not isinstance(
            claims.get("exp"), int
        ):
            raise AuthError("invalid token", code="TOKEN_INVALID")
        if now is not None and claims["exp"] <= int(now.timestamp()):
            raise AuthError("token expired", code="TOKEN_EXPIRED")
        return claims

    async def authenticate(self, token: str) -> Session:
        if auth_tokens.looks_like_api_token(token):
            return await self._authenticate_api_token(token)
        claims = self.decode_token(token)

        def check(conn: sqlite3.Connection) -> sqlite3.Row | None:
            if conn.execute(
                "SELECT 1 FROM revoked_tokens WHERE jti = ?", (claims["jti"],)
            ).fetchone():
                return None
            row: sqlite3.Row | None = conn.execute(
                "SELECT username_norm, role, password_version FROM users WHERE username_norm = ?",
                (claims["sub"],),
            ).fetchone()
            return row

        row = await self.db.read(check)
        if row is None or row["password_version"] != claims.get("pwv"):
            raise AuthError("token revoked", code="TOKEN_INVALID")
        user = User(
            username=row["username_norm"],
            role=row["role"],
            password_version=row["password_version"],
        )
        return Session(
            user=user,
            jti=claims["jti"],
            expires_at=datetime.fromtimestamp(claims["exp"], tz=utcnow().tzinfo),
        )

    async def _authenticate_api_token(self, secret: str) -> Session:
        if len(secret) > MAX_TOKEN_BYTES:
            raise AuthError("invalid token", code="TOKEN_INVALID")
        row = await self.db.read(lambda c: auth_tokens.lookup(c, secret))
        if row is None or row["revoked_at"] is not None:
            raise AuthError("token revoked or unknown", code="TOKEN_INVALID")
        expires = parse_iso(row["expires_at"])
        now = utcnow()
        if expires <= now:
            raise AuthError("token expired", code="TOKEN_EXPIRED")
        token_id = str(row["id"])
        mono = trio.current_time()
        last = self._token_used.get(token_id)
        if last is None or mono - last >= auth_tokens.LAST_USED_EVERY_SECONDS:
            self._token_used[token_id] = mono
            await self.db.write(lambda c: c.execute(
                "UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (to_iso(now), token_id)))
        user = User(username=row["username_norm"],
                    role=auth_tokens.effective_role(row["role"], row["user_role"]),
                    password_version=row["password_version"])
        return Session(user=user, jti=token_id, expires_at=expires, token_id=token_id)

    # -- API tokens (linkops.auth_tokens) --------------------------------------------------

    async def create_api_token(self, creator: Session, body: auth_tokens.CreateTokenBody
                               ) -> tuple[auth_tokens.ApiToken, str]:
        if creator.token_id is not None:
            raise ForbiddenError("an API token cannot create API tokens; log in",
                                 code="FORBIDDEN")
        user = creator.user
        return await self.db.write(lambda c: auth_tokens.create_token(
            c, username=user.username, creator_role=user.role, name=body.name,
            role=body.role, days=body.expires_in_days, created_by=user.username))

    async def list_api_tokens(self, session: Session) -> list[auth_tokens.ApiToken]:
        who = None if session.user.role == "admin" else session.user.username
        return await self.db.read(lambda c: auth_tokens.list_tokens(c, who))

    async def revoke_api_token(self, session: Session, token_id: str) -> auth_tokens.ApiToken:
        who = None if session.user.role == "admin" else session.user.username
        token = await self.db.write(lambda c: auth_tokens.revoke_token(c, token_id, who))
        self.live.end_token(token_id)
        return token

    async def revoke(self, session: Session) -> None:
        """Logout: the login token's jti is refused from now on (an API token is revoked)."""
        if session.token_id is not None:
            await self.db.write(lambda c: auth_tokens.revoke_token(c, session.token_id or "",
                                                                   None))
            self.live.end_token(session.token_id)
            return

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR IGNORE INTO revoked_tokens (jti, expires_at) VALUES (?, ?)",
                (session.jti, to_iso(session.expires_at)),
            )
            # Revocations are only needed until the token would have expired anyway.
            conn.execute("DELETE FROM revoked_tokens WHERE expires_at < ?", (now_iso(),))

        await self.db.write(write)
        self.live.end_jti(session.jti)

    # -- login -----------------------------------------------------------------------------

    def _login_state(self, conn: sqlite3.Connection, norm: str, client: str,
                     now: datetime) -> tuple[datetime | None, sqlite3.Row | None]:
        """(unlock time or None, the user's row or None): one indexed read, no writer.

        A success ends the count of failures before it: for its own client, and for the
        ceiling (a success from anywhere proves the owner); not for other clients' own locks.
        """
        # Bounded: once a name is locked, refusals are counted in auth_refusals, not stored here.
        rows = conn.execute(
            "SELECT attempted_at, remote_addr, success FROM auth_attempts WHERE username_norm = ?"
            " AND success IN (?, ?) AND attempted_at > ? ORDER BY attempted_at",
            (norm, ATTEMPT_FAILED, ATTEMPT_OK, to_iso(self.policy.lookback(now))),
        ).fetchall()
        every: list[datetime] = []
        own: list[datetime] = []
        for at_text, addr, success in rows:
            at, mine = parse_iso(at_text), (addr or "") == client
            if success == ATTEMPT_OK:
                every.clear()
                if mine:
                    own.clear()
                continue
            every.append(at)
            if mine:
                own.append(at)
        unlock_at = self.policy.state(own, every, now)
        user: sqlite3.Row | None = None
        if unlock_at is None:
            user = conn.execute(
                "SELECT password_hash, role, password_version FROM users WHERE username_norm = ?",
                (norm,),
            ).fetchone()
        return unlock_at, user

    def _due_for_pruning(self) -> bool:
        mono = trio.current_time()
        if mono - self._pruned_at < PRUNE_EVERY_SECONDS:
            return False
        self._pruned_at = mono
        return True

    def _record(self, conn: sqlite3.Connection, norm: str, client: str, outcome: int,
                now: datetime, prune: bool) -> None:
        """The one short write of a login: the attempt, and now and then the pruning."""
        at = to_iso(now)
        if outcome == ATTEMPT_REFUSED_LOCKED:
            conn.execute(
                "INSERT INTO auth_refusals (username_norm, remote_addr, refused, first_at, last_at)"
                " VALUES (?, ?, 1, ?, ?) ON CONFLICT (username_norm, remote_addr)"
                " DO UPDATE SET refused = refused + 1, last_at = excluded.last_at",
                (norm, client, at, at),
            )
        else:
            conn.execute(
                "INSERT INTO auth_attempts (username_norm, success, remote_addr, attempted_at)"
                " VALUES (?, ?, ?, ?)",
                (norm, outcome, client or None, at),
            )
        if prune:
            self.prune(conn, now)

    def prune(self, conn: sqlite3.Connection, now: datetime) -> int:
        """Delete attempts and refusal counters older than ``attempts_retention_hours``."""
        cutoff = to_iso(now - timedelta(hours=self.security.attempts_retention_hours))
        n = conn.execute("DELETE FROM auth_attempts WHERE attempted_at < ?", (cutoff,)).rowcount
        conn.execute("DELETE FROM auth_refusals WHERE last_at < ?", (cutoff,))
        return int(n)

    async def login(
        self, username: str, password: str, remote_addr: str | None = None
    ) -> LoginResult:
        """Rate limit → lock check (a read) → scrypt (a worker thread, bounded) → one write.

        *Errors*: 429 ``RATE_LIMITED`` (``details.retry_after_seconds``), 403
        ``ACCOUNT_LOCKED``, 401 ``INVALID_CREDENTIALS``, 400 for non-string fields.
        """
        if not isinstance(username, str) or not isinstance(password, str):
            raise ValidationError("username and password must be strings")
        client = remote_addr or ""
        wait = self.limiter.check(client)
        if wait is not None:
            raise RateLimitError(
                "too many login attempts; try again later",
                details={"retry_after_seconds": wait},
            )
        norm = normalize_username(username)
        if not norm or len(norm) > 256 or len(password) > 1024:
            raise AuthError("invalid username or password", code="INVALID_CREDENTIALS")
        now = utcnow()
        unlock_at, row = await self.db.read(lambda c: self._login_state(c, norm, client, now))
        prune = self._due_for_pruning()
        if unlock_at is not None:
            await self.db.write(
                lambda c: self._record(c, norm, client, ATTEMPT_REFUSED_LOCKED, now, prune))
            raise ForbiddenError(
                "account is locked after too many failed logins",
                code="ACCOUNT_LOCKED",
                details={"unlock_at": to_iso(unlock_at)},
            )
        if self._hash_slots.statistics().tasks_waiting >= HASH_QUEUE_MAX:
            raise RateLimitError(
                "too many logins in progress; try again later",
                details={"retry_after_seconds": 1},
            )
        stored = row["password_hash"] if row is not None else _DUMMY_HASH
        # Never inside the writer: scrypt in a worker thread, at most HASH_PARALLELISM at once.
        ok = await trio.to_thread.run_sync(verify_password, password, stored,
                                           limiter=self._hash_slots)
        ok = ok and row is not None
        await self.db.write(
            lambda c: self._record(c, norm, client, ATTEMPT_OK if ok else ATTEMPT_FAILED, now,
                                   prune))
        if not ok or row is None:
            raise AuthError("invalid username or password", code="INVALID_CREDENTIALS")
        return self.issue_token(User(norm, row["role"], row["password_version"]))
