"""The safe YAML loader: line numbers, and every refusal with the line that caused it."""

from __future__ import annotations

import pytest

from linkops.inventory.yaml_loader import MAX_DEPTH, MAX_YAML_BYTES, YamlProblem, load_yaml


def test_plain_values_and_line_numbers() -> None:
    loaded = load_yaml(
        b"# comment\n"
        b"links:\n"
        b"  vps-01:\n"
        b"    port: 22\n"
        b"    tags:\n"
        b"      - a\n"
        b"      - b\n"
        b"    ok: true\n"
        b"    when: 2024-05-01\n"
        b"    yes_is_text: yes\n"
        b"    note: |\n"
        b"      two\n"
        b"      lines\n"
    )
    entry = loaded.data["links"]["vps-01"]
    assert entry == {"port": 22, "tags": ["a", "b"], "ok": True, "when": "2024-05-01",
                     "yes_is_text": "yes", "note": "two\nlines\n"}
    # ruamel's formatting subclasses are gone: these are the builtin types.
    assert type(entry["port"]) is int and type(entry["note"]) is str
    assert type(loaded.data["links"]) is dict and type(entry["tags"]) is list
    assert loaded.line_of(("links",)) == 2
    assert loaded.line_of(("links", "vps-01")) == 3
    assert loaded.line_of(("links", "vps-01", "port")) == 4
    assert loaded.line_of(("links", "vps-01", "tags", 1)) == 7
    # A path that does not exist falls back to its nearest ancestor.
    assert loaded.line_of(("links", "vps-01", "missing", "deeper")) == 3


@pytest.mark.parametrize(("text", "line", "fragment"), [
    (b"a: 1\nb: 2\na: 3\n", 3, "duplicate key"),
    (b"a: &x [1, 2]\nb: *x\n", 1, "anchors and aliases"),
    (b"a: 1\nb: *undefined\n", 2, "anchors and aliases"),
    (b"a: 1\nb: !!python/object/apply:os.system ['id']\n", 2, "explicit tags"),
    (b"a: 1\nb: !custom x\n", 2, "explicit tags"),
    (b"a: 1\n---\nb: 2\n", 2, "only one YAML document"),
    (b"a: 1\nb: c: d\n", 2, "mapping values are not allowed"),
    (b"a:\n  - 1\n - 2\n", 3, None),
    (b"a: [1, 2\nb: 3\n", None, None),
    (b"a: \"unterminated\n", None, None),
    (b"a:\n\tb: 1\n", 2, None),
    (b"ok: 1\nbad: \xff\xfe\n", 2, "UTF-8"),
])
def test_refusals_name_the_line(text: bytes, line: int | None, fragment: str | None) -> None:
    with pytest.raises(YamlProblem) as info:
        load_yaml(text)
    if line is not None:
        assert info.value.line == line
    else:
        assert isinstance(info.value.line, int) and info.value.line >= 1
    if fragment is not None:
        assert fragment in info.value.message


def test_deep_nesting_is_refused() -> None:
    depth = MAX_DEPTH + 1
    text = b"[" * depth + b"1" + b"]" * depth
    with pytest.raises(YamlProblem) as info:
        load_yaml(text)
    assert "nested deeper" in info.value.message
    fine = b"[" * (MAX_DEPTH - 1) + b"1" + b"]" * (MAX_DEPTH - 1)
    assert load_yaml(fine).data is not None


def test_size_limit() -> None:
    with pytest.raises(YamlProblem) as info:
        load_yaml(b"#" * (MAX_YAML_BYTES + 1))
    assert "larger than" in info.value.message


def test_billion_laughs_is_refused_at_the_first_anchor_quickly() -> None:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 10):
        refs = ", ".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    with pytest.raises(YamlProblem) as info:
        load_yaml("\n".join(lines).encode())
    assert info.value.line == 1


def test_surrogate_pair_escape_becomes_its_character() -> None:
    """JSON semantics: JSON writers escape non-BMP characters as UTF-16 surrogate pairs."""
    loaded = load_yaml(b'a:\n  emoji: "\\ud83d\\udc4b"\n  key_\\u00e9: x\n  "\\ud83d\\ude00k": v\n')
    assert loaded.data["a"]["emoji"] == "\U0001f44b"
    assert loaded.data["a"]["\U0001f600k"] == "v"
    "".join(loaded.data["a"]).encode("utf-8")  # nothing left that UTF-8 cannot hold


@pytest.mark.parametrize(("text", "line"), [
    (b'a:\n  b: ok\n  emoji: "\\ud83d"\n', 3),
    (b'a:\n  - "\\udc4b\\ud83d"\n', 2),
    (b'a:\n  "\\ud800": x\n', 2),
    (b'"\\udfff"\n', 1),
])
def test_lone_surrogate_is_refused_with_its_line(text: bytes, line: int) -> None:
    with pytest.raises(YamlProblem) as caught:
        load_yaml(text)
    assert caught.value.line == line
    assert "surrogate" in caught.value.message
