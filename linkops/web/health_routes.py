"""``GET /api/health`` (no auth): liveness, version and whether the frontend is complete."""

from __future__ import annotations

from quart import Blueprint, Response, jsonify

from linkops import __version__
from linkops.timeutil import now_iso
from linkops.web.common import services

blueprint = Blueprint("health", __name__)


@blueprint.get("/api/health")
async def health() -> Response:
    svc = services()
    return jsonify({
        "status": "shutting_down" if svc.closing.is_set() else "ok",
        "version": __version__,
        "time": now_iso(),
        "schema_version": svc.db.schema_version,
        # Which files are missing is in the start-up log (no auth here: say only that).
        "frontend": "incomplete" if svc.frontend_missing else "ok",
    })
