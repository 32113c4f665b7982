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
JSON Schema keywords (``minLength``, ``maxLength``, ``minItems``, ``maxItems``, ``minimum``,
``maximum``, ``uniqueItems``, ``pattern``), copied into the schema and enforced here.

*Errors*: 400 ``VALIDATION_ERROR`` with ``details.errors = [{path: "$.targets[3]",
message}]`` (every problem found, in document order, capped at :data:`MAX_ERRORS`);
malformed JSON stays 400 ``MALFORMED_JSON``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import wraps
from typing import Any, TypeVar, cast

import attrs
from quart import request

from linkops.converters import converter, error_paths
from linkops.errors import ValidationError

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

ENDPOINT_ATTR = "__linkops_endpoint__"
CONSTRAINTS = "json_schema"
MAX_ERRORS = 50


def constraints(**keywords: Any) -> dict[str, Any]:
    """Field metadata: JSON Schema keywords that the decoder enforces (see module doc)."""
    return {CONSTRAINTS: keywords}


@attrs.frozen
class QueryParam:
    name: str
    schema: Mapping[str, Any]
    description: str = ""
    repeated: bool = False


@attrs.frozen
class Endpoint:
    summary: str
    request: type[Any] | None = None
    # An attrs class, a JSON Schema mapping, or None for "any JSON".
    response: Any = None
    status: int = 200
    auth: bool = True
    query: tuple[QueryParam, ...] = ()
    # Bodies that may be empty (``POST /api/links/verify`` without a body verifies all).
    body_optional: bool = False
    content_type: str = "application/json"
    errors: tuple[int, ...] = ()


def endpoint(summary: str, *, request: type[Any] | None = None, response: Any = None,
             status: int = 200, auth: bool = True, query: Sequence[QueryParam] = (),
             body_optional: bool = False, content_type: str = "application/json",
             errors: Sequence[int] = ()) -> Callable[[F], F]:
    """Declare a route's contract; with ``request``, the view receives ``body=<decoded>``."""
    spec = Endpoint(summary, request, response, status, auth, tuple(query), body_optional,
                    content_type, tuple(errors))

    def decorate(fn: F) -> F:
        if spec.request is None:
            setattr(fn, ENDPOINT_ATTR, spec)
            return fn
        request_type = spec.request

        @wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            kwargs["body"] = await decode_body(request_type, optional=spec.body_optional)
            return await fn(*args, **kwargs)

        setattr(wrapper, ENDPOINT_ATTR, spec)
        return wrapper  # type: ignore[return-value]

    return decorate


def endpoint_of(view: Callable[..., Any]) -> Endpoint | None:
    found = getattr(view, ENDPOINT_ATTR, None)
    return found if isinstance(found, Endpoint) else None


# -- decoding -------------------------------------------------------------------------------


def format_path(parts: Sequence[str | int]) -> str:
    text = "$"
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            text += f".{part}"
        else:
            text += f"[{json.dumps(part)}]"
    return text


def _check(value: Any, keywords: Mapping[str, Any]) -> list[str]:
    problems = []
    sized = isinstance(value, str | list | tuple | dict)
    if isinstance(value, str):
        if "minLength" in keywords and len(value) < keywords["minLength"]:
            problems.append(f"must be at least {keywords['minLength']} characters")
        if "maxLength" in keywords and len(value) > keywords["maxLength"]:
            problems.append(f"must be at most {keywords['maxLength']} characters")
        if "pattern" in keywords and re.search(keywords["pattern"], value) is None:
            problems.append(f"must match {keywords['pattern']}")
    if sized and not isinstance(value, str):
        if "minItems" in keywords and len(value) < keywords["minItems"]:
            problems.append(f"must have at least {keywords['minItems']} items")
        if "maxItems" in keywords and len(value) > keywords["maxItems"]:
            problems.append(f"must have at most {keywords['maxItems']} items")
        if keywords.get("uniqueItems") and isinstance(value, list | tuple):
            seen = [json.dumps(v, sort_keys=True, default=str) for v in value]
            if len(set(seen)) != len(seen):
                problems.append("must not contain duplicates")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in keywords and value < keywords["minimum"]:
            problems.append(f"must be at least {keywords['minimum']}")
        if "maximum" in keywords and value > keywords["maximum"]:
            problems.append(f"must be at most {keywords['maximum']}")
    return problems


def constraint_errors(value: Any, path: tuple[str | int, ...] = ()) -> list[
        tuple[tuple[str | int, ...], str]]:
    """Every declared constraint that ``value`` (a structured attrs instance) breaks."""
    found: list[tuple[tuple[str | int, ...], str]] = []
    if attrs.has(type(value)):
        for field in attrs.fields(type(value)):
            item = getattr(value, field.name)
            where = (*path, field.name)
            if item is not None:
                found.extend((where, m) for m in _check(item, field.metadata.get(CONSTRAINTS,
                                                                                 {})))
            found.extend(constraint_errors(item, where))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found.extend(constraint_errors(item, (*path, index)))
    elif isinstance(value, dict):
        for key, item in value.items():
            found.extend(constraint_errors(item, (*path, key)))
    return found


def validation_error(problems: Sequence[tuple[Sequence[str | int], str]]) -> ValidationError:
    errors = [{"path": format_path(path), "message": message}
              for path, message in problems[:MAX_ERRORS]]
    first = errors[0]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return ValidationError(f"{first['path']}: {first['message']}{more}",
                           code="VALIDATION_ERROR",
                           details={"errors": errors, "error_count": len(problems)})


def structure_request(value: Any, cls: type[T]) -> T:
    """``value`` (parsed JSON) as ``cls``, or the VALIDATION_ERROR listing every problem."""
    try:
        result = converter.structure(value, cls)
    except Exception as exc:  # cattrs raises groups of anything its hooks raise
        raise validation_error(error_paths(exc)) from None
    problems = constraint_errors(result)
    if problems:
        raise validation_error(problems)
    return result


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


def encode(value: Any) -> Any:
    """A response value as JSON data (attrs instances through the converter)."""
    return converter.unstructure(value)
