"""JSON string literals for bulk plain text, faster than ``json``'s escapers.

Operation output events are mostly printable ASCII with line ends:
for such text the literal is the text with ``\\n``, ``\\r`` and ``\\t`` escaped, and a
translate + replace on bytes makes it about 2.3x faster than ``json``'s C escaper (measured on
256 KiB of base64 lines; docs/performance.md). Anything else (quotes, backslashes, other
control characters, non-ASCII) is left to ``json`` by returning None.

:func:`json_string` is the general one (any text), by orjson: the terminal's frames and its
recordings use it (docs/decisions/recordings.md, "Output encoded once").
"""

from __future__ import annotations

import json
from typing import Final

import orjson

# Bytes that stand for themselves in a JSON string, plus the three whitespace escapes.
_PLAIN: Final = bytes(c for c in range(0x20, 0x7F) if c not in (0x22, 0x5C)) + b"\n\r\t"


def plain_json_string(text: str) -> bytes | None:
    """``text`` as the JSON string literal ``json.dumps`` writes, when ``text`` is plain
    (printable ASCII, LF, CR, TAB); None otherwise."""
    if not text.isascii():  # O(1) for str
        return None
    raw = text.encode("ascii")
    if raw.translate(None, _PLAIN):
        return None
    if b"\n" in raw:
        raw = raw.replace(b"\n", b"\\n")
    if b"\r" in raw:
        raw = raw.replace(b"\r", b"\\r")
    if b"\t" in raw:
        raw = raw.replace(b"\t", b"\\t")
    return b'"' + raw + b'"'


def json_string(text: str) -> bytes:
    """``text`` as a JSON string literal (quotes included, non-ASCII as UTF-8), by orjson
    (0.7-1.2 ms of CPU per MB; ``json.dumps`` 2-3x more). Text with a lone surrogate, which
    orjson refuses, is written by the stdlib as ASCII JSON, the surrogate as a ``\\ud800``
    escape."""
    try:
        return orjson.dumps(text)
    except orjson.JSONEncodeError:
        return json.dumps(text).encode("ascii")
