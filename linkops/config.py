"""Settings from ``config.ini`` (SPEC §5), loaded once into frozen attrs classes,
structured by the one converter of :mod:`linkops.converters` with a hook per setting type
that reads INI text (:data:`config_converter`).

The file comes from ``--config FILE``, else ``$LINKOPS_CONFIG``, else
``/etc/linkops/config.ini``. Every path is configurable so a non-root instance can live in a
temporary directory. A missing or invalid required value raises :class:`ConfigError` whose
message names the section and key; the service never half-starts.
"""

from __future__ import annotations

import configparser
import ipaddress
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import attrs
import cattrs

from linkops.converters import FieldError, error_paths, make_converter
from linkops.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/linkops/config.ini")
HOST_KEY_POLICIES = ("accept-new", "strict")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@attrs.frozen
class ApiSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    jwt_secret: str = attrs.field(default="", repr=False)
    jwt_expiration_hours: float = 24.0
    cors_origins: tuple[str, ...] = ()
    # Requests larger than this are refused with 413 before they are read whole.
    max_body_bytes: int = 1_048_576
    # The session cookie is Secure (and named __Host-linkops_session) whenever the request came
    # over TLS or from a trusted proxy saying X-Forwarded-Proto: https; true forces it always.
    cookie_secure: bool = False
    # Proxies (CIDRs) whose X-Forwarded-For / X-Forwarded-Proto are believed; default: none.
    trusted_proxies: tuple[str, ...] = ()
    # How often live WebSockets and SSE streams re-validate their session (SPEC §10.2).
    session_recheck_seconds: float = 30.0
    # Host header values served (DNS rebinding defence); empty: the bind host, localhost,
    # 127.0.0.1 and ::1. Entries are host names or host:port.
    allowed_hosts: tuple[str, ...] = ()
    # On shutdown, how long idle keep-alive connections and unfinished requests get before
    # they are cut (streams and terminals are ended by the service before this starts).
    graceful_timeout: float = 3.0


@attrs.frozen
class DatabaseSettings:
    path: Path = Path("/var/lib/linkops/linkops.db")


@attrs.frozen
class GitSettings:
    repository_url: str = ""
    branch: str = "main"
    local_path: Path = Path("/var/lib/linkops/git-repo")
    sync_interval_minutes: float = 5.0
    ssh_key_path: Path | None = None
    # Token for HTTPS remotes; secrets.ini [git] token wins when both are set.
    token: str = attrs.field(default="", repr=False)
    secrets_file: str = "secrets.ini"
    timeout_seconds: float = 120.0
    max_repo_mb: int = 200
    # CA bundle for an HTTPS remote with a private CA (e.g. an internal Gitea).
    ca_file: Path | None = None


@attrs.frozen
class SshSettings:
    keys_directory: Path = Path("/var/lib/linkops/keys")
    known_hosts_path: Path = Path("/var/lib/linkops/ssh/known_hosts")
    host_key_policy: str = "accept-new"
    default_key: str = "id_ed25519"
    connection_timeout: float = 30.0
    command_timeout: float = 60.0
    max_retries: int = 3
    max_threads: int = 64
    keepalive_interval: int = 15
    # One link's share of max_threads (see linkops/ssh/boundary.py).
    max_per_link: int = 4


@attrs.frozen
class SecuritySettings:
    max_failed_attempts: int = 5
    lockout_duration_minutes: float = 5.0
    # The window in which failures are counted; SPEC: 5 failures within 5 minutes.
    failure_window_minutes: float = 5.0
    enrollment_required: bool = True
    # Login rate limits (token buckets, SPEC §10.2): per client IP and for everybody together.
    login_rate_per_minute: int = 20
    login_rate_global_per_minute: int = 120
    # Failed attempts older than this are deleted.
    attempts_retention_hours: float = 24.0
    # Failures for one name from all clients together within the window that lock it for all.
    lockout_ceiling: int = 50


@attrs.frozen
class OperationsSettings:
    default_concurrency: int = 5
    max_concurrency: int = 50
    script_timeout: float = 300.0
    output_buffer_size: int = 1_048_576
    max_scripts: int = 10
    # SPEC §10.3: a run needs a plan and its typed phrase when a target carries one of these
    # tags or there are more than confirm_over targets.
    confirm_tags: tuple[str, ...] = ("prod",)
    confirm_over: int = 50


@attrs.frozen
class TerminalSettings:
    max_workspaces: int = 10
    max_panes_per_workspace: int = 4
    websocket_timeout: float = 3600.0
    websocket_ping_interval: float = 30.0
    reattach_grace_seconds: float = 60.0
    scrollback_bytes: int = 65_536
    # Session recordings (SPEC §10.4, docs/configuration.md): asciicast v2 files, output and
    # resizes only unless record_input (typed secrets are not kept by default).
    recording: bool = True
    record_input: bool = False
    # Empty: a "recordings" directory beside the database.
    recordings_path: Path | None = None
    recording_retention_days: float = 30.0
    # One recording is cut (with a marker event) when it reaches this size.
    recording_max_mb: float = 100.0
    # All recordings together: beyond this the oldest are deleted first.
    recordings_total_max_mb: float = 10_240.0


@attrs.frozen
class HealthSettings:
    check_interval_minutes: float = 5.0
    check_timeout: float = 10.0
    concurrency: int = 20


@attrs.frozen
class LoggingSettings:
    level: str = "INFO"
    path: Path | None = Path("/var/log/linkops/linkops.log")
    max_size_mb: float = 10.0
    backup_count: int = 5


@attrs.frozen
class Settings:
    api: ApiSettings = ApiSettings()
    database: DatabaseSettings = DatabaseSettings()
    git: GitSettings = GitSettings()
    ssh: SshSettings = SshSettings()
    security: SecuritySettings = SecuritySettings()
    operations: OperationsSettings = OperationsSettings()
    terminal: TerminalSettings = TerminalSettings()
    health: HealthSettings = HealthSettings()
    logging: LoggingSettings = LoggingSettings()
    source: Path | None = None


T = TypeVar("T")

_SECTIONS: dict[str, type[Any]] = {
    "api": ApiSettings,
    "database": DatabaseSettings,
    "git": GitSettings,
    "ssh": SshSettings,
    "security": SecuritySettings,
    "operations": OperationsSettings,
    "terminal": TerminalSettings,
    "health": HealthSettings,
    "logging": LoggingSettings,
}


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {raw!r}")


def _parse_path(raw: str) -> Path | None:
    raw = raw.strip()
    return Path(raw).expanduser() if raw else None


def _parse_list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.replace("\n", ",").split(",") if item.strip())


# One structure hook per setting type: INI values are text, read as the field's type (the
# accepted syntax is docs/configuration.md's). Everything else — unknown keys refused, every
# problem collected with its field — is the one converter's (linkops.converters).
_TEXT_PARSERS: dict[Any, Callable[[str], Any]] = {
    str: str.strip,
    int: int,
    float: float,
    bool: _parse_bool,
    Path: _parse_path,
    Path | None: _parse_path,
    tuple[str, ...]: _parse_list,
}


def _text_hook(parse: Callable[[str], Any]) -> Callable[[Any, Any], Any]:
    def hook(raw: Any, _: Any) -> Any:
        try:
            return parse(raw)
        except ValueError as exc:
            raise FieldError(f"invalid value {raw!r} ({exc})") from None
    return hook


def _is(annotation: Any) -> Callable[[Any], bool]:
    def matches(tp: Any) -> bool:
        return bool(tp == annotation)
    return matches


def _make_config_converter() -> cattrs.Converter:
    converter = make_converter()
    for annotation, parse in _TEXT_PARSERS.items():
        if isinstance(annotation, type):  # replaces the JSON hook of that class
            converter.register_structure_hook(annotation, _text_hook(parse))
        else:  # generic aliases are not classes: match them with a predicate
            converter.register_structure_hook_func(_is(annotation), _text_hook(parse))
    return converter


config_converter = _make_config_converter()


def _load_section(cp: configparser.ConfigParser, name: str, cls: type[T]) -> T:
    values = dict(cp.items(name)) if cp.has_section(name) else {}
    try:
        return config_converter.structure(values, cls)
    except Exception as exc:  # cattrs raises groups of anything its hooks raise
        problems = [(path, "unknown setting" if message == "unknown field" else message)
                    for path, message in error_paths(exc)]
        if not problems:
            raise ConfigError(f"[{name}] invalid section ({exc})") from None
        raise ConfigError("; ".join(f"[{name}] {'.'.join(map(str, path))}: {message}"
                                    for path, message in problems)) from None


def _require(condition: bool, where: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{where}: {message}")


def validate(s: Settings) -> None:
    """Check values that parse but make no sense; raise ConfigError naming the key."""
    _require(
        bool(s.api.jwt_secret),
        "[api] jwt_secret",
        "is required (generate one with "
        "`python3 -c 'import secrets; print(secrets.token_urlsafe(48))'`)",
    )
    _require(len(s.api.jwt_secret) >= 32, "[api] jwt_secret", "must be at least 32 characters")
    _require(0 < s.api.port < 65536, "[api] port", f"must be 1-65535, got {s.api.port}")
    _require(s.api.jwt_expiration_hours > 0, "[api] jwt_expiration_hours", "must be positive")
    _require(0 <= s.api.graceful_timeout <= 60, "[api] graceful_timeout", "must be 0-60 seconds")
    _require(s.api.max_body_bytes >= 1024, "[api] max_body_bytes", "must be at least 1024")
    _require(
        s.api.session_recheck_seconds > 0, "[api] session_recheck_seconds", "must be positive"
    )
    for cidr in s.api.trusted_proxies:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ConfigError(f"[api] trusted_proxies: {cidr!r} is not an IP network") from None
    sec = s.security
    _require(sec.login_rate_per_minute >= 1, "[security] login_rate_per_minute",
             "must be at least 1")
    _require(sec.login_rate_global_per_minute >= 1, "[security] login_rate_global_per_minute",
             "must be at least 1")
    _require(sec.attempts_retention_hours > 0, "[security] attempts_retention_hours",
             "must be positive")
    _require(sec.lockout_ceiling >= sec.max_failed_attempts, "[security] lockout_ceiling",
             "must be at least max_failed_attempts")
    _require(
        s.ssh.host_key_policy in HOST_KEY_POLICIES,
        "[ssh] host_key_policy",
        f"must be one of {', '.join(HOST_KEY_POLICIES)}, got {s.ssh.host_key_policy!r}",
    )
    _require(s.ssh.connection_timeout > 0, "[ssh] connection_timeout", "must be positive")
    _require(s.ssh.command_timeout > 0, "[ssh] command_timeout", "must be positive")
    _require(0 <= s.ssh.max_retries <= 10, "[ssh] max_retries", "must be 0-10")
    _require(s.ssh.max_threads >= 1, "[ssh] max_threads", "must be at least 1")
    _require(1 <= s.ssh.max_per_link <= s.ssh.max_threads, "[ssh] max_per_link",
             "must be between 1 and max_threads")
    _require(
        s.security.max_failed_attempts >= 1, "[security] max_failed_attempts", "must be at least 1"
    )
    _require(
        s.security.lockout_duration_minutes > 0,
        "[security] lockout_duration_minutes",
        "must be positive",
    )
    o = s.operations
    _require(o.max_concurrency >= 1, "[operations] max_concurrency", "must be at least 1")
    _require(o.confirm_over >= 0, "[operations] confirm_over", "must be 0 or more")
    _require(
        1 <= o.default_concurrency <= o.max_concurrency,
        "[operations] default_concurrency",
        "must be between 1 and max_concurrency",
    )
    _require(o.script_timeout > 0, "[operations] script_timeout", "must be positive")
    _require(
        o.output_buffer_size >= 1024, "[operations] output_buffer_size", "must be at least 1024"
    )
    t = s.terminal
    _require(t.max_workspaces >= 1, "[terminal] max_workspaces", "must be at least 1")
    _require(
        1 <= t.max_panes_per_workspace <= 4, "[terminal] max_panes_per_workspace", "must be 1-4"
    )
    _require(t.websocket_timeout > 0, "[terminal] websocket_timeout", "must be positive")
    _require(
        t.websocket_ping_interval > 0, "[terminal] websocket_ping_interval", "must be positive"
    )
    _require(t.recording_retention_days > 0, "[terminal] recording_retention_days",
             "must be positive")
    _require(t.recording_max_mb > 0, "[terminal] recording_max_mb", "must be positive")
    _require(t.recordings_total_max_mb >= t.recording_max_mb,
             "[terminal] recordings_total_max_mb", "must be at least recording_max_mb")
    _require(
        s.health.check_interval_minutes > 0, "[health] check_interval_minutes", "must be positive"
    )
    _require(s.health.check_timeout > 0, "[health] check_timeout", "must be positive")
    _require(
        s.git.sync_interval_minutes >= 0,
        "[git] sync_interval_minutes",
        "must be 0 (off) or positive",
    )
    _require(s.git.timeout_seconds > 0, "[git] timeout_seconds", "must be positive")
    _require(s.git.max_repo_mb >= 1, "[git] max_repo_mb", "must be at least 1")
    _require(
        s.logging.level.upper() in LOG_LEVELS,
        "[logging] level",
        f"must be one of {', '.join(LOG_LEVELS)}",
    )
    _require(s.logging.max_size_mb > 0, "[logging] max_size_mb", "must be positive")
    _require(s.logging.backup_count >= 0, "[logging] backup_count", "must be 0 or more")
    db_dir = s.database.path.parent
    _require(db_dir.is_dir(), "[database] path", f"directory {db_dir} does not exist")
    keys = s.ssh.keys_directory
    _require(
        keys.is_dir() and os.access(keys, os.R_OK | os.X_OK),
        "[ssh] keys_directory",
        f"{keys} is not a readable directory",
    )


def recordings_dir(s: Settings) -> Path:
    """Where session recordings live (``[terminal] recordings_path`` or beside the database)."""
    return s.terminal.recordings_path or s.database.path.parent / "recordings"


def resolve_path(explicit: str | os.PathLike[str] | None) -> Path:
    if explicit:
        return Path(explicit)
    env = os.environ.get("LINKOPS_CONFIG")
    return Path(env) if env else DEFAULT_CONFIG_PATH


def load(path: str | os.PathLike[str] | None = None, *, check: bool = True) -> Settings:
    """Read and validate the configuration file.

    *Errors*: :class:`ConfigError` with one line naming the file, section and key.
    """
    source = resolve_path(path)
    cp = configparser.ConfigParser(interpolation=None)
    try:
        with source.open(encoding="utf-8") as fh:
            cp.read_file(fh)
    except FileNotFoundError:
        raise ConfigError(f"{source}: configuration file not found") from None
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        raise ConfigError(f"{source}: cannot read configuration ({exc})") from None
    for section in cp.sections():
        if section not in _SECTIONS:
            raise ConfigError(f"{source}: [{section}] unknown section")
    parts = {name: _load_section(cp, name, cls) for name, cls in _SECTIONS.items()}
    settings = Settings(**parts, source=source)
    if check:
        validate(settings)
    return settings
