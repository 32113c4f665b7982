"""``/api/operations*``: run, plan, rerun, stop, view, groups, diff, paged output, history
and the SSE event stream (thin routes).

Authorization: any signed-in user may read; running, planning, rerunning and stopping
operations change machines (or prepare to), so they need the ``admin`` or ``operator`` role
(a ``viewer`` gets 403 ``FORBIDDEN``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from quart import Blueprint, Response, jsonify, request

from linkops.operations.events import encode_sse, parse_last_event_id, sse_comment
from linkops.operations.requests import output_query
from linkops.operations.service import OperationsService
from linkops.web.common import authenticated, json_body, query_arg, require_role, services

blueprint = Blueprint("operations", __name__)

SSE_RETRY_MS = 3000


def _require_runner() -> str:
    return require_role(action="run or stop operations").username


def _operations() -> OperationsService:
    return services().operations


@blueprint.post("/api/operations/run")
@authenticated
async def run_operation() -> tuple[Response, int]:
    username = _require_runner()
    body = await json_body()
    op_id = await _operations().submit(body, username)
    return jsonify({"operation_id": op_id, "status": "queued"}), 202


@blueprint.post("/api/operations/plan")
@authenticated
async def plan_operation() -> Response:
    username = _require_runner()
    body = await json_body()
    return jsonify(await _operations().plan(body, username))


@blueprint.post("/api/operations/<op_id>/rerun")
@authenticated
async def rerun_operation(op_id: str) -> tuple[Response, int]:
    username = _require_runner()
    body = await json_body()
    return jsonify(await _operations().rerun(op_id, body, username)), 202


@blueprint.get("/api/operations/<op_id>/groups")
@authenticated
async def operation_groups(op_id: str) -> Response:
    return jsonify(await _operations().groups(op_id))


@blueprint.get("/api/operations/<op_id>/groups/<key>/diff")
@authenticated
async def group_diff(op_id: str, key: str) -> Response:
    against = query_arg("against") or "majority"
    return jsonify(await _operations().diff(op_id, key, against))


@blueprint.get("/api/operations/<op_id>/tasks/<target>/<script>/output")
@authenticated
async def task_output(op_id: str, target: str, script: str) -> Response:
    query = output_query({name: request.args.getlist(name) for name in request.args})
    return jsonify(await _operations().output(op_id, target, script, query))


@blueprint.get("/api/operations")
@authenticated
async def list_operations() -> Response:
    params = {name: query_arg(name) for name in ("status", "from", "to", "limit", "cursor",
                                                 "page")}
    return jsonify(await _operations().history(params))


@blueprint.get("/api/operations/<op_id>")
@authenticated
async def get_operation(op_id: str) -> Response:
    return jsonify(await _operations().detail(op_id))


@blueprint.post("/api/operations/<op_id>/stop")
@authenticated
async def stop_operation(op_id: str) -> Response:
    await _operations().stop(op_id, by=_require_runner())
    return jsonify({"success": True, "operation_id": op_id})


@blueprint.get("/api/operations/<op_id>/events")
@authenticated
async def operation_events(op_id: str) -> Response:
    after = parse_last_event_id(request.headers.get("Last-Event-ID"))
    svc = services()
    events = await _operations().events(op_id, after, closing=svc.closing)

    async def body() -> AsyncIterator[bytes]:
        # A first line at once: proxies and EventSource see the stream is open.
        yield f"retry: {SSE_RETRY_MS}\n".encode() + sse_comment(f"operation {op_id}")
        # aclosing: a client that hangs up releases its subscription now, not at GC time.
        async with aclosing(events):
            async for event in events:
                yield encode_sse(event)

    response = Response(body(), mimetype="text/event-stream")
    response.timeout = None  # a stream lives as long as it must
    headers: Any = response.headers
    headers["Cache-Control"] = "no-store"
    headers["X-Accel-Buffering"] = "no"
    return response
