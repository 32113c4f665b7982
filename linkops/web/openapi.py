"""``GET /api/openapi.json`` (OpenAPI 3.1) generated from the app's route table and the
:func:`linkops.web.contract.endpoint` declarations; ``GET /api/docs`` renders it with
Swagger UI (npm ``swagger-ui-dist``, vendored by ``frontend/build.py``, served locally).

Every rule in ``app.url_map`` becomes an operation. A route without a declaration (one added
on another branch, say) is still documented — method, path parameters, "any JSON" and the
error object — so the document never omits a route; declaring it adds its types.
``tests/test_openapi.py`` checks both directions and validates the document.
"""

from __future__ import annotations

import re
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

import attrs
from quart import Blueprint, Quart, Response, current_app, jsonify, send_from_directory

from linkops import __version__
from linkops.api_types import ErrorResponse
from linkops.converters import query_fields, query_name
from linkops.resources import bundled_dir
from linkops.web.contract import CONSTRAINTS, Endpoint, endpoint, endpoint_of

blueprint = Blueprint("openapi", __name__)

ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
DOCS_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
)
_SCALARS: dict[Any, dict[str, Any]] = {
    bool: {"type": "boolean"}, int: {"type": "integer"}, float: {"type": "number"},
    str: {"type": "string"}, type(None): {"type": "null"},
}


class SchemaBuilder:
    """JSON Schema (2020-12, as OpenAPI 3.1 uses it) for the annotations of attrs classes;
    classes go to ``components/schemas`` by name."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def schema(self, tp: Any) -> dict[str, Any]:
        if isinstance(tp, dict):
            return tp
        if tp is Any:
            return {}
        if tp in _SCALARS:
            return dict(_SCALARS[tp])
        if attrs.has(tp):
            return self._class(tp)
        origin, args = get_origin(tp), get_args(tp)
        if origin is Literal:
            return {"enum": list(args)}
        if origin in (Union, types.UnionType):
            return {"anyOf": [self.schema(a) for a in args]}
        if origin in (list, tuple):
            item = args[0] if args else Any
            return {"type": "array", "items": self.schema(item)}
        if origin is dict:
            value = args[1] if len(args) == 2 else Any
            return {"type": "object",
                    "additionalProperties": self.schema(value)}
        raise TypeError(f"no JSON Schema for {tp!r}")

    def _class(self, cls: type[Any]) -> dict[str, Any]:
        name = cls.__name__
        if name not in self.components:
            self.components[name] = {}  # recursion guard
            hints = typing.get_type_hints(cls)
            properties: dict[str, Any] = {}
            required: list[str] = []
            for field in attrs.fields(cls):
                prop = self.schema(hints[field.name])
                extra = dict(field.metadata.get(CONSTRAINTS, {}))
                if "description" in field.metadata:
                    extra["description"] = field.metadata["description"]
                if extra:
                    prop = {"allOf": [prop], **extra} if "$ref" in prop else {**prop, **extra}
                properties[field.name] = prop
                if field.default is attrs.NOTHING:
                    required.append(field.name)
            # Closed, requests and responses alike: the converter refuses unknown fields of
            # a request, and an answer has exactly its type's fields (a field added in a
            # service without its type fails the conformance tests; http-contract.md).
            schema: dict[str, Any] = {"type": "object", "properties": properties,
                                      "additionalProperties": False}
            if required:
                schema["required"] = required
            if cls.__doc__ and not cls.__doc__.startswith(f"{name}("):
                schema["description"] = " ".join(cls.__doc__.split())
            self.components[name] = schema
        return {"$ref": f"#/components/schemas/{name}"}


def _path(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def _query_parameters(builder: SchemaBuilder, cls: type[Any]) -> list[dict[str, Any]]:
    """The fields of a query type as OpenAPI query parameters (a ``list[str]`` field is a
    repeatable one: ``?type=VM&type=VPS``)."""
    found = []
    for field, kind, item in query_fields(cls):
        schema = builder.schema(item)
        if kind == "list":
            schema = {"type": "array", "items": schema}
        elif kind == "int":
            schema["minimum"] = 0  # digits only
        schema.update(field.metadata.get(CONSTRAINTS, {}))
        entry: dict[str, Any] = {"name": query_name(field), "in": "query",
                                 "required": field.default is attrs.NOTHING, "schema": schema}
        if "description" in field.metadata:
            entry["description"] = field.metadata["description"]
        found.append(entry)
    return found


def _response(builder: SchemaBuilder, spec: Endpoint) -> dict[str, Any]:
    if spec.content_type != "application/json":
        content: dict[str, Any] = {spec.content_type: {"schema": {"type": "string"}}}
    else:
        schema = builder.schema(spec.response) if spec.response is not None else {}
        content = {"application/json": {"schema": schema}}
    return {"description": spec.summary, "content": content}


def _operation(builder: SchemaBuilder, view: Any, rule: Any, method: str) -> dict[str, Any]:
    spec = endpoint_of(view) or Endpoint(
        summary=f"{rule.endpoint} (no declared contract)")
    op: dict[str, Any] = {
        "operationId": f"{method.lower()}_{rule.endpoint.replace('.', '_')}",
        "summary": spec.summary,
        "tags": [rule.endpoint.split(".")[0] if "." in rule.endpoint else "app"],
    }
    parameters = [{"name": arg, "in": "path", "required": True,
                   "schema": {"type": "string", "minLength": 1}}
                  for arg in sorted(rule.arguments)]
    if spec.query is not None:
        parameters.extend(_query_parameters(builder, spec.query))
    if parameters:
        op["parameters"] = parameters
    if spec.request is not None:
        op["requestBody"] = {
            "required": not spec.body_optional,
            "content": {"application/json": {"schema": builder.schema(spec.request)}},
        }
    responses: dict[str, Any] = {str(spec.status): _response(builder, spec)}
    if getattr(rule, "websocket", False):
        responses = {"101": {"description": "WebSocket upgrade (see docs/api.md)"}}
    error = {"description": "the SPEC error object",
             "content": {"application/json": {"schema": ERROR_REF}}}
    for status in sorted({*spec.errors, *([400] if spec.request or spec.query else []),
                          *([401] if spec.auth else [])}):
        responses.setdefault(str(status), error)
    responses["default"] = error
    op["responses"] = responses
    op["security"] = [{"bearer": []}] if spec.auth else []
    if getattr(rule, "websocket", False):
        op["x-websocket"] = True
    return op


def build_document(app: Quart) -> dict[str, Any]:
    builder = SchemaBuilder()
    builder.schema(ErrorResponse)
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        view = app.view_functions[rule.endpoint]
        methods = sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
        for method in methods:
            paths.setdefault(_path(rule.rule), {})[method.lower()] = _operation(
                builder, view, rule, method)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "LinkOps API",
            "version": __version__,
            "description": "Generated from the routes and their request/response types; "
                           "see docs/api.md for the narrative.",
        },
        "paths": paths,
        "components": {
            "schemas": dict(sorted(builder.components.items())),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


@blueprint.get("/api/openapi.json")
@endpoint("This document (OpenAPI 3.1)", auth=False,
          response={"type": "object", "required": ["openapi", "paths"]})
async def openapi_document() -> Response:
    document = current_app.config.get("LINKOPS_OPENAPI")
    if document is None:
        document = current_app.config["LINKOPS_OPENAPI"] = build_document(current_app)
    return jsonify(document)


@blueprint.get("/api/docs")
@endpoint("The API document rendered by Swagger UI", auth=False, content_type="text/html")
async def docs_page() -> Response:
    response = await send_from_directory(bundled_dir("frontend"), "api-docs.html")
    response.headers["Content-Security-Policy"] = DOCS_CSP
    response.headers["Cache-Control"] = "no-store"
    return response
