"""Opaque, tamper-evident keyset cursors for table queries.

A cursor says "continue after this row": it carries the last row's values of every sort key
(the full ordering, tie-break included) and the hash of the query shape it belongs to
(:meth:`linkops.tables.query.Query.shape_hash`). It is ``v1.<payload>.<mac>`` with both parts
base64url; the MAC is HMAC-SHA256 under a key derived from the service secret (the JWT secret),
so a client can neither forge a position nor reuse a cursor with another query.

Because the position is a set of values, not an offset, the cursor stays correct while rows
are inserted: every row that existed when the walk began is returned exactly once.

*Errors*: :class:`~linkops.errors.ValidationError` ``INVALID_CURSOR`` (400) for anything that
is not a cursor we issued for this query shape under the current secret (forged, truncated,
from another query or table declaration, or from before a secret rotation).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Sequence
from typing import Any

from linkops.errors import ValidationError
from linkops.tables.query import MAX_CURSOR, Scalar
from linkops.tables.schema import Column

_PREFIX = "v1"
_KEY_LABEL = b"linkops/tables/cursor/v1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    data = base64.urlsafe_b64decode(padded.encode("ascii"))
    # Only the canonical spelling: a token that differs in any character is refused, even
    # where base64 would ignore the difference (unused low bits of the last character).
    if _b64(data) != text:
        raise ValueError("non-canonical base64")
    return data


def _invalid(message: str) -> ValidationError:
    return ValidationError(message, code="INVALID_CURSOR", details={"field": "page.cursor"})


class CursorCodec:
    """Signs and checks cursors. The key is derived, never the secret itself."""

    def __init__(self, secret: bytes) -> None:
        if not secret:
            raise ValueError("the cursor secret must not be empty")
        # A distinct key per purpose: a cursor MAC can never double as a JWT signature.
        self._key = hmac.new(secret, _KEY_LABEL, hashlib.sha256).digest()

    def _mac(self, signed: bytes) -> bytes:
        return hmac.new(self._key, signed, hashlib.sha256).digest()

    def encode(self, shape: str, values: Sequence[Scalar]) -> str:
        payload = json.dumps({"s": shape, "k": list(values)}, separators=(",", ":"))
        signed = f"{_PREFIX}.{_b64(payload.encode())}"
        return f"{signed}.{_b64(self._mac(signed.encode()))}"

    def decode(self, token: str, shape: str, columns: Sequence[Column]) -> tuple[Scalar, ...]:
        """The sort-key values in ``token``, checked against ``shape`` and ``columns``."""
        if len(token) > MAX_CURSOR:
            raise _invalid("cursor is too long")
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != _PREFIX:
            raise _invalid("malformed cursor")
        signed = f"{parts[0]}.{parts[1]}"
        try:
            mac = _unb64(parts[2])
            payload = json.loads(_unb64(parts[1]))
        except (binascii.Error, ValueError, UnicodeError):
            raise _invalid("malformed cursor")
        if not hmac.compare_digest(mac, self._mac(signed.encode("ascii", "replace"))):
            raise _invalid("cursor signature is invalid (forged or issued under another key)")
        if not isinstance(payload, dict) or payload.get("s") != shape:
            raise _invalid("cursor belongs to a different query; restart from the first page")
        values = payload.get("k")
        if not isinstance(values, list) or len(values) != len(columns):
            raise _invalid("cursor does not match the query's sort keys")
        for column, value in zip(columns, values, strict=True):
            if not _fits(column, value):
                raise _invalid(f"cursor value for {column.name} has the wrong type")
        return tuple(values)


def _fits(column: Column, value: Any) -> bool:
    if value is None:
        return True
    if column.type in ("str", "time"):
        return isinstance(value, str)
    if column.type in ("int", "bool"):
        return isinstance(value, int)
    return isinstance(value, int | float)
