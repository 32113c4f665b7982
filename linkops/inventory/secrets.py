"""``secrets.ini``: where it is found, how it is parsed, and how its values stay hidden.

Format (SPEC §2)::

    [ssh]
    key_path = /var/lib/linkops/keys/id_ed25519
    known_hosts_path = /var/lib/linkops/ssh/known_hosts
    [git]
    token = ghp_…
    [api]
    anything = kept for integrations, never served

Location: ``[git] secrets_file`` in config.ini (default ``secrets.ini``). A relative value is
a path inside the checked-out configuration repository (what SPEC §2 describes); an absolute
value is a local file on the server, which keeps the token out of Git entirely and is the only
way a token for the repository itself can be used on the very first clone.

Values never reach the API, a log line or an error message: :class:`Secrets` hides them from
``repr`` and parse errors name the file and line, never the text of the line.

*Errors*: :class:`linkops.errors.ValidationError` (``SECRETS_PARSE_ERROR``) naming file and
line.
"""

from __future__ import annotations

import configparser
from collections.abc import Mapping
from pathlib import Path

import attrs

from linkops.errors import ValidationError

MAX_SECRETS_BYTES = 64 * 1024


@attrs.frozen
class Secrets:
    source: str
    ssh_key_path: str | None = attrs.field(default=None, repr=False)
    known_hosts_path: str | None = attrs.field(default=None, repr=False)
    git_token: str | None = attrs.field(default=None, repr=False)
    api: Mapping[str, str] = attrs.field(factory=dict, repr=False)


def _error(source: str, line: int | None, message: str) -> ValidationError:
    where = f"{source}:{line}" if line else source
    return ValidationError(
        f"{where}: {message}",
        code="SECRETS_PARSE_ERROR",
        details={"file": source, "line": line},
    )


def parse_secrets(text: str, source: str = "secrets.ini") -> Secrets:
    """Parse the INI text; empty values count as absent."""
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    try:
        parser.read_string(text, source=source)
    except configparser.Error as exc:
        # The message of configparser quotes the offending line, which may hold a secret:
        # report only the line number and the kind of problem.
        lineno = getattr(exc, "lineno", None)
        if lineno is None and isinstance(exc, configparser.ParsingError) and exc.errors:
            lineno = exc.errors[0][0]
        kind = type(exc).__name__.replace("Error", " error").strip()
        raise _error(source, lineno, f"malformed INI ({kind})") from None

    def get(section: str, key: str) -> str | None:
        value = parser.get(section, key, fallback="").strip()
        return value or None

    api = dict(parser.items("api")) if parser.has_section("api") else {}
    return Secrets(
        source=source,
        ssh_key_path=get("ssh", "key_path"),
        known_hosts_path=get("ssh", "known_hosts_path"),
        git_token=get("git", "token"),
        api={key: value.strip() for key, value in api.items()},
    )


def read_secrets_file(path: Path, label: str) -> Secrets | None:
    """Read a local secrets file; ``None`` if it does not exist.

    *Errors*: ``SECRETS_PARSE_ERROR`` if it is not a regular file, too large or malformed.
    """
    try:
        if not path.is_file():
            if path.exists():
                raise _error(label, None, "is not a regular file")
            return None
        raw = path.read_bytes()
    except OSError as exc:
        raise _error(label, None, f"cannot be read ({exc.strerror})") from None
    return parse_secrets_bytes(raw, label)


def parse_secrets_bytes(raw: bytes, label: str) -> Secrets:
    if len(raw) > MAX_SECRETS_BYTES:
        raise _error(label, None, f"is larger than {MAX_SECRETS_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _error(label, None, "is not valid UTF-8") from None
    return parse_secrets(text, label)
