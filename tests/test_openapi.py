"""GET /api/openapi.json: generated from the route table and the request/response types
(SPEC §10.1) — every route is documented and every documented path is a route; it validates
as OpenAPI 3.1; GET /api/docs serves the viewer locally under a strict CSP; request bodies are
decoded by the same types, with paths in the error."""

from __future__ import annotations

import re
from typing import Any

import httpx
from openapi_spec_validator import validate
from openapi_spec_validator.validation.validators import OpenAPIV31SpecValidator

from linkops import server
from linkops.web.app import create_app
from linkops.web.openapi import build_document
from tests.fixtures_core import base_url


def _routes(app: Any) -> set[tuple[str, str]]:
    found = set()
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            found.add((path, method.lower()))
    return found


async def test_every_route_is_documented_and_every_path_is_a_route(
        running: server.Running, anon: httpx.AsyncClient) -> None:
    response = await anon.get("/api/openapi.json")
    assert response.status_code == 200
    document = response.json()
    app = create_app(running.services)
    documented = {(path, method) for path, ops in document["paths"].items() for method in ops}
    assert documented == _routes(app)
    assert ("/api/openapi.json", "get") in documented and ("/api/docs", "get") in documented
    # Every route carries a declared contract, not the generic fallback (which still lists a
    # route merged without one, so the document is never missing it).
    generic = [(p, m) for p, ops in document["paths"].items() for m, op in ops.items()
               if "no declared contract" in op["summary"]]
    assert generic == [], (
        f"routes without @endpoint(...) (linkops/web/contract.py; put it under "
        f"@authenticated, with request=/response= types from linkops/api_types.py): {generic}")
    assert document == build_document(app)


async def test_document_validates_as_openapi_3_1(anon: httpx.AsyncClient) -> None:
    document = (await anon.get("/api/openapi.json")).json()
    assert document["openapi"] == "3.1.0"
    validate(document, cls=OpenAPIV31SpecValidator)
    run = document["paths"]["/api/operations/run"]["post"]
    schema = run["requestBody"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/RunRequest"}
    body = document["components"]["schemas"]["RunRequest"]
    assert body["required"] == ["scripts", "targets"]
    assert body["additionalProperties"] is False
    assert body["properties"]["targets"]["maxItems"] == 500
    assert run["responses"]["202"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/OperationAccepted"}
    assert run["security"] == [{"bearer": []}]
    assert document["paths"]["/api/health"]["get"]["security"] == []
    error = document["components"]["schemas"]["ErrorObject"]
    assert set(error["required"]) == {"code", "message", "details", "timestamp"}
    # Every object is closed and every JSON answer has a declared schema (no bare "object").
    schemas = document["components"]["schemas"]
    assert all(s["additionalProperties"] is False for s in schemas.values())
    view = schemas["OperationView"]
    assert {"plan", "logs", "children"} <= set(view["required"])
    assert view["properties"]["plan"] == {"anyOf": [{"$ref": "#/components/schemas/PlanView"},
                                                    {"type": "null"}]}
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            for status, response in op["responses"].items():
                schema = response.get("content", {}).get("application/json", {}).get("schema")
                if schema is not None and path != "/api/openapi.json":
                    assert "$ref" in schema, (method, path, status, schema)
    # Query parameters come from the route's query type.
    output = document["paths"]["/api/operations/{op_id}/tasks/{target}/{script}/output"]["get"]
    params = {p["name"]: p for p in output["parameters"] if p["in"] == "query"}
    assert params["stream"]["schema"] == {"enum": ["stdout", "stderr"]}
    assert params["offset"]["schema"] == {"type": "integer", "minimum": 0,
                                          "maximum": 2**31}
    history = document["paths"]["/api/operations"]["get"]
    assert [p["name"] for p in history["parameters"]] == [
        "status", "from", "to", "limit", "cursor", "page"]
    links = {p["name"]: p for p in document["paths"]["/api/links"]["get"]["parameters"]}
    assert links["type"]["schema"] == {"type": "array", "items": {"type": "string"}}


async def test_docs_page_serves_the_local_viewer(anon: httpx.AsyncClient) -> None:
    page = await anon.get("/api/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-eval" not in csp
    scripts = re.findall(r'<script src="([^"]+)"', page.text)
    assert scripts == ["/vendor/swagger-ui/swagger-ui-bundle.js", "/js/api-docs.js"]
    assert "<script>" not in page.text  # no inline script: the CSP would refuse it
    for asset in [*scripts, "/vendor/swagger-ui/swagger-ui.css"]:
        got = await anon.get(asset)
        assert got.status_code == 200 and len(got.content) > 100, asset
    assert "SwaggerUIBundle" in (await anon.get("/js/api-docs.js")).text


async def test_typed_bodies_report_every_problem_with_its_path(
        client: httpx.AsyncClient) -> None:
    r = await client.post("/api/operations/run", json={
        "scripts": "hello", "targets": ["a", 1, "b", None], "flags": {"x": [3]},
        "bogus": True, "concurrency": True})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    paths = {e["path"]: e["message"] for e in error["details"]["errors"]}
    assert paths == {
        "$.scripts": "must be a list",
        "$.targets[1]": "must be a string",
        "$.targets[3]": "must be a string",
        "$.flags.x[0]": "must be a string",
        "$.concurrency": "must be an integer",
        "$.bogus": "unknown field",
    }
    r = await client.post("/api/operations/run",
                          json={"scripts": [], "targets": [f"t{i}" for i in range(501)]})
    paths = {e["path"]: e["message"] for e in r.json()["error"]["details"]["errors"]}
    assert paths == {"$.scripts": "must have at least 1 items",
                     "$.targets": "must have at most 500 items"}
    r = await client.put("/api/terminal/workspaces/W-1/panes",
                         json={"panes": [{"pane": "E"}, "x"]})
    assert r.status_code == 400
    assert [e["path"] for e in r.json()["error"]["details"]["errors"]] == [
        "$.panes[0].pane", "$.panes[1]"]
    r = await client.post("/api/links/verify", content=b"[1, 2]",
                          headers={"Content-Type": "application/json"})
    assert r.json()["error"]["details"]["errors"] == [{"path": "$", "message": "must be a mapping"}]
    r = await client.post("/api/operations/run", content=b"{nope",
                          headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "MALFORMED_JSON"


async def test_anonymous_gets_401_before_any_body_check(running: server.Running) -> None:
    async with httpx.AsyncClient(base_url=base_url(running)) as anon:
        r = await anon.post("/api/operations/run", json={"scripts": 1})
        assert r.status_code == 401
