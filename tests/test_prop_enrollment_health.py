"""Properties 11, 12, 28 and 29 (SPEC §9) against real sshd servers.

Each Hypothesis example runs in its own ``trio.run`` (pytest-trio), so it builds its own
SshManager (and database); the sshd fleets are shared across examples.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import attrs
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linkops.config import HealthSettings
from linkops.db import Database
from linkops.models import Link
from linkops.operations.remote import RemoteScript
from linkops.sandbox import Sandbox, Tarpit, free_port
from linkops.ssh.bridge import SshConnection
from linkops.ssh.enrollment import (
    MAX_CLIENT_ID_BYTES,
    EnrollmentService,
    evaluate,
    verify_link,
)
from linkops.ssh.errors import SshKeyError
from linkops.ssh.health import HealthMonitor
from tests.fixtures_sandbox import SshEnv, fleet_links, insert_machines, make_ssh_env

PROPERTY = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
BOM = b"\xef\xbb\xbf"
_counter = itertools.count()

client_ids = st.one_of(
    st.uuids().map(lambda u: f"LINKOPS-{u}"),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Zs", "Zl", "Zp", "Cc")),
            min_size=1, max_size=60),
)
spaces = st.lists(st.sampled_from([b" ", b"\t", b"\n", b"\r\n"]), max_size=4).map(b"".join)


@st.composite
def file_contents(draw: st.DrawFn, expected: str) -> bytes | None:
    raw = expected.encode()
    kind = draw(st.sampled_from(["decorated", "other", "garbage", "edited", "missing"]))
    if kind == "missing":
        return None
    if kind == "decorated":
        bom = draw(st.sampled_from([b"", BOM]))
        return draw(spaces) + bom + draw(spaces) + raw + draw(spaces)
    if kind == "other":
        return draw(client_ids).encode() + draw(spaces)
    if kind == "garbage":
        return draw(st.binary(max_size=MAX_CLIENT_ID_BYTES + 40))
    cut = draw(st.integers(0, len(raw)))
    return raw[:cut] + draw(st.binary(min_size=1, max_size=3)) + raw[cut:]


def matches(content: bytes | None, expected: str) -> bool:
    """SPEC §1: equal after stripping surrounding whitespace (and a BOM); else exact."""
    if content is None or len(content) > MAX_CLIENT_ID_BYTES:
        return False
    text = content.strip()
    text = text.removeprefix(BOM).strip()
    return text == expected.encode()


@pytest.fixture(scope="module")
def prop_env(private_fleet: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> SshEnv:
    return make_ssh_env(private_fleet, tmp_path_factory.mktemp("prop-ssh"))


@PROPERTY
@given(data=st.data(), expected=client_ids)
async def test_property_11_enrolled_iff_client_id_matches(
        prop_env: SshEnv, data: st.DataObject, expected: str) -> None:
    """Property 11: a link is enrolled iff the client ID read over SSH matches its own."""
    content = data.draw(file_contents(expected))
    prop_env.fleet.write_client_id("prv-01", content)
    base = prop_env.links["prv-01"]
    link = attrs.evolve(base, enrollment=attrs.evolve(base.enrollment, clientId=expected))
    manager = prop_env.manager()
    try:
        with trio.fail_after(30):
            result = await verify_link(manager, link, prop_env.links)
    finally:
        await manager.aclose()
    assert result.enrolled == matches(content, expected), (content, result)
    assert result.client_id_matches == result.enrolled
    assert result.client_id_found == (content is not None)
    assert (result.error is None) == result.enrolled


async def _no_reconnect() -> SshConnection:
    raise AssertionError("the gate test never reconnects")


async def _discard(_name: str, _chunk: bytes) -> None:
    return None


async def _ignore_pgid(_pgid: int) -> None:
    return None


@PROPERTY
@given(data=st.data(), expected=client_ids)
async def test_property_11_operation_gate_agrees(
        prop_env: SshEnv, tmp_path: Path, data: st.DataObject, expected: str) -> None:
    """Property 11, as operations apply it: the client-ID report that rides on the script's
    own channel decides exactly as the verification does, and a script whose host does not
    match never starts (its canary file is never created)."""
    content = data.draw(file_contents(expected))
    prop_env.fleet.write_client_id("prv-01", content)
    base = prop_env.links["prv-01"]
    link = attrs.evolve(base, enrollment=attrs.evolve(base.enrollment, clientId=expected))
    canary = tmp_path / f"canary-{next(_counter)}"
    manager = prop_env.manager()
    try:
        with trio.fail_after(30):
            conn = await manager.connect(link, prop_env.links)
            remote = RemoteScript(conn, _no_reconnect, 'touch "$1"\n', (str(canary),),
                                  sink=_discard, on_pgid=_ignore_pgid,
                                  client_id_path=link.enrollment.clientIdPath)
            report = await remote.open(10)
            assert report is not None
            result = evaluate(link, report.exit_code, report.content, report.message, "now")
            if result.enrolled:
                outcome = await remote.run(10)
                assert outcome.exit_code == 0
            else:
                await remote.aclose()
                # The wrapper got EOF instead of LINKOPS_GO: it exits without running anything.
                await conn.run("sleep 0.05", timeout=10)
            await conn.aclose()
    finally:
        await manager.aclose()
    assert result.enrolled == matches(content, expected), (content, result)
    assert result.client_id_found == (content is not None)
    assert canary.exists() == result.enrolled


FAILURES = ["missing", "unreadable", "mismatch", "host_key", "auth", "key", "connect",
            "timeout"]


@PROPERTY
@given(kind=st.sampled_from(FAILURES), other_id=client_ids)
async def test_property_12_enrollment_failures_carry_a_reason(
        prop_env: SshEnv, tmp_path: Path, kind: str, other_id: str) -> None:
    """Property 12: every failed verification says why (error text + reason), also in the DB."""
    fleet = prop_env.fleet
    host = fleet.host("prv-02")
    link: Link = prop_env.links["prv-02"]
    fleet.write_client_id("prv-02", (host.client_id + "\n").encode())
    overrides: dict[str, object] = {}
    key = prop_env.keys_dir / "sandbox_ed25519"
    tarpit: Tarpit | None = None
    if kind == "missing":
        fleet.write_client_id("prv-02", None)
    elif kind == "unreadable":
        fleet.make_client_id_unreadable("prv-02")
    elif kind == "mismatch":
        fleet.write_client_id("prv-02", (other_id + "x").encode())
    elif kind == "host_key":
        link = attrs.evolve(link, ssh=attrs.evolve(
            link.ssh, hostKey=fleet.host("prv-01").host_key_line))
    elif kind == "auth":
        link = attrs.evolve(link, user="nobody")
    elif kind == "key":
        key.chmod(0o644)
    elif kind == "connect":
        link = attrs.evolve(link, port=free_port())
        overrides = {"max_retries": 0}
    else:
        tarpit = Tarpit()
        link = attrs.evolve(link, port=tarpit.port)
        overrides = {"max_retries": 0, "connection_timeout": 0.2}
    db = Database(tmp_path / f"p12-{next(_counter)}.db")
    insert_machines(db, [link])
    manager = prop_env.manager(**overrides)
    try:
        with trio.fail_after(30):
            [result] = await EnrollmentService(db, manager).verify_many([link.id])
    finally:
        await manager.aclose()
        key.chmod(0o600)
        if tarpit is not None:
            tarpit.close()
        fleet.write_client_id("prv-02", (host.client_id + "\n").encode())
    row = db.read_sync(lambda c: c.execute(
        "SELECT enrolled, enrollment_error, enrollment_verified_at FROM machines").fetchone())
    db.close()
    assert not result.enrolled
    assert result.reason == kind, result
    assert isinstance(result.error, str) and link.id in result.error
    assert (row["enrolled"], row["enrollment_error"]) == (0, result.error)
    assert row["enrollment_verified_at"] == result.verified_at


STATES = ["up", "refused", "wrong-pin"]


@st.composite
def health_rounds(draw: st.DrawFn) -> tuple[list[str], list[str]]:
    n = draw(st.integers(1, 3))
    state = st.lists(st.sampled_from(STATES), min_size=n, max_size=n)
    return draw(state), draw(state)


@PROPERTY
@given(rounds=health_rounds())
async def test_property_28_health_sets_status_latency_and_timestamps(
        ssh_env: SshEnv, tmp_path: Path, rounds: tuple[list[str], list[str]]) -> None:
    """Property 28: a health check sets online/offline, latency and timestamps.

    Two rounds over 1-3 links, each up, refusing connections or presenting a host key that
    does not match its pin: online ⇒ reachable, latency, last_seen = last_check; offline ⇒
    unreachable, no latency, an error, and last_seen kept from the last success.
    """
    first, second = rounds
    names = ["sbx-01", "sbx-02", "sbx-03"][:len(first)]
    dead_port = free_port()
    wrong_pin = ssh_env.fleet.host("sbx-bastion" if "sbx-bastion" in ssh_env.fleet.hosts
                                   else "sbx-01").host_key_line
    db = Database(tmp_path / f"p28-{next(_counter)}.db")
    insert_machines(db, [ssh_env.links[n] for n in names])
    manager = ssh_env.manager(max_retries=0)
    monitor = HealthMonitor(db, manager, HealthSettings(check_timeout=5.0))
    try:
        seen_before: dict[str, str | None] = {}
        for states in (first, second):
            updates = []
            for name, state in zip(names, states, strict=True):
                link = ssh_env.links[name]
                port = dead_port if state == "refused" else link.port
                pin = wrong_pin if state == "wrong-pin" and name != "sbx-01" else (
                    ssh_env.fleet.host("sbx-02").host_key_line if state == "wrong-pin"
                    else None)
                updates.append((port, pin, name))
            db.write_sync(lambda c, rows=updates: c.executemany(
                "UPDATE machines SET port = ?, host_key = ? WHERE id = ?", rows))
            with trio.fail_after(30):
                results = {r.target: r for r in await monitor.check_now()}
            rows = {r["id"]: r for r in db.read_sync(
                lambda c: c.execute("SELECT * FROM machines").fetchall())}
            for name, state in zip(names, states, strict=True):
                row, result = rows[name], results[name]
                assert result.online == (state == "up"), result
                assert row["last_check"] == result.checked_at
                if state == "up":
                    assert (row["status"], row["reachable"]) == ("online", 1)
                    assert row["latency_ms"] is not None and row["latency_ms"] >= 0
                    assert row["last_seen"] == result.checked_at
                    assert row["health_error"] is None
                else:
                    assert (row["status"], row["reachable"], row["latency_ms"]) == (
                        "offline", 0, None)
                    assert row["health_error"] and result.reason in ("connect", "host_key")
                    assert row["last_seen"] == seen_before.get(name)
            seen_before = {n: rows[n]["last_seen"] for n in names}
    finally:
        await manager.aclose()
        db.close()


@PROPERTY
@given(mode=st.one_of(st.just(0o600), st.integers(0, 0o7777)))
async def test_property_29_keys_not_mode_600_are_refused(
        ssh_env: SshEnv, mode: int) -> None:
    """Property 29: an SSH key whose mode is not exactly 0600 is refused, naming the file."""
    key = ssh_env.keys_dir / "sandbox_ed25519"
    os.chmod(key, mode)
    manager = ssh_env.manager(max_retries=0)
    try:
        with trio.fail_after(30):
            if mode == 0o600:
                conn = await manager.connect(ssh_env.links["sbx-03"], ssh_env.links)
                assert conn.is_healthy()
                await conn.aclose()
            else:
                with pytest.raises(SshKeyError) as info:
                    await manager.connect(ssh_env.links["sbx-03"], ssh_env.links)
                assert str(key) in info.value.message
                assert f"{mode:04o}" in info.value.message
                assert info.value.code == "SSH_KEY_INVALID"
    finally:
        os.chmod(key, 0o600)
        await manager.aclose()


def test_fleet_links_helper_is_consistent(private_fleet: Sandbox) -> None:
    """The helper used above gives each link its own host's client ID and path."""
    links = fleet_links(private_fleet)
    for name, link in links.items():
        host = private_fleet.host(name)
        assert link.enrollment.clientId == host.client_id
        assert link.enrollment.clientIdPath == str(host.client_id_file)
