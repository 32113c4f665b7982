"""Operation and task states, and the pure rule that turns task results into an outcome.

Operation: ``queued → running → success | failed | partial | stopped | interrupted``.

Task (one link × one script): ``pending → running → success | failed | timeout | stopped``,
or ``skipped`` (an earlier script on that host did not succeed, or the operation was stopped
before it began) or ``interrupted`` (the service died while it ran).

A *target* succeeded when every one of its tasks succeeded. The operation is ``success`` when
every target succeeded, ``failed`` when none did, ``partial`` otherwise; ``stopped`` wins over
all of these when the operation was stopped (by a user or at shutdown).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

OPERATION_STATUSES = (
    "queued", "running", "success", "failed", "partial", "stopped", "interrupted",
)
FINISHED_STATUSES = frozenset({"success", "failed", "partial", "stopped", "interrupted"})
ACTIVE_STATUSES = frozenset({"queued", "running"})

TASK_STATUSES = (
    "pending", "running", "success", "failed", "timeout", "stopped", "skipped", "interrupted",
)
TASK_FINISHED = frozenset({"success", "failed", "timeout", "stopped", "skipped", "interrupted"})


def target_succeeded(task_statuses: Iterable[str]) -> bool:
    statuses = list(task_statuses)
    return bool(statuses) and all(s == "success" for s in statuses)


def operation_outcome(results: Mapping[str, Iterable[str]], *, stopped: bool = False) -> str:
    """``results`` maps each target to its task statuses (see the module docstring)."""
    if stopped:
        return "stopped"
    if not results:
        return "failed"
    succeeded = [target_succeeded(statuses) for statuses in results.values()]
    if all(succeeded):
        return "success"
    if not any(succeeded):
        return "failed"
    return "partial"


def result_counts(results: Mapping[str, Iterable[str]]) -> dict[str, int]:
    """The ``result`` object of the API: targets by outcome (``success``, ``failed``, and
    ``running`` while undecided) plus ``tasks_<status>`` counts."""
    counts = {"targets": len(results), "success": 0, "failed": 0, "running": 0, "tasks": 0}
    for statuses in results.values():
        listed = list(statuses)
        if target_succeeded(listed):
            counts["success"] += 1
        elif any(s in ("pending", "running") for s in listed) and not any(
                s in ("failed", "timeout", "stopped", "interrupted") for s in listed):
            counts["running"] += 1  # not decided yet (only while the operation runs)
        else:
            counts["failed"] += 1
        for status in listed:
            counts["tasks"] += 1
            key = f"tasks_{status}"
            counts[key] = counts.get(key, 0) + 1
    return counts
