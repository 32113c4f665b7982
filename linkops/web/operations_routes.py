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

from linkops.api_types import OperationAccepted, OperationStopped, RunRequest
from linkops.api_views import (
    GroupDiff,
    OperationGroups,
    OperationHistory,
    OperationView,
    OutputPage,
    PlanView,
    RerunAccepted,
)
from linkops.operations.events import encode_sse, parse_last_event_id, sse_comment
from linkops.operations.requests import DiffQuery, HistoryQuery, OutputQuery, RerunBody
from linkops.operations.service import OperationsService
from linkops.web.common import (
    authenticated,
    current_session,
    current_user,
    operators_only,
    services,
)
from linkops.web.contract import encode, endpoint

blueprint = Blueprint("operations", __name__)

SSE_RETRY_MS = 3000


# Decided before the body is decoded: a viewer gets 403, never a 400 about a body it may not send.
RUNNERS_ONLY = operators_only("run or stop operations")


def _operations() -> OperationsService:
    return services().operations


@blueprint.post("/api/operations/run")
@RUNNERS_ONLY
@endpoint("Start an operation (scripts × targets)", request=RunRequest,
          response=OperationAccepted, status=202, errors=(403, 404, 409))
async def run_operation(body: RunRequest) -> tuple[Response, int]:
    username = current_user().username
    # The service applies the rules that need configuration and the database.
    op_id = await _operations().submit(body, username)
    return jsonify(encode(OperationAccepted(operation_id=op_id, status="queued"))), 202


@blueprint.post("/api/operations/plan")
@RUNNERS_ONLY
@endpoint("Plan a run: resolved targets, script hashes, commit, and the confirmation asked",
          request=RunRequest, response=PlanView, errors=(403, 404))
async def plan_operation(body: RunRequest) -> Response:
    return jsonify(await _operations().plan(body, current_user().username))


@blueprint.post("/api/operations/<op_id>/rerun")
@RUNNERS_ONLY
@endpoint("Rerun the failed, unfinished or one group's targets as a child operation",
          request=RerunBody, response=RerunAccepted, status=202, errors=(403, 404, 409))
async def rerun_operation(op_id: str, body: RerunBody) -> tuple[Response, int]:
    return jsonify(await _operations().rerun(op_id, body, current_user().username)), 202


@blueprint.get("/api/operations/<op_id>/groups")
@authenticated
@endpoint("Output groups: tasks with equal normalised output folded", response=OperationGroups,
          errors=(404,))
async def operation_groups(op_id: str) -> Response:
    return jsonify(await _operations().groups(op_id))


@blueprint.get("/api/operations/<op_id>/groups/<key>/diff")
@authenticated
@endpoint("Unified diff of a group's normalised output against another group",
          query=DiffQuery, response=GroupDiff, errors=(404, 409))
async def group_diff(op_id: str, key: str, query: DiffQuery) -> Response:
    return jsonify(await _operations().diff(op_id, key, query.against))


@blueprint.get("/api/operations/<op_id>/tasks/<target>/<script>/output")
@authenticated
@endpoint("A page of one task's stored output", query=OutputQuery, response=OutputPage,
          errors=(404,))
async def task_output(op_id: str, target: str, script: str, query: OutputQuery) -> Response:
    return jsonify(await _operations().output(op_id, target, script, query))


@blueprint.get("/api/operations")
@authenticated
@endpoint("Operation history, newest first", query=HistoryQuery, response=OperationHistory)
async def list_operations(query: HistoryQuery) -> Response:
    return jsonify(await _operations().history(query.params()))


@blueprint.get("/api/operations/<op_id>")
@authenticated
@endpoint("One operation with its tasks and logs", response=OperationView, errors=(404,))
async def get_operation(op_id: str) -> Response:
    return jsonify(await _operations().detail(op_id))


@blueprint.post("/api/operations/<op_id>/stop")
@RUNNERS_ONLY
@endpoint("Stop a running operation", response=OperationStopped, errors=(403, 404, 409))
async def stop_operation(op_id: str) -> Response:
    await _operations().stop(op_id, by=current_user().username)
    return jsonify(encode(OperationStopped(success=True, operation_id=op_id)))


@blueprint.get("/api/operations/<op_id>/events")
@authenticated
@endpoint("Server-sent events of an operation (resumable with Last-Event-ID)",
          content_type="text/event-stream", errors=(404,))
async def operation_events(op_id: str) -> Response:
    after = parse_last_event_id(request.headers.get("Last-Event-ID"))
    svc = services()
    events = await _operations().events(op_id, after, closing=svc.closing)
    session = current_session()

    async def body() -> AsyncIterator[bytes]:
        # A first line at once: proxies and EventSource see the stream is open.
        yield f"retry: {SSE_RETRY_MS}\n".encode() + sse_comment(f"operation {op_id}")
        # The stream ends when the session does (logout, password/role change, revoked
        # token, expiry: linkops.live_sessions). guard() owns and closes ``events``;
        # aclosing: a client that hangs up releases its subscription now, not at GC time.
        with svc.auth.live.track(session) as live:
            guarded = svc.auth.live.guard(live, events)
            async with aclosing(guarded):
                async for event in guarded:
                    yield encode_sse(event)

    response = Response(body(), mimetype="text/event-stream")
    response.timeout = None  # a stream lives as long as it must
    headers: Any = response.headers
    headers["Cache-Control"] = "no-store"
    headers["X-Accel-Buffering"] = "no"
    return response
