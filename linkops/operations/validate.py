"""``POST /api/operations/run`` body → a :class:`Plan`, or an error before anything runs.

Checks, in this order (the first failing group is reported, with *every* offender in it):

1. shape (400 ``VALIDATION_ERROR``): the body structured as :class:`linkops.api_types.
   RunRequest` by the strict converter (types, unknown fields, 1–:data:`MAX_TARGETS` distinct
   targets, distinct scripts; ``details.errors`` lists every problem with its path), then what
   needs configuration: 1–``max_scripts`` scripts, ids of 1–:data:`ID_MAX` characters,
   ``flags`` only for listed scripts, ``concurrency`` in ``1..[operations] max_concurrency``
   (default ``default_concurrency``);
2. unknown scripts (404 ``SCRIPT_NOT_FOUND``) and unknown targets (404 ``LINK_NOT_FOUND``);
3. scripts whose text does not start with a bash shebang (400 ``NON_BASH_SCRIPT``; the
   inventory refuses them at sync already, this guards the run itself);
4. flags (400 ``INVALID_FLAG``): each must be declared by its script (:class:`FlagSpec`): a
   switch ``--dry-run`` takes no value, ``--x=default`` takes one (``--x`` alone means the
   default), ``--x=REQUIRED`` must be given with a non-empty value; no duplicates; values
   contain no NUL, CR or LF and are at most :data:`MAX_FLAG_VALUE` characters;
5. the stored text must hash to the recorded sha256 (409 ``SCRIPT_HASH_MISMATCH``): what runs
   is exactly what the inventory vetted at sync, and that hash is recorded with the operation;
6. enrollment (403 ``ENROLLMENT_REQUIRED``, ``details.targets`` lists every offender).

*Enrollment policy* (decision): the effective requirement is
``[security] enrollment_required OR request.require_enrollment`` — a request can make it
stricter, never looser. Independently, a link whose own ``enrollment.required`` is true can
never run unenrolled. The effective value is recorded with the operation and also makes each
host's client ID be re-checked over the operation's own SSH connection.

Flags reach the script as separate argv elements (``--x=value``), never through a shell.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from linkops.api_types import RunRequest
from linkops.config import Settings
from linkops.converters import structure_request
from linkops.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from linkops.models import FlagSpec, Link
from linkops.ssh.enrollment import blocked_by_enrollment
from linkops.ssh.machines import link_from_row, machine_rows

MAX_TARGETS = 500
MAX_FLAG_VALUE = 4096
ID_MAX = 128
# Same rule as the inventory's (SPEC §2): #!/bin/bash, #!/usr/bin/env bash, optional flags.
SHEBANG_RE = re.compile(
    r"^#!\s*(/bin/bash|/usr/bin/bash|/usr/bin/env\s+bash)(\s+-{1,2}[A-Za-z0-9-]+)*\s*$"
)
FORBIDDEN_CHARS = ("\x00", "\r", "\n")


@attrs.frozen
class PlannedScript:
    id: str
    name: str
    content: str
    sha256: str
    args: tuple[str, ...]


@attrs.frozen
class Plan:
    scripts: tuple[PlannedScript, ...]
    targets: tuple[Link, ...]
    flags: dict[str, list[str]]
    concurrency: int
    require_enrollment: bool

    @property
    def script_hashes(self) -> dict[str, str]:
        return {s.id: s.sha256 for s in self.scripts}


@attrs.frozen
class Request:
    """The body after the shape checks (step 1)."""

    scripts: tuple[str, ...]
    targets: tuple[str, ...]
    flags: dict[str, list[str]]
    concurrency: int
    require_enrollment: bool | None


def is_bash(content: str) -> bool:
    first = content.split("\n", 1)[0].rstrip("\r")
    return SHEBANG_RE.match(first) is not None


def _bad(message: str, **details: Any) -> ValidationError:
    return ValidationError(message, code="VALIDATION_ERROR", details=details)


def _ids(key: str, values: Sequence[str], limit: int) -> tuple[str, ...]:
    if len(values) > limit:
        raise _bad(f"{key}: at most {limit} allowed, got {len(values)}", field=key)
    if not all(0 < len(v) <= ID_MAX for v in values):
        raise _bad(f"{key} must contain only ids of 1-{ID_MAX} characters", field=key)
    return tuple(values)


def parse_request(body: Any, settings: Settings) -> Request:
    """Step 1 (shape). *Errors*: :class:`ValidationError` naming the field(s)."""
    ops = settings.operations
    typed = body if isinstance(body, RunRequest) else structure_request(body, RunRequest)
    scripts = _ids("scripts", typed.scripts, ops.max_scripts)
    targets = _ids("targets", typed.targets, MAX_TARGETS)
    flags = dict(typed.flags or {})
    for script in flags:
        if script not in scripts:
            raise _bad(f"flags given for {script!r}, which is not among the scripts",
                       field="flags", script=script)
    concurrency = ops.default_concurrency if typed.concurrency is None else typed.concurrency
    if not 1 <= concurrency <= ops.max_concurrency:
        raise _bad(f"concurrency must be between 1 and {ops.max_concurrency}",
                   field="concurrency", max=ops.max_concurrency)
    return Request(scripts, targets, flags, concurrency, typed.require_enrollment)


def check_flags(script_id: str, declared: Sequence[str], given: Sequence[str]) -> tuple[
        tuple[str, ...], list[str]]:
    """The argv for one script and the problems found (empty when valid)."""
    specs = {spec.name: spec for spec in map(FlagSpec.parse, declared)}
    problems: list[str] = []
    args: list[str] = []
    seen: set[str] = set()
    for item in given:
        name, sep, value = item.partition("=")
        spec = specs.get(name)
        if any(ch in item for ch in FORBIDDEN_CHARS):
            problems.append(f"{script_id}: {name!r} contains NUL, CR or LF")
            continue
        if spec is None or not name.startswith("--"):
            problems.append(f"{script_id}: flag {name!r} is not declared by the script")
            continue
        if name in seen:
            problems.append(f"{script_id}: flag {name} given twice")
            continue
        seen.add(name)
        if len(value) > MAX_FLAG_VALUE:
            problems.append(f"{script_id}: value of {name} is longer than {MAX_FLAG_VALUE}")
        elif not spec.takes_value:
            if sep:
                problems.append(f"{script_id}: {name} is a switch and takes no value")
            else:
                args.append(name)
        elif spec.required and (not sep or value == ""):
            problems.append(f"{script_id}: {name} requires a value")
        elif sep:
            args.append(f"{name}={value}")
        else:
            args.append(f"{name}={spec.default}")
    for spec in specs.values():
        if spec.required and spec.name not in seen:
            problems.append(f"{script_id}: required flag {spec.name} is missing")
    return tuple(args), problems


def build_plan(request: Request, script_rows: Mapping[str, Any],
               machine_rows: Mapping[str, Any], settings: Settings) -> Plan:
    """Steps 2–5 on rows already read. *Errors*: see the module docstring."""
    missing_scripts = [s for s in request.scripts if s not in script_rows]
    if missing_scripts:
        raise NotFoundError(f"unknown scripts: {', '.join(missing_scripts)}",
                            code="SCRIPT_NOT_FOUND", details={"scripts": missing_scripts})
    missing_targets = [t for t in request.targets if t not in machine_rows]
    if missing_targets:
        raise NotFoundError(f"unknown targets: {', '.join(missing_targets)}",
                            code="LINK_NOT_FOUND", details={"targets": missing_targets})
    non_bash = [s for s in request.scripts if not is_bash(str(script_rows[s]["content"]))]
    if non_bash:
        raise ValidationError(
            f"only bash scripts run; not bash: {', '.join(non_bash)}",
            code="NON_BASH_SCRIPT", details={"scripts": non_bash})
    planned: list[PlannedScript] = []
    problems: list[str] = []
    for script_id in request.scripts:
        row = script_rows[script_id]
        declared = json.loads(row["flags"] or "[]")
        args, found = check_flags(script_id, declared, request.flags.get(script_id, []))
        problems.extend(found)
        content = str(row["content"])
        digest = hashlib.sha256(content.encode("utf-8")).hexdigest()
        if row["sha256"] and row["sha256"] != digest:
            # The text must be exactly what was vetted at sync (sha256 of the file's bytes).
            raise ConflictError(
                f"script {script_id}: stored content does not match its sha256; sync again",
                code="SCRIPT_HASH_MISMATCH",
                details={"script": script_id, "recorded": row["sha256"], "actual": digest})
        planned.append(PlannedScript(script_id, str(row["name"]), content, digest, args))
    if problems:
        raise ValidationError("; ".join(problems), code="INVALID_FLAG",
                              details={"problems": problems})
    required = settings.security.enrollment_required or bool(request.require_enrollment)
    offenders = []
    for target in request.targets:
        row = machine_rows[target]
        if blocked_by_enrollment(global_required=required,
                                 link_required=bool(row["enrollment_required"]),
                                 enrolled=bool(row["enrolled"])):
            offenders.append({
                "target": target,
                "reason": row["enrollment_error"] or "not enrolled (client ID not verified)",
            })
    if offenders:
        names = ", ".join(o["target"] for o in offenders)
        raise ForbiddenError(f"targets not enrolled: {names}", code="ENROLLMENT_REQUIRED",
                             details={"targets": [o["target"] for o in offenders],
                                      "offenders": offenders})
    return Plan(
        scripts=tuple(planned),
        targets=tuple(link_from_row(machine_rows[t]) for t in request.targets),
        flags={s.id: list(s.args) for s in planned if s.args},
        concurrency=request.concurrency,
        require_enrollment=required,
    )


def read_rows(conn: sqlite3.Connection, request: Request) -> tuple[
        dict[str, sqlite3.Row], dict[str, sqlite3.Row]]:
    """The ``scripts`` and ``machines`` rows a request names (runs in a DB thread)."""
    def by_id(table: str, ids: Sequence[str]) -> dict[str, sqlite3.Row]:
        marks = ",".join("?" * len(ids))
        rows = conn.execute(f"SELECT * FROM {table} WHERE id IN ({marks})", list(ids))
        return {row["id"]: row for row in rows}
    return by_id("scripts", request.scripts), machine_rows(conn, request.targets)
