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

from linkops.api_types import OBJECT
from linkops.errors import NotFoundError
from linkops.terminal.recording_index import MAX_QUERY_CHARS, RecordingIndex, Viewer
from linkops.web.common import authenticated, query_arg, require_role, services
from linkops.web.contract import QueryParam, endpoint

blueprint = Blueprint("recordings", __name__)

BASE = "/api/terminal/recordings"
_TEXT = {"type": "string"}
LIST_QUERY = (
    QueryParam("target", _TEXT, "only this link"),
    QueryParam("user", _TEXT, "only this user's (admins; others see only their own)"),
    QueryParam("from", _TEXT, "started at or after (ISO-8601)"),
    QueryParam("to", _TEXT, "started at or before (ISO-8601)"),
    QueryParam("cursor", _TEXT, "next_cursor of the previous page"),
)
SEARCH_QUERY = (QueryParam("q", {"type": "string", "maxLength": MAX_QUERY_CHARS},
                           "words that must all be in the line; word* is a prefix"),)


def _caller() -> tuple[RecordingIndex, Viewer]:
    user = require_role(action="read terminal recordings")
    index = RecordingIndex(services().db, services().terminal.recordings)
    return index, Viewer(username=user.username, admin=user.role == "admin")


@blueprint.get(BASE)
@authenticated
@endpoint("Recorded terminal sessions, newest first (own; admins: all)", response=OBJECT,
          query=LIST_QUERY, errors=(403,))
async def list_recordings() -> Response:
    index, viewer = _caller()
    page = await index.list(viewer, target=query_arg("target"), user=query_arg("user"),
                            start=query_arg("from"), end=query_arg("to"),
                            cursor=query_arg("cursor"))
    return jsonify(page)


@blueprint.get(f"{BASE}/search")
@authenticated
@endpoint("Search what recorded screens showed (FTS5 index)", response=OBJECT,
          query=SEARCH_QUERY, errors=(403,))
async def search_recordings() -> Response:
    index, viewer = _caller()
    return jsonify(await index.search(viewer, query_arg("q") or ""))


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
