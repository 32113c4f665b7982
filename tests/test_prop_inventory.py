"""Property tests for the inventory (SPEC §9 properties 4, 5, 6, 7, 8, 9, 10 and 30)."""

from __future__ import annotations

import hashlib
import io
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from ruamel.yaml import YAML

from linkops import server
from linkops.converters import structure
from linkops.db import Database
from linkops.errors import ValidationError
from linkops.inventory import InventoryService, LinkQuery
from linkops.inventory.queries import LINK_SORT_COLUMNS, LINK_STATUSES
from linkops.inventory.secrets import parse_secrets
from linkops.inventory.store import apply_inventory
from linkops.inventory.validate import Inventory, load_inventory
from linkops.models import Link
from tests.fixtures_git import RepoWriter
from tests.strategies import PROP, call, run_property

# -- strategies -----------------------------------------------------------------------------

ids = st.from_regex(r"[a-z][a-z0-9._-]{0,15}", fullmatch=True)
words = st.from_regex(r"[a-z][a-z0-9-]{0,9}", fullmatch=True)
hosts = st.one_of(
    st.from_regex(r"[a-z][a-z0-9-]{0,12}(\.[a-z]{2,6}){0,2}", fullmatch=True),
    st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t))),
)
users = st.from_regex(r"[a-z_][a-z0-9_-]{0,12}", fullmatch=True)
client_ids = st.uuids().map(lambda u: f"LINKOPS-{u}")
names = st.from_regex(r"[A-Za-z][A-Za-z0-9 ]{0,20}[A-Za-z0-9]", fullmatch=True)
LINK_TYPES = ("VPS", "Proxmox", "VM")


@st.composite
def link_entries(draw: st.DrawFn, link_ids: list[str]) -> dict[str, dict[str, Any]]:
    links: dict[str, dict[str, Any]] = {}
    for index, link_id in enumerate(link_ids):
        entry: dict[str, Any] = {
            "type": draw(st.sampled_from(LINK_TYPES)),
            "host": draw(hosts),
            "port": draw(st.integers(1, 65535)),
            "user": draw(users),
            "enrollment": {"clientId": draw(client_ids)},
        }
        if draw(st.booleans()):
            entry["enrollment"]["required"] = draw(st.booleans())
        if draw(st.booleans()):
            entry["name"] = draw(names)
        if draw(st.booleans()):
            entry["provider"] = draw(names)
        if draw(st.booleans()):
            entry["tags"] = draw(st.lists(words, max_size=4, unique=True))
        ssh: dict[str, Any] = {}
        # Jumping only to earlier links keeps the graph acyclic.
        if index and draw(st.booleans()):
            ssh["proxyJump"] = draw(st.sampled_from(link_ids[:index]))
        if draw(st.booleans()):
            ssh["keyRef"] = draw(words)
        if ssh:
            entry["ssh"] = ssh
        if draw(st.booleans()):
            entry["metadata"] = {"location": draw(words), "icon": f"assets/{draw(words)}.svg"}
        links[link_id] = entry
    return links


@st.composite
def script_entries(draw: st.DrawFn) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    script_ids = draw(st.lists(ids, max_size=4, unique=True))
    scripts: dict[str, dict[str, Any]] = {}
    files: dict[str, str] = {}
    for script_id in script_ids:
        path = f"scripts/{script_id}.sh"
        scripts[script_id] = {
            "name": draw(names),
            "description": draw(names),
            "path": path,
            "flags": draw(st.lists(words, max_size=3, unique=True).map(
                lambda ws: [f"--{w}" if i % 2 else f"--{w}=REQUIRED" for i, w in enumerate(ws)])),
            "estimatedDuration": draw(st.integers(0, 3600)),
        }
        shebang = draw(st.sampled_from(["#!/bin/bash", "#!/usr/bin/env bash", "#!/bin/bash -eu"]))
        body = draw(st.lists(st.text(st.characters(min_codepoint=32, max_codepoint=0x2FFF,
                                                   exclude_categories=["Cs"]),
                                     max_size=30), max_size=5))
        files[path] = shebang + "\n" + "".join(f"echo {line!r}\n" for line in body)
    return scripts, files


@st.composite
def inventories(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    link_ids = draw(st.lists(ids, max_size=8, unique=True))
    links = draw(link_entries(link_ids))
    scripts, files = draw(script_entries())
    return links, scripts, files


def dump_yaml(data: Any) -> str:
    out = io.StringIO()
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.dump(data, out)
    return out.getvalue()


def write_checkout(root: Path, links: dict[str, Any], scripts: dict[str, Any],
                   files: dict[str, str]) -> None:
    for child in root.iterdir():
        if child.name == ".git":
            continue
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()
    (root / "links.yaml").write_text(dump_yaml({"links": links}), encoding="utf-8")
    (root / "scripts.yaml").write_text(dump_yaml({"scripts": scripts}), encoding="utf-8")
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text, encoding="utf-8")


# -- property 4 -----------------------------------------------------------------------------


async def test_property_4_sync_reflects_the_repository_in_the_database(
        inventory: tuple[Any, Database, InventoryService], config_repo: RepoWriter) -> None:
    """Property 4: a successful sync reflects links.yaml and scripts.yaml in the DB."""
    _, _, service = inventory

    @PROP
    @given(inventories())
    def prop(generated: tuple[dict[str, Any], dict[str, Any], dict[str, str]]) -> None:
        links, scripts, files = generated
        write_checkout(config_repo.work, links, scripts, files)
        head = config_repo.commit_and_push("generated")
        result = call(service.sync)
        assert result.success, result.error
        assert result.commit_hash == head
        stored = call(service.link_models)
        assert set(stored) == set(links)
        for link_id, entry in links.items():
            link = stored[link_id]
            assert (link.type, link.host, link.port, link.user) == (
                entry["type"], entry["host"], entry["port"], entry["user"])
            assert link.enrollment.clientId == entry["enrollment"]["clientId"]
            assert link.enrollment.required == entry["enrollment"].get("required", True)
            assert link.name == entry.get("name", link_id)
            assert link.provider == entry.get("provider")
            assert list(link.tags) == entry.get("tags", [])
            assert link.ssh.proxyJump == entry.get("ssh", {}).get("proxyJump")
            assert link.ssh.keyRef == entry.get("ssh", {}).get("keyRef")
            assert link.metadata == entry.get("metadata", {})
        stored_scripts = call(service.script_models)
        assert set(stored_scripts) == set(scripts)
        for script_id, entry in scripts.items():
            script = stored_scripts[script_id]
            text = files[entry["path"]]
            assert (script.name, script.description, script.path) == (
                entry["name"], entry["description"], entry["path"])
            assert list(script.flags) == entry["flags"]
            assert script.estimatedDuration == entry["estimatedDuration"]
            assert script.content == text
            assert script.sha256 == hashlib.sha256(text.encode()).hexdigest()

    await run_property(prop)


def _corrupt(kind: str, links: dict[str, Any], scripts: dict[str, Any],
             files: dict[str, str]) -> None:
    """Make a generated inventory invalid in one of the ways a commit can be."""
    if kind == "port":
        links.setdefault("bad", {"type": "VM", "host": "h", "user": "u",
                                 "enrollment": {"clientId": "C"}})["port"] = 0
    elif kind == "jump":
        links["bad"] = {"type": "VM", "host": "h", "port": 22, "user": "u",
                        "enrollment": {"clientId": "C"}, "ssh": {"proxyJump": "missing"}}
    elif kind == "shebang":
        scripts["bad"] = {"name": "Bad", "description": "sh", "path": "scripts/bad.sh"}
        files["scripts/bad.sh"] = "#!/bin/sh\necho no\n"
    else:
        scripts["bad"] = {"name": "Bad", "description": "outside", "path": "../outside.sh"}


async def test_property_4_a_failed_sync_leaves_the_previous_inventory(
        inventory: tuple[Any, Database, InventoryService], config_repo: RepoWriter) -> None:
    """Property 4 (its other half, SPEC §2 all-or-nothing): after any sequence of good and bad
    commits the database holds exactly the last good commit's inventory."""
    _, db, service = inventory

    def rows() -> Any:
        return db.read_sync(lambda c: (
            [dict(r) for r in c.execute("SELECT * FROM machines ORDER BY id")],
            [dict(r) for r in c.execute("SELECT * FROM scripts ORDER BY id")]))

    @PROP
    @given(inventories(), st.sampled_from([None, "port", "jump", "shebang", "outside"]))
    def prop(generated: tuple[dict[str, Any], dict[str, Any], dict[str, str]],
             corruption: str | None) -> None:
        links, scripts, files = generated
        before = rows()
        if corruption is not None:
            _corrupt(corruption, links, scripts, files)
        write_checkout(config_repo.work, links, scripts, files)
        config_repo.commit_and_push(f"generated ({corruption or 'valid'})")
        result = call(service.sync)
        if corruption is None:
            assert result.success, result.error
            assert sorted(m["id"] for m in rows()[0]) == sorted(links)
            assert sorted(s["id"] for s in rows()[1]) == sorted(scripts)
        else:
            assert not result.success
            assert result.error is not None and result.error.status == 400
            assert rows() == before

    await run_property(prop)


# -- properties 5 and 6 ---------------------------------------------------------------------

LINK_REQUIRED = ("type", "host", "port", "user", "enrollment.clientId")
SCRIPT_REQUIRED = ("name", "description", "path")


async def test_property_5_missing_required_field_is_named(tmp_path: Path) -> None:
    """Property 5: YAML missing a required field fails naming the field."""
    root = tmp_path / "checkout"
    root.mkdir()

    @PROP
    @given(inventories(), st.data())
    def prop(generated: tuple[dict[str, Any], dict[str, Any], dict[str, str]],
             data: st.DataObject) -> None:
        links, scripts, files = generated
        choices = [("links", i) for i in links] + [("scripts", i) for i in scripts]
        if not choices:
            links["only"] = data.draw(link_entries(["only"]))["only"]
            choices = [("links", "only")]
        kind, entry_id = data.draw(st.sampled_from(choices))
        field = data.draw(st.sampled_from(LINK_REQUIRED if kind == "links"
                                          else SCRIPT_REQUIRED))
        entry = (links if kind == "links" else scripts)[entry_id]
        *parents, leaf = field.split(".")
        target = entry
        for parent in parents:
            target = target[parent]
        del target[leaf]
        write_checkout(root, links, scripts, files)
        try:
            load_inventory(root)
        except ValidationError as exc:
            wanted = f"{kind}.{entry_id}.{field}"
            found = [p for p in exc.details["problems"] if p["field"] == wanted]
            assert found, exc.details
            assert found[0]["file"] == f"{kind}.yaml"
            assert found[0]["entry"] == entry_id
            assert found[0]["message"] == "required field missing"
            assert isinstance(found[0]["line"], int)
        else:
            raise AssertionError(f"missing {field} of {entry_id} was accepted")

    await run_property(prop)


def _breakable_lines(text: str) -> list[int]:
    """0-based indexes of `key: scalar` lines (a sibling inserted there is a syntax error)."""
    found = []
    for index, line in enumerate(text.splitlines()):
        stripped = line.strip()
        if stripped.startswith("-") or not stripped or ":" not in stripped:
            continue
        if not stripped.endswith(":"):
            found.append(index)
    return found


async def test_property_6_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    """Property 6: malformed YAML fails naming file and line."""
    root = tmp_path / "checkout"
    root.mkdir()

    @PROP
    @given(inventories(), st.data())
    def prop(generated: tuple[dict[str, Any], dict[str, Any], dict[str, str]],
             data: st.DataObject) -> None:
        links, scripts, files = generated
        if not links:
            links["only"] = data.draw(link_entries(["only"]))["only"]
        write_checkout(root, links, scripts, files)
        target = data.draw(st.sampled_from(["links.yaml", "scripts.yaml"])
                           if scripts else st.just("links.yaml"))
        lines = (root / target).read_text().splitlines()
        index = data.draw(st.sampled_from(_breakable_lines("\n".join(lines))))
        line = lines[index]
        indent = line[: len(line) - len(line.lstrip())]
        kind = data.draw(st.sampled_from(["mapping", "duplicate", "tab"]))
        if kind == "mapping":
            lines.insert(index + 1, f"{indent}zz_bad: a: b")
            expected = index + 2
        elif kind == "duplicate":
            lines.insert(index + 1, line)
            expected = index + 2
        else:
            lines[index] = "\t" + line.lstrip()
            expected = index + 1
        (root / target).write_text("\n".join(lines) + "\n")
        try:
            load_inventory(root)
        except ValidationError as exc:
            assert exc.code == "YAML_PARSE_ERROR", exc.message
            assert exc.details["file"] == target
            assert exc.details["line"] == expected, (kind, exc.message)
            assert exc.message.startswith(f"{target}:{expected}: ")
        else:
            raise AssertionError("malformed YAML was accepted")

    await run_property(prop)


# -- properties 7 to 10 ---------------------------------------------------------------------


@st.composite
def stored_inventories(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Links plus the enrollment/health state the SSH layer could have recorded for them."""
    link_ids = draw(st.lists(ids, min_size=1, max_size=10, unique=True))
    links = draw(link_entries(link_ids))
    state: dict[str, dict[str, Any]] = {}
    for link_id in link_ids:
        reachable = draw(st.sampled_from([None, 0, 1]))
        state[link_id] = {
            "enrolled": draw(st.sampled_from([0, 1])),
            "enrollment_verified_at": draw(st.sampled_from(
                [None, "2026-01-01T00:00:00.000000Z", "2026-02-03T04:05:06.000000Z"])),
            "status": draw(st.sampled_from(LINK_STATUSES)),
            "reachable": reachable,
            "latency_ms": draw(st.one_of(st.none(), st.sampled_from([1.5, 12.0, 12.0, 250.25]))),
            "last_seen": draw(st.sampled_from(
                [None, "2026-03-01T10:00:00.000000Z", "2026-03-01T11:00:00.000000Z"])),
        }
    return links, state


async def _store(db: Database, links: dict[str, Any], state: dict[str, dict[str, Any]]) -> None:
    checkout_links = {link_id: structure({**entry, "id": link_id}, Link)
                      for link_id, entry in links.items()}

    def write(conn: Any) -> None:
        apply_inventory(conn, Inventory(links=checkout_links, scripts={}), "2026-01-01T00:00:00Z")
        for link_id, values in state.items():
            conn.execute(
                "UPDATE machines SET enrolled = ?, enrollment_verified_at = ?, status = ?, "
                "reachable = ?, latency_ms = ?, last_seen = ? WHERE id = ?",
                (values["enrolled"], values["enrollment_verified_at"], values["status"],
                 values["reachable"], values["latency_ms"], values["last_seen"], link_id))

    await db.write(write)


def _expected_api(link_id: str, entry: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": link_id,
        "name": entry.get("name", link_id),
        "type": entry["type"],
        "provider": entry.get("provider"),
        "icon": entry.get("metadata", {}).get("icon"),
        "tags": entry.get("tags", []),
        "enrolled": bool(state["enrolled"]),
        "enrollmentId": entry["enrollment"]["clientId"],
        "enrollmentVerifiedAt": state["enrollment_verified_at"],
        "ssh": {"host": entry["host"], "port": entry["port"], "user": entry["user"],
                "proxyJump": entry.get("ssh", {}).get("proxyJump"),
                "keyRef": entry.get("ssh", {}).get("keyRef")},
        "health": {"reachable": None if state["reachable"] is None else bool(state["reachable"]),
                   "latency": state["latency_ms"], "lastSeen": state["last_seen"]},
        "status": state["status"],
        "metadata": entry.get("metadata", {}),
    }


def _subset(api: dict[str, Any], expected: dict[str, Any]) -> bool:
    for key, value in expected.items():
        if isinstance(value, dict) and key != "metadata":
            if not _subset(api[key], value):
                return False
        elif api[key] != value:
            return False
    return True


async def test_property_7_links_list_is_the_whole_inventory(
        running: server.Running, client: httpx.AsyncClient) -> None:
    """Property 7: the links endpoint returns the whole inventory with enrollment, SSH and
    health."""
    db = running.services.db

    @PROP
    @given(stored_inventories())
    def prop(generated: tuple[dict[str, Any], dict[str, dict[str, Any]]]) -> None:
        links, state = generated
        call(_store, db, links, state)
        response = call(client.get, "/api/links")
        assert response.status_code == 200
        listed = response.json()
        assert listed["count"] == len(links)
        assert sorted(item["id"] for item in listed["links"]) == sorted(links)
        for item in listed["links"]:
            expected = _expected_api(item["id"], links[item["id"]], state[item["id"]])
            assert _subset(item, expected), (item, expected)

    await run_property(prop)


async def test_property_8_lookup_by_id_returns_exactly_that_link(
        running: server.Running, client: httpx.AsyncClient) -> None:
    """Property 8: lookup by id returns exactly that link."""
    db = running.services.db

    @PROP
    @given(stored_inventories(), st.data())
    def prop(generated: tuple[dict[str, Any], dict[str, dict[str, Any]]],
             data: st.DataObject) -> None:
        links, state = generated
        call(_store, db, links, state)
        listed = {item["id"]: item for item in call(client.get, "/api/links").json()["links"]}
        link_id = data.draw(st.sampled_from(sorted(links)))
        one = call(client.get, f"/api/links/{link_id}")
        assert one.status_code == 200
        assert one.json() == listed[link_id]
        missing = data.draw(ids.filter(lambda i: i not in links))
        response = call(client.get, f"/api/links/{missing}")
        assert response.status_code == 404
        error = response.json()["error"]
        assert (error["code"], error["details"]["id"]) == ("LINK_NOT_FOUND", missing)

    await run_property(prop)


async def test_property_9_filters_return_exactly_the_matching_subset(
        running: server.Running, client: httpx.AsyncClient) -> None:
    """Property 9: filtering returns exactly the matching subset."""
    db = running.services.db

    @PROP
    @given(stored_inventories(), st.data())
    def prop(generated: tuple[dict[str, Any], dict[str, dict[str, Any]]],
             data: st.DataObject) -> None:
        links, state = generated
        call(_store, db, links, state)
        all_tags = sorted({t for e in links.values() for t in e.get("tags", [])}) or ["none"]
        types = data.draw(st.lists(st.sampled_from([*LINK_TYPES, "Other"]), max_size=2))
        statuses = data.draw(st.lists(st.sampled_from(LINK_STATUSES), max_size=2))
        enrolled = data.draw(st.sampled_from([None, "true", "false", "1", "0"]))
        tags = data.draw(st.lists(st.sampled_from(all_tags), max_size=2))
        params: list[tuple[str, str]] = [("type", t) for t in types]
        params += [("status", s) for s in statuses] + [("tag", t) for t in tags]
        if enrolled is not None:
            params.append(("enrolled", enrolled))
        response = call(client.get, "/api/links", params=params)
        assert response.status_code == 200, response.text
        got = [item["id"] for item in response.json()["links"]]
        want_enrolled = None if enrolled is None else enrolled in ("true", "1")
        expected = sorted(
            link_id for link_id, entry in links.items()
            if (not types or entry["type"] in types)
            and (not statuses or state[link_id]["status"] in statuses)
            and (want_enrolled is None or bool(state[link_id]["enrolled"]) == want_enrolled)
            and (not tags or set(tags) & set(entry.get("tags", [])))
        )
        assert got == expected

    await run_property(prop)


def _sort_value(item: dict[str, Any], column: str) -> Any:
    value = {
        "id": item["id"], "name": item["name"], "type": item["type"],
        "provider": item["provider"], "host": item["ssh"]["host"], "port": item["ssh"]["port"],
        "user": item["ssh"]["user"], "status": item["status"], "enrolled": item["enrolled"],
        "enrollmentVerifiedAt": item["enrollmentVerifiedAt"],
        "latency": item["health"]["latency"], "lastSeen": item["health"]["lastSeen"],
    }[column]
    if isinstance(value, str) and column in ("name", "type", "provider"):
        value = value.lower()  # COLLATE NOCASE (ASCII)
    return value


async def test_property_10_sorting_orders_and_breaks_ties_by_id(
        running: server.Running, client: httpx.AsyncClient) -> None:
    """Property 10: sorting orders results, ties broken consistently (by id)."""
    db = running.services.db

    @PROP
    @given(stored_inventories(), st.sampled_from(sorted(LINK_SORT_COLUMNS)),
           st.sampled_from(["asc", "desc"]))
    def prop(generated: tuple[dict[str, Any], dict[str, dict[str, Any]]], column: str,
             direction: str) -> None:
        links, state = generated
        call(_store, db, links, state)
        params = {"sort": column, "dir": direction}
        got = call(client.get, "/api/links", params=params).json()["links"]
        # SQLite puts NULL first in ascending order; DESC reverses the whole key (id too).
        expected = sorted(got, key=lambda i: (_sort_value(i, column) is not None,
                                              _sort_value(i, column), i["id"]))
        if direction == "desc":
            expected.reverse()
        assert [i["id"] for i in got] == [i["id"] for i in expected]
        again = call(client.get, "/api/links", params=params).json()["links"]
        assert [i["id"] for i in again] == [i["id"] for i in got]

    await run_property(prop)


def test_unknown_sort_column_and_bad_filters_are_400() -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"sort": "password"}, "INVALID_SORT"),
        ({"direction": "sideways"}, "INVALID_SORT"),
        ({"statuses": ["up"]}, "INVALID_FILTER"),
        ({"enrolled": "maybe"}, "INVALID_FILTER"),
    ]
    for kwargs, code in cases:
        with pytest.raises(ValidationError) as info:
            LinkQuery.from_args(**kwargs)
        assert (info.value.code, info.value.status) == (code, 400)


# -- property 30 ----------------------------------------------------------------------------

secret_values = st.text(
    st.characters(min_codepoint=33, max_codepoint=0x2FFF, exclude_categories=["Cs"]),
    min_size=4, max_size=40).filter(lambda v: v.strip() == v and not v.startswith(("[", "#", ";")))
paths = st.lists(words, min_size=1, max_size=4).map(lambda parts: "/" + "/".join(parts))


@PROP
@given(key_path=st.one_of(st.none(), paths), known_hosts=st.one_of(st.none(), paths),
       token=st.one_of(st.none(), secret_values),
       api=st.dictionaries(st.from_regex(r"[a-z][a-z_]{0,10}", fullmatch=True), secret_values,
                           max_size=3),
       separator=st.sampled_from(["=", " = ", ": ", ":"]),
       noise=st.booleans())
def test_property_30_secrets_ini_parsing_extracts_key_paths_and_tokens(
        key_path: str | None, known_hosts: str | None, token: str | None, api: dict[str, str],
        separator: str, noise: bool) -> None:
    """Property 30: secrets.ini parsing extracts key paths and tokens."""
    sections: dict[str, dict[str, str | None]] = {
        "ssh": {"key_path": key_path, "known_hosts_path": known_hosts},
        "git": {"token": token},
        "api": dict(api),
    }
    lines = ["# LinkOps secrets"] if noise else []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        if noise:
            lines.append("; a comment")
        lines.extend(f"{k}{separator}{v}" for k, v in values.items() if v is not None)
        lines.append("")
    parsed = parse_secrets("\n".join(lines), "secrets.ini")
    assert parsed.ssh_key_path == key_path
    assert parsed.known_hosts_path == known_hosts
    assert parsed.git_token == token
    assert dict(parsed.api) == api
    shown = repr(parsed)
    # What the repr says of any secrets file ("Secrets(source='secrets.ini')"): a generated
    # value such as "sour" may occur in it without anything having leaked.
    bare = repr(parse_secrets("", "secrets.ini"))
    for value in [token, *api.values()]:
        if value is not None and value not in bare:
            assert value not in shown


def test_malformed_secrets_name_the_line_but_never_quote_it() -> None:
    with pytest.raises(ValidationError) as info:
        parse_secrets("[git]\ntoken = abc\nthis line has the secret-xyz in it\n")
    assert info.value.details == {"file": "secrets.ini", "line": 3}
    assert "secret-xyz" not in info.value.message
    assert info.value.code == "SECRETS_PARSE_ERROR"
