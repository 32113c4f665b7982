"""``POST /api/links/{id}/verify`` and ``POST /api/links/verify``: enrollment checks on demand.

Thin routes over :class:`linkops.ssh.enrollment.EnrollmentService`; each verification reads
the link's client ID file over SSH and stores ``enrolled`` / ``enrollment_verified_at``.
"""

from __future__ import annotations

from quart import Blueprint, Response, jsonify

from linkops.api_types import VerifyRequest, VerifyResult, VerifyResults
from linkops.web.common import operators_only, services
from linkops.web.contract import endpoint

blueprint = Blueprint("enrollment", __name__)

MAX_BATCH = 1000  # VerifyRequest.targets maxItems


@blueprint.post("/api/links/<link_id>/verify")
@operators_only("verify links")
@endpoint("Verify one link's enrollment (client ID over SSH)", response=VerifyResult,
          errors=(404,))
async def verify_one(link_id: str) -> Response:
    result = await services().enrollment.verify(link_id)
    return jsonify(result.to_dict())


@blueprint.post("/api/links/verify")
@operators_only("verify links")
@endpoint("Verify many links (all when the body or targets is omitted)",
          request=VerifyRequest, body_optional=True,
          response=VerifyResults)
async def verify_many(body: VerifyRequest) -> Response:
    results = await services().enrollment.verify_many(body.targets)
    return jsonify(
        {
            "results": [r.to_dict() for r in results],
            "count": len(results),
            "enrolled": sum(1 for r in results if r.enrolled),
        }
    )
