"""The HTTP contract in one place: what each route takes and answers, as attrs types.

A route declares itself with :func:`endpoint` (summary, request/response types, query
parameters, success status, whether it needs a token); the declaration is stored on the view
function, so the OpenAPI generator (:mod:`linkops.web.openapi`) finds it through the app's
route table. The request type is also what the route parses with — the ``body`` keyword
argument is the decoded value, structured by the one strict cattrs converter
(:mod:`linkops.converters`) and checked against the field constraints declared next to it —
so the document cannot drift from the parsing::

    @blueprint.post("/api/operations/run")
    @authenticated
    @endpoint("Start an operation", request=RunRequest, response=OperationAccepted,
              status=202)
    async def run_operation(body: RunRequest) -> ...

Order matters: ``@authenticated`` above ``@endpoint`` so a caller without a token gets 401,
never a 400 about a body it was not allowed to send.

*Constraints*: ``attrs.field(metadata=constraints(minItems=1, maxItems=500))``; the keys are
JSON Schema keywords, copied into the schema and enforced by
:func:`linkops.converters.structure_request` (services call it too, without Quart).

*Query strings*: ``query=SomeQuery`` (an attrs class whose fields are ``str``, ``int``,
``Literal[...]`` or ``list[str]``, each optional) decodes ``request.args`` through the same
converter (:func:`linkops.converters.structure_query`) and passes ``query=<decoded>``; the
document lists its fields as query parameters. A field named otherwise in the URL (``from``)
carries ``metadata={QUERY_NAME: "from"}``.

*Errors*: 400 ``VALIDATION_ERROR`` with ``details.errors = [{path: "$.targets[3]",
message}]`` (every problem found, in document order, capped at :data:`MAX_ERRORS`);
malformed JSON stays 400 ``MALFORMED_JSON``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from functools import wraps
from typing import Any, TypeVar, cast

import attrs
from quart import request

from linkops.converters import (
    CONSTRAINTS,
    QUERY_NAME,
    constraints,
    converter,
    structure_query,
    structure_request,
    validation_error,
)
from linkops.errors import ValidationError

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

ENDPOINT_ATTR = "__linkops_endpoint__"

@attrs.frozen
class Endpoint:
    summary: str
    request: type[Any] | None = None
    # An attrs class, a JSON Schema mapping, or None for "any JSON".
    response: Any = None
    status: int = 200
    auth: bool = True
    # An attrs query type (see :func:`linkops.converters.structure_query`); the view then
    # receives ``query=<decoded>``.
    query: type[Any] | None = None
    # Bodies that may be empty (``POST /api/links/verify`` without a body verifies all).
    body_optional: bool = False
    content_type: str = "application/json"
    errors: tuple[int, ...] = ()


def endpoint(summary: str, *, request: type[Any] | None = None, response: Any = None,
             status: int = 200, auth: bool = True, query: type[Any] | None = None,
             body_optional: bool = False, content_type: str = "application/json",
             errors: Sequence[int] = ()) -> Callable[[F], F]:
    """Declare a route's contract; with ``request``, the view receives ``body=<decoded>``."""
    spec = Endpoint(summary, request, response, status, auth, query, body_optional,
                    content_type, tuple(errors))

    def decorate(fn: F) -> F:
        if spec.request is None and spec.query is None:
            setattr(fn, ENDPOINT_ATTR, spec)
            return fn

        @wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            if spec.query is not None:
                kwargs["query"] = decode_query(spec.query)
            if spec.request is not None:
                kwargs["body"] = await decode_body(spec.request, optional=spec.body_optional)
            return await fn(*args, **kwargs)

        setattr(wrapper, ENDPOINT_ATTR, spec)
        return wrapper  # type: ignore[return-value]

    return decorate


def endpoint_of(view: Callable[..., Any]) -> Endpoint | None:
    found = getattr(view, ENDPOINT_ATTR, None)
    return found if isinstance(found, Endpoint) else None


# -- decoding -------------------------------------------------------------------------------


def parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ValidationError(
            f"malformed JSON: {exc}",
            code="MALFORMED_JSON",
            details={"position": getattr(exc, "pos", None)},
        ) from None


async def decode_body(cls: type[T], *, optional: bool = False) -> T:
    """The request body as ``cls`` (an empty body is ``{}`` when ``optional``)."""
    raw = cast(bytes, await request.get_data(cache=True, as_text=False))
    if not raw:
        if not optional:
            raise ValidationError("request body must be a JSON object",
                                  code="VALIDATION_ERROR",
                                  details={"errors": [{"path": "$", "message": "required"}]})
        return structure_request({}, cls)
    return structure_request(parse_json(raw), cls)


def decode_query(cls: type[T]) -> T:
    """The request's query string as ``cls`` (:func:`linkops.converters.structure_query`)."""
    return structure_query(dict(request.args.lists()), cls)


def encode(value: Any) -> Any:
    """A response value as JSON data (attrs instances through the converter)."""
    return converter.unstructure(value)


__all__ = ["CONSTRAINTS", "QUERY_NAME", "Endpoint", "constraints", "decode_body",
           "decode_query", "encode", "endpoint", "endpoint_of", "parse_json",
           "structure_query", "structure_request", "validation_error"]
