"""Plan and confirm before a run (SPEC §10.3): what ``POST /api/operations/plan`` answers,
when a run needs a typed confirmation, and whether a stored plan still holds.

Pure functions over a validated :class:`~linkops.operations.validate.Plan` and the rows it was
built from; the service does the I/O (it stores plans in ``operation_plans``).

*Confirmation* (decision, docs/decisions/operations.md): needed when a target carries a tag
in ``[operations] confirm_tags`` or there are more than ``confirm_over`` targets. The phrase
is ``run on N target(s)`` — it names the blast radius, so typing it is a conscious act, and it
changes when the target list does. A run needing it must carry ``plan_id`` (a plan of exactly
that request, not expired, whose inventory commit and script hashes still hold) and
``confirm`` equal to the phrase.

*Stale*: the inventory commit changed since the plan, or a script's sha256 did (a script
edited and synced): 409 ``PLAN_STALE`` with ``details.changed``. An expired plan is stale too
(``details.expired``). A plan made for a different request: 409 ``PLAN_MISMATCH``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from linkops.config import Settings
from linkops.errors import ConflictError, NotFoundError
from linkops.operations.validate import Plan, Request
from linkops.timeutil import now_iso, parse_iso, to_iso

PLAN_TTL = timedelta(minutes=15)


def new_plan_id() -> str:
    return f"PLAN-{secrets.token_hex(8)}"


def canonical_request(request: Request) -> dict[str, Any]:
    """The request as stored with a plan and compared with a run's (field order free)."""
    return {"scripts": list(request.scripts), "targets": list(request.targets),
            "flags": {k: list(v) for k, v in sorted(request.flags.items())},
            "concurrency": request.concurrency,
            "require_enrollment": request.require_enrollment}


def confirmation(plan: Plan, settings: Settings) -> dict[str, Any] | None:
    """``{phrase, reason}`` when the run needs a typed confirmation, else None."""
    ops = settings.operations
    wanted = set(ops.confirm_tags)
    tagged = [t.id for t in plan.targets if wanted & set(t.tags)]
    count = len(plan.targets)
    reasons = []
    if tagged:
        tags = sorted({tag for t in plan.targets for tag in t.tags if tag in wanted})
        reasons.append(f"targets tagged {', '.join(tags)}: {', '.join(tagged[:20])}"
                       + (f" and {len(tagged) - 20} more" if len(tagged) > 20 else ""))
    noun = f"{count} target{'s' if count != 1 else ''}"
    if count > ops.confirm_over:
        reasons.append(f"{noun} (more than {ops.confirm_over})")
    if not reasons:
        return None
    return {"phrase": f"run on {noun}", "reason": "; ".join(reasons)}


def plan_view(plan_id: str, plan: Plan, machines: Mapping[str, Any],
              scripts: Mapping[str, Any], commit: str | None,
              host_key_known: Callable[[str, int], bool], settings: Settings) -> dict[str, Any]:
    """The answer of ``POST /api/operations/plan`` (also what is stored and shown later)."""
    created = parse_iso(now_iso())
    targets = []
    for link in plan.targets:
        row = machines[link.id]
        if link.ssh.hostKey:
            host_key = "pinned"
        elif host_key_known(link.host, link.port):
            host_key = "known"
        else:
            host_key = "unknown"
        targets.append({"id": link.id, "name": link.display_name, "tags": list(link.tags),
                        "enrolled": bool(row["enrolled"]),
                        "verified_at": row["enrollment_verified_at"],
                        "status": row["status"], "host_key": host_key})
    return {
        "plan_id": plan_id,
        "created": to_iso(created),
        "expires_at": to_iso(created + PLAN_TTL),
        "inventory_commit": commit,
        "targets": targets,
        "scripts": [{"id": s.id, "name": s.name, "path": scripts[s.id]["path"],
                     "sha256": s.sha256, "flags": list(s.args)} for s in plan.scripts],
        "concurrency": plan.concurrency,
        "require_enrollment": plan.require_enrollment,
        "confirm": confirmation(plan, settings),
    }


def check_plan(stored: Mapping[str, Any] | None, plan_id: str, request: Request,
               plan: Plan, commit: str | None) -> dict[str, Any]:
    """The stored plan's view if it still holds for this run; else 404/409 (module doc)."""
    if stored is None:
        raise NotFoundError(f"no plan {plan_id}", code="PLAN_NOT_FOUND",
                            details={"plan_id": plan_id})
    view: dict[str, Any] = stored["plan"]
    if stored["request"] != canonical_request(request):
        raise ConflictError("the plan was made for a different request; plan this one",
                            code="PLAN_MISMATCH", details={"plan_id": plan_id})
    changed: list[dict[str, Any]] = []
    if view["inventory_commit"] != commit:
        changed.append({"what": "inventory_commit", "planned": view["inventory_commit"],
                        "now": commit})
    planned = {s["id"]: s["sha256"] for s in view["scripts"]}
    for script in plan.scripts:
        if planned.get(script.id) != script.sha256:
            changed.append({"what": "script", "script": script.id,
                            "planned": planned.get(script.id), "now": script.sha256})
    expired = parse_iso(view["expires_at"]) < parse_iso(now_iso())
    if changed or expired:
        what = "it expired" if expired and not changed else \
            "the inventory or a script changed since"
        raise ConflictError(f"plan {plan_id} is stale: {what}; plan again", code="PLAN_STALE",
                            details={"plan_id": plan_id, "changed": changed,
                                     "expired": expired})
    return view


def check_confirmation(needed: dict[str, Any] | None, plan_id: str | None,
                       phrase: str | None) -> None:
    """409 ``CONFIRMATION_REQUIRED`` unless the run carries a plan and the exact phrase."""
    if needed is None:
        return
    if plan_id is None or phrase != needed["phrase"]:
        missing = "a plan_id" if plan_id is None else \
            ("the confirmation phrase" if phrase is None else "the right confirmation phrase")
        raise ConflictError(
            f"this run needs {missing}: {needed['reason']}; plan it and type "
            f"{needed['phrase']!r}", code="CONFIRMATION_REQUIRED",
            details={"phrase": needed["phrase"], "reason": needed["reason"],
                     "plan_required": plan_id is None})
