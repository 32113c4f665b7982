"""The event stream of one operation: an :class:`EventHub` with a replay log, and SSE framing.

Events are numbered 1, 2, 3, … per operation (the SSE ``id``). Kinds: ``operation`` (the
operation's state), ``task_start``, ``output``, ``task_end`` and ``operation_end`` (always the
last one).

``data`` of each kind (JSON; times ISO-8601 UTC; a task is ``target`` + ``script`` +
``position``, the script's index in the operation)::

    operation      {operation_id, status: queued|running, scripts, targets, flags,
                    concurrency, started?, triggered_by?}
    task_start     {target, script, position, name, started}
    output         {target, script, position, stream: stdout|stderr, data, truncated?}
    task_end       {target, script, position, status, exit_code, duration, ended, error,
                    remote_killed, output_truncated?}   (also for skipped tasks)
    operation_end  {operation_id, status, result, ended, duration, error}
    groups         {operation_id, finished, total, script_groups: [{script, position,
                    majority, more, groups: [{key, status, exit_code, count}]}]}
                   (after every task_end, and once before operation_end when tasks that
                   never started were recorded skipped; see operations/groups.py)

*Replay log* (what a late or reconnecting subscriber gets): every lifecycle event is kept. Output
events are kept while the task's kept output stays under ``task_output_limit`` bytes and the
operation's under ``total_output_limit``; the first output event that does not fit is replaced
by ONE ``output`` event with ``truncated: true`` and a notice text, and that task's later output
is only sent live. A subscriber resuming with ``Last-Event-ID`` gets every *kept* event after
that id, in order, without duplicates; the ids it skips are exactly the dropped output chunks,
marked by the notice. The complete (bounded) output of every task is in the database anyway.

*Fan-out*: each subscriber has its own bounded memory channel. :meth:`EventHub.publish` is
synchronous and uses ``send_nowait``; a subscriber that has :data:`SUBSCRIBER_BUFFER` events or
:data:`SUBSCRIBER_MAX_BYTES` of output not yet taken is dropped (its channel closed), and
:func:`follow` then re-subscribes from its last id, reading what it missed from the replay log.
So a browser that stops reading never stalls the operation for long, and what it pins is
bounded in bytes.

*Pacing* (decision, docs/decisions/operations.md): a host can print faster than any client
parses (600 MB of ``base64`` at 200+ MB/s). Before publishing output the operation awaits
:meth:`EventHub.paced`: while a live subscriber is more than :data:`PACE_BYTES` behind, the
output waits for it — the SSH window fills and the remote writer blocks, as in a terminal —
but never more than :data:`PACE_MAX_SECONDS` in one stall; a subscriber still behind then is
dropped as above (it resumes from the replay log, with the notice where output was not kept).
So a slow client sees all of the output, and a stuck one costs one bounded stall.

*SSE*: :func:`encode_sse` puts the JSON on one ``data:`` line; every field is split on CR/LF
anyway, so no output can forge an event.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncGenerator, Iterable
from json.encoder import encode_basestring_ascii
from typing import Any

import attrs
import trio

from linkops.jsontext import plain_json_string
from linkops.operations.event_types import OperationEvent, payload

# A subscriber is dropped when it has this many events, or this many output bytes, not yet
# taken. Events are shared objects, so all subscribers together pin at most one such window.
SUBSCRIBER_BUFFER = 1024
SUBSCRIBER_MAX_BYTES = 32 * 1024 * 1024
# Output waits for a live subscriber this far behind (bounded: see *Pacing*).
PACE_BYTES = 8 * 1024 * 1024
PACE_MAX_SECONDS = 5.0
HEARTBEAT_SECONDS = 15.0
OUTPUT_NOTICE = "[linkops: live output beyond the replay limit is not replayed; " \
    "the full (bounded) output is in the operation's logs]\n"

EVENT_KINDS = ("operation", "task_start", "output", "task_end", "groups", "operation_end")


@attrs.frozen
class Event:
    id: int
    kind: str
    data: dict[str, Any]
    # UTF-8 size of an output event's text (0 for the others); not part of equality.
    size: int = attrs.field(default=0, eq=False)
    # The SSE encoding, made once by the first subscriber that sends the event: every other
    # stream sends the same bytes (50 browsers on one operation cost one json.dumps).
    sse: bytes | None = attrs.field(default=None, eq=False, repr=False)


def _text_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


class _Subscriber:
    """The hub's side of one subscription: its channel and the output bytes not yet taken."""

    def __init__(self, send: trio.MemorySendChannel[Event], hub: EventHub) -> None:
        self.send = send
        self.hub = hub
        self.pending_bytes = 0


class Subscription:
    """What :meth:`EventHub.subscribe` returns: the backlog, then a live channel.

    Call :meth:`taken` for every event received from the channel (follow() does): that is how
    the hub knows how far behind the subscriber is.
    """

    def __init__(self, backlog: list[Event], receive: trio.MemoryReceiveChannel[Event],
                 subscriber: _Subscriber | None = None) -> None:
        self.backlog = backlog
        self.receive = receive
        self._subscriber = subscriber

    def taken(self, event: Event) -> None:
        sub = self._subscriber
        if sub is not None and event.size:
            sub.pending_bytes -= event.size
            if sub.pending_bytes <= PACE_BYTES:
                sub.hub.room.set()


class EventHub:
    """Sequence numbers, replay log and subscribers of one operation (see module docstring).

    *Cancellation*: nothing here awaits; publishing can happen from any Trio task.
    """

    def __init__(self, *, task_output_limit: int, total_output_limit: int) -> None:
        self._log: list[Event] = []
        self._next_id = 1
        self._subscribers: list[_Subscriber] = []
        self._task_output: dict[tuple[str, str, int], int] = {}
        self._noticed: set[tuple[str, str, int]] = set()
        self._total_output = 0
        self._task_output_limit = task_output_limit
        self._total_output_limit = total_output_limit
        self.closed = False
        self.dropped_subscribers = 0
        # Set when a subscriber catches up (see paced()); replaced before each wait.
        self.room = trio.Event()

    @property
    def last_id(self) -> int:
        return self._next_id - 1

    def emit(self, event: OperationEvent) -> Event:
        """Publish one typed event (:mod:`linkops.operations.event_types`)."""
        return self.publish(event.kind, payload(event))

    def publish(self, kind: str, data: dict[str, Any]) -> Event:
        """Number, log (if it fits) and fan out one event. Never blocks."""
        if self.closed:
            raise RuntimeError("publish on a closed EventHub")
        size = _text_size(str(data.get("data", ""))) if kind == "output" else 0
        event = Event(self._next_id, kind, data, size)
        self._next_id += 1
        self._retain(event)
        for sub in list(self._subscribers):
            try:
                if sub.pending_bytes + size > SUBSCRIBER_MAX_BYTES:
                    raise trio.WouldBlock
                sub.send.send_nowait(event)
                sub.pending_bytes += size
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                # Behind (or gone): drop it; follow() resumes it from the replay log.
                self._drop(sub)
        if kind == "operation_end":
            self.close()
        return event

    def _drop(self, sub: _Subscriber) -> None:
        self._subscribers.remove(sub)
        sub.send.close()
        self.dropped_subscribers += 1

    def _behind(self) -> bool:
        return any(sub.pending_bytes > PACE_BYTES for sub in self._subscribers)

    async def paced(self, max_wait: float = PACE_MAX_SECONDS) -> None:
        """Wait while a live subscriber is more than :data:`PACE_BYTES` behind, at most
        ``max_wait`` seconds; drop the ones still behind then (see *Pacing*).

        Costs nothing when every subscriber keeps up (no checkpoint either).
        *Cancellation*: a plain wait; cancelling it drops nobody.
        """
        if not self._behind():
            return
        with trio.move_on_after(max_wait):
            while self._behind():
                self.room = trio.Event()
                await self.room.wait()
        for sub in [s for s in self._subscribers if s.pending_bytes > PACE_BYTES]:
            self._drop(sub)

    def _retain(self, event: Event) -> None:
        if event.kind != "output":
            self._log.append(event)
            return
        key = (str(event.data.get("target")), str(event.data.get("script")),
               int(event.data.get("position", 0)))
        size = event.size
        kept = self._task_output.get(key, 0)
        if (key not in self._noticed and kept + size <= self._task_output_limit
                and self._total_output + size <= self._total_output_limit):
            self._task_output[key] = kept + size
            self._total_output += size
            self._log.append(event)
        elif key not in self._noticed:
            self._noticed.add(key)
            notice = dict(event.data, data=OUTPUT_NOTICE, truncated=True)
            self._log.append(Event(event.id, "output", notice, _text_size(OUTPUT_NOTICE)))

    def subscribe(self, after: int = 0) -> Subscription:
        """Events after ``after`` from the log plus a channel for the ones still to come.

        Both are taken in the same synchronous step, so nothing falls between them. On a
        closed hub the channel is already closed.
        """
        backlog = [e for e in self._log if e.id > after]
        send, receive = trio.open_memory_channel[Event](SUBSCRIBER_BUFFER)
        if self.closed:
            send.close()
            return Subscription(backlog, receive)
        subscriber = _Subscriber(send, self)
        self._subscribers.append(subscriber)
        return Subscription(backlog, receive, subscriber)

    def close(self) -> None:
        """End every subscription (after ``operation_end``)."""
        self.closed = True
        for sub in self._subscribers:
            sub.send.close()
        self._subscribers.clear()
        self.room.set()

    @property
    def retained_output_bytes(self) -> int:
        """Output bytes held in the replay log (bounded by ``total_output_limit``)."""
        return self._total_output

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)


PING = Event(0, "ping", {})


async def follow(
    hub: EventHub,
    after: int = 0,
    *,
    heartbeat: float | None = None,
    closing: trio.Event | None = None,
    closing_grace: float = 6.0,
) -> AsyncGenerator[Event, None]:
    """Every event after ``after``, in order and without duplicates, until ``operation_end``.

    Yields :data:`PING` after ``heartbeat`` seconds (default :data:`HEARTBEAT_SECONDS`)
    without an event. When ``closing`` is set
    (service shutdown) the stream keeps delivering for ``closing_grace`` seconds — long enough
    for the ``stopped`` end of a running operation — and then ends.

    *Cancellation*: safe at every await; the subscription's channel is closed on exit.
    """
    if heartbeat is None:
        heartbeat = HEARTBEAT_SECONDS  # read at call time (tests shorten it)
    last = after
    stop_at = math.inf
    while True:
        sub = hub.subscribe(last)
        with sub.receive:
            for event in sub.backlog:
                last = event.id
                yield event
                if event.kind == "operation_end":
                    return
            if hub.closed and not sub.backlog:
                return
            idle_since = trio.current_time()
            while True:
                received = await _next_event(sub.receive, idle_since + heartbeat, closing,
                                             closing_grace, stop_at)
                if isinstance(received, float):  # shutdown noticed: deadline fixed once
                    stop_at = received
                    continue
                if received is _ENDED:
                    break  # dropped as too slow, or the hub closed: re-read the log
                if received is _SHUTDOWN:
                    return
                if received is _IDLE:
                    yield PING
                    idle_since = trio.current_time()
                    continue
                assert isinstance(received, Event)
                sub.taken(received)
                if received.id <= last:
                    continue
                last = received.id
                # Never yield inside a cancel scope (trio#638): we are outside all of them.
                yield received
                if received.kind == "operation_end":
                    return
                idle_since = trio.current_time()


_ENDED = object()
_IDLE = object()
_SHUTDOWN = object()


async def _next_event(receive: trio.MemoryReceiveChannel[Event], ping_at: float,
                      closing: trio.Event | None, closing_grace: float,
                      stop_at: float) -> Event | object | float:
    """The next event, or a marker: ``_ENDED`` (channel closed), ``_IDLE`` (heartbeat due),
    ``_SHUTDOWN`` (closing grace over), or a float (the new shutdown deadline)."""
    try:
        return receive.receive_nowait()  # the hot path: no cancel scope per event
    except trio.WouldBlock:
        pass
    except trio.EndOfChannel:
        return _ENDED
    while True:
        now = trio.current_time()
        if closing is not None and closing.is_set() and stop_at == math.inf:
            return now + closing_grace
        if now >= stop_at:
            return _SHUTDOWN
        if now >= ping_at:
            return _IDLE
        # Wake at least once a second so a shutdown is noticed promptly.
        with trio.move_on_after(min(ping_at - now, 1.0, stop_at - now)):
            try:
                return await receive.receive()
            except trio.EndOfChannel:
                return _ENDED


async def replay(events: Iterable[Event], after: int = 0) -> AsyncGenerator[Event, None]:
    """A finished operation rebuilt from the database (see ``history.replay_events``)."""
    for event in events:
        if event.id > after:
            yield event


# -- SSE framing ------------------------------------------------------------------------------

def _field(name: str, value: str) -> bytes:
    # One line per CR/LF-separated piece: a value can never start a new field or event.
    if "\n" not in value and "\r" not in value:  # always so for our JSON: two memchr scans
        return f"{name}: {value}\n".encode("utf-8", "surrogatepass")
    lines = value.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "".join(f"{name}: {line}\n" for line in lines).encode("utf-8", "surrogatepass")


# Output text at least this long is escaped on its own (see json_payload).
_BIG_TEXT = 4096
def _json_text(text: str) -> bytes:
    """``text`` as an ASCII JSON string literal, as ``json.dumps`` writes it."""
    plain = plain_json_string(text)
    return plain if plain is not None else str(encode_basestring_ascii(text)).encode("ascii")


def json_payload(data: dict[str, Any]) -> bytes:
    """``data`` as compact ASCII-only JSON (what ``json.dumps`` gives, up to key order).

    ASCII-only: no exotic line separators (U+2028, NEL) reach a client parser, and no raw CR
    or LF at all. A long output text is escaped by itself and spliced in: JSON encoding was
    the largest cost of streaming output, and ``json.dumps`` of the whole dict is 1.8x slower
    than escaping the text alone (its one-shot encoder joins many small pieces; see
    docs/performance.md).
    """
    text = data.get("data")
    if not isinstance(text, str) or len(text) < _BIG_TEXT:
        return json.dumps(data, separators=(",", ":")).encode("ascii")
    rest = {k: v for k, v in data.items() if k != "data"}
    head = json.dumps(rest, separators=(",", ":"))[:-1] + "," if rest else "{"
    return head.encode("ascii") + b'"data":' + _json_text(text) + b"}"


def encode_sse(event: Event) -> bytes:
    """``id``/``event``/``data`` of one event; a heartbeat is the comment ``: ping``."""
    if event is PING or event.kind == "ping":
        return b": ping\n\n"
    if event.sse is not None:
        return event.sse
    payload = json_payload(event.data)
    if b"\n" in payload or b"\r" in payload:  # never for our JSON; the split is the safety net
        data = _field("data", payload.decode("ascii"))
    else:
        data = b"data: " + payload + b"\n"
    encoded = _field("id", str(event.id)) + _field("event", event.kind) + data + b"\n"
    object.__setattr__(event, "sse", encoded)  # a cache on a frozen value: same bytes always
    return encoded


def sse_comment(text: str) -> bytes:
    return b"".join(b": " + line.encode() + b"\n" for line in text.splitlines() or [""]) + b"\n"


def parse_last_event_id(raw: str | None) -> int:
    """``Last-Event-ID`` as an int; anything unparsable means "from the start"."""
    if raw is None:
        return 0
    try:
        value = int(raw.strip())
    except ValueError:
        return 0
    return max(value, 0)
