"""The terminal WebSocket's message format: parse what the browser sends, build what we send.

One socket carries every pane of a workspace. Each frame is one JSON object (text frame)::

    client → server
      {"pane": "A", "type": "stdin",  "data": "ls -l\\r"}
      {"pane": "A", "type": "resize", "cols": 120, "rows": 40}   (also "data": {cols, rows})
      {"type": "ping"}                                            (keeps an idle socket open)
      {"type": "flow", "window": 262144}                          (opt-in flow control)
      {"type": "ack", "chars": 32768}                             (output processed)
      {"type": "broadcast", "panes": ["A", "C"], "data": "uptime\r"} (same input, each pane)
    server → client
      {"pane": "A", "type": "stdout", "data": "…"}                ("replay": true for scrollback)
      {"pane": "A", "type": "status", "data": "connecting|enrolled|connected|closed|error",
       "message": "…", "target": "vps-01"}
      {"pane": null, "type": "status", "data": "error", "code": "MALFORMED_MESSAGE", …}
      {"pane": null, "type": "pong"}

*Flow control* (optional; xterm.js's write callback is the natural source of acks): after
``flow``, the server keeps at most ``window`` characters of ``stdout`` data (clamped to
16 KiB..8 MiB) unacknowledged and pauses output until ``ack`` messages report that the client
has processed it — except a pane with only a little output waiting (an echo), which may go
up to ``window`` + 64 KiB (see ``buffers.ECHO_CHARS``). Without it, TCP is the only brake, and
a flooding pane can fill socket buffers of several MB that a neighbouring pane's keystroke echo
must queue behind.

Sizes are clamped to ``2..500`` columns × ``1..200`` rows. A frame larger than
:data:`MAX_FRAME_BYTES` closes the socket with 1009, a binary frame with 1003; every other
mistake (bad JSON, unknown type or pane, wrong field types) is answered with an ``error``
status and the socket stays open.

*Errors*: :class:`ProtocolError` carries the code for the error message and, when the
mistake is fatal for the socket, the WebSocket close code.
"""

from __future__ import annotations

import codecs
import functools
import json
from typing import Any, Final

import attrs

from linkops.jsontext import json_string
from linkops.models import PANES
from linkops.terminal.workspaces import clamp_size

MAX_FRAME_BYTES: Final = 64 * 1024
CLOSE_NORMAL: Final = 1000
CLOSE_GOING_AWAY: Final = 1001
CLOSE_UNSUPPORTED: Final = 1003
CLOSE_POLICY: Final = 1008
CLOSE_TOO_BIG: Final = 1009
CLOSE_INTERNAL: Final = 1011
# Application codes (4000-4999 are ours): another socket took over the workspace; the
# workspace was deleted.
CLOSE_REPLACED: Final = 4001
CLOSE_WORKSPACE_GONE: Final = 4004
STATUSES: Final = ("connecting", "enrolled", "connected", "closed", "error")
MIN_FLOW_WINDOW: Final = 16 * 1024
MAX_FLOW_WINDOW: Final = 8 * 1024 * 1024


class ProtocolError(Exception):
    def __init__(self, code: str, message: str, *, pane: str | None = None,
                 close_code: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.pane = pane
        self.close_code = close_code


@attrs.frozen
class Stdin:
    pane: str
    data: str


@attrs.frozen
class Resize:
    pane: str
    cols: int
    rows: int


@attrs.frozen
class Ping:
    pass


@attrs.frozen
class Flow:
    """Opt-in flow control: at most ``window`` characters of output unacknowledged."""

    window: int


@attrs.frozen
class Ack:
    """The client has processed ``chars`` more characters of output."""

    chars: int


@attrs.frozen
class Broadcast:
    """The same input to each of ``panes`` (distinct names of this workspace, in order)."""

    panes: tuple[str, ...]
    data: str


ClientMessage = Stdin | Resize | Ping | Flow | Ack | Broadcast


def _broadcast(message: dict[str, Any], panes: tuple[str, ...]) -> Broadcast:
    names = message.get("panes")
    data = message.get("data")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ProtocolError("INVALID_MESSAGE", "broadcast needs panes: a non-empty list of "
                            "pane names")
    unknown = [n for n in names if n not in panes]
    if unknown:
        raise ProtocolError("UNKNOWN_PANE", f"unknown pane(s) {', '.join(map(repr, unknown))}"
                            f" (this workspace has {', '.join(panes)}); nothing was sent")
    if len(set(names)) != len(names):
        raise ProtocolError("INVALID_MESSAGE", "broadcast panes must be distinct")
    if not isinstance(data, str):
        raise ProtocolError("INVALID_MESSAGE", "broadcast data must be a string")
    return Broadcast(panes=tuple(names), data=data)


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProtocolError("INVALID_MESSAGE", f"{name} must be a non-negative integer")
    return value


def _int_field(value: Any, name: str, pane: str) -> int:
    # bool is an int subclass; "cols": true is a client bug, not 1 column.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError("INVALID_MESSAGE", f"resize needs a numeric {name}", pane=pane)
    if value != value or value in (float("inf"), float("-inf")):
        raise ProtocolError("INVALID_MESSAGE", f"resize {name} must be finite", pane=pane)
    return int(value)


def parse_client_message(raw: str | bytes, panes: tuple[str, ...] = PANES) -> ClientMessage:
    """Decode one frame. ``panes`` are the pane names of the workspace.

    *Errors*: :class:`ProtocolError`; ``close_code`` is set for binary or oversized frames.
    """
    if isinstance(raw, bytes):
        raise ProtocolError("UNSUPPORTED_FRAME", "binary frames are not supported; send JSON "
                            "text", close_code=CLOSE_UNSUPPORTED)
    # len(str) <= UTF-8 length <= 4 * len(str): check cheaply before encoding.
    if len(raw) > MAX_FRAME_BYTES or (len(raw) * 4 > MAX_FRAME_BYTES
                                      and len(raw.encode("utf-8", "surrogatepass"))
                                      > MAX_FRAME_BYTES):
        raise ProtocolError("FRAME_TOO_LARGE", f"frames are limited to {MAX_FRAME_BYTES} bytes",
                            close_code=CLOSE_TOO_BIG)
    try:
        message = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ProtocolError("MALFORMED_MESSAGE", f"frame is not valid JSON: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError("MALFORMED_MESSAGE", "frame must be a JSON object")
    kind = message.get("type")
    if kind == "ping":
        return Ping()
    if kind == "flow":
        window = _count(message.get("window"), "window")
        return Flow(window=min(max(window, MIN_FLOW_WINDOW), MAX_FLOW_WINDOW))
    if kind == "ack":
        return Ack(chars=_count(message.get("chars"), "chars"))
    if kind == "broadcast":
        return _broadcast(message, panes)
    pane = message.get("pane")
    if kind not in ("stdin", "resize"):
        raise ProtocolError("UNKNOWN_TYPE", f"unknown message type {kind!r} (expected stdin, "
                            "resize, ping, flow, ack or broadcast)",
                            pane=pane if isinstance(pane, str) else None)
    if not isinstance(pane, str) or pane not in panes:
        raise ProtocolError("UNKNOWN_PANE", f"unknown pane {pane!r} (this workspace has "
                            f"{', '.join(panes)})")
    if kind == "stdin":
        data = message.get("data")
        if not isinstance(data, str):
            raise ProtocolError("INVALID_MESSAGE", "stdin data must be a string", pane=pane)
        return Stdin(pane=pane, data=data)
    nested = message.get("data")
    size: dict[str, Any] = nested if isinstance(nested, dict) else message
    cols = _int_field(size.get("cols"), "cols", pane)
    rows = _int_field(size.get("rows"), "rows", pane)
    cols, rows = clamp_size(cols, rows)
    return Resize(pane=pane, cols=cols, rows=rows)


# stdout text at least this long is encoded by orjson (json.dumps costs 2-3x more per MB).
_BIG_TEXT: Final = 4096
# A stdout message may carry its data already as a JSON string literal (bytes), under this
# key: a recorded pane encodes its output once, for the recording and for the socket
# (session.py). Never sent as such: encode() puts the literal in place of "data".
ENCODED: Final = "_encoded"


def encode(message: dict[str, Any]) -> str:
    """One server → client message as compact JSON (non-ASCII text kept as is)."""
    if message.get("type") == "stdout":
        literal: bytes | None = message.get(ENCODED)
        text = message.get("data")
        if literal is None and isinstance(text, str) and len(text) >= _BIG_TEXT:
            literal = json_string(text)
        if literal is not None:  # bulk output (cat, logs)
            return f'{_stdout_head(message.get("pane"), bool(message.get("replay")))}' \
                   f'{literal.decode()}}}'
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


@functools.cache
def _stdout_head(pane: str | None, replay: bool) -> str:
    """``{"pane":…,"type":"stdout",["replay":true,]"data":`` — the same few strings for every
    frame (json.dumps with options builds an encoder per call: ~3 % of a flood's GIL time)."""
    head = {"pane": pane, "type": "stdout", **({"replay": True} if replay else {})}
    return json.dumps(head, ensure_ascii=False, separators=(",", ":"))[:-1] + ',"data":'


def stdout(pane: str, text: str, *, replay: bool = False,
           encoded: bytes | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"pane": pane, "type": "stdout", "data": text}
    if replay:
        message["replay"] = True
    if encoded is not None:
        message[ENCODED] = encoded
    return message


def status(pane: str | None, state: str, message: str = "", **extra: Any) -> dict[str, Any]:
    assert state in STATUSES, state
    return {"pane": pane, "type": "status", "data": state, "message": message, **extra}


def error(exc: ProtocolError) -> dict[str, Any]:
    return status(exc.pane, "error", exc.message, code=exc.code)


def pong() -> dict[str, Any]:
    """The answer to ``ping``. Server messages are built only by the constructors above
    (``stdout``, ``status``, ``error``, ``pong``); client messages parse into the attrs types."""
    return {"pane": None, "type": "pong"}


class OutputDecoder:
    """Incremental UTF-8: a character split across reads stays whole; bad bytes → U+FFFD."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> str:
        return str(self._decoder.decode(data))

    def flush(self) -> str:
        return str(self._decoder.decode(b"", final=True))
