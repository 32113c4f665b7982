"""Terminal output → plain text lines with time offsets, for the recordings' search index.

Escape sequences are stripped (CSI such as colours and cursor moves, OSC such as window
titles, and the two-byte ESC forms); a carriage return starts the line over (what a shell's
line editor and progress bars do), a backspace removes the character before it. Each finished
line carries the offset of the output event that *ended* it, so a search hit's
``offset_seconds`` is a moment at which the player shows the whole line (a typed command is
complete on the screen when its Enter is echoed).

This is deliberately not a terminal emulator: full-screen programs (``top``, ``vim``) paint
with cursor addressing, and their text comes out in fragments. The shell sessions that audit
cares about ("who ran ``systemctl restart nginx``") are line-oriented, and stripping keeps the
indexer cheap enough to run for every byte of every session (docs/decisions/recordings.md).
"""

from __future__ import annotations

import re
from typing import Final

# CSI (ESC [ … final), OSC (ESC ] … BEL or ST), DCS/SOS/PM/APC (… ST), other ESC x, and the
# C1 CSI introducer. An unfinished sequence at the end of a chunk is kept for the next one.
_ESCAPES: Final = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"
    r"|\x1b[PX^_][^\x1b]*\x1b\\"
    r"|\x1b[ -/]*[0-~]"
    r"|\x9b[0-?]*[ -/]*[@-~]"
)
_UNFINISHED: Final = re.compile(r"\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b]*|[PX^_][^\x1b]*|[ -/]*)?$")
# Other control characters (not \n \r \b \t) carry no text.
_CONTROLS: Final = re.compile(r"[\x00-\x07\x0b\x0c\x0e-\x1f\x7f]")
MAX_LINE_CHARS: Final = 1000
# A line that never ends (a progress bar without \n) is indexed once it is this long.
_PENDING_LIMIT: Final = 4 * MAX_LINE_CHARS


def _render(raw: str) -> str:
    """One line's raw characters (no escapes, no \\n) as the screen would show them."""
    text = raw.replace("\t", " ")
    if "\r" in text:
        # Text after a carriage return overwrites from column 0; keep the visible result.
        screen = ""
        for part in text.split("\r"):
            screen = part + screen[len(part):]
        text = screen
    if "\b" in text:
        out: list[str] = []
        for ch in text:
            if ch == "\b":
                if out:
                    out.pop()
            else:
                out.append(ch)
        text = "".join(out)
    return text.strip()[:MAX_LINE_CHARS]


class LineAssembler:
    """Feed output events in order; get back finished ``(offset_seconds, line)`` pairs."""

    def __init__(self) -> None:
        self._carry = ""        # an escape sequence split across two events
        self._line = ""         # the current line so far (escapes removed)
        self._offset = 0.0

    def feed(self, offset: float, data: str) -> list[tuple[float, str]]:
        text = self._carry + data
        self._carry = ""
        tail = _UNFINISHED.search(text)
        if tail is not None and tail.group():
            self._carry = tail.group()[:256]
            text = text[: tail.start()]
        text = _CONTROLS.sub("", _ESCAPES.sub("", text))
        done: list[tuple[float, str]] = []
        parts = text.split("\n")
        self._offset = offset
        for index, part in enumerate(parts):
            self._line += part
            last = index == len(parts) - 1
            if not last or len(self._line) > _PENDING_LIMIT:
                self._finish(done)
        return done

    def flush(self) -> list[tuple[float, str]]:
        done: list[tuple[float, str]] = []
        self._finish(done)
        return done

    def _finish(self, done: list[tuple[float, str]]) -> None:
        line = _render(self._line)
        if line:
            done.append((self._offset, line))
        self._line = ""
