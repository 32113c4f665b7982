"""What one task printed: incremental UTF-8 decoding and a bounded head+tail buffer.

A host may print anything — a gigabyte, an endless stream, binary, invalid UTF-8 — so:

- bytes are decoded with one :func:`codecs.getincrementaldecoder` per stream
  (``errors="replace"``): a multi-byte character split across two reads comes out whole, an
  invalid byte becomes U+FFFD, and nothing is ever raised;
- the text *kept* for the database is bounded by ``limit`` UTF-8 bytes per task (stdout and
  stderr share it): the first half of the budget keeps the head of each stream, the second
  half a sliding tail, and when anything was dropped a marker line in the middle says how
  much (:data:`TRUNCATION_MARKER`). Memory is ``O(limit)`` whatever the host prints.

The decoded pieces are also returned by :meth:`TaskOutput.feed` so the caller can publish them
live; this module does no I/O.
"""

from __future__ import annotations

import codecs
from collections import deque

STREAMS = ("stdout", "stderr")
TRUNCATION_MARKER = "\n[linkops: output truncated, {omitted} bytes omitted]\n"


def _utf8_len(text: str) -> int:
    # isascii() is a fast C scan; only non-ASCII text pays for an encode.
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


class _BoundedText:
    """The head (up to ``head_limit`` bytes) and a sliding tail (``tail_limit`` bytes)."""

    def __init__(self, head_limit: int, tail_limit: int) -> None:
        self._head: list[str] = []
        self._head_bytes = 0
        self._head_limit = head_limit
        self._tail: deque[tuple[str, int]] = deque()  # (text, its UTF-8 size)
        self._tail_bytes = 0
        self._tail_limit = tail_limit
        self.omitted = 0  # bytes dropped between head and tail

    def append(self, text: str) -> None:
        if not text:
            return
        size = _utf8_len(text)
        room = self._head_limit - self._head_bytes
        if room > 0:
            if size <= room:
                self._head.append(text)
                self._head_bytes += size
                return
            # Split on a character boundary: bytes → cut → decode ignoring a partial char.
            cut = text.encode("utf-8", "surrogatepass")[:room].decode("utf-8", "ignore")
            self._head.append(cut)
            self._head_bytes += _utf8_len(cut)
            text = text[len(cut):]
            size = _utf8_len(text)
            self._head_limit = self._head_bytes  # the head is closed from now on
        self._tail.append((text, size))
        self._tail_bytes += size
        while self._tail_bytes > self._tail_limit and self._tail:
            excess = self._tail_bytes - self._tail_limit
            first, first_bytes = self._tail[0]
            if first_bytes <= excess:
                self._tail.popleft()
                self._tail_bytes -= first_bytes
                self.omitted += first_bytes
            else:
                raw = first.encode("utf-8", "surrogatepass")[excess:]
                kept = raw.decode("utf-8", "ignore")  # drops a partial leading character
                kept_bytes = _utf8_len(kept)
                self._tail[0] = (kept, kept_bytes)
                self._tail_bytes -= first_bytes - kept_bytes
                self.omitted += first_bytes - kept_bytes

    @property
    def size(self) -> int:
        return self._head_bytes + self._tail_bytes

    def text(self) -> str:
        middle = TRUNCATION_MARKER.format(omitted=self.omitted) if self.omitted else ""
        return "".join(self._head) + middle + "".join(text for text, _ in self._tail)


class TaskOutput:
    """Decoder and bounded buffer for one task's stdout and stderr.

    ``limit`` is the task's budget in UTF-8 bytes, split evenly between the two streams (each
    gets a head of ``limit/4`` and a tail of ``limit/4``), so the stored text never exceeds
    ``limit`` plus two marker lines.
    """

    def __init__(self, limit: int) -> None:
        quarter = max(limit // 4, 1)
        self._decoders = {
            name: codecs.getincrementaldecoder("utf-8")(errors="replace") for name in STREAMS
        }
        self._buffers = {name: _BoundedText(quarter, quarter) for name in STREAMS}
        self.bytes_received = {name: 0 for name in STREAMS}

    def feed(self, stream: str, data: bytes, *, final: bool = False) -> str:
        """Decode ``data`` from ``stream``; keep it (bounded) and return the new text."""
        self.bytes_received[stream] += len(data)
        text: str = self._decoders[stream].decode(data, final)
        self._buffers[stream].append(text)
        return text

    def finish(self) -> dict[str, str]:
        """Flush the decoders (a dangling partial character becomes U+FFFD); returns the
        text each stream still had pending, for publishing."""
        return {name: self.feed(name, b"", final=True) for name in STREAMS}

    def text(self, stream: str) -> str:
        return self._buffers[stream].text()

    @property
    def truncated(self) -> bool:
        return any(buf.omitted for buf in self._buffers.values())

    @property
    def kept_bytes(self) -> int:
        return sum(buf.size for buf in self._buffers.values())
