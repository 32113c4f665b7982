"""Real answers conform to the generated document (SPEC §10.1): on the real SSH fleet, an
operation with a failing target, then every read route with real rows — links, scripts,
history, the view, groups, the diff, an output page, a plan, a rerun, every declared table —
each answer validated (JSON Schema 2020-12) against the response schema of its path and
status in ``GET /api/openapi.json``. Every response object there is closed
(``additionalProperties: false``), so a field a service adds without its type fails here.
Query parameters are decoded by one typed path: hostile ones get ``VALIDATION_ERROR`` with
``details.errors`` paths."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema
import trio
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from linkops.db import Database
from tests.fixtures_operations import seed_links, seed_script
from tests.fixtures_sandbox import SshEnv

BASH = "#!/bin/bash\n"
SCRIPT = BASH + r"""echo "hi from $LINKOPS_SANDBOX_HOST"
[ "$LINKOPS_SANDBOX_HOST" = ops-08 ] && { echo "no" >&2; exit 4; }
exit 0
"""


class Document:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        resource = Resource.from_contents(document, default_specification=DRAFT202012)
        self.registry: Registry[Any] = Registry().with_resource("urn:linkops", resource)

    def schema(self, path: str, method: str, status: int) -> dict[str, Any]:
        op = self.document["paths"][path][method]
        response = op["responses"].get(str(status), op["responses"]["default"])
        schema: dict[str, Any] = response["content"]["application/json"]["schema"]
        return schema

    def check(self, response: httpx.Response, path: str, method: str = "get") -> Any:
        body = response.json()
        schema = _rebase(self.schema(path, method, response.status_code))
        validator = jsonschema.Draft202012Validator(schema, registry=self.registry)
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(body)]
        assert errors == [], (path, response.status_code, errors[:5])
        return body


def _rebase(schema: Any) -> Any:
    """``#/components/...`` refs of the document as refs into the registered resource."""
    if isinstance(schema, dict):
        return {k: ("urn:linkops" + v if k == "$ref" and v.startswith("#") else _rebase(v))
                for k, v in schema.items()}
    if isinstance(schema, list):
        return [_rebase(v) for v in schema]
    return schema


async def _finish(http: httpx.AsyncClient, op_id: str) -> None:
    with trio.fail_after(60):
        while (await http.get(f"/api/operations/{op_id}")).json()["status"] in (
                "queued", "running"):
            await trio.sleep(0.05)


async def test_real_answers_conform_to_the_document(
        ops_client: httpx.AsyncClient, ops_server_db: Database, ops_ssh_env: SshEnv) -> None:
    doc = Document((await ops_client.get("/api/openapi.json")).json())
    seed_links(ops_server_db, ops_ssh_env, ["ops-07", "ops-08", "ops-09"])
    seed_script(ops_server_db, "greet", SCRIPT, flags=["--dry-run", "--level=3"],
                name="Greet")
    http = ops_client
    with trio.fail_after(120):
        body = {"scripts": ["greet"], "targets": ["ops-07", "ops-08", "ops-09"]}
        plan = doc.check(await http.post("/api/operations/plan", json=body),
                         "/api/operations/plan", "post")
        r = await http.post("/api/operations/run", json={**body, "plan_id": plan["plan_id"]})
        assert r.status_code == 202, r.text
        op_id = r.json()["operation_id"]
        await _finish(http, op_id)

        links = doc.check(await http.get("/api/links", params={"sort": "name"}), "/api/links")
        assert links["count"] == 3
        doc.check(await http.get("/api/links/ops-07"), "/api/links/{link_id}")
        doc.check(await http.get("/api/links/nope"), "/api/links/{link_id}")
        scripts = doc.check(await http.get("/api/scripts"), "/api/scripts")
        assert scripts["scripts"][0]["flagSpecs"][1]["default"] == "3"
        assert doc.check(await http.get("/api/scripts/greet"),
                         "/api/scripts/{script_id}")["content"] == SCRIPT
        doc.check(await http.get("/api/git/status"), "/api/git/status")

        view = doc.check(await http.get(f"/api/operations/{op_id}"), "/api/operations/{op_id}")
        assert view["status"] == "partial" and view["plan"]["plan_id"] == plan["plan_id"]
        history = doc.check(await http.get("/api/operations", params={"limit": "1"}),
                            "/api/operations")
        assert history["operations"][0]["id"] == op_id
        doc.check(await http.get("/api/operations", params={"page": "1"}), "/api/operations")
        groups = doc.check(await http.get(f"/api/operations/{op_id}/groups"),
                           "/api/operations/{op_id}/groups")
        keys = [g["key"] for g in groups["script_groups"][0]["groups"]]
        assert len(keys) == 2
        diff = doc.check(await http.get(f"/api/operations/{op_id}/groups/{keys[1]}/diff"),
                         "/api/operations/{op_id}/groups/{key}/diff")
        assert diff["against"] == keys[0]
        page = doc.check(
            await http.get(f"/api/operations/{op_id}/tasks/ops-08/greet/output",
                           params={"stream": "stderr", "limit": "1"}),
            "/api/operations/{op_id}/tasks/{target}/{script}/output")
        assert page["data"] == "n" and page["next_offset"] == 1
        rerun = doc.check(await http.post(f"/api/operations/{op_id}/rerun",
                                          json={"which": "failed"}),
                          "/api/operations/{op_id}/rerun", "post")
        assert rerun["targets"] == ["ops-08"]
        await _finish(http, rerun["operation_id"])

        tables = doc.check(await http.get("/api/tables"), "/api/tables")
        for table in tables["tables"]:
            result = doc.check(await http.post("/api/tables/query", json={
                "table": table["table"], "page": {"size": 2}}), "/api/tables/query", "post")
            if result["page"]["next_cursor"]:
                doc.check(await http.post("/api/tables/query", json={
                    "table": table["table"],
                    "page": {"size": 2, "cursor": result["page"]["next_cursor"]}}),
                    "/api/tables/query", "post")
        doc.check(await http.get("/api/terminal/recordings"), "/api/terminal/recordings")
        doc.check(await http.get("/api/terminal/recordings/search", params={"q": "hi"}),
                  "/api/terminal/recordings/search")


async def test_hostile_query_parameters_name_their_path(
        ops_client: httpx.AsyncClient) -> None:
    """One typed path for query strings: wrong types, repeats and unknown names are
    ``VALIDATION_ERROR`` with ``details.errors: [{path, message}]``."""
    cases = [
        ("/api/operations", {"limit": "ten"}, "$.limit"),
        ("/api/operations", {"limit": "-1"}, "$.limit"),
        ("/api/operations", {"page": "0"}, "$.page"),
        ("/api/operations/OP-1/tasks/a/b/output", {"offset": "1e3"}, "$.offset"),
        ("/api/operations/OP-1/tasks/a/b/output", {"bogus": "1"}, "$.bogus"),
        ("/api/operations/OP-1/tasks/a/b/output", {"stream": "stdin"}, "$.stream"),
        ("/api/terminal/recordings", {"cursor": ["1", "2"]}, "$.cursor"),
        ("/api/links", {"sort": ["id", "name"]}, "$.sort"),
    ]
    for path, params, where in cases:
        r = await ops_client.get(path, params=params)
        assert r.status_code == 400, (path, params, r.text)
        error = r.json()["error"]
        assert error["code"] == "VALIDATION_ERROR", (path, params, error)
        assert [e["path"] for e in error["details"]["errors"]] == [where], (path, params, error)
