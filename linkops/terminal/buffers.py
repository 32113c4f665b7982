"""The bounded buffers between SSH readers and a WebSocket writer.

- :class:`Scrollback`: the last ``scrollback_bytes`` of a pane's output (a ring of text
  chunks), replayed when a socket (re-)attaches.
- :func:`strip_terminal_queries`: what is replayed never asks the terminal anything (see
  docs/decisions/terminal.md, "Replay never types").
- :class:`Outbox`: one pane's queue towards one socket. :meth:`Outbox.put_output` *waits*
  while the queue holds :data:`OUTBOX_CAPACITY` characters or more: the pane's SSH reader
  stops reading, paramiko's window fills up and the remote program blocks. A slow browser
  therefore costs bounded memory, and only the flooding pane is slowed down.
- :class:`Attachment`: one socket's view of a workspace — an outbox per pane, a small queue of
  workspace-level messages, and one wake-up for the writer. :meth:`Attachment.take_round`
  serves the panes round-robin, at most :data:`FRAME_CHARS` per pane per round, coalescing
  consecutive output chunks into one frame.

*Cancellation*: :meth:`Outbox.put_output` is a checkpoint and can be cancelled; the text is
already in the scrollback by then (see :mod:`linkops.terminal.session`). Closing an outbox or
an attachment wakes every waiter; they return ``False`` instead of raising.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Iterable
from typing import Any, Final

import trio

from linkops.terminal import protocol

OUTBOX_CAPACITY: Final = 64 * 1024
FRAME_CHARS: Final = 32 * 1024
# Flow control: a pane with at most this much output waiting (an echo, a prompt) is sent even
# when the window is used up — by the flooding neighbour, as a rule — as long as what is
# unacknowledged stays under the window plus FLOW_OVERDRAFT. A pane with more waiting is a
# flood and waits for acks.
ECHO_CHARS: Final = 4 * 1024
FLOW_OVERDRAFT: Final = 64 * 1024
# Workspace-level messages (pongs, protocol errors) a client may leave unread before we give
# up on it: a client that floods us with bad frames but never reads is closed.
CONTROL_CAPACITY: Final = 256


# ---- replayed output must not produce input ------------------------------------------------
#
# A terminal answers some sequences by *typing* into its input: device attributes (DA), device
# status / cursor position (DSR, CPR), mode requests (DECRQM), window reports (XTWINOPS),
# XTVERSION, colour queries (OSC 4/10-19/52 with "?"), DECRQSS and XTGETTCAP. Live, the program
# that asked reads the answer. Replayed from the scrollback after a reload, nobody asked: the
# answer lands in the shell's prompt and runs on the next Enter. So replay takes them out (the
# page also drops replies produced while it writes a replay: defence in depth). 7-bit and C1
# forms. A query is replaced by CAN (U+0018), not by nothing: CAN aborts a sequence in progress
# and shows nothing, so the text around a removed query cannot join into a new one
# ("\x1b[" + "\x1b[c" + "c" stays harmless) and one pass is enough.
_CSI = r"(?:\x1b\[|\x9b)"
_OSC = r"(?:\x1b\]|\x9d)"
_DCS = r"(?:\x1bP|\x90)"
_ST = r"(?:\x1b\\|\x07|\x9c)"
# Inside OSC/DCS: ends at BEL or ST; CAN, SUB, ESC and the C1 controls abort it.
_STRING = r"[^\x07\x18\x1a\x1b\x80-\x9f]"
_QUERY = re.compile(
    _CSI + r"(?:"
    r"[>=]?[0-9;]*c"                                 # DA1 / DA2 / DA3
    r"|\??[0-9;]*n"                                  # DSR, CPR (6n), DECXCPR (?6n)
    r"|\??[0-9;]*\$[pwu]"                            # DECRQM, DECRQPSR, DECRQTSR
    r"|(?:11|13|14|15|16|18|19|20|21)(?:;[0-9]*)*t"  # XTWINOPS reports
    r"|>[0-9]*q"                                     # XTVERSION
    r"|\?[0-9;]*[mu]"                                # XTQMODKEYS, kitty keyboard query
    r")"
    r"|" + _DCS + r"[$+]q" + _STRING + r"*" + _ST     # DECRQSS, XTGETTCAP
    + r"|" + _OSC + r"(?P<osc>[0-9]+(?:;" + _STRING + r"*)?)" + _ST)
_CAN: Final = "\x18"


def _asks(match: re.Match[str]) -> bool:
    osc = match.group("osc")
    # An OSC asks only with a "?" parameter; otherwise it is a title, a hyperlink, a colour set.
    return osc is None or "?" in osc.split(";")[1:]


def _neutralise(match: re.Match[str]) -> str:
    return _CAN if _asks(match) else match.group(0)


def contains_terminal_query(text: str) -> bool:
    """True if ``text`` holds a sequence :func:`strip_terminal_queries` would take out."""
    return any(_asks(m) for m in _QUERY.finditer(text))


def strip_terminal_queries(text: str) -> str:
    """``text`` with every sequence that makes a terminal answer replaced by CAN (see above).

    Nothing else changes; the result contains no query (tested as a property)."""
    if "\x1b" not in text and "\x9b" not in text and "\x9d" not in text and "\x90" not in text:
        return text
    return _QUERY.sub(_neutralise, text)


class Scrollback:
    """A ring of the most recent output, at most ``limit`` characters."""

    def __init__(self, limit: int) -> None:
        self.limit = max(0, limit)
        self._chunks: deque[str] = deque()
        self._size = 0
        self._truncated = False

    def append(self, text: str) -> None:
        if not text or self.limit == 0:
            return
        if len(text) >= self.limit:
            self._truncated = True
            self._chunks.clear()
            self._chunks.append(text[-self.limit:])
            self._size = self.limit
            return
        self._chunks.append(text)
        self._size += len(text)
        while self._size > self.limit:
            self._truncated = True
            head = self._chunks[0]
            excess = self._size - self.limit
            if len(head) <= excess:
                self._chunks.popleft()
                self._size -= len(head)
            else:
                self._chunks[0] = head[excess:]
                self._size -= excess

    def snapshot(self) -> str:
        """The kept output. Once older output was dropped, the replay starts at a line start:
        a cut-off escape sequence would otherwise be shown as garbage."""
        text = "".join(self._chunks)
        if self._truncated:
            cut = text.find("\n", 0, 4096)
            if cut >= 0:
                text = text[cut + 1:]
                self._size = len(text)
            self._truncated = False
        # Keep the ring compact: one chunk from now on.
        self._chunks.clear()
        if text:
            self._chunks.append(text)
        return text

    def __len__(self) -> int:
        return self._size


class Wakeup:
    """A reusable "something to send" flag for one writer task."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        self._event = trio.Event()


def frame_pieces(text: str) -> list[str]:
    """``text`` in pieces of at most :data:`FRAME_CHARS` (how output enters an outbox)."""
    if len(text) <= FRAME_CHARS:
        return [text]
    return [text[i:i + FRAME_CHARS] for i in range(0, len(text), FRAME_CHARS)]


def _joined(literals: list[bytes | None]) -> bytes | None:
    """One JSON string literal for consecutive pieces, when every piece has its own (the
    contents of JSON strings concatenate: an escape never spans two of them)."""
    if not literals or any(lit is None for lit in literals):
        return None
    if len(literals) == 1:
        return literals[0]
    inner = [memoryview(lit)[1:-1] for lit in literals if lit is not None]
    return b"".join([b'"', *inner, b'"'])


class Outbox:
    """One pane's bounded queue of messages for one socket (see the module docstring)."""

    def __init__(self, pane: str, wakeup: Wakeup, capacity: int = OUTBOX_CAPACITY) -> None:
        self.pane = pane
        self.capacity = capacity
        self._wakeup = wakeup
        # Items are ("out", text, replay, its JSON literal or None) or ("msg", message dict,
        # False, None).
        self._items: deque[tuple[str, Any, bool, bytes | None]] = deque()
        self._chars = 0
        self._space = trio.lowlevel.ParkingLot()
        self.closed = False

    @property
    def pending_chars(self) -> int:
        return self._chars

    def __bool__(self) -> bool:
        return bool(self._items)

    async def put_output(self, text: str, encoded: list[bytes] | None = None) -> bool:
        """Queue terminal output, waiting while the queue is full. ``False`` once closed.

        Large chunks go in :data:`FRAME_CHARS` at a time (:func:`frame_pieces`), each waiting
        for room, so the queue never holds more than ``capacity + FRAME_CHARS`` characters
        whatever the SSH layer's read size. ``encoded``: the pieces' JSON string literals,
        when the caller has them already (a recorded pane); frames of whole pieces then
        reuse them.
        """
        pieces = frame_pieces(text)
        for i, piece in enumerate(pieces):
            while self._chars >= self.capacity and not self.closed:
                await self._space.park()
            if self.closed:
                await trio.lowlevel.checkpoint()
                return False
            self._push_output(piece, replay=False,
                              encoded=None if encoded is None else encoded[i])
        await trio.lowlevel.checkpoint()
        return True

    def put_replay(self, text: str) -> None:
        """Scrollback for a fresh socket: bounded by the scrollback size, never waits. Queries
        to the terminal are taken out (:func:`strip_terminal_queries`)."""
        text = strip_terminal_queries(text)
        if text and not self.closed:
            self._push_output(text, replay=True)

    def put_message(self, message: dict[str, Any]) -> None:
        """A status message (rare, tiny): never waits, keeps its order with the output."""
        if not self.closed:
            self._items.append(("msg", message, False, None))
            self._wakeup.set()

    def _push_output(self, text: str, *, replay: bool, encoded: bytes | None = None) -> None:
        self._items.append(("out", text, replay, encoded))
        self._chars += len(text)
        self._wakeup.set()

    def take(self, limit: int = FRAME_CHARS) -> list[dict[str, Any]]:
        """Up to ``limit`` characters of output (consecutive chunks joined into one frame),
        plus the status messages queued in between, in order.

        A chunk whose JSON is ready is never split: it goes whole into this frame or the
        next one (a frame of such chunks only joins their literals)."""
        frames: list[dict[str, Any]] = []
        budget = limit
        parts: list[str] = []
        literals: list[bytes | None] = []
        parts_replay = False

        def flush() -> None:
            if parts:
                frames.append(protocol.stdout(self.pane, "".join(parts), replay=parts_replay,
                                              encoded=_joined(literals)))
                parts.clear()
                literals.clear()

        while self._items and budget > 0:
            kind, payload, replay, encoded = self._items[0]
            if kind == "msg":
                flush()
                frames.append(payload)
                self._items.popleft()
                continue
            if parts and replay != parts_replay:
                flush()
            parts_replay = replay
            text: str = payload
            if len(text) > budget:
                if parts and encoded is not None:
                    break
                parts.append(text[:budget])
                literals.append(None)
                self._items[0] = (kind, text[budget:], replay, None)
                self._chars -= budget
                budget = 0
                break
            parts.append(text)
            literals.append(encoded)
            self._items.popleft()
            self._chars -= len(text)
            budget -= len(text)
        flush()
        if self._chars < self.capacity:
            self._space.unpark_all()
        return frames

    def close(self) -> None:
        self.closed = True
        self._items.clear()
        self._chars = 0
        self._space.unpark_all()


class Attachment:
    """One WebSocket attached to a workspace: its outboxes and why it must close."""

    def __init__(self, workspace_id: str, username: str, panes: Iterable[str]) -> None:
        self.workspace_id = workspace_id
        self.username = username
        self.wakeup = Wakeup()
        self.outboxes = {pane: Outbox(pane, self.wakeup) for pane in panes}
        self._control: deque[dict[str, Any]] = deque()
        self._next = 0
        self.closed = trio.Event()
        self.close_code = protocol.CLOSE_NORMAL
        self.close_reason = ""
        # Opt-in flow control (see protocol.py): None = off.
        self.flow_window: int | None = None
        self.unacked = 0
        self._last_output: dict[str, float] = {}

    def enable_flow(self, window: int) -> None:
        self.flow_window = window
        self.wakeup.set()

    def ack(self, chars: int) -> None:
        self.unacked = max(0, self.unacked - chars)
        self.wakeup.set()

    def flow_blocked(self) -> bool:
        return self.flow_window is not None and self.unacked >= self.flow_window

    def _small_output_may_pass(self) -> bool:
        """Window used up, but a pane with little waiting may still go (see ECHO_CHARS)."""
        assert self.flow_window is not None
        return (self.unacked < self.flow_window + FLOW_OVERDRAFT
                and any(bool(box) and box.pending_chars <= ECHO_CHARS
                        for box in self.outboxes.values()))

    def can_send(self) -> bool:
        """Something may be written now (control messages always may)."""
        if self._control:
            return True
        if not any(self.outboxes.values()):
            return False
        return not self.flow_blocked() or self._small_output_may_pass()

    def sent(self, frame: dict[str, Any], now: float) -> None:
        """Account for a frame written to the socket (output counts against the window)."""
        if frame.get("type") == "stdout":
            self._last_output[str(frame["pane"])] = now
            if self.flow_window is not None:
                self.unacked += len(frame["data"])

    def send_control(self, message: dict[str, Any]) -> None:
        """A workspace-level message; closes the attachment (1008) when the client never reads
        and keeps provoking replies."""
        if len(self._control) >= CONTROL_CAPACITY:
            self.close(protocol.CLOSE_POLICY, "too many unread replies")
            return
        self._control.append(message)
        self.wakeup.set()

    def has_pending(self) -> bool:
        return bool(self._control) or any(self.outboxes.values())

    def coalescing_useful(self, now: float, streaming_seconds: float) -> bool:
        """True when only a little output is waiting, all of it from panes that sent output
        within ``streaming_seconds``: worth a few ms to gather more. A quiet pane's output (an
        echo) is never held back, whatever its neighbours do."""
        if self._control:
            return False
        for name, box in self.outboxes.items():
            if not box:
                continue
            if box.pending_chars >= FRAME_CHARS:
                return False
            if now - self._last_output.get(name, -math.inf) >= streaming_seconds:
                return False
        return True

    def take_round(self) -> list[dict[str, Any]]:
        """One fair round: control messages, then each pane once, starting after the pane
        that went first last time."""
        frames = list(self._control)
        self._control.clear()
        names = list(self.outboxes)
        small_only = self.flow_blocked()
        if names:
            start = self._next % len(names)
            self._next = start + 1
            for name in names[start:] + names[:start]:
                box = self.outboxes[name]
                if small_only and box.pending_chars > ECHO_CHARS:
                    continue  # the flood waits for acks; quiet panes go on
                frames.extend(box.take())
        return frames

    def close(self, code: int, reason: str) -> None:
        if self.closed.is_set():
            return
        self.close_code = code
        self.close_reason = reason
        for box in self.outboxes.values():
            box.close()
        self.closed.set()
        self.wakeup.set()
