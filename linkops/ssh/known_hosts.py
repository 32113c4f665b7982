"""The known_hosts store and the host-key decision (blocking, thread-safe, no trio).

Owns ``[ssh] known_hosts_path`` (OpenSSH format: hashed ``|1|`` names, ``*``/``?`` patterns
and ``!`` negations are understood, ``@revoked`` keys are refused, ``@cert-authority`` lines
and malformed lines are skipped with a warning; new entries are written in clear as ``host``
for port 22 and ``[host]:port`` otherwise) and the decision taken for every server key,
*before* any authentication is attempted:

* a link with a pin (``ssh.hostKey``): only the pinned key is accepted; known_hosts is not
  consulted or written;
* a host with recorded keys: the offered key must be one of them, otherwise
  ``HOST_KEY_MISMATCH`` (always refused, whatever the policy);
* an unknown host: ``accept-new`` records the key and accepts it, ``strict`` refuses with
  ``HOST_KEY_UNKNOWN``.

*Resource handling*: the file is re-read when its mtime or size changes, so an operator who
removes a stale line with ``ssh-keygen -R`` is heard without a restart. Writes append one line
under a lock and ``fsync``.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path

import paramiko
from paramiko.hostkeys import HostKeyEntry, InvalidHostKey

from linkops.ssh.errors import HostKeyMismatchError, HostKeyUnknownError
from linkops.ssh.keys import HostKeyPin, fingerprint, public_key_line

log = logging.getLogger("linkops.ssh.known_hosts")

POLICIES = ("accept-new", "strict")


def host_entry_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def _glob(pattern: str) -> re.Pattern[str]:
    # OpenSSH patterns know only * and ?; "[" is literal (think "[host]:2222").
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body, re.IGNORECASE | re.DOTALL)


def _pattern_matches(name: str, pattern: str) -> bool:
    if pattern.startswith("|1|"):
        return bool(paramiko.HostKeys.hash_host(name, pattern) == pattern)
    return _glob(pattern).fullmatch(name) is not None


def entry_matches(name: str, entry: HostKeyEntry) -> bool:
    """OpenSSH host patterns: hashed ``|1|…``, ``*``/``?`` globs, ``!`` negations."""
    matched = False
    for pattern in entry.hostnames:
        if pattern.startswith("!"):
            if _pattern_matches(name, pattern[1:]):
                return False
        elif _pattern_matches(name, pattern):
            matched = True
    return matched


def parse_known_hosts(text: str, source: str = "known_hosts") -> tuple[
        list[HostKeyEntry], list[HostKeyEntry]]:
    """``(entries, revoked)``; malformed lines and ``@cert-authority`` lines are skipped."""
    entries: list[HostKeyEntry] = []
    revoked: list[HostKeyEntry] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        marker = ""
        if line.startswith("@"):
            marker, _, line = line.partition(" ")
            if marker != "@revoked":
                continue  # host certificates are not supported: never trust them silently
        try:
            entry = HostKeyEntry.from_line(line.strip(), lineno)
        except (InvalidHostKey, paramiko.SSHException, ValueError) as exc:
            log.warning("ignoring malformed known_hosts line",
                        extra={"file": source, "line": lineno, "error": str(exc)})
            continue
        if entry is not None and entry.key is not None:
            (revoked if marker else entries).append(entry)
    return entries, revoked


class KnownHosts:
    """One known_hosts file shared by every connection of the process."""

    def __init__(self, path: Path, policy: str = "accept-new") -> None:
        if policy not in POLICIES:
            raise ValueError(f"host key policy must be one of {POLICIES}, got {policy!r}")
        self.path = path
        self.policy = policy
        self._lock = threading.Lock()
        self._entries: list[HostKeyEntry] = []
        self._revoked: list[HostKeyEntry] = []
        self._stamp: tuple[int, int] | None = None

    def _reload_locked(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._entries, self._revoked, self._stamp = [], [], None
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            text = self.path.read_text(encoding="utf-8", errors="replace")
            self._entries, self._revoked = parse_known_hosts(text, str(self.path))
            self._stamp = stamp

    def _recorded_locked(self, name: str) -> list[paramiko.PKey]:
        self._reload_locked()
        return [e.key for e in self._entries if entry_matches(name, e)]

    def known_keys(self, host: str, port: int) -> list[paramiko.PKey]:
        with self._lock:
            return self._recorded_locked(host_entry_name(host, port))

    def preferred_key_types(self, host: str, port: int) -> list[str]:
        """Key types already recorded for the host, so the server offers one we can check."""
        return [k.get_name() for k in self.known_keys(host, port)]

    def verify(
        self, host: str, port: int, key: paramiko.PKey, *, pin: HostKeyPin | None = None,
        target: str = "", hop: str = "",
    ) -> str:
        """Accept or refuse ``key`` for ``host:port``; returns "pinned", "known" or "added".

        *Errors*: :class:`HostKeyMismatchError`, :class:`HostKeyUnknownError`.
        """
        offered = fingerprint(key)
        details = {"target": target, "hop": hop or target, "host": host, "port": port,
                   "offered": offered}
        if pin is not None:
            if pin.matches(key):
                return "pinned"
            raise HostKeyMismatchError(
                f"host key of {hop or target or host} ({host}:{port}) is {offered}, "
                f"but the link pins {pin.fingerprint}; refusing to connect",
                details={**details, "expected": pin.fingerprint},
            )
        name = host_entry_name(host, port)
        with self._lock:
            recorded = self._recorded_locked(name)
            if any(entry_matches(name, e) and fingerprint(e.key) == offered
                   for e in self._revoked):
                raise HostKeyMismatchError(
                    f"host key {offered} of {hop or target or host} ({name}) is marked "
                    f"@revoked in {self.path}; refusing to connect", details=details)
            if recorded:
                if any(fingerprint(k) == offered for k in recorded):
                    return "known"
                raise HostKeyMismatchError(
                    f"host key of {hop or target or host} ({name}) CHANGED: offered {offered}, "
                    f"known_hosts {self.path} has {', '.join(fingerprint(k) for k in recorded)}; "
                    "refusing to connect (remove the old entry if the change is expected)",
                    details={**details, "expected": [fingerprint(k) for k in recorded]},
                )
            if self.policy == "strict":
                raise HostKeyUnknownError(
                    f"host {hop or target or host} ({name}) is not in {self.path} and the host key "
                    f"policy is strict (offered {offered})",
                    details=details,
                )
            self._append_locked(f"{name} {public_key_line(key)}\n")
            return "added"

    def _append_locked(self, line: str) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        # Re-read on next use: another process may have appended too.
        self._stamp = None
