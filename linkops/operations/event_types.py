"""The SSE event kinds of an operation, one attrs type each (docs/api.md "SSE events").

The live hub (:mod:`linkops.operations.orchestrator`, :mod:`linkops.operations.service`) and
the replay of a finished operation from the database (:func:`linkops.operations.history.
replay_events`) build their events with these constructors only, so both carry the same
fields. ``EventHub.emit(event)`` publishes one; :func:`payload` is its JSON ``data``.

What legitimately differs between a live stream and the replay of the same finished
operation (and nothing else — ``tests/test_prop_event_replay.py``):

- event ids, and how output is cut: live output comes in chunks as it arrives, interleaved
  across tasks; the replay sends each task's stdout and then stderr as one event each, task
  after task, so the text of each stream is equal but not its chunking or interleaving;
- live, the ``operation`` event comes twice (``queued``, then ``running`` with ``started``);
  the replay sends it once, with the final status, ``started`` and ``replayed: true``;
- live output beyond the replay limit is only in the database; its notice event is live-only;
- ``groups`` events are live-only (the groups endpoint answers for a finished operation).
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

from linkops.converters import converter


@attrs.frozen
class OperationState:
    kind: ClassVar[str] = "operation"
    operation_id: str
    status: str
    scripts: list[str]
    targets: list[str]
    flags: dict[str, list[str]]
    concurrency: int
    triggered_by: str | None = None
    started: str | None = None
    replayed: bool = False


@attrs.frozen
class TaskStart:
    kind: ClassVar[str] = "task_start"
    target: str
    script: str
    position: int
    name: str | None
    started: str | None


@attrs.frozen
class Output:
    kind: ClassVar[str] = "output"
    target: str
    script: str
    position: int
    stream: str
    data: str


@attrs.frozen
class TaskEnd:
    kind: ClassVar[str] = "task_end"
    target: str
    script: str
    position: int
    status: str
    exit_code: int | None
    duration: float | None
    ended: str | None
    error: str | None
    remote_killed: bool | None
    output_truncated: bool = False


@attrs.frozen
class OperationEnd:
    kind: ClassVar[str] = "operation_end"
    operation_id: str
    status: str
    result: dict[str, Any]
    ended: str | None
    duration: float | None
    error: str | None


@attrs.frozen
class Groups:
    """Counts per output group (SPEC §10.3), after every task end. Live only: the replay of a
    finished operation has none (``GET /api/operations/{id}/groups`` has the same facts)."""

    kind: ClassVar[str] = "groups"
    operation_id: str
    finished: int
    total: int
    # Grouping.counts(): [{script, groups: [{key, status, exit_code, count}]}]
    script_groups: list[dict[str, Any]]


OperationEvent = OperationState | TaskStart | Output | TaskEnd | OperationEnd | Groups
EVENT_TYPES: tuple[type[Any], ...] = (OperationState, TaskStart, Output, TaskEnd, OperationEnd,
                                      Groups)


def payload(event: OperationEvent) -> dict[str, Any]:
    data: dict[str, Any] = converter.unstructure(event)
    if isinstance(event, OperationState) and not event.replayed:
        del data["replayed"]
    return data
