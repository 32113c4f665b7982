"""Turn a checked-out configuration repository into a validated :class:`Inventory`.

Everything here is blocking file I/O and CPU (run it with ``trio.to_thread``). It reads only
regular files that really live inside the checkout: every path (``links.yaml``,
``scripts.yaml`` and each script) is resolved through symlinks and must stay inside the
repository and outside ``.git``. Nothing in the repository is ever executed.

Rules (SPEC §2, plus the hardening in docs/decisions/inventory-sync.md): ids use
``[A-Za-z0-9._-]`` (max 64, starting with a letter or digit); hosts and users cannot smuggle
ssh options (no leading ``-``, whitespace or control characters); ports are 1-65535;
``proxyJump`` names another link and forms no cycle; flags look like ``--name`` or
``--name=value``; a script is a UTF-8 regular file of at most 1 MiB whose first line is a
bash shebang.

*Errors*: :class:`~linkops.errors.ValidationError` listing every problem found in both files
(see :mod:`linkops.inventory.problems`).
"""

from __future__ import annotations

import hashlib
import re
import stat
from pathlib import Path
from typing import Any

import attrs
from cattrs.errors import BaseValidationError

from linkops.converters import error_paths, structure
from linkops.inventory.problems import Problem, raise_problems
from linkops.inventory.yaml_loader import MAX_YAML_BYTES, LoadedYaml, YamlProblem, load_yaml
from linkops.models import Link, Script

LINKS_FILE = "links.yaml"
SCRIPTS_FILE = "scripts.yaml"
MAX_SCRIPT_BYTES = 1024 * 1024

# A leading letter or digit: no "-rf" (an option wherever an id meets a command line) and no
# "." / ".." (a path segment in a URL).
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# Hostnames, IPv4 and IPv6 literals; never a leading "-" (ssh would read an option).
HOST_RE = re.compile(r"^[A-Za-z0-9_.:%\[\]][A-Za-z0-9_.:%\[\]-]{0,252}$")
USER_RE = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,63}$")
CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
CLIENT_ID_PATH_RE = re.compile(r"^/[A-Za-z0-9._/-]{1,255}$")
KEY_REF_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
FLAG_RE = re.compile(r"^--[A-Za-z0-9][A-Za-z0-9_-]{0,63}(=[^\x00-\x1f\x7f]{0,256})?$")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
SHEBANG_RE = re.compile(
    r"^#!\s*(/bin/bash|/usr/bin/bash|/usr/bin/env\s+bash)(\s+-{1,2}[A-Za-z0-9-]+)*\s*$"
)


@attrs.frozen
class Inventory:
    links: dict[str, Link]
    scripts: dict[str, Script]


class _Collector:
    """Problems of one file, with the line numbers of its YAML tree."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.loaded: LoadedYaml | None = None
        self.problems: list[Problem] = []

    def add(self, path: tuple[str | int, ...], message: str, code: str = "VALIDATION_ERROR",
            *, line_path: tuple[str | int, ...] | None = None) -> None:
        line = self.loaded.line_of(line_path or path) if self.loaded else None
        self.problems.append(Problem(self.file, line, path, message, code))


def read_repo_file(root: Path, relative: str, limit: int) -> tuple[Path, bytes]:
    """Read ``relative`` from the checkout at ``root``, refusing anything outside it.

    *Errors*: ``ValueError`` with a message fit for a :class:`Problem`;
    ``FileNotFoundError`` when it does not exist.
    """
    if not relative or "\x00" in relative or relative.startswith("/") or "\\" in relative:
        raise ValueError("must be a relative path inside the repository")
    root_real = root.resolve(strict=True)
    real = (root_real / relative).resolve(strict=True)
    if not real.is_relative_to(root_real):
        raise ValueError("resolves outside the repository (through '..' or a symlink)")
    if ".git" in real.relative_to(root_real).parts:
        raise ValueError("points into the .git directory")
    info = real.stat()
    if not stat.S_ISREG(info.st_mode):
        raise ValueError("is not a regular file")
    if info.st_size > limit:
        raise ValueError(f"is larger than {limit} bytes")
    with real.open("rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"is larger than {limit} bytes")
    return real, data


def _load_file(root: Path, collector: _Collector, top_key: str) -> dict[str, Any] | None:
    """The mapping under ``top_key`` of one YAML file, or None after recording problems."""
    try:
        _, raw = read_repo_file(root, collector.file, MAX_YAML_BYTES)
    except FileNotFoundError:
        collector.add((), "file not found at the repository root")
        return None
    except ValueError as exc:
        collector.add((), str(exc))
        return None
    try:
        collector.loaded = load_yaml(raw)
    except YamlProblem as exc:
        collector.problems.append(
            Problem(collector.file, exc.line, (), exc.message, "YAML_PARSE_ERROR")
        )
        return None
    data = collector.loaded.data
    if not isinstance(data, dict) or top_key not in data:
        collector.add((), f"must be a mapping with a top-level '{top_key}:' key")
        return None
    for key in data:
        if key != top_key:
            collector.add((key,), "unknown top-level key")
    entries = data[top_key]
    if entries is None:
        return {}
    if not isinstance(entries, dict):
        collector.add((top_key,), f"'{top_key}' must be a mapping of id to entry")
        return None
    return entries


def _structure_entries(
    entries: dict[Any, Any], collector: _Collector, top_key: str, cls: type[Any],
    forbidden: tuple[str, ...] = (),
) -> dict[str, Any]:
    built: dict[str, Any] = {}
    for raw_id, entry in entries.items():
        base: tuple[str | int, ...] = (top_key, str(raw_id))
        if not isinstance(raw_id, str) or not ID_RE.match(raw_id):
            collector.add(base, "id must be 1-64 characters of A-Z a-z 0-9 . _ - starting "
                                "with a letter or digit")
            continue
        if not isinstance(entry, dict):
            collector.add(base, "must be a mapping")
            continue
        bad_keys = [key for key in ("id", *forbidden) if key in entry]
        for key in bad_keys:
            collector.add((*base, key), "unknown field")
        if bad_keys:
            continue
        try:
            built[raw_id] = structure({**entry, "id": raw_id}, cls)
        except BaseValidationError as exc:
            for path, message in error_paths(exc):
                collector.add((*base, *path), message)
    return built


def _check_text(collector: _Collector, path: tuple[str | int, ...], value: str | None,
                max_len: int = 128) -> None:
    if value is None:
        return
    if not value.strip() or len(value) > max_len or CONTROL_RE.search(value):
        collector.add(path, f"must be non-empty text of at most {max_len} characters "
                            "without control characters")


def _check_link(link: Link, collector: _Collector) -> None:
    base: tuple[str | int, ...] = ("links", link.id)
    _check_text(collector, (*base, "type"), link.type, 64)
    _check_text(collector, (*base, "name"), link.name)
    _check_text(collector, (*base, "provider"), link.provider)
    if not HOST_RE.match(link.host):
        collector.add((*base, "host"), "must be a hostname or IP address (no leading '-', "
                                       "whitespace or control characters)")
    if not 1 <= link.port <= 65535:
        collector.add((*base, "port"), "must be an integer 1-65535")
    if not USER_RE.match(link.user):
        collector.add((*base, "user"), "must be a user name (letters, digits, . _ -; no "
                                       "leading '-')")
    enrollment = (*base, "enrollment")
    if not CLIENT_ID_RE.match(link.enrollment.clientId):
        collector.add((*enrollment, "clientId"), "must look like LINKOPS-<uuid> "
                                                 "(letters, digits, . _ : -)")
    path = link.enrollment.clientIdPath
    if not CLIENT_ID_PATH_RE.match(path) or ".." in path.split("/"):
        collector.add((*enrollment, "clientIdPath"), "must be an absolute path of "
                                                     "letters, digits, . _ - /")
    if link.ssh.keyRef is not None and not KEY_REF_RE.match(link.ssh.keyRef):
        collector.add((*base, "ssh", "keyRef"), "must be a file name in the keys directory")
    if link.ssh.hostKey is not None:
        _check_text(collector, (*base, "ssh", "hostKey"), link.ssh.hostKey, 16384)
    for index, tag in enumerate(link.tags):
        _check_text(collector, (*base, "tags", index), tag, 64)
    icon = link.metadata.get("icon")
    if icon is not None and not isinstance(icon, str):
        collector.add((*base, "metadata", "icon"), "must be a string")


def _check_jumps(links: dict[str, Link], declared: set[str], collector: _Collector) -> None:
    """Unknown targets and cycles; entries that failed to parse still count as declared."""
    for link in links.values():
        target = link.ssh.proxyJump
        path: tuple[str | int, ...] = ("links", link.id, "ssh", "proxyJump")
        if target is None or (target in declared and target not in links):
            continue
        if target not in declared:
            collector.add(path, f"unknown link '{target}'")
            continue
        seen = [link.id]
        while target is not None and target in links:
            if target in seen:
                chain = " -> ".join([*seen, target])
                collector.add(path, f"proxyJump cycle: {chain}")
                break
            seen.append(target)
            target = links[target].ssh.proxyJump


def _check_script(script: Script, root: Path, collector: _Collector) -> Script:
    base: tuple[str | int, ...] = ("scripts", script.id)
    _check_text(collector, (*base, "name"), script.name)
    _check_text(collector, (*base, "description"), script.description, 1024)
    _check_text(collector, (*base, "emoji"), script.emoji, 16)
    if script.estimatedDuration is not None and script.estimatedDuration < 0:
        collector.add((*base, "estimatedDuration"), "must be 0 or more seconds")
    names: set[str] = set()
    for index, flag in enumerate(script.flags):
        if not FLAG_RE.match(flag):
            collector.add((*base, "flags", index), "must look like --name or --name=value")
            continue
        name = flag.partition("=")[0]
        if name in names:
            collector.add((*base, "flags", index), f"{name} is declared twice")
        names.add(name)
    where = (*base, "path")
    try:
        _, raw = read_repo_file(root, script.path, MAX_SCRIPT_BYTES)
    except FileNotFoundError:
        collector.add(where, f"{script.path}: file not found in the repository")
        return script
    except ValueError as exc:
        collector.add(where, f"{script.path}: {exc}")
        return script
    try:
        content = raw.decode("utf-8")
    except UnicodeDecodeError:
        collector.add(where, f"{script.path}: is not UTF-8 text")
        return script
    first_line = content.split("\n", 1)[0].rstrip("\r")
    if not SHEBANG_RE.match(first_line):
        collector.add(where, f"{script.path}: first line must be a bash shebang "
                             "(#!/bin/bash or #!/usr/bin/env bash)", "NON_BASH_SCRIPT")
        return script
    return attrs.evolve(script, content=content, sha256=hashlib.sha256(raw).hexdigest())


def load_inventory(root: Path) -> Inventory:
    """Read, parse and validate both files of the checkout at ``root`` (see module doc)."""
    links_c = _Collector(LINKS_FILE)
    scripts_c = _Collector(SCRIPTS_FILE)
    links: dict[str, Link] = {}
    scripts: dict[str, Script] = {}
    link_entries = _load_file(root, links_c, "links")
    if link_entries is not None:
        links = _structure_entries(link_entries, links_c, "links", Link)
        for link in links.values():
            _check_link(link, links_c)
        _check_jumps(links, {str(key) for key in link_entries}, links_c)
    script_entries = _load_file(root, scripts_c, "scripts")
    if script_entries is not None:
        built = _structure_entries(script_entries, scripts_c, "scripts", Script,
                                   forbidden=("sha256", "content"))
        scripts = {sid: _check_script(s, root, scripts_c) for sid, s in built.items()}
    problems = sorted(links_c.problems, key=lambda p: p.line or 0)
    problems += sorted(scripts_c.problems, key=lambda p: p.line or 0)
    raise_problems(problems)
    return Inventory(links=links, scripts=scripts)
