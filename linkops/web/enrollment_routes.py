"""``POST /api/links/{id}/verify`` and ``POST /api/links/verify``: enrollment checks on demand.

Thin routes over :class:`linkops.ssh.enrollment.EnrollmentService`; each verification reads
the link's client ID file over SSH and stores ``enrolled`` / ``enrollment_verified_at``.
"""

from __future__ import annotations

from quart import Blueprint, Response, jsonify, request

from linkops.errors import ValidationError
from linkops.web.common import json_body, operators_only, services

blueprint = Blueprint("enrollment", __name__)

MAX_BATCH = 1000


@blueprint.post("/api/links/<link_id>/verify")
@operators_only("verify links")
async def verify_one(link_id: str) -> Response:
    result = await services().enrollment.verify(link_id)
    return jsonify(result.to_dict())


@blueprint.post("/api/links/verify")
@operators_only("verify links")
async def verify_many() -> Response:
    targets: list[str] | None = None
    if await request.get_data(cache=True):
        body = await json_body()
        raw = body.get("targets")
        if raw is not None:
            if not isinstance(raw, list) or not all(isinstance(t, str) for t in raw):
                raise ValidationError(
                    "targets must be a list of link ids", details={"field": "targets"}
                )
            if len(raw) > MAX_BATCH:
                raise ValidationError(
                    f"at most {MAX_BATCH} targets per request", details={"field": "targets"}
                )
            targets = raw
    results = await services().enrollment.verify_many(targets)
    return jsonify(
        {
            "results": [r.to_dict() for r in results],
            "count": len(results),
            "enrolled": sum(1 for r in results if r.enrolled),
        }
    )
