"""``GET /api/health`` (no auth): liveness, version and whether the frontend is complete."""

from __future__ import annotations

from quart import Blueprint, Response, jsonify

from linkops import __version__
from linkops.api_types import Health
from linkops.timeutil import now_iso
from linkops.web.common import services
from linkops.web.contract import encode, endpoint

blueprint = Blueprint("health", __name__)


@blueprint.get("/api/health")
@endpoint("Liveness and version", auth=False, response=Health)
async def health() -> Response:
    svc = services()
    return jsonify(encode(Health(
        status="shutting_down" if svc.closing.is_set() else "ok",
        version=__version__,
        time=now_iso(),
        schema_version=svc.db.schema_version,
        frontend="incomplete" if svc.frontend_missing else "ok",
    )))
