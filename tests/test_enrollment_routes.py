"""``POST /api/links/{id}/verify`` and the batch form, over HTTP against the real service and
the shared sandbox fleet (real sshd)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import httpx
import pytest
import trio

from linkops import config
from linkops.models import Enrollment
from linkops.sandbox import Sandbox
from tests.fixtures_core import (
    add_admin,
    authed_client,
    start_service,
    write_config,
)
from tests.fixtures_sandbox import insert_machines, make_ssh_env


@pytest.fixture
async def fleet_client(
    sandbox_fleet: Sandbox, tmp_path: Path, nursery: trio.Nursery
) -> AsyncIterator[httpx.AsyncClient]:
    env = make_ssh_env(sandbox_fleet, tmp_path / "ssh")
    settings = config.load(
        write_config(
            tmp_path,
            ssh={
                "keys_directory": env.keys_dir,
                "known_hosts_path": env.known_hosts,
                "default_key": "sandbox_ed25519",
                "connection_timeout": 10,
            },
        )
    )
    add_admin(settings)
    links = dict(env.links)
    # One link whose inventory entry names a different client ID than the host holds.
    first = sorted(links)[0]
    links["mismatch"] = attrs.evolve(
        links[first],
        id="mismatch",
        enrollment=Enrollment(
            clientId="LINKOPS-00000000-0000-4000-8000-000000000000",
            clientIdPath=links[first].enrollment.clientIdPath,
        ),
    )
    from linkops.db import Database

    db = Database(settings.database.path)
    insert_machines(db, links.values())
    db.close()
    handle = await start_service(nursery, settings)
    async with authed_client(handle, timeout=60) as http:
        yield http
    handle.stop.set()


async def test_verify_one_stores_the_result(
    fleet_client: httpx.AsyncClient, sandbox_fleet: Sandbox
) -> None:
    target = sorted(h for h in sandbox_fleet.hosts if "bastion" not in h and "inner" not in h)[0]
    with trio.fail_after(60):
        r = await fleet_client.post(f"/api/links/{target}/verify")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["enrolled"] is True and body["client_id_found"] is True
        assert body["client_id_matches"] is True and body["error"] is None
        link = (await fleet_client.get(f"/api/links/{target}")).json()
        assert link["enrolled"] is True
        assert link["enrollmentVerifiedAt"] == body["verified_at"]

        r = await fleet_client.post("/api/links/mismatch/verify")
        body = r.json()
        assert body["enrolled"] is False and body["client_id_found"] is True
        assert body["client_id_matches"] is False and "mismatch" in body["error"].lower()
        assert (await fleet_client.get("/api/links/mismatch")).json()["enrolled"] is False

        r = await fleet_client.post("/api/links/nope/verify")
        assert r.status_code == 404 and r.json()["error"]["code"] == "LINK_NOT_FOUND"


async def test_batch_verify(fleet_client: httpx.AsyncClient, sandbox_fleet: Sandbox) -> None:
    with trio.fail_after(90):
        r = await fleet_client.post("/api/links/verify", json={})
        body = r.json()
        assert r.status_code == 200, r.text
        assert body["count"] == len(sandbox_fleet.hosts) + 1
        assert body["enrolled"] == len(sandbox_fleet.hosts)
        r = await fleet_client.post("/api/links/verify", json={"targets": ["mismatch"]})
        assert [x["target"] for x in r.json()["results"]] == ["mismatch"]
        r = await fleet_client.post("/api/links/verify", json={"targets": "mismatch"})
        assert r.status_code == 400
        r = await fleet_client.post("/api/links/verify", json={"targets": ["ghost", "mismatch"]})
        assert r.status_code == 404 and "ghost" in r.json()["error"]["message"]
