"""Typed request bodies and queries of the SPEC §10.3 routes (rerun, run confirmation, output
paging), structured by the strict cattrs converter (:mod:`linkops.converters`).

*Errors*: :func:`parse` raises :class:`ValidationError` (400 ``VALIDATION_ERROR``) with every
offending field in ``details.problems`` (``[{field, message}]``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import attrs

from linkops.converters import FieldError, error_paths, structure
from linkops.errors import ValidationError

T = TypeVar("T")

RERUN_WHICH = ("failed", "unfinished", "group")
STREAMS = ("stdout", "stderr")
DEFAULT_PAGE = 65_536
MAX_PAGE = 1_048_576
# Offsets are byte offsets into text kept in SQLite (at most 2 GB); more digits are refused.
MAX_OFFSET = 2**31
# A limit above MAX_PAGE is capped; one that does not even fit this is refused.
MAX_LIMIT = 2**31
ID_MAX = 128


def _one_of(options: tuple[str, ...]) -> Any:
    def check(_: Any, attribute: Any, value: str) -> None:
        if value not in options:
            raise FieldError(f"must be one of {', '.join(options)}", (attribute.name,))
    return check


def _optional_id(_: Any, attribute: Any, value: str | None) -> None:
    if value is not None and not 0 < len(value) <= ID_MAX:
        raise FieldError(f"must be 1–{ID_MAX} characters", (attribute.name,))


def _between(low: int, high: int) -> Any:
    def check(_: Any, attribute: Any, value: int | None) -> None:
        if value is not None and not low <= value <= high:
            raise FieldError(f"must be between {low} and {high}", (attribute.name,))
    return check


@attrs.frozen
class RerunBody:
    """``POST /api/operations/{id}/rerun``: ``plan_id``/``confirm`` as for ``run``."""

    which: str = attrs.field(validator=_one_of(RERUN_WHICH))
    group: str | None = attrs.field(default=None, validator=_optional_id)
    concurrency: int | None = attrs.field(default=None, validator=_between(1, 10_000))
    plan_id: str | None = attrs.field(default=None, validator=_optional_id)
    confirm: str | None = None


@attrs.frozen
class Confirmation:
    """The two fields ``run`` takes beyond the plan body."""

    plan_id: str | None = attrs.field(default=None, validator=_optional_id)
    confirm: str | None = None


@attrs.frozen
class OutputQuery:
    """``GET …/tasks/{target}/{script}/output?stream=&offset=&limit=``; a ``limit`` over
    :data:`MAX_PAGE` is capped to it (:attr:`page_size`)."""

    stream: str = attrs.field(default="stdout", validator=_one_of(STREAMS))
    offset: int = attrs.field(default=0, validator=_between(0, MAX_OFFSET))
    limit: int = attrs.field(default=DEFAULT_PAGE, validator=_between(1, MAX_LIMIT))

    @property
    def page_size(self) -> int:
        return min(self.limit, MAX_PAGE)


def _problems(exc: BaseException) -> list[dict[str, str]]:
    return [{"field": ".".join(str(p) for p in path) or "body", "message": message}
            for path, message in error_paths(exc)]


def parse(value: Any, cls: type[T]) -> T:
    """``value`` structured into ``cls``; 400 ``VALIDATION_ERROR`` naming each bad field."""
    try:
        return structure(value, cls)
    except Exception as exc:  # cattrs raises exception groups (Exception subclasses)
        problems = _problems(exc) or [{"field": "body", "message": str(exc)}]
        text = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        raise ValidationError(text, code="VALIDATION_ERROR",
                              details={"problems": problems}) from None


_UINT = re.compile(r"[0-9]{1,10}")


def output_query(multi: Mapping[str, Sequence[str]]) -> OutputQuery:
    """The paging query (each parameter's values, as given): integers are plain decimal
    digits (no sign, no fraction, no exponent, at most 10 digits, at most 2**31); a parameter
    given twice, an unknown one or anything else is 400 ``VALIDATION_ERROR``."""
    unknown = sorted(set(multi) - {"stream", "offset", "limit"})
    values: dict[str, Any] = {}
    problems: list[dict[str, str]] = []
    for name in unknown:
        problems.append({"field": name[:40], "message": "unknown parameter"})
    args: dict[str, str] = {}
    for name, given in multi.items():
        if len(given) > 1:
            problems.append({"field": name[:40], "message": "given more than once"})
        elif given:
            args[name] = given[0]
    for name in ("offset", "limit"):
        raw = args.get(name)
        if raw is None:
            continue
        if not _UINT.fullmatch(raw):
            problems.append({"field": name,
                             "message": "must be a non-negative integer (digits only)"})
        else:
            values[name] = int(raw)
    if args.get("stream") is not None:
        values["stream"] = args["stream"]
    if problems:
        text = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        raise ValidationError(text, code="VALIDATION_ERROR", details={"problems": problems})
    return parse(values, OutputQuery)


__all__ = ["Confirmation", "OutputQuery", "RerunBody", "output_query", "parse"]
