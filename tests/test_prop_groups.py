"""Output grouping (SPEC §10.3) as properties of the pure module, no SSH.

Not one of the numbered SPEC §9 properties: these are the §10.3 grouping rules (a partition
of the finished tasks; equal normalised outputs ⇔ same group; independent of end order).
"""

from __future__ import annotations

import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from linkops.operations.groups import (
    Grouping,
    TaskResult,
    fingerprint,
    from_rows,
    normalise,
)

HOSTS = ["10.0.0.1", "10.0.0.12", "web-1", "db.example"]
PIECES = st.sampled_from(["ok", " ", "\t", "\r\n", "\n", "\r", "web-1", "10.0.0.1",
                          "10.0.0.12", "{link}", "x", "é", ".", "-"])
TEXT = st.lists(PIECES, max_size=8).map("".join)


@st.composite
def tasks(draw: st.DrawFn) -> list[dict[str, Any]]:
    count = draw(st.integers(min_value=0, max_value=24))
    out = []
    for i in range(count):
        target = f"link-{i}"
        host = draw(st.sampled_from(HOSTS))
        for position, script in enumerate(draw(st.sampled_from([["a"], ["a", "b"]]))):
            out.append({
                "target": target, "script": script, "position": position, "host": host,
                "status": draw(st.sampled_from(["success", "failed", "skipped", "timeout"])),
                "exit_code": draw(st.sampled_from([0, 1, None])),
                "stdout": draw(TEXT), "stderr": draw(TEXT),
            })
    return out


def _result(t: dict[str, Any]) -> TaskResult:
    return TaskResult(t["target"], t["script"], t["position"], t["status"], t["exit_code"],
                      fingerprint(t["stdout"], t["stderr"], t["target"], t["host"]))


def _identity(t: dict[str, Any]) -> tuple[Any, ...]:
    return (t["script"], t["position"], t["status"], t["exit_code"],
            normalise(t["stdout"], t["target"], t["host"]),
            normalise(t["stderr"], t["target"], t["host"]))


@settings(max_examples=150, deadline=None)
@given(tasks(), st.randoms(use_true_random=False))
def test_grouping_is_a_partition_by_normalised_output_in_any_end_order(
        items: list[dict[str, Any]], rnd: Any) -> None:
    """Every finished task is in exactly one group; two tasks share a group iff their
    script, status, exit code and normalised stdout and stderr are equal; the result does
    not depend on the order in which tasks end."""
    targets = sorted({t["target"] for t in items})
    grouping = Grouping(targets)
    for t in items:
        grouping.add(_result(t))
    assert len(grouping) == len(items)
    member: dict[tuple[str, int], str] = {}
    for _, _, groups in grouping.by_script():
        for group in groups:
            for target in group.targets:
                slot = (target, group.position)
                assert slot not in member  # in exactly one group
                member[slot] = group.key
    assert set(member) == {(t["target"], t["position"]) for t in items}
    for a in items:
        for b in items:
            same = member[(a["target"], a["position"])] == member[(b["target"], b["position"])]
            assert same == (_identity(a) == _identity(b))
    shuffled = list(items)
    rnd.shuffle(shuffled)
    again = Grouping(targets)
    for t in shuffled:
        again.add(_result(t))
    assert again.view() == grouping.view()
    assert again.counts() == grouping.counts()


@settings(max_examples=100, deadline=None)
@given(tasks())
def test_rebuilt_from_stored_rows_equals_the_live_grouping(items: list[dict[str, Any]]) -> None:
    """What GET …/groups rebuilds from the stored fingerprints (or, for rows without one,
    from the output itself) equals what the live operation folded."""
    targets = [t["target"] for t in items]
    live = Grouping(targets)
    rows = []
    for i, t in enumerate(items):
        result = _result(t)
        live.add(result)
        stored = i % 2 == 0  # half as if from before migration 0006
        rows.append({**t, "output_hash": result.fingerprint.output_hash if stored else None,
                     "norm_stdout_head": result.fingerprint.stdout_head,
                     "norm_stderr_head": result.fingerprint.stderr_head})
    rows.append({"target": "late", "script": "a", "position": 0, "status": "running",
                 "exit_code": None, "output_hash": None, "norm_stdout_head": None,
                 "norm_stderr_head": None, "stdout": "", "stderr": ""})
    rebuilt, unfinished = from_rows(rows, targets, {t["target"]: t["host"] for t in items})
    assert rebuilt.view() == live.view()
    assert unfinished == [{"target": "late", "script": "a", "position": 0,
                           "status": "running"}]


def test_normalisation_rules() -> None:
    assert normalise("a  \r\nb\t\r\n", "web-1", "10.0.0.1") == "a\nb\n"
    assert normalise("lone\rcr", "x", "y") == "lone\rcr"
    assert normalise("from web-1 (10.0.0.1).", "web-1", "10.0.0.1") == "from {link} ({host})."
    # whole tokens only
    assert normalise("10.0.0.12 web-10 xweb-1 web-1.local", "web-1", "10.0.0.1") == \
        "10.0.0.12 web-10 xweb-1 web-1.local"
    assert normalise("web-1:22 root@web-1", "web-1", "web-1.example") == "{link}:22 root@{link}"
    assert normalise("db.example", "db", "db.example") == "{host}"
    assert normalise("same", "same", "same") == "{link}"
    assert normalise("a\nb", "", "") == "a\nb"
    assert fingerprint("a\n", "", "x", "y") != fingerprint("", "a\n", "x", "y")


@settings(max_examples=100, deadline=None)
@given(st.lists(PIECES, max_size=40).map("".join), st.integers(min_value=1, max_value=7))
def test_blockwise_normalisation_equals_whole_text(text: str, block: int) -> None:
    """Normalising block by block (cut after newlines) gives the whole-text result, and the
    fingerprint is that of the whole normalised text."""
    import linkops.operations.groups as groups

    whole = groups._normalise_block(text, groups._words("web-1", "10.0.0.1"))
    old = groups._BLOCK
    groups._BLOCK = block
    try:
        assert normalise(text, "web-1", "10.0.0.1") == whole
        fp = fingerprint(text, text, "web-1", "10.0.0.1")
    finally:
        groups._BLOCK = old
    assert fp.output_hash == groups.output_hash(whole, whole)
    assert fp.stdout_head == whole[:groups.GROUP_HEAD_CHARS]


def _regex_reference(text: str, link_id: str, host: str) -> str:
    """The token rule as the regex docs/api.md describes (the reference implementation)."""
    words = sorted({w for w in (link_id, host) if w}, key=len, reverse=True)
    if not words:
        return text
    pattern = re.compile(r"(?<![\w.-])(?:" + "|".join(re.escape(w) for w in words)
                         + r")(?![\w-]|\.[\w-])")
    return pattern.sub(lambda m: "{link}" if m.group(0) == link_id else "{host}", text)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["web-1", "web", "1", ".", "-", "_", " ", "é", "{", "}",
                                 "link", "10.0.0.1", "0", "x"]), max_size=12).map("".join),
       st.sampled_from(["web-1", "web", "link", "1", "10.0.0.1"]),
       st.sampled_from(["10.0.0.1", "web", "web-1", "0.1", ""]))
def test_token_replacement_matches_the_documented_regex(text: str, link_id: str,
                                                        host: str) -> None:
    """The str.find implementation of the placeholder rule equals the regex of the docs."""
    import linkops.operations.groups as groups

    assert groups._replace_tokens(text, groups._words(link_id, host)) == \
        _regex_reference(text, link_id, host)
