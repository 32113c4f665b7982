"""``linkops doctor``: everything that would stop the service from working, checked for real.

Beyond ``check-config`` (offline: settings, paths, key files; what install.sh runs) it
contacts the Git remote with the deploy key (``git ls-remote`` through
:meth:`~linkops.inventory.git.GitCheckout.probe`, the sync's own code path), looks at the
known_hosts policy, the frontend's files, the database (``PRAGMA integrity_check``) and the
installed unit's hardening (``systemd-analyze security``). Prints one table row per finding —
``ok``, ``warn`` or ``fail`` — with the fix under every row that is not ok; exit status 1 when
anything failed.

Run it as the service user (``sudo -u linkops /opt/linkops/bin/linkops doctor``): the
ownership checks compare with the effective uid.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sqlite3
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import attrs
import trio

from linkops import checks
from linkops.config import Settings
from linkops.db import Database
from linkops.errors import ConfigError, LinkOpsError
from linkops.frontend_assets import missing_assets
from linkops.ssh.keys import check_key_file

Status = Literal["ok", "warn", "fail"]
DEFAULT_UNIT = Path("/etc/systemd/system/linkopsd.service")
GIT_FIXES = {
    "auth": "register the deploy key ({pub}) with read access to the repository, or point "
            "[git] ssh_key_path (or [git] token for HTTPS) at the right credential",
    "not_found": "check [git] repository_url: the repository does not exist at that address",
    "network": "the remote could not be reached: check the host and port in "
               "[git] repository_url, DNS and the firewall",
    "timeout": "the remote did not answer within [git] timeout_seconds: check the network, "
               "or raise the timeout",
    "host_key": "the server's host key changed or is unknown under a strict policy: verify it "
                "out of band, then ssh-keygen -R HOST -f {known_hosts} (or add the key)",
    "tls": "the server's TLS certificate was refused: set [git] ca_file to its CA",
    "branch_not_found": "check [git] branch: it does not exist on the remote",
}


@attrs.frozen
class Finding:
    check: str
    status: Status
    detail: str
    fix: str = ""


def _key_fix(path: Path, exc: LinkOpsError) -> str:
    quoted = shlex.quote(str(path))
    message = exc.message
    if "does not exist" in message:
        return f"ssh-keygen -t ed25519 -N '' -f {quoted} (or correct the setting)"
    if "symbolic link" in message:
        return (f"replace the link with the key itself: cp --remove-destination "
                f"\"$(readlink -f {quoted})\" {quoted}, then chmod 600 {quoted}")
    if "owner" in exc.details:
        return f"chown {os.geteuid()} {quoted} (the service's user)"
    if "mode" in exc.details:
        return f"chmod 600 {quoted}"
    return f"replace {quoted} with an unencrypted OpenSSH private key (mode 0600)"


def check_config(settings: Settings, problems: Sequence[str]) -> list[Finding]:
    """``check-config``'s findings about settings and paths (keys are checked below)."""
    others = [p for p in problems if not p.startswith(("[git] ssh_key_path", "[ssh] default_key"))
              and "repository_url" not in p]
    if not others:
        return [Finding("config", "ok", f"{settings.source}")]
    return [Finding("config", "fail", problem,
                    f"edit {settings.source} (or fix the path's owner and mode)")
            for problem in others]


def check_keys(settings: Settings) -> list[Finding]:
    """The deploy key, the default key and every private key in the keys directory."""
    keys: dict[Path, str] = {}
    if settings.git.ssh_key_path is not None:
        keys[settings.git.ssh_key_path] = "[git] ssh_key_path"
    keys_dir = settings.ssh.keys_directory
    default = keys_dir / settings.ssh.default_key
    keys.setdefault(default, "[ssh] default_key")
    try:
        for entry in sorted(keys_dir.iterdir()):
            if not entry.name.endswith(".pub") and not entry.name.startswith("."):
                keys.setdefault(entry, "keys directory")
    except OSError as exc:
        return [Finding("keys", "fail", f"[ssh] keys_directory {keys_dir}: {exc.strerror}",
                        f"mkdir -m 700 {shlex.quote(str(keys_dir))}")]
    findings: list[Finding] = []
    for path, where in keys.items():
        try:
            check_key_file(path)
        except LinkOpsError as exc:
            missing_default = where == "[ssh] default_key" and "does not exist" in exc.message
            findings.append(Finding("keys", "warn" if missing_default else "fail",
                                    f"{where}: {exc.message}", _key_fix(path, exc)))
        else:
            findings.append(Finding("keys", "ok", f"{where}: {path}"))
    return findings


async def check_git(settings: Settings, db: Database | None) -> Finding:
    """``git ls-remote`` of the configured branch, with the deploy key and known_hosts."""
    from linkops.inventory import InventoryService

    if not settings.git.repository_url:
        return Finding("git remote", "fail", "[git] repository_url is not set",
                       f"set [git] repository_url in {settings.source}")
    try:
        # The service object only assembles the checkout's settings; no database access.
        checkout = InventoryService(settings, db).configured_checkout()  # type: ignore[arg-type]
        with trio.fail_after(settings.git.timeout_seconds + 10):
            commit = await checkout.probe()
    except trio.TooSlowError:
        return Finding("git remote", "fail", "git ls-remote did not finish",
                       GIT_FIXES["timeout"])
    except LinkOpsError as exc:
        reason = str(exc.details.get("reason", ""))
        key = settings.git.ssh_key_path
        fix = GIT_FIXES.get(reason, "see the message; docs/deployment.md §4").format(
            pub=f"{key}.pub" if key else "the service's public key",
            known_hosts=settings.ssh.known_hosts_path)
        return Finding("git remote", "fail", exc.message, fix)
    return Finding("git remote", "ok",
                   f"{checkout.remote.display} branch {checkout.branch} at {commit[:12]}")


def check_known_hosts(settings: Settings) -> Finding:
    path = settings.ssh.known_hosts_path
    policy = settings.ssh.host_key_policy
    quoted = shlex.quote(str(path))
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if policy == "strict":
            return Finding("known_hosts", "fail",
                           f"host_key_policy = strict and {path} does not exist: every "
                           "connection will be refused",
                           f"ssh-keyscan -H TARGET >> {quoted} for every target (verify the "
                           "keys out of band)")
        return Finding("known_hosts", "warn",
                       f"host_key_policy = accept-new; {path} does not exist yet (first "
                       "contacts will be trusted)",
                       "after the first sync and verify, review the file and consider "
                       "[ssh] host_key_policy = strict")
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode):
        return Finding("known_hosts", "fail", f"{path} is not a regular file (a link?)",
                       f"replace {quoted} with a regular file owned by the service's user")
    if st.st_uid != os.geteuid():
        return Finding("known_hosts", "fail",
                       f"{path} is owned by uid {st.st_uid}, not the service's user",
                       f"chown {os.geteuid()} {quoted}")
    if st.st_mode & 0o022:
        return Finding("known_hosts", "fail",
                       f"{path} is writable by others (mode {stat.S_IMODE(st.st_mode):04o}): "
                       "anyone could add a host key", f"chmod 600 {quoted}")
    if policy == "strict":
        return Finding("known_hosts", "ok", f"host_key_policy = strict; {path}")
    return Finding("known_hosts", "warn",
                   f"host_key_policy = accept-new: hosts not yet in {path} are trusted on "
                   "first contact",
                   "once every target is recorded, set [ssh] host_key_policy = strict")


def check_frontend(frontend_dir: Path | None) -> Finding:
    missing = missing_assets(frontend_dir)
    if not missing:
        return Finding("frontend", "ok", "all files present")
    return Finding("frontend", "fail", f"missing: {', '.join(missing)}",
                   "reinstall from a wheel built by `pip wheel .` or `nox -s package` "
                   "(its build step vendors the frontend from the npm lock; needs npm)")


def check_database(path: Path) -> Finding:
    if not path.exists():
        return Finding("database", "warn", f"{path} does not exist yet",
                       "it is created on the first start (or by `linkops user add`)")
    fix = (f"stop the service, keep a copy of {path}, restore the last backup "
           "(docs/deployment.md §8); `sqlite3 DB .recover` may save what is readable")
    try:
        # Read-only: the doctor must not create, migrate or repair anything.
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
        try:
            rows = [str(r[0]) for r in conn.execute("PRAGMA integrity_check(20)").fetchall()]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return Finding("database", "fail", f"{path}: {exc}", fix)
    if rows == ["ok"]:
        return Finding("database", "ok", f"{path}: integrity_check ok")
    return Finding("database", "fail", f"{path}: {'; '.join(rows[:3])}", fix)


_EXPOSURE = re.compile(r"Overall exposure level for \S+: (\d+(?:\.\d+)?) (\w+)")


def check_unit(unit: Path) -> Finding:
    analyze = shutil.which("systemd-analyze")
    if not unit.is_file():
        return Finding("unit", "warn", f"{unit} is not installed",
                       "install with systemd/install.sh (or pass --unit PATH)")
    if analyze is None:
        return Finding("unit", "warn", "systemd-analyze is not available: hardening not checked",
                       "install systemd, or run `systemd-analyze security linkopsd` elsewhere")
    result = subprocess.run([analyze, "security", "--offline=yes", "--no-pager",
                             "--threshold=100", str(unit)],
                            capture_output=True, text=True, timeout=60, check=False)
    match = _EXPOSURE.search(result.stdout)
    if match is None:
        return Finding("unit", "warn", f"systemd-analyze security gave no score for {unit}",
                       f"run: systemd-analyze security --offline=yes {unit}")
    score, label = float(match.group(1)), match.group(2)
    detail = f"{unit}: exposure {score:g} {label}"
    fix = ("restore the shipped unit (systemd/install.sh) and review drop-ins in "
           f"{unit}.d/ (systemd-analyze security --offline=yes {unit} lists each setting)")
    if label in ("SAFE", "OK"):
        return Finding("unit", "ok", detail)
    return Finding("unit", "warn" if label == "MEDIUM" else "fail", detail, fix)


async def diagnose(settings: Settings, *, unit: Path = DEFAULT_UNIT,
                   frontend_dir: Path | None = None) -> list[Finding]:
    """Every finding, in table order."""
    problems = await checks.check_all(settings)
    findings = check_config(settings, problems)
    findings += await trio.to_thread.run_sync(check_keys, settings)
    findings.append(await check_git(settings, None))
    findings.append(await trio.to_thread.run_sync(check_known_hosts, settings))
    findings.append(await trio.to_thread.run_sync(check_frontend, frontend_dir))
    findings.append(await trio.to_thread.run_sync(check_database, settings.database.path))
    findings.append(await trio.to_thread.run_sync(check_unit, unit))
    return findings


def render(findings: Sequence[Finding]) -> str:
    """The table: ``STATUS  CHECK  DETAIL`` and, under a row that is not ok, ``fix: …``."""
    width = max([len("check"), *(len(f.check) for f in findings)])
    lines = [f"{'status':<6}  {'check':<{width}}  detail"]
    for f in findings:
        lines.append(f"{f.status:<6}  {f.check:<{width}}  {f.detail}")
        if f.status != "ok" and f.fix:
            lines.append(f"{'':<6}  {'':<{width}}  fix: {f.fix}")
    counts = {s: sum(1 for f in findings if f.status == s) for s in ("ok", "warn", "fail")}
    lines.append(f"{counts['ok']} ok, {counts['warn']} warn, {counts['fail']} fail")
    return "\n".join(lines)


def failed(findings: Sequence[Finding]) -> bool:
    return any(f.status == "fail" for f in findings)


def main(config_path: str | None, unit: str | None) -> int:
    """``linkops doctor``: the table on stdout; 0, or 1 when any check failed. A config that
    does not load is itself a failed row (nothing else can be checked then)."""
    from linkops import config

    try:
        settings = config.load(config_path)
    except ConfigError as exc:
        print(render([Finding("config", "fail", str(exc),
                              "edit the file; the message names the section and key")]))
        return 1
    findings = trio.run(lambda: diagnose(settings, unit=Path(unit) if unit else DEFAULT_UNIT))
    print(render(findings))
    return 1 if failed(findings) else 0
