"""Properties 1, 2 and 3 of SPEC §9: token lifetime, failed logins, bad tokens."""

from __future__ import annotations

import string
from datetime import UTC, datetime, timedelta

import attrs
import httpx
import jwt
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from linkops import auth
from linkops.auth import AuthService, User
from linkops.db import Database
from linkops.errors import AuthError, ForbiddenError
from tests.strategies import PROP, call, run_property

moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)
)
within_a_day = st.integers(min_value=0, max_value=24 * 3600 - 1)


@PROP
@given(issued=moments, offset=within_a_day, name=st.text(string.ascii_lowercase, min_size=1))
def test_property_1_token_expires_exactly_24h_after_issue(
    settings: object, issued: datetime, offset: int, name: str
) -> None:
    """Property 1: a JWT issued for valid credentials expires exactly 24 h after issue and
    validates until then."""
    service = AuthService(None, settings.api, settings.security)  # type: ignore[arg-type, attr-defined]
    result = service.issue_token(User(name, "admin", 1), now=issued)
    claims = jwt.decode(result.token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 24 * 3600
    assert result.expires_at == issued.replace(microsecond=0) + timedelta(hours=24)
    base = issued.replace(microsecond=0)
    assert service.decode_token(result.token, now=base + timedelta(seconds=offset))["sub"] == name
    with pytest.raises(AuthError) as info:
        service.decode_token(result.token, now=base + timedelta(hours=24, seconds=offset % 60))
    assert info.value.code == "TOKEN_EXPIRED"


async def test_property_1_through_real_login(running, anon: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    """Property 1 (end to end): the token from POST /api/auth/login says 24 h and works."""
    with trio.fail_after(20):
        r = await anon.post(
            "/api/auth/login", json={"username": "admin", "password": "correct-horse-battery"}
        )
        token = r.json()["token"]
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims["exp"] - claims["iat"] == 24 * 3600
        expires = datetime.fromisoformat(r.json()["expires_at"].replace("Z", "+00:00"))
        assert int(expires.timestamp()) == claims["exp"]
        me = await anon.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200


async def test_property_2_failed_login_increments_counter_and_errors(
    database: Database, settings: object
) -> None:
    """Property 2: a failed login increments the attempt counter and returns an error."""
    # Rate limits out of the way: this property is about the counter and the lockout.
    security = attrs.evolve(settings.security, login_rate_per_minute=10**6,  # type: ignore[attr-defined]
                            login_rate_global_per_minute=10**6)
    service = AuthService(database, settings.api, security)  # type: ignore[attr-defined]
    await database.write(lambda c: auth.add_user(c, "admin", "correct-horse-battery"))

    async def failures(norm: str) -> int:
        row = await database.fetchone(
            "SELECT COUNT(*) FROM auth_attempts WHERE username_norm = ? AND success = 0", (norm,)
        )
        assert row is not None
        return int(row[0])

    async def attempt(name: str, password: str) -> AuthError | ForbiddenError:
        with pytest.raises((AuthError, ForbiddenError)) as info:
            await service.login(name, password)
        return info.value

    @PROP
    @given(
        name=st.sampled_from(["admin", "Admin", " ADMIN ", "ghost", "someone-else"]),
        password=st.text(min_size=1, max_size=40).filter(lambda p: p != "correct-horse-battery"),
    )
    def prop(name: str, password: str) -> None:
        norm = auth.normalize_username(name)
        before = call(failures, norm)
        error = call(attempt, name, password)
        after = call(failures, norm)
        if isinstance(error, ForbiddenError):
            # Locked: refused without extending the lock, and the answer says until when.
            assert error.code == "ACCOUNT_LOCKED" and error.details["unlock_at"]
            assert after == before
        else:
            assert error.code == "INVALID_CREDENTIALS"
            assert after == before + 1

    await run_property(prop)


token_text = st.one_of(
    st.text(max_size=300),
    st.binary(max_size=300).map(lambda b: b.hex()),
    st.builds(
        lambda a, b, c: f"{a}.{b}.{c}", *[st.text(string.ascii_letters + "-_", max_size=60)] * 3
    ),
)


async def test_property_3_malformed_tokens_are_401(anon: httpx.AsyncClient) -> None:
    """Property 3: expired or malformed tokens get 401 (never 500)."""

    @PROP
    @given(token=token_text)
    def prop(token: str) -> None:
        # Only what HTTP can carry in a header: visible ASCII, no trailing space.
        header = "".join(ch for ch in f"Bearer {token}" if 32 <= ord(ch) < 127).rstrip()
        r = call(anon.get, "/api/auth/me", headers={"Authorization": header})
        assert r.status_code == 401
        assert r.json()["error"]["code"] in ("TOKEN_INVALID", "TOKEN_EXPIRED")

    await run_property(prop)


async def test_property_3_expired_tokens_are_401(running, anon: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    """Property 3: a correctly signed token whose exp has passed gets 401 TOKEN_EXPIRED."""
    service: AuthService = running.services.auth

    @PROP
    @given(
        age=st.integers(min_value=0, max_value=10 * 365 * 24 * 3600),
        role=st.sampled_from(auth.ROLES),
    )
    def prop(age: int, role: str) -> None:
        issued = datetime.now(UTC) - timedelta(hours=24, seconds=age + 1)
        token = service.issue_token(User("admin", role, 1), now=issued).token
        r = call(anon.get, "/api/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "TOKEN_EXPIRED"

    await run_property(prop)
