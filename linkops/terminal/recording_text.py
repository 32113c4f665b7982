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
# Base64, hex dumps, minified code: nobody searches for a 65-character "word", and indexing
# random tokens is what makes a full-text index slow and large. Such runs are left out.
# The look-behind makes a try inside a word fail at once (``[^\s]{65,}`` alone re-scans
# every word from each of its characters: 2-3x slower on ordinary text, same result).
_NOISE_CHARS: Final = 65
_NOISE: Final = re.compile(rf"(?<!\S)\S{{{_NOISE_CHARS},}}")
# A line that never ends (a progress bar without \n) is indexed once it is this long.
_PENDING_LIMIT: Final = 4 * MAX_LINE_CHARS


def _render(raw: str) -> str:
    """One line's raw characters (no escapes, no \\n) as the screen would show them."""
    # Noise runs are taken out of each event as it comes (cheap: one pass); a run split across
    # two events is only whole here.
    text = _NOISE.sub("", raw).strip() if len(raw) >= _NOISE_CHARS else raw.strip()
    if "\r" in text or "\b" in text or "\t" in text:
        text = _overwrite(text).strip()
    return text[:MAX_LINE_CHARS]


def _overwrite(text: str) -> str:
    text = text.replace("\t", " ")
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
    return text


class LineAssembler:
    """Feed output events in order; get back finished ``(offset_seconds, line)`` pairs."""

    def __init__(self) -> None:
        self._carry = ""        # an escape sequence split across two events
        self._line = ""         # the current line so far (escapes removed)
        self._offset = 0.0      # the last event's offset (for flush)

    def feed(self, offset: float, data: str) -> list[tuple[float, str]]:
        self._offset = offset
        text = self._carry + data
        self._carry = ""
        if "\x1b" in text or "\x9b" in text:
            tail = _UNFINISHED.search(text, max(0, len(text) - 300))
            if tail is not None and tail.group():
                self._carry = tail.group()[:256]
                text = text[: tail.start()]
            text = _ESCAPES.sub("", text)
        text = _NOISE.sub("", _CONTROLS.sub("", text))
        parts = text.split("\n")
        self._line += parts[0]
        if len(parts) == 1:
            if len(self._line) > _PENDING_LIMIT:
                return self.flush_at(offset)
            return []
        first = self._line
        self._line = parts[-1]
        done = [(offset, line) for line in
                map(_render, [p for p in [first, *parts[1:-1]] if p and not p.isspace()])
                if line]
        if len(self._line) > _PENDING_LIMIT:
            done.extend(self.flush_at(offset))
        return done

    def flush_at(self, offset: float) -> list[tuple[float, str]]:
        line = _render(self._line)
        self._line = ""
        return [(offset, line)] if line else []

    def in_line(self) -> bool:
        """Part of an unfinished line (or of an escape sequence) was fed."""
        return bool(self._line or self._carry)

    def drop(self) -> None:
        """Forget the line in progress (output that is not indexed comes next)."""
        self._line = ""
        self._carry = ""

    def flush(self) -> list[tuple[float, str]]:
        return self.flush_at(self._offset)
