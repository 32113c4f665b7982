"""What is wrong with a configuration repository, said so a person can fix it.

A :class:`Problem` names the file, the line, the entry and the field:
``links.yaml:12: links.vps-01.port: must be an integer 1-65535``. :func:`raise_problems`
turns the problems found in one sync into one :class:`~linkops.errors.ValidationError`
whose code is the first problem's (``YAML_PARSE_ERROR``, ``VALIDATION_ERROR``,
``NON_BASH_SCRIPT``) and whose ``details`` hold the first problem's parts plus every
problem as text (capped, so a hostile file cannot produce a huge response).
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from linkops.errors import ValidationError

MAX_REPORTED = 50


def format_path(parts: Sequence[str | int]) -> str:
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


@attrs.frozen
class Problem:
    file: str
    line: int | None
    path: tuple[str | int, ...]
    message: str
    code: str = "VALIDATION_ERROR"

    @property
    def entry(self) -> str | None:
        """The id of the link or script concerned (``links.<id>`` → ``<id>``)."""
        return str(self.path[1]) if len(self.path) >= 2 else None

    @property
    def field(self) -> str:
        return format_path(self.path)

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.message}" if self.path else f"{where}: {self.message}"

    def details(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "entry": self.entry,
            "field": self.field or None,
            "code": self.code,
            "message": self.message,
        }


def raise_problems(problems: Sequence[Problem]) -> None:
    """Raise one ValidationError for ``problems`` (no-op when there are none)."""
    if not problems:
        return
    first = problems[0]
    message = str(first)
    if len(problems) > 1:
        message += f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})"
    details = first.details()
    details["problems"] = [p.details() for p in problems[:MAX_REPORTED]]
    details["problem_count"] = len(problems)
    raise ValidationError(message, code=first.code, details=details)
