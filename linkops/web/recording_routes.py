"""Terminal session recordings over HTTP (SPEC §10.4; thin: decode, authorize, call).

- ``GET /api/terminal/recordings?target=&user=&from=&to=&cursor=`` →
  ``{recordings: [...], next_cursor}`` (newest first; a user's own, an admin's everyone's)
- ``GET /api/terminal/recordings/search?q=TEXT`` → ``{hits: [{recording_id, target, user,
  started, offset_seconds, line}]}`` from the FTS5 index
- ``GET /api/terminal/recordings/{id}`` → the ``.cast`` file (``application/x-asciicast``),
  audited; 404 for anyone but its owner and admins

A ``viewer`` gets 403 ``FORBIDDEN`` on all three: recordings show what was on operators'
screens, which a read-only role is not meant to see.
"""

from __future__ import annotations

from quart import Blueprint, Response, jsonify

from linkops.api_types import RecordingListQuery, RecordingSearchQuery
from linkops.api_views import RecordingHits, RecordingList
from linkops.errors import NotFoundError
from linkops.terminal.recording_index import RecordingIndex, Viewer
from linkops.web.common import authenticated, require_role, services
from linkops.web.contract import endpoint

blueprint = Blueprint("recordings", __name__)

BASE = "/api/terminal/recordings"


def _caller() -> tuple[RecordingIndex, Viewer]:
    user = require_role(action="read terminal recordings")
    index = RecordingIndex(services().db, services().terminal.recordings)
    return index, Viewer(username=user.username, admin=user.role == "admin")


@blueprint.get(BASE)
@authenticated
@endpoint("Recorded terminal sessions, newest first (own; admins: all)", response=RecordingList,
          query=RecordingListQuery, errors=(403,))
async def list_recordings(query: RecordingListQuery) -> Response:
    index, viewer = _caller()
    page = await index.list(viewer, target=query.target, user=query.user, start=query.start,
                            end=query.end, cursor=query.cursor)
    return jsonify(page)


@blueprint.get(f"{BASE}/search")
@authenticated
@endpoint("Search what recorded screens showed (FTS5 index)", response=RecordingHits,
          query=RecordingSearchQuery, errors=(403,))
async def search_recordings(query: RecordingSearchQuery) -> Response:
    index, viewer = _caller()
    return jsonify(await index.search(viewer, query.q))


@blueprint.get(f"{BASE}/<recording_id>")
@authenticated
@endpoint("One recording's asciicast v2 file (audited)", content_type="application/x-asciicast",
          errors=(403, 404))
async def get_recording(recording_id: str) -> Response:
    index, viewer = _caller()
    # Any string reaches here (so the role check always runs first); only a row id can exist.
    if not (recording_id.isascii() and recording_id.isdigit()) or len(recording_id) > 18:
        raise NotFoundError(f"recording {recording_id[:40]!r} not found",
                            code="RECORDING_NOT_FOUND")
    row, data = await index.read(viewer, int(recording_id))
    response = Response(data, status=200, mimetype="application/x-asciicast")
    response.headers["Content-Disposition"] = f'inline; filename="recording-{row["id"]}.cast"'
    response.headers["Cache-Control"] = "no-store"
    return response
