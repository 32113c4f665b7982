"""Replayed scrollback never makes the terminal answer (linkops.terminal.buffers).

The browser side (xterm.js really not answering the filtered text, the page dropping answers
to replayed frames) is in tests/test_browser_terminal_ui.py.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from linkops.terminal import protocol
from linkops.terminal.buffers import (
    Outbox,
    Wakeup,
    contains_terminal_query,
    strip_terminal_queries,
)
from tests.strategies import PROP

# What vim, top, less, shells and colour-aware tools send to learn about the terminal.
QUERIES = [
    "\x1b[c", "\x1b[0c", "\x1b[>c", "\x1b[>0c", "\x1b[=c",          # device attributes
    "\x1b[5n", "\x1b[6n", "\x1b[?6n", "\x1b[?15n",                   # status, cursor position
    "\x1b[?2004$p", "\x1b[12$p", "\x1b[?1049$p",                     # DECRQM
    "\x1b[14t", "\x1b[16t", "\x1b[18t", "\x1b[21t", "\x1b[13;2t",    # window reports
    "\x1b[>q", "\x1b[>0q",                                           # XTVERSION
    "\x1b[?u", "\x1b[?4m",                                           # kitty keys, XTQMODKEYS
    "\x1b]10;?\x07", "\x1b]11;?\x1b\\", "\x1b]12;?\x07", "\x1b]4;1;?\x07",
    "\x1b]52;c;?\x07",                                               # colours, clipboard
    "\x1bP$qm\x1b\\", "\x1bP$q\"p\x1b\\", "\x1bP+q544e\x1b\\",       # DECRQSS, XTGETTCAP
    "\x9bc", "\x9b6n", "\x9d11;?\x9c", "\x90$qm\x9c",                # the C1 forms
]
# Output that must replay unchanged: colours, cursor moves, modes, titles, links.
KEEP = [
    "\x1b[1;31mred\x1b[0m", "\x1b[2J\x1b[H", "\x1b[10;20H", "\x1b[100G", "\x1b[K",
    "\x1b[?1049h", "\x1b[?1049l", "\x1b[?2004h", "\x1b[?25l", "\x1b[2 q", "\x1b[22;0t",
    "\x1b]0;root@host: ~\x07", "\x1b]8;;http://x.example/?a=b\x07link\x1b]8;;\x07",
    "\x1b]11;#000000\x07", "\x1b]10;rgb:ffff/ffff/ffff\x1b\\", "\x1b(B", "\x1b=", "\x1b>",
    "plain text\r\n", "ünïcödé ✓\r\n",
]


@pytest.mark.parametrize("query", QUERIES)
def test_every_known_query_is_taken_out(query: str) -> None:
    assert contains_terminal_query(query)
    assert strip_terminal_queries(f"before{query}after") == "before\x18after"


@pytest.mark.parametrize("text", KEEP)
def test_ordinary_output_is_untouched(text: str) -> None:
    assert not contains_terminal_query(text)
    assert strip_terminal_queries(text) == text


def test_what_vim_leaves_in_the_scrollback() -> None:
    # Recorded from vim 9 at a bash prompt (TERM=xterm-256color), shortened.
    vim = ("\x1b[?1049h\x1b[22;0;0t\x1b[>4;2m\x1b[?1h\x1b=\x1b[?2004h\x1b[1;24r"
           "\x1b[?12h\x1b[?12l\x1b[22;2t\x1b[22;1t\x1b[27m\x1b[23m\x1b[29m\x1b[m\x1b[H\x1b[2J"
           "\x1b[?25l\x1b[24;1H\x1b[>c\x1b]10;?\x07\x1b]11;?\x07\x1b[?12$p\x1b[?25h"
           "\x1b[?1049l\x1b[23;0;0t\x1b[?1l\x1b>")
    out = strip_terminal_queries(vim)
    assert not contains_terminal_query(out)
    assert out.count("\x18") == 4
    assert out.replace("\x18", "") == vim.replace("\x1b[>c", "").replace(
        "\x1b]10;?\x07", "").replace("\x1b]11;?\x07", "").replace("\x1b[?12$p", "")


def test_removed_queries_cannot_join_into_a_new_one() -> None:
    # Taking "\x1b[c" out of the middle would leave "\x1b[" + "c": a new query. CAN (which
    # aborts a sequence and shows nothing) stands in for it instead.
    assert strip_terminal_queries("\x1b[\x1b[cc") == "\x1b[\x18c"
    assert not contains_terminal_query(strip_terminal_queries("\x1b]11;\x1b]11;?\x07?\x07"))
    # A C1 CSI inside an OSC string aborts the string: the query after it is found.
    assert strip_terminal_queries("\x1b]0;t\x9bc\x07") == "\x1b]0;t\x18\x07"


_PIECES = st.sampled_from(QUERIES + KEEP + ["\x1b", "\x1b[", "\x1b]", "\x1bP", "?", ";", "c",
                                            "n", "$p", "\x07", "\x1b\\", "1", ">", "\x9b"])


@PROP
@given(st.lists(st.one_of(_PIECES, st.text(max_size=8)), max_size=40).map("".join))
def test_filtered_replay_holds_no_query(text: str) -> None:
    """Whatever a host printed, the filtered replay contains no sequence the terminal answers,
    and nothing but queries changed (each became one CAN)."""
    out = strip_terminal_queries(text)
    assert not contains_terminal_query(out)
    if "\x18" not in text:
        assert len(out) <= len(text)


@PROP
@given(st.text(alphabet=st.characters(blacklist_characters="\x1b\x9b\x9d\x90")))
def test_text_without_escapes_is_returned_as_is(text: str) -> None:
    assert strip_terminal_queries(text) is text


def test_only_the_replay_is_filtered() -> None:
    box = Outbox("A", Wakeup())
    box.put_replay("old \x1b[c prompt$ ")
    box._push_output("live \x1b[c", replay=False)  # a live program asks: it gets its answer
    assert box.take() == [protocol.stdout("A", "old \x18 prompt$ ", replay=True),
                          protocol.stdout("A", "live \x1b[c")]


@pytest.mark.parametrize("hostile", [
    "\x1b[" + "1;" * 500_000,                 # a CSI that never ends
    "\x1b]0;" * 250_000,                      # OSCs that never end
    ("\x1b[" + "9" * 1000) * 1000,            # long parameter runs
    "\x1b[c" * 300_000,                       # nothing but queries
    ("\x1b]11;" + "a" * 100) * 10_000,        # unterminated colour strings
])
def test_a_hostile_scrollback_is_filtered_in_linear_time(hostile: str) -> None:
    """A host controls its output: 1 MB built to make a regex backtrack is still filtered at
    once (a generous bound that cannot flake: it takes well under a second)."""
    started = time.monotonic()
    out = strip_terminal_queries(hostile)
    assert time.monotonic() - started < 10
    assert not contains_terminal_query(out)
