"""linkops/templates/config.ini.template documents every setting with its real default.

The installer writes /etc/linkops/config.ini from it and ``linkops demo`` may reuse it, so
it must stay in step with linkops/config.py: every key of every section appears (SPEC §5
keys active, the others as ``# key = default``), and the values it shows are the defaults
the code uses.
"""

from __future__ import annotations

import configparser
import importlib.resources
import re
from pathlib import Path

import attrs
import pytest

from linkops import config
from linkops.errors import ConfigError

SPEC_KEYS = {
    "api": ["host", "port", "jwt_secret", "jwt_expiration_hours", "cors_origins"],
    "database": ["path"],
    "git": ["repository_url", "branch", "local_path", "sync_interval_minutes", "ssh_key_path"],
    "ssh": ["keys_directory", "known_hosts_path", "connection_timeout", "command_timeout",
            "max_retries"],
    "security": ["max_failed_attempts", "lockout_duration_minutes", "enrollment_required"],
    "operations": ["default_concurrency", "max_concurrency", "script_timeout",
                   "output_buffer_size"],
    "terminal": ["max_workspaces", "max_panes_per_workspace", "websocket_timeout",
                 "websocket_ping_interval"],
    "health": ["check_interval_minutes", "check_timeout"],
    "logging": ["level", "path", "max_size_mb", "backup_count"],
}
OPTIONAL = re.compile(r"^# ([a-z_]+ =( .*)?)$", re.MULTILINE)


def template() -> str:
    return (
        importlib.resources.files("linkops")
        .joinpath("templates/config.ini.template")
        .read_text(encoding="utf-8")
    )


def sections_of(text: str) -> dict[str, dict[str, str]]:
    cp = configparser.ConfigParser(interpolation=None)
    cp.read_string(text)
    return {name: dict(cp[name]) for name in cp.sections()}


def staged(text: str, tmp_path: Path) -> Path:
    """The template with a secret and its paths moved under tmp_path, ready to load."""
    (tmp_path / "lib/keys").mkdir(parents=True)
    text = text.replace("jwt_secret =\n", "jwt_secret = " + "k" * 48 + "\n")
    text = text.replace("/var/lib/linkops", str(tmp_path / "lib"))
    text = text.replace("/var/log/linkops", str(tmp_path / "log"))
    path = tmp_path / "config.ini"
    path.write_text(text)
    return path


def test_every_setting_is_in_the_template() -> None:
    active = sections_of(template())
    everything = sections_of(OPTIONAL.sub(r"\1", template()))
    for name, cls in config._SECTIONS.items():
        fields = {f.name for f in attrs.fields(cls)}
        assert set(everything.get(name, {})) == fields, f"[{name}]"
        for key in SPEC_KEYS[name]:
            assert key in active[name], f"[{name}] {key} must be active (SPEC §5)"


def test_every_key_has_a_comment() -> None:
    """Each key, or each group of related keys, sits right under a comment explaining it."""
    lines = template().splitlines()
    key = re.compile(r"^(# )?[a-z_]+ =( |$)")
    for i, line in enumerate(lines):
        if not key.match(line):
            continue
        j = i - 1
        # Active keys may share the comment above their group; an optional key has its own.
        while not line.startswith("#") and j >= 0 and key.match(lines[j]) \
                and not lines[j].startswith("#"):
            j -= 1
        above = lines[j]
        assert above.startswith("#") and not key.match(above), f"no comment for {line!r}"


def test_template_without_secret_refuses_to_start(tmp_path: Path) -> None:
    path = staged(template(), tmp_path)
    path.write_text(re.sub(r"^jwt_secret = .*$", "jwt_secret =", path.read_text(),
                           flags=re.MULTILINE))
    with pytest.raises(ConfigError, match=r"\[api\] jwt_secret"):
        config.load(path)


def test_values_shown_are_the_defaults(tmp_path: Path) -> None:
    """Loading the template with every optional line switched on changes nothing."""
    active = config.load(staged(template(), tmp_path / "a"))
    everything = config.load(staged(OPTIONAL.sub(r"\1", template()), tmp_path / "b"))
    for name in config._SECTIONS:
        a = attrs.asdict(getattr(active, name))
        b = attrs.asdict(getattr(everything, name))
        defaults = attrs.asdict(getattr(config.Settings(), name))
        for key, value in defaults.items():
            if isinstance(value, Path):
                continue  # the paths were moved under tmp_path
            if key == "jwt_secret":
                continue
            assert a[key] == value, f"[{name}] {key}: template {a[key]!r} != default {value!r}"
            assert b[key] == value, f"[{name}] {key}: optional line {b[key]!r} != {value!r}"
    # The paths in the template are the documented production ones.
    raw = sections_of(template())
    assert raw["database"]["path"] == str(config.DatabaseSettings().path)
    assert raw["ssh"]["keys_directory"] == str(config.SshSettings().keys_directory)
    assert raw["ssh"]["known_hosts_path"] == str(config.SshSettings().known_hosts_path)
    assert raw["git"]["local_path"] == str(config.GitSettings().local_path)
    assert raw["logging"]["path"] == str(config.LoggingSettings().path)


def test_configuration_reference_documents_every_key() -> None:
    """docs/configuration.md has a row ``| `key` | default | effect |`` for every setting,
    under its section's heading, showing the same default as the template."""
    doc = (Path(__file__).resolve().parents[1] / "docs/configuration.md").read_text()
    everything = sections_of(OPTIONAL.sub(r"\1", template()))
    parts = re.split(r"^## \[([a-z]+)\]$", doc, flags=re.MULTILINE)
    documented = {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}
    assert set(documented) == set(config._SECTIONS)
    for name, cls in config._SECTIONS.items():
        rows = dict(re.findall(r"^\| `([a-z_]+)` \| ([^|]*) \|", documented[name], re.MULTILINE))
        assert set(rows) == {f.name for f in attrs.fields(cls)}, f"[{name}]"
        for key, shown in rows.items():
            value = everything[name][key]
            if value == "":
                assert shown.strip().startswith("*("), f"[{name}] {key}: {shown!r}"
            else:
                assert shown.strip() == f"`{value}`", f"[{name}] {key}: {shown!r} vs {value!r}"
