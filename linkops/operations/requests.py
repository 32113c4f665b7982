"""Typed request bodies and query strings of the operations routes (rerun, run
confirmation, output paging, history, diff), structured by the one strict cattrs converter
(:mod:`linkops.converters`; query strings through ``structure_query``).

*Errors*: 400 ``VALIDATION_ERROR`` with every problem in ``details.errors``
(``[{path: "$.offset", message}]``), as for every body and query string.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

import attrs

from linkops.api_types import doc
from linkops.converters import QUERY_NAME, FieldError, structure_request

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
# GET /api/operations (linkops/operations/history.py enforces the same for internal callers).
HISTORY_DEFAULT_LIMIT = 50
HISTORY_MAX_LIMIT = 200
HISTORY_MAX_PAGE = 1_000_000


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

    stream: Literal["stdout", "stderr"] = attrs.field(
        default="stdout", metadata=doc("which stream"))
    offset: int = attrs.field(default=0, metadata=doc(
        "UTF-8 byte offset (a page starts at the first character boundary at or after it)",
        maximum=MAX_OFFSET))
    limit: int = attrs.field(default=DEFAULT_PAGE, metadata=doc(
        f"bytes per page (above {MAX_PAGE} capped to it)", minimum=1, maximum=MAX_LIMIT))

    @property
    def page_size(self) -> int:
        return min(self.limit, MAX_PAGE)


@attrs.frozen
class HistoryQuery:
    """``GET /api/operations``; ``status``, ``from``, ``to`` and ``cursor`` are checked by
    ``linkops.operations.history.list_operations``."""

    status: str | None = attrs.field(default=None, metadata=doc(
        "operation statuses, comma-separated"))
    start: str | None = attrs.field(default=None, metadata={
        QUERY_NAME: "from", **doc("queued at or after (ISO-8601)")})
    end: str | None = attrs.field(default=None, metadata={
        QUERY_NAME: "to", **doc("queued at or before (ISO-8601)")})
    limit: int | None = attrs.field(default=None, metadata=doc(
        f"page size (default {HISTORY_DEFAULT_LIMIT})", minimum=1, maximum=HISTORY_MAX_LIMIT))
    cursor: str | None = attrs.field(default=None, metadata=doc(
        "next_cursor of the previous page"))
    page: int | None = attrs.field(default=None, metadata=doc(
        "page number (without cursor)", minimum=1, maximum=HISTORY_MAX_PAGE))

    def params(self) -> dict[str, str | int | None]:
        return {"status": self.status, "from": self.start, "to": self.end,
                "limit": self.limit, "cursor": self.cursor, "page": self.page}


@attrs.frozen
class DiffQuery:
    against: str = attrs.field(default="majority", metadata=doc(
        "majority (default) or a group key"))


def parse(value: Any, cls: type[T]) -> T:
    """``value`` (a body) structured into ``cls``; 400 ``VALIDATION_ERROR`` naming each
    problem's path (:func:`linkops.converters.structure_request`)."""
    return structure_request(value, cls)


__all__ = ["Confirmation", "DiffQuery", "HistoryQuery", "OutputQuery", "RerunBody", "parse"]
