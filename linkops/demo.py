"""``linkops demo``: the whole product on one machine, for a newcomer's first look.

What it starts, all under one work directory (a temp dir unless ``--workdir``):

1. a sandbox fleet (:mod:`linkops.sandbox`): one real OpenSSH server on 127.0.0.1 per link of
   ``examples/config-repo/links.yaml`` — two VPSes, a Proxmox host and the VMs behind it, which
   are reached through the Proxmox host (ProxyJump) exactly as in production;
2. a Git config repository made from ``examples/config-repo`` with the links rewritten to the
   fleet's addresses, ports, key and client IDs; the links listed in :data:`PENDING` get no
   client ID file, so they show up "not enrolled" as a freshly provisioned machine would;
3. a config.ini, a demo admin with a generated password (printed once), one sync, one
   verification of every link, and then the service on 127.0.0.1:8000.

Ctrl-C (SIGINT) stops the service gracefully, then every sshd the demo started (by PID), and
removes the work directory unless ``--workdir`` was given.
"""

from __future__ import annotations

import argparse
import io
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import trio
from ruamel.yaml import YAML

from linkops import auth, config, server
from linkops.db import Database
from linkops.logs import setup_logging
from linkops.resources import bundled_dir
from linkops.sandbox import KEY_NAME, Sandbox, SandboxError

# Links the demo leaves without a client ID file ("pending enrollment").
PENDING = ("vm-staging-01",)
DEMO_ADMIN = "admin"


def _git(cwd: Path, *args: str) -> None:
    env = {
        "GIT_AUTHOR_NAME": "LinkOps demo",
        "GIT_AUTHOR_EMAIL": "demo@linkops.invalid",
        "GIT_COMMITTER_NAME": "LinkOps demo",
        "GIT_COMMITTER_EMAIL": "demo@linkops.invalid",
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": str(cwd),
        "PATH": "/usr/bin:/bin",
    }
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def _rewrite_links(links_yaml: Path, fleet: Sandbox, names: dict[str, str]) -> None:
    """Point every link at its sandbox host, keeping ids, types, topology and comments."""
    yaml = YAML()
    data: Any = yaml.load(links_yaml.read_text(encoding="utf-8"))
    for link_id, entry in data["links"].items():
        host = fleet.host(names[link_id])
        entry["host"] = host.address
        entry["port"] = host.port
        entry["user"] = fleet.user
        entry["enrollment"]["clientId"] = host.client_id
        if host.client_id_path != "/etc/linkops/client_id":
            entry["enrollment"]["clientIdPath"] = host.client_id_path
        entry.setdefault("ssh", {})["keyRef"] = KEY_NAME
    out = io.StringIO()
    yaml.dump(data, out)
    links_yaml.write_text(out.getvalue(), encoding="utf-8")


def make_config_repo(workdir: Path, fleet: Sandbox, names: dict[str, str]) -> Path:
    """A bare repository holding the examples with the fleet's values; returns its path."""
    work = workdir / "config-repo"
    shutil.copytree(bundled_dir("examples") / "config-repo", work)
    _rewrite_links(work / "links.yaml", fleet, names)
    bare = workdir / "config-repo.git"
    _git(workdir, "init", "-q", "--bare", "-b", "main", str(bare))
    _git(work, "init", "-q", "-b", "main")
    _git(work, "add", "-A")
    _git(work, "commit", "-q", "-m", "LinkOps demo inventory")
    _git(work, "push", "-q", str(bare), "main")
    return bare


def write_demo_config(workdir: Path, fleet: Sandbox, repo: Path, port: int) -> Path:
    keys = workdir / "keys"
    keys.mkdir(mode=0o700)
    shutil.copy2(fleet.key_path, keys / KEY_NAME)
    (keys / KEY_NAME).chmod(0o600)
    ssh_dir = workdir / "ssh"
    ssh_dir.mkdir()
    # The fleet's host keys are known up front, as an operator would pin them at enrollment.
    (ssh_dir / "known_hosts").write_text(fleet.known_hosts_text(), encoding="utf-8")
    (workdir / "log").mkdir()
    path = workdir / "config.ini"
    path.write_text(
        "\n".join(
            [
                "[api]",
                "host = 127.0.0.1",
                f"port = {port}",
                f"jwt_secret = {secrets.token_urlsafe(48)}",
                "",
                "[database]",
                f"path = {workdir / 'linkops.db'}",
                "",
                "[git]",
                f"repository_url = file://{repo}",
                "branch = main",
                f"local_path = {workdir / 'git-repo'}",
                "sync_interval_minutes = 5",
                "",
                "[ssh]",
                f"keys_directory = {keys}",
                f"known_hosts_path = {ssh_dir / 'known_hosts'}",
                f"default_key = {KEY_NAME}",
                "connection_timeout = 10",
                "",
                "[health]",
                "check_interval_minutes = 1",
                "",
                "[logging]",
                f"path = {workdir / 'log' / 'linkops.log'}",
                "level = INFO",
                "",
            ]
        ),
        encoding="utf-8",
    )
    return path


async def _prepare_and_serve(settings: config.Settings, password: str) -> None:
    db = Database(settings.database.path)
    hashed = auth.NewPassword.of(password)
    try:
        db.write_sync(lambda c: auth.add_user(c, DEMO_ADMIN, hashed, role="admin"))
    finally:
        db.close()
    async with trio.open_nursery() as nursery:
        handle: server.Running = await nursery.start(server.run, settings)
        services = handle.services
        result = await services.inventory.sync(trigger="demo")
        if not result.success:
            print(f"linkops demo: initial sync failed: {result.error}", file=sys.stderr)
        verified = await services.enrollment.verify_many()
        await services.health.check_now()
        enrolled = sum(1 for r in verified if r.enrolled)
        url = f"http://{settings.api.host}:{settings.api.port}/"
        print(
            f"\n  LinkOps demo is running: {url}\n"
            f"  user: {DEMO_ADMIN}   password: {password}\n"
            f"  fleet: {len(verified)} links, {enrolled} enrolled "
            f"(not enrolled on purpose: {', '.join(PENDING)})\n"
            f"  files: {settings.source.parent if settings.source else '?'}\n"
            "  Ctrl-C stops everything.\n",
            flush=True,
        )


def main(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="linkops-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    yaml = YAML(typ="safe")
    example = yaml.load((bundled_dir("examples") / "config-repo" / "links.yaml").read_text())
    link_ids = list(example["links"])
    fleet = Sandbox(workdir / "fleet", hosts=len(link_ids), prefix="demo")
    try:
        fleet.start()
    except SandboxError as exc:
        print(f"linkops demo: {exc}", file=sys.stderr)
        return 1
    try:
        names = {link_id: f"demo-{i:02d}" for i, link_id in enumerate(link_ids, start=1)}
        for link_id in PENDING:
            if link_id in names:
                fleet.write_client_id(names[link_id], None)
        repo = make_config_repo(workdir, fleet, names)
        settings = config.load(write_demo_config(workdir, fleet, repo, args.port))
        setup_logging(settings.logging, stderr=False)
        password = secrets.token_urlsafe(12)
        trio.run(_prepare_and_serve, settings, password)
    finally:
        fleet.stop()
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    print("linkops demo: stopped")
    return 0
