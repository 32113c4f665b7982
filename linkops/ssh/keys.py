"""Private keys from the keys directory and host-key pins (blocking, no trio).

Owns the SPEC §4 key rules: ``keyRef`` names a plain file inside ``[ssh] keys_directory``
(no path separators, no ``..``), and a key file is refused with an error naming it, before it
is ever read, when it is a symbolic link, not a regular file, not owned by the service's user
(the effective uid) or its permission bits are not exactly ``0600``. The file is then opened
with ``O_NOFOLLOW`` and must still be the inode that was checked (no swap in between). Also
parses the optional ``ssh.hostKey`` pin of a link (a full public key line or a ``SHA256:``
fingerprint).

*Errors*: :class:`~linkops.ssh.errors.SshKeyError` (``SSH_KEY_INVALID``) naming the file.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import stat
from pathlib import Path

import attrs
import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from linkops.ssh.errors import SshKeyError

REQUIRED_MODE = 0o600


def resolve_key_path(keys_directory: Path, key_ref: str) -> Path:
    """The file a ``keyRef`` names; refuses anything that is not a plain file name."""
    if (
        not key_ref
        or key_ref in (".", "..")
        or "/" in key_ref
        or "\\" in key_ref
        or "\x00" in key_ref
    ):
        raise SshKeyError(f"keyRef {key_ref!r} must be a file name inside {keys_directory}",
                          details={"key": key_ref})
    return keys_directory / key_ref


def check_key_file(path: Path) -> os.stat_result:
    """Refuse a key that is missing, a symlink, not a regular file, owned by another user than
    the service's (effective uid), or whose mode is not 0600. Never follows a symlink: a
    compromised account that can write the keys directory must not point the service (or a
    root-run installer) at another file."""
    where = {"key": str(path)}
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise SshKeyError(f"SSH key {path} does not exist", details=where)
    except OSError as exc:
        raise SshKeyError(f"SSH key {path} cannot be read: {exc.strerror}", details=where)
    if stat.S_ISLNK(st.st_mode):
        raise SshKeyError(
            f"SSH key {path} is a symbolic link; it must be a regular file (replace the link "
            "with the key itself)", details=where)
    if not stat.S_ISREG(st.st_mode):
        raise SshKeyError(f"SSH key {path} is not a regular file", details=where)
    uid = os.geteuid()
    if st.st_uid != uid:
        raise SshKeyError(
            f"SSH key {path} is owned by uid {st.st_uid}, not by the service's user (uid {uid}); "
            f"chown {uid} {path}",
            details={**where, "owner": st.st_uid, "expected_owner": uid},
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode != REQUIRED_MODE:
        raise SshKeyError(
            f"SSH key {path} has mode {mode:04o}; it must be 0600 (chmod 600 {path})",
            details={**where, "mode": f"{mode:04o}"},
        )
    return st


def _read_checked(path: Path, checked: os.stat_result) -> bytes:
    """The key's bytes, read without following a link, from the inode that was checked."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise SshKeyError(f"SSH key {path} cannot be opened: {exc.strerror}",
                          details={"key": str(path)})
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if (st.st_dev, st.st_ino) != (checked.st_dev, checked.st_ino):
            raise SshKeyError(f"SSH key {path} was replaced while it was being read",
                              details={"key": str(path)})
        return f.read(1024 * 1024)


def _parse_private_key(data: bytes) -> paramiko.PKey:
    """What ``paramiko.PKey.from_path`` does, from bytes already read."""
    loaded: object
    try:
        loaded = serialization.load_ssh_private_key(data, password=None)
    except ValueError:
        loaded = serialization.load_pem_private_key(data, password=None)
    key_class: type[paramiko.PKey]
    if isinstance(loaded, rsa.RSAPrivateKey):
        key_class = paramiko.RSAKey
    elif isinstance(loaded, ed25519.Ed25519PrivateKey):
        key_class = paramiko.Ed25519Key
    elif isinstance(loaded, ec.EllipticCurvePrivateKey):
        key_class = paramiko.ECDSAKey
    else:
        raise ValueError(f"unsupported key type {type(loaded).__name__}")
    return key_class.from_private_key(io.StringIO(data.decode("ascii")))


# Parsed keys by file identity: paramiko takes ~2.5 ms to load a key (measured), which every
# fresh connection paid. The file is still checked (stat: exists, regular, 0600) on every
# use; a changed file (inode, size, mtime, ctime, mode) is loaded again. Bounded; thread-safe enough
# for a cache (a race loads a key twice).
_KEY_CACHE: dict[tuple[str, int, int, int, int, int, int], paramiko.PKey] = {}
_KEY_CACHE_MAX = 64


def load_private_key(path: Path) -> paramiko.PKey:
    """Check the file, then load an unencrypted private key (RSA, ECDSA or Ed25519)."""
    st = check_key_file(path)
    identity = (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns,
                st.st_mode)
    cached = _KEY_CACHE.get(identity)
    if cached is not None:
        return cached
    data = _read_checked(path, st)
    try:
        key = _parse_private_key(data)
    except (paramiko.PasswordRequiredException, TypeError):
        # cryptography raises TypeError for a password-protected key loaded without one.
        raise SshKeyError(f"SSH key {path} is encrypted; LinkOps needs an unencrypted key",
                          details={"key": str(path)})
    except (paramiko.SSHException, OSError, ValueError, UnicodeDecodeError) as exc:
        raise SshKeyError(f"SSH key {path} cannot be loaded: {exc}", details={"key": str(path)})
    if len(_KEY_CACHE) >= _KEY_CACHE_MAX:
        _KEY_CACHE.clear()
    _KEY_CACHE[identity] = key
    return key


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style ``SHA256:<base64 without padding>`` of a public key."""
    return str(key.fingerprint)


def public_key_line(key: paramiko.PKey) -> str:
    """``<type> <base64>`` as in known_hosts and authorized_keys."""
    return f"{key.get_name()} {key.get_base64()}"


@attrs.frozen
class HostKeyPin:
    """A link's pinned host key: either a full key (type + base64) or a SHA256 fingerprint."""

    fingerprint: str
    key_type: str | None = None

    @classmethod
    def parse(cls, text: str) -> HostKeyPin:
        """Parse ``ssh-ed25519 AAAA… [comment]`` or ``SHA256:…``; ValueError when neither."""
        text = text.strip()
        if text.startswith("SHA256:"):
            body = text.removeprefix("SHA256:")
            try:
                raw = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
            except binascii.Error:
                raise ValueError(f"host key fingerprint {text!r} is not valid base64")
            if len(raw) != 32:
                raise ValueError(f"host key fingerprint {text!r} is not a SHA256 digest")
            return cls(fingerprint=f"SHA256:{body.rstrip('=')}")
        parts = text.split()
        if len(parts) < 2:
            raise ValueError("a pinned host key is 'TYPE BASE64' or 'SHA256:…'")
        try:
            key = paramiko.PKey.from_type_string(parts[0], base64.b64decode(parts[1]))
        except (binascii.Error, paramiko.SSHException, ValueError) as exc:
            raise ValueError(f"pinned host key cannot be parsed: {exc}")
        return cls(fingerprint=fingerprint(key), key_type=key.get_name())

    def matches(self, key: paramiko.PKey) -> bool:
        return fingerprint(key) == self.fingerprint
