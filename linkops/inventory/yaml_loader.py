"""Safe YAML loading with line numbers (ruamel.yaml), for the configuration repository.

Text of at most :data:`MAX_YAML_BYTES` is loaded in one pass by the round-trip loader
(``YAML(typ="rt")``, which constructs only plain mappings, lists and scalars) with a composer
that refuses anchors and aliases outright (they are the "billion laughs" amplifier, and an
inventory never needs them) and explicit tags, plus ruamel's own limits: nesting deeper than
:data:`MAX_DEPTH`, duplicate keys and more than one document are errors. The tree is then
copied into plain Python values, remembering the line of every key and list item.

*Text*: JSON is YAML 1.2, and JSON writers escape characters outside the BMP as UTF-16
surrogate pairs (``"\\ud83d\\udc4b"``). ruamel decodes each ``\\uXXXX`` on its own, so a
pair arrives as two surrogate code points; we join valid pairs into their character (JSON
semantics) and refuse a lone surrogate with its line — such a string cannot be UTF-8 and
would otherwise fail deep in SQLite or the JSON encoder.

*Errors*: :class:`YamlProblem` with the 1-based line (or ``None``) and a message; the
inventory loader adds file and entry.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

import attrs
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.composer import Composer, MaxDepthExceededError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent
from ruamel.yaml.reader import ReaderError

MAX_YAML_BYTES = 1024 * 1024
MAX_DEPTH = 16

Path_ = tuple[str | int, ...]


class YamlProblem(Exception):
    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


@attrs.frozen
class LoadedYaml:
    """Plain data (dict/list/str/int/float/bool/None) and the line of every path in it."""

    data: Any
    lines: dict[Path_, int]

    def line_of(self, path: Path_) -> int | None:
        """The line of ``path`` or of its nearest ancestor that exists in the file."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None


def _mark_line(mark: Any) -> int | None:
    line = getattr(mark, "line", None)
    return line + 1 if isinstance(line, int) else None


class _GuardedComposer(Composer):
    """The round-trip composer, refusing anchors, aliases and explicit tags as it meets them
    (so an alias bomb is refused at its first anchor, before anything is expanded)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.parser.peek_event()
        line = _mark_line(event.start_mark)
        if isinstance(event, AliasEvent) or getattr(event, "anchor", None) is not None:
            raise YamlProblem("anchors and aliases are not allowed", line)
        tag = getattr(event, "tag", None)
        if tag is not None:
            raise YamlProblem(f"explicit tags are not allowed ({tag})", line)
        return super().compose_node(parent, index)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _text(value: str, line: int | None) -> str:
    """``value`` as a real Unicode string: surrogate pairs joined, lone surrogates refused."""
    if not _SURROGATE.search(value):
        return str(value)
    try:
        return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
    except UnicodeDecodeError:
        raise YamlProblem(
            "a string contains a lone UTF-16 surrogate escape (\\ud800-\\udfff must come as a"
            " high/low pair, or write the character itself)", line) from None


def _plain(value: Any, path: Path_, lines: dict[Path_, int], line: int | None = 1) -> Any:
    if isinstance(value, CommentedMap):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            key_line = value.lc.key(key)[0] + 1
            plain_key = _plain(key, path, {}, key_line)
            lines[(*path, plain_key)] = key_line
            out[plain_key] = _plain(item, (*path, plain_key), lines, key_line)
        return out
    if isinstance(value, CommentedSeq):
        items = []
        for index, item in enumerate(value):
            item_line = value.lc.item(index)[0] + 1
            lines[(*path, index)] = item_line
            items.append(_plain(item, (*path, index), lines, item_line))
        return items
    # ruamel returns str/int/float subclasses that carry formatting; keep only the value.
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _text(value, line)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, datetime.date):
        # Dates are only ever metadata; keep them as text so they stay JSON.
        return value.isoformat()
    raise YamlProblem(f"unsupported YAML value of type {type(value).__name__}", None)


def load_yaml(raw: bytes) -> LoadedYaml:
    """Parse one YAML document (see the module docstring); raises :class:`YamlProblem`."""
    if len(raw) > MAX_YAML_BYTES:
        raise YamlProblem(f"file is larger than {MAX_YAML_BYTES} bytes", None)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise YamlProblem("not valid UTF-8", line) from None
    loader = YAML(typ="rt")
    loader.Composer = _GuardedComposer
    loader.allow_duplicate_keys = False
    # ruamel counts every node; a scalar sits one level below its collection.
    loader.max_depth = MAX_DEPTH + 1
    try:
        tree = loader.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "malformed YAML"
        if isinstance(exc, MaxDepthExceededError):
            problem = f"nested deeper than {MAX_DEPTH} levels"
        elif "duplicate key" in problem:
            problem = problem.split(" with value", 1)[0]
        elif "another document" in problem or "single document" in problem:
            problem = "only one YAML document is allowed"
        raise YamlProblem(problem, _mark_line(mark)) from None
    except ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        raise YamlProblem(f"character U+{exc.character:04X} is not allowed in YAML", line
                          ) from None
    except YAMLError as exc:
        raise YamlProblem(f"malformed YAML ({exc})", None) from None
    except RecursionError:
        raise YamlProblem("nested too deeply", None) from None
    lines: dict[Path_, int] = {(): 1}
    return LoadedYaml(_plain(tree, (), lines), lines)
