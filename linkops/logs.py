"""Structured logging: one JSON object per line to ``[logging] path`` (rotated) and stderr.

Callers log an *event name* as the message and put context in ``extra={"context": {...}}``::

    log.warning("ssh.connect_failed", extra={"context": {"target": "vps-01", "error": "..."}})

Under systemd, stderr goes to the journal. :class:`RedactingFilter` masks anything that looks
like a token, password or credential-bearing URL before a record is written, as a second line of
defence behind code that never logs secrets in the first place.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import re
import sys
from datetime import UTC, datetime
from typing import Any

from linkops.config import LoggingSettings

_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"']+")
_URL_CREDS = re.compile(r"(?i)([a-z][a-z0-9+.-]*://)[^/@\s:]*(:[^/@\s]*)?@")
_SECRET_KV = re.compile(
    r"(?i)((?:password|passwd|token|secret|jwt_secret|authorization)[\"']?\s*[:=]\s*[\"']?)"
    r"[^\s\"',}]+"
)
_STANDARD_ATTRS = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "context"}


def redact(text: str) -> str:
    text = _JWT.sub("[REDACTED-TOKEN]", text)
    text = _BEARER.sub(r"\1[REDACTED]", text)
    text = _URL_CREDS.sub(r"\1[REDACTED]@", text)
    return _SECRET_KV.sub(r"\1[REDACTED]", text)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {
            k: "[REDACTED]" if _is_secret_key(str(k)) else _redact_value(v)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_redact_value(v) for v in value]
    return value


def _is_secret_key(key: str) -> bool:
    lowered = key.lower()
    return any(word in lowered for word in ("password", "token", "secret", "authorization"))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).strftime(
                "%Y-%m-%dT%H:%M:%S.%fZ"
            ),
            "level": record.levelname,
            "logger": record.name,
            "event": redact(record.getMessage()),
        }
        context = getattr(record, "context", None)
        if isinstance(context, dict):
            entry["context"] = _redact_value(context)
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry.setdefault("context", {})[key] = _redact_value(value)
        if record.exc_info and record.exc_info[0] is not None:
            # Tracebacks go to the log (for operators), never into an HTTP response.
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


def setup_logging(settings: LoggingSettings, *, stderr: bool = True) -> None:
    """Configure the ``linkops`` logger tree (idempotent; replaces our earlier handlers)."""
    root = logging.getLogger("linkops")
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(settings.level.upper())
    root.propagate = False
    formatter = JsonFormatter()
    handlers: list[logging.Handler] = []
    if settings.path is not None:
        settings.path.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(
            logging.handlers.RotatingFileHandler(
                settings.path,
                maxBytes=int(settings.max_size_mb * 1024 * 1024),
                backupCount=settings.backup_count,
                encoding="utf-8",
            )
        )
    if stderr:
        handlers.append(logging.StreamHandler(sys.stderr))
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    # Hypercorn's own loggers: errors only, through the same JSON handlers.
    for name in ("hypercorn.error", "quart.app"):
        other = logging.getLogger(name)
        other.handlers = list(handlers)
        other.setLevel(logging.WARNING)
        other.propagate = False
