"""The terminal's pure parts: message parsing, incremental decoding, scrollback, bounded
outboxes with round-robin and coalescing, layout validation (no network)."""

from __future__ import annotations

import json

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from linkops.config import TerminalSettings
from linkops.errors import ValidationError
from linkops.jsontext import json_string
from linkops.terminal import protocol
from linkops.terminal.buffers import (
    FLOW_OVERDRAFT,
    FRAME_CHARS,
    Attachment,
    Outbox,
    Scrollback,
    Wakeup,
    frame_pieces,
)
from linkops.terminal.protocol import ProtocolError, parse_client_message
from linkops.terminal.workspaces import parse_assignments, validate_layout
from tests.strategies import PROP


def test_parse_valid_messages_and_clamping() -> None:
    assert parse_client_message('{"pane":"B","type":"stdin","data":"ls\\r"}') == \
        protocol.Stdin(pane="B", data="ls\r")
    assert parse_client_message('{"pane":"A","type":"resize","cols":120,"rows":40}') == \
        protocol.Resize(pane="A", cols=120, rows=40)
    assert parse_client_message('{"pane":"A","type":"resize","data":{"cols":1,"rows":9999}}') \
        == protocol.Resize(pane="A", cols=2, rows=200)
    assert parse_client_message('{"pane":"A","type":"resize","cols":99999.5,"rows":-4}') == \
        protocol.Resize(pane="A", cols=500, rows=1)
    assert parse_client_message('{"type":"ping"}') == protocol.Ping()


@pytest.mark.parametrize(("raw", "code", "close"), [
    ("nope", "MALFORMED_MESSAGE", None),
    ('"text"', "MALFORMED_MESSAGE", None),
    ('{"pane":"A","type":"exec","data":"x"}', "UNKNOWN_TYPE", None),
    ('{"pane":"C","type":"stdin","data":"x"}', "UNKNOWN_PANE", None),
    ('{"type":"stdin","data":"x"}', "UNKNOWN_PANE", None),
    ('{"pane":"A","type":"stdin","data":["x"]}', "INVALID_MESSAGE", None),
    ('{"pane":"A","type":"resize","cols":true,"rows":3}', "INVALID_MESSAGE", None),
    ('{"pane":"A","type":"resize","cols":NaN,"rows":3}', "INVALID_MESSAGE", None),
    ('{"pane":"A","type":"resize","rows":3}', "INVALID_MESSAGE", None),
    ("[" * 100_000, "FRAME_TOO_LARGE", 1009),
    ('{"pane":"A","type":"stdin","data":"' + "é" * 40_000 + '"}', "FRAME_TOO_LARGE", 1009),
    (b"\x00", "UNSUPPORTED_FRAME", 1003),
])
def test_parse_rejects(raw: str | bytes, code: str, close: int | None) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_client_message(raw, ("A", "B"))
    assert info.value.code == code
    assert info.value.close_code == close
    message = protocol.error(info.value)
    assert message["type"] == "status" and message["data"] == "error"
    json.dumps(message)


def test_deeply_nested_json_is_an_error_not_a_crash() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_client_message("[" * 30_000 + "]" * 30_000)
    assert info.value.code == "MALFORMED_MESSAGE"


@PROP
@given(text=st.text(), cuts=st.lists(st.integers(0, 400), max_size=8))
def test_decoder_keeps_split_characters_whole(text: str, cuts: list[int]) -> None:
    data = text.encode("utf-8", "surrogatepass")
    decoder = protocol.OutputDecoder()
    points = sorted({min(c, len(data)) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    out = "".join(decoder.feed(p) for p in pieces) + decoder.flush()
    assert out == data.decode("utf-8", "replace")


def test_decoder_replaces_invalid_bytes() -> None:
    decoder = protocol.OutputDecoder()
    assert decoder.feed(b"a\xff") == "a\ufffd"
    assert decoder.feed(b"\xe2\x82") == ""
    assert decoder.feed(b"\xac") == "€"
    assert decoder.feed(b"\xe2") == ""
    assert decoder.flush() == "\ufffd"


@PROP
@given(chunks=st.lists(st.text(alphabet="ab\n\x1b[m€", max_size=50), max_size=40),
       limit=st.integers(0, 120))
def test_scrollback_keeps_exactly_the_last_characters(chunks: list[str], limit: int) -> None:
    ring = Scrollback(limit)
    for chunk in chunks:
        ring.append(chunk)
        assert len(ring) <= limit
    whole = "".join(chunks)
    expected = whole[-limit:] if limit else ""
    if len(whole) > limit and "\n" in expected[:4096]:
        expected = expected[expected.index("\n") + 1:]  # replay starts at a line start
    assert ring.snapshot() == expected
    assert ring.snapshot() == expected  # snapshot does not consume


async def test_outbox_blocks_the_producer_when_full_and_resumes() -> None:
    box = Outbox("A", Wakeup(), capacity=100)
    assert await box.put_output("x" * 100)
    blocked = trio.Event()
    done = trio.Event()

    async def producer() -> None:
        blocked.set()
        assert await box.put_output("y" * 10)
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(producer)
        await blocked.wait()
        await trio.testing.wait_all_tasks_blocked()
        assert not done.is_set() and box.pending_chars == 100
        frames = box.take(60)
        assert frames == [protocol.stdout("A", "x" * 60)]
        await done.wait()
    assert box.take() == [protocol.stdout("A", "x" * 40 + "y" * 10)]


async def test_closing_an_outbox_releases_a_blocked_producer() -> None:
    box = Outbox("A", Wakeup(), capacity=10)
    await box.put_output("x" * 10)
    results: list[bool] = []
    async with trio.open_nursery() as nursery:
        async def producer() -> None:
            results.append(await box.put_output("more"))
        nursery.start_soon(producer)
        await trio.testing.wait_all_tasks_blocked()
        box.close()
    assert results == [False]
    assert box.take() == []


def test_take_keeps_statuses_in_order_and_joins_output() -> None:
    box = Outbox("A", Wakeup())
    box.put_replay("old ")
    box.put_message(protocol.status("A", "closed", "bye"))
    box._push_output("new1 ", replay=False)
    box._push_output("new2", replay=False)
    frames = box.take()
    assert frames == [protocol.stdout("A", "old ", replay=True),
                      protocol.status("A", "closed", "bye"),
                      protocol.stdout("A", "new1 new2")]


def test_round_robin_serves_every_pane_each_round() -> None:
    att = Attachment("ws-x", "admin", ["A", "B", "C"])
    att.outboxes["A"]._push_output("a" * (5 * FRAME_CHARS), replay=False)  # a flood
    att.outboxes["C"]._push_output("c-line\n", replay=False)
    first = att.take_round()
    assert [(f["pane"], len(f["data"])) for f in first] == [("A", FRAME_CHARS), ("C", 7)]
    att.outboxes["B"]._push_output("b-line\n", replay=False)
    second = att.take_round()
    # The next round starts after the pane that led the previous one.
    assert [f["pane"] for f in second] == ["B", "A"]
    assert all(len(f["data"]) <= FRAME_CHARS for f in first + second)
    assert not att.coalescing_useful(0.0, 0.02)  # a full frame is waiting: send it now
    att.send_control({"pane": None, "type": "pong"})
    assert att.take_round()[0] == {"pane": None, "type": "pong"}


def test_control_flood_closes_with_policy_violation() -> None:
    att = Attachment("ws-x", "admin", ["A"])
    for _ in range(1000):
        att.send_control({"pane": None, "type": "pong"})
    assert att.closed.is_set() and att.close_code == protocol.CLOSE_POLICY


def test_layout_validation() -> None:
    settings = TerminalSettings(max_panes_per_workspace=3)
    assert validate_layout("single", None, settings) == ("single", 3)
    assert validate_layout("grid2x1", 2, settings) == ("grid2x1", 2)
    for layout, max_panes in (("grid2x2", None), ("grid1x3", 2), ("x", None), ("single", 0),
                              ("single", True), ("single", 4)):
        with pytest.raises(ValidationError):
            validate_layout(layout, max_panes, settings)


def test_parse_assignments() -> None:
    got = parse_assignments({"panes": [{"pane": "A", "target": "vps-01"},
                                       {"pane": "B", "target": None}]})
    assert [(a.pane, a.target) for a in got] == [("A", "vps-01"), ("B", "")]
    for body in ({}, {"panes": "A"}, {"panes": [{"pane": "E", "target": "x"}]},
                 {"panes": [{"pane": "A", "target": 3}]}, {"panes": [1]}):
        with pytest.raises(ValidationError):
            parse_assignments(body)


async def test_large_chunks_enter_the_outbox_a_frame_at_a_time() -> None:
    box = Outbox("A", Wakeup(), capacity=FRAME_CHARS)
    done = trio.Event()

    async def producer() -> None:
        assert await box.put_output("z" * (4 * FRAME_CHARS))
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(producer)
        taken = 0
        while not done.is_set() or box.pending_chars:
            await trio.testing.wait_all_tasks_blocked()
            assert box.pending_chars <= box.capacity + FRAME_CHARS
            taken += sum(len(f["data"]) for f in box.take())
    assert taken == 4 * FRAME_CHARS


def test_flow_control_accounting() -> None:
    att = Attachment("ws-x", "admin", ["A"])
    att.sent(protocol.stdout("A", "x" * 100), 0.0)
    assert att.unacked == 0 and not att.flow_blocked()  # off until the client asks
    att.enable_flow(protocol.MIN_FLOW_WINDOW)
    att.sent(protocol.status("A", "closed"), 0.0)
    att.sent(protocol.stdout("A", "x" * protocol.MIN_FLOW_WINDOW), 0.0)
    assert att.flow_blocked()
    att.ack(1)
    assert not att.flow_blocked() and att.unacked == protocol.MIN_FLOW_WINDOW - 1
    att.ack(10**9)
    assert att.unacked == 0
    assert parse_client_message('{"type":"flow","window":1}') == \
        protocol.Flow(window=protocol.MIN_FLOW_WINDOW)
    assert parse_client_message('{"type":"ack","chars":5}') == protocol.Ack(chars=5)
    for bad in ('{"type":"ack","chars":-1}', '{"type":"ack"}', '{"type":"flow","window":"x"}'):
        with pytest.raises(ProtocolError):
            parse_client_message(bad)


def test_flow_control_holds_the_flood_but_not_a_quiet_panes_echo() -> None:
    """Window used up by pane A's flood: A waits for acks, B's keystroke echo still goes out
    (bounded overdraft), and nothing of A slips through with it."""
    att = Attachment("ws-x", "admin", ["A", "B"])
    att.enable_flow(protocol.MIN_FLOW_WINDOW)
    att.outboxes["A"]._push_output("a" * (3 * FRAME_CHARS), replay=False)
    assert att.can_send()
    for frame in att.take_round():
        att.sent(frame, 1.0)
    assert att.flow_blocked() and not att.can_send()  # only the flood is waiting
    att.outboxes["B"]._push_output("k", replay=False)
    assert att.can_send()
    frames = att.take_round()
    assert frames == [protocol.stdout("B", "k")]
    for frame in frames:
        att.sent(frame, 1.0)
    # The overdraft is bounded: past window + FLOW_OVERDRAFT even an echo waits for acks.
    att.unacked = protocol.MIN_FLOW_WINDOW + FLOW_OVERDRAFT
    att.outboxes["B"]._push_output("j", replay=False)
    assert not att.can_send()
    att.ack(10**9)
    assert att.can_send()
    assert sorted(f["pane"] for f in att.take_round()) == ["A", "B"]  # the flood resumes


def test_coalescing_never_holds_back_a_quiet_pane() -> None:
    att = Attachment("ws-x", "admin", ["A", "B"])
    att.sent(protocol.stdout("A", "x" * 10), 10.0)  # A is streaming
    att.outboxes["A"]._push_output("more", replay=False)
    assert att.coalescing_useful(10.005, 0.02)  # a little of a streaming pane: gather
    att.outboxes["B"]._push_output("k", replay=False)  # B has been quiet
    assert not att.coalescing_useful(10.005, 0.02)
    assert not att.coalescing_useful(10.5, 0.02)  # A stopped streaming long ago


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(max_size=50), st.text(min_size=4096, max_size=5000),
                      st.text(st.sampled_from('ab /=\n\r\t"\\\x1b\x7fé'), min_size=4096,
                              max_size=5000)),
       replay=st.booleans())
def test_stdout_frames_encode_as_json_dumps(text: str, replay: bool) -> None:
    """The fast path for bulk output writes exactly what json.dumps decodes to, keeps
    non-ASCII as is, and never a raw control character."""
    message = protocol.stdout("B", text, replay=replay)
    encoded = protocol.encode(message)
    assert json.loads(encoded) == message
    assert not any(ch < " " for ch in encoded)
    if len(text) < 4096:
        assert encoded == json.dumps(message, ensure_ascii=False, separators=(",", ":"))


# Output as the SSH layer reads it: any size (up to a few frames), escapes, quotes, non-ASCII.
# No lone surrogates: output comes from a UTF-8 decoder that replaces what is invalid.
_OUTPUT = st.builds(lambda base, n: base * n,
                    st.text(st.sampled_from('ab \n\r\t"\\\x1b\x00\x7fé🙂'), min_size=1,
                            max_size=40),
                    st.integers(1, 3000))


@PROP
@given(chunks=st.lists(st.tuples(_OUTPUT, st.booleans()), min_size=1, max_size=6),
       limits=st.lists(st.integers(1, 2 * FRAME_CHARS), min_size=1, max_size=4))
def test_frames_of_pre_encoded_output_are_the_output_in_order(
        chunks: list[tuple[str, bool]], limits: list[int]) -> None:
    """A recorded pane queues its output with the JSON literals it made once (session.py),
    an unrecorded one without; mixed, taken with any limits: every frame encodes to JSON whose
    data is the frame's text, no frame is over its limit, and the frames are the output, in
    order. At the default limit a frame of pre-encoded pieces always reuses their JSON."""
    async def run() -> None:
        box = Outbox("A", Wakeup(), capacity=1 << 30)
        for text, pre in chunks:
            await box.put_output(text, [json_string(p) for p in frame_pieces(text)]
                                 if pre else None)
        got: list[str] = []
        total = sum(len(text) for text, _ in chunks)
        for i in range(total + 1):  # every take makes progress
            if not box:
                break
            limit = limits[i % len(limits)]
            for frame in box.take(limit):
                sent = json.loads(protocol.encode(frame))
                assert sent == {k: v for k, v in frame.items() if k != protocol.ENCODED}
                assert 0 < len(sent["data"]) <= limit
                got.append(sent["data"])
        assert "".join(got) == "".join(text for text, _ in chunks)

        every = Outbox("A", Wakeup(), capacity=1 << 30)
        for text, _ in chunks:
            await every.put_output(text, [json_string(p) for p in frame_pieces(text)])
        while every:
            assert all(protocol.ENCODED in frame for frame in every.take())

    trio.run(run)
