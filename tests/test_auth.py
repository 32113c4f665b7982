"""Login, lockout, forged tokens and revocation, black-box over HTTP against a real service."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import httpx
import jwt
import pytest
import trio

from linkops import auth
from linkops.db import Database
from tests.fixtures_core import ADMIN, ADMIN_PASSWORD, login


async def _try(http: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await http.post("/api/auth/login", json={"username": username, "password": password})


async def test_login_returns_token_user_and_cookie(anon: httpx.AsyncClient) -> None:
    with trio.fail_after(20):
        r = await _try(anon, ADMIN, ADMIN_PASSWORD)
        body = r.json()
        assert r.status_code == 200
        assert body["success"] is True and body["user"] == {"username": "admin", "role": "admin"}
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        claims = jwt.decode(body["token"], options={"verify_signature": False})
        assert {"sub", "role", "iat", "exp", "jti"} <= set(claims)
        assert claims["exp"] - claims["iat"] == 24 * 3600


async def test_lockout_refuses_correct_password_and_normalises_names(
    anon: httpx.AsyncClient,
) -> None:
    with trio.fail_after(30):
        # Variants of one name share one counter.
        for name in ("Admin", " admin ", "ADMIN", "admin", "Ａｄｍｉｎ"):
            r = await _try(anon, name, "wrong-password")
            assert r.status_code == 401
            assert r.json()["error"]["code"] == "INVALID_CREDENTIALS"
        r = await _try(anon, ADMIN, ADMIN_PASSWORD)
        assert r.status_code == 403
        err = r.json()["error"]
        assert err["code"] == "ACCOUNT_LOCKED"
        assert err["details"]["unlock_at"].endswith("Z")
        # Another user is not affected.
        r = await _try(anon, "nobody", "wrong-password")
        assert r.status_code == 401


async def test_unknown_user_looks_like_wrong_password(anon: httpx.AsyncClient) -> None:
    with trio.fail_after(20):
        unknown = await _try(anon, "ghost", "whatever-password")
        wrong = await _try(anon, ADMIN, "whatever-password")
        assert unknown.status_code == wrong.status_code == 401
        assert unknown.json()["error"]["code"] == wrong.json()["error"]["code"]
        assert unknown.json()["error"]["message"] == wrong.json()["error"]["message"]


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _forged_tokens(secret: str) -> dict[str, str]:
    now = int(time.time())
    good = {"sub": "admin", "role": "admin", "iat": now, "exp": now + 3600, "jti": "x", "pwv": 1}
    none_token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(good)}."
    tokens = {
        "alg-none": none_token,
        "wrong-key": jwt.encode(good, "another-secret-that-is-long-enough-000000", "HS256"),
        "expired": jwt.encode({**good, "iat": now - 7200, "exp": now - 3600}, secret, "HS256"),
        "garbage": "not.a.token",
        "huge": "a" * 16384,
        "hs512": jwt.encode(good, secret, "HS512"),
    }
    for claim in ("exp", "iat", "sub", "jti"):
        tokens[f"missing-{claim}"] = jwt.encode(
            {k: v for k, v in good.items() if k != claim}, secret, "HS256"
        )
    return tokens


async def test_forged_tokens_are_401_never_500(running, anon: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    secret = running.services.settings.api.jwt_secret
    with trio.fail_after(30):
        for name, token in _forged_tokens(secret).items():
            r = await anon.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 401, (name, r.status_code, r.text)
            assert r.json()["error"]["code"] in ("TOKEN_INVALID", "TOKEN_EXPIRED"), name
        r = await anon.get("/api/auth/me", headers={"Authorization": "Basic abc"})
        assert r.status_code == 401


async def test_logout_revokes_token(anon: httpx.AsyncClient) -> None:
    with trio.fail_after(20):
        token = await login(anon)
        headers = {"Authorization": f"Bearer {token}"}
        assert (await anon.get("/api/auth/me", headers=headers)).status_code == 200
        assert (await anon.post("/api/auth/logout", headers=headers)).status_code == 200
        r = await anon.get("/api/auth/me", headers=headers)
        assert r.status_code == 401


async def test_password_change_invalidates_older_tokens(running, anon: httpx.AsyncClient) -> None:  # type: ignore[no-untyped-def]
    with trio.fail_after(20):
        token = await login(anon)
        db: Database = running.services.db
        await db.write(lambda c: auth.change_password(c, ADMIN, "a-brand-new-password"))
        r = await anon.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401
        fresh = await login(anon, ADMIN, "a-brand-new-password")
        r = await anon.get("/api/auth/me", headers={"Authorization": f"Bearer {fresh}"})
        assert r.status_code == 200


async def test_cookie_auth_needs_csrf_header_for_changes(anon: httpx.AsyncClient) -> None:
    with trio.fail_after(20):
        r = await _try(anon, ADMIN, ADMIN_PASSWORD)
        assert r.status_code == 200
        # httpx keeps the cookie: a GET works with it alone ...
        assert (await anon.get("/api/auth/me")).status_code == 200
        # ... a state change without the header is refused, with it accepted.
        r = await anon.post("/api/auth/logout")
        assert r.status_code == 403 and r.json()["error"]["code"] == "CSRF_CHECK_FAILED"
        r = await anon.post("/api/auth/logout", headers={"X-Requested-With": "linkops"})
        assert r.status_code == 200
        assert (await anon.get("/api/auth/me")).status_code == 401


@pytest.mark.parametrize(
    "body",
    [b"{", b"[]", b'"x"', b'{"username": 1, "password": 2}', b"\xff\xfe", b""],
)
async def test_login_bad_bodies_are_structured_400(anon: httpx.AsyncClient, body: bytes) -> None:
    with trio.fail_after(20):
        r = await anon.post(
            "/api/auth/login", content=body, headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] in ("VALIDATION_ERROR", "MALFORMED_JSON")


def test_a_password_hashed_before_the_transaction_is_stored_as_made(tmp_path: Path) -> None:
    """The CLI hashes outside the write transaction (auth.NewPassword): what it made is what
    is stored, it verifies, and the hash never shows in a repr (logs, tracebacks)."""
    prepared = auth.NewPassword.of("a-prepared-password")
    assert "scrypt" not in repr(prepared)
    with pytest.raises(auth.ValidationError):
        auth.NewPassword.of("short")
    db = Database(tmp_path / "state.db")
    try:
        db.write_sync(lambda c: auth.add_user(c, "pat", prepared, role="viewer"))
        def stored_hash() -> str:
            return str(db.read_sync(lambda c: c.execute(
                "SELECT password_hash FROM users WHERE username_norm = 'pat'").fetchone()[0]))
        stored = stored_hash()
        assert stored == prepared.hash
        assert auth.verify_password("a-prepared-password", stored)
        again = auth.NewPassword.of("another-password-2")
        db.write_sync(lambda c: auth.change_password(c, "pat", again))
        assert stored_hash() == again.hash
    finally:
        db.close()
