"""The filesystem steps systemd/install.sh runs as root in directories the service user can write.

``/var/lib/linkops`` and ``/var/log/linkops`` belong to ``linkops``: whoever controls that
account (a compromised service) can put a symlink anywhere inside them, e.g. ``keys/id_ed25519
-> /etc/shadow`` or a dangling ``ssh/known_hosts -> /etc/ld.so.preload``. ``chmod``, ``chown``
and ``: >file`` follow such links, and the next ``sudo install.sh`` (every upgrade) would hand
the target to ``linkops`` or create it as root. This module never follows one:

* every path is walked from a trusted *anchor* (``/var/lib``, ``/var/log``, ``/etc``: owned by
  root, not writable by group or others) one component at a time with ``openat(O_NOFOLLOW)``,
  so neither the last component nor a directory on the way can be swapped for a link between
  a check and a change;
* modes and owners are set on the opened descriptor (``fchmod``/``fchown``), never on a name;
* a symlink, or a path owned by another user than root or the service user, is refused with
  exit status 1 and one line naming the path and the fix;
* new files are written under a temporary name in their directory and renamed into place
  (``rename`` replaces a link planted at the destination instead of following it).

Usage (what install.sh runs, with the virtualenv's interpreter)::

    python -m linkops.install_guard ANCHOR REL ACTION [--mode 0640] [--owner UID:GID] \
        [--allow UID] [--from FILE]

ACTION is ``dir`` (create if missing, then set mode and owner), ``file`` (an existing regular
file: set mode and owner; absent is fine), ``create`` (an empty file if missing, then like
``file``), ``install`` (copy ``--from`` into place atomically), ``state`` (print ``absent``,
``file`` or ``dir``) or ``read`` (print a regular file). Owners change only when running as
root. A refusal exits 1 with one line on stderr naming the path.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import stat
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO planted under a file's name must not hang the installer.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK


class Refused(Exception):
    """A path the installer will not touch; the message names it and says what to do."""


class Guard:
    def __init__(self, anchor: Path, allowed_owners: set[int]) -> None:
        self.anchor = anchor
        self.allowed = allowed_owners | {0, os.geteuid()}

    def _where(self, parts: Sequence[str]) -> str:
        return str(self.anchor.joinpath(*parts))

    def _check_owner(self, st: os.stat_result, parts: Sequence[str]) -> None:
        if st.st_uid not in self.allowed:
            raise Refused(f"refusing {self._where(parts)}: it is owned by uid {st.st_uid}, "
                          "neither root nor the service user; inspect it, remove it and run "
                          "the installer again")

    def _lstat(self, dir_fd: int, parts: Sequence[str]) -> os.stat_result | None:
        try:
            st = os.stat(parts[-1], dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if stat.S_ISLNK(st.st_mode):
            raise Refused(f"refusing {self._where(parts)}: it is a symbolic link (to "
                          f"{os.readlink(parts[-1], dir_fd=dir_fd)}); LinkOps never follows "
                          "links in its directories. Remove it and run the installer again")
        return st

    def _open_at(self, dir_fd: int, parts: Sequence[str], flags: int) -> int:
        """Open the last of ``parts`` in ``dir_fd`` without following a link (a link swapped
        in after the check fails with ELOOP or ENOTDIR and is reported as such)."""
        self._lstat(dir_fd, parts)
        try:
            return os.open(parts[-1], flags, dir_fd=dir_fd)
        except OSError:
            self._lstat(dir_fd, parts)  # names the link if one appeared
            raise

    @contextlib.contextmanager
    def parent(self, rel: str) -> Iterator[tuple[int, list[str]]]:
        """The opened directory holding ``rel`` and the parts of ``rel``."""
        parts = list(PurePosixPath(rel).parts)
        if not parts or rel.startswith("/") or any(p in (".", "..") for p in parts):
            raise Refused(f"bad relative path {rel!r}")
        fd = os.open(self.anchor, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            if st.st_uid not in (0, os.geteuid()) or st.st_mode & 0o022:
                raise Refused(f"refusing {self.anchor}: it must belong to root and not be "
                              "writable by group or others")
            for i in range(1, len(parts)):
                sub = parts[:i]
                if self._lstat(fd, sub) is None:
                    raise Refused(f"{self._where(sub)} does not exist")
                next_fd = self._open_at(fd, sub, _DIR_FLAGS)
                os.close(fd)
                fd = next_fd
                self._check_owner(os.fstat(fd), sub)
            yield fd, parts
        finally:
            os.close(fd)

    @staticmethod
    def _apply(fd: int, mode: int | None, owner: tuple[int, int] | None) -> None:
        if owner is not None and os.geteuid() == 0:
            os.fchown(fd, *owner)
        if mode is not None:
            os.fchmod(fd, mode)

    def state(self, rel: str) -> str:
        with self.parent(rel) as (dir_fd, parts):
            st = self._lstat(dir_fd, parts)
            if st is None:
                return "absent"
            self._check_owner(st, parts)
            return "dir" if stat.S_ISDIR(st.st_mode) else "file"

    def ensure_dir(self, rel: str, mode: int | None, owner: tuple[int, int] | None) -> None:
        with self.parent(rel) as (dir_fd, parts):
            if self._lstat(dir_fd, parts) is None:
                os.mkdir(parts[-1], 0o700, dir_fd=dir_fd)
            fd = self._open_at(dir_fd, parts, _DIR_FLAGS)
            try:
                self._check_owner(os.fstat(fd), parts)
                self._apply(fd, mode, owner)
            finally:
                os.close(fd)

    def own_file(self, rel: str, mode: int | None, owner: tuple[int, int] | None,
                 *, create: bool = False) -> None:
        with self.parent(rel) as (dir_fd, parts):
            if self._lstat(dir_fd, parts) is None:
                if not create:
                    return
                fd = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                             | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
            else:
                fd = self._open_at(dir_fd, parts, _FILE_FLAGS)
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    raise Refused(f"refusing {self._where(parts)}: not a regular file")
                self._check_owner(st, parts)
                self._apply(fd, mode, owner)
            finally:
                os.close(fd)

    def read(self, rel: str, limit: int = 64 * 1024) -> bytes:
        """The content of a regular file (empty when absent), read without following links."""
        with self.parent(rel) as (dir_fd, parts):
            if self._lstat(dir_fd, parts) is None:
                return b""
            fd = self._open_at(dir_fd, parts, _FILE_FLAGS)
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    raise Refused(f"refusing {self._where(parts)}: not a regular file")
                self._check_owner(st, parts)
                return os.read(fd, limit)
            finally:
                os.close(fd)

    def install(self, rel: str, source: Path, mode: int, owner: tuple[int, int] | None) -> None:
        data = source.read_bytes()
        with self.parent(rel) as (dir_fd, parts):
            st = self._lstat(dir_fd, parts)
            if st is not None and not stat.S_ISREG(st.st_mode):
                raise Refused(f"refusing {self._where(parts)}: not a regular file")
            tmp = f".{parts[-1]}.install-{secrets.token_hex(6)}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600, dir_fd=dir_fd)
            try:
                try:
                    self._apply(fd, mode, owner)
                    os.write(fd, data)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.rename(tmp, parts[-1], src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=dir_fd)
                raise


def _owner(text: str) -> tuple[int, int]:
    uid, _, gid = text.partition(":")
    return int(uid), int(gid)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m linkops.install_guard")
    parser.add_argument("anchor", type=Path)
    parser.add_argument("rel")
    parser.add_argument("action", choices=("dir", "file", "create", "install", "state", "read"))
    parser.add_argument("--mode", type=lambda s: int(s, 8))
    parser.add_argument("--owner", type=_owner, help="UID:GID (applied only as root)")
    parser.add_argument("--allow", type=int, action="append", default=[],
                        help="a uid besides root that may own the paths (the service user)")
    parser.add_argument("--from", dest="source", type=Path)
    args = parser.parse_args(argv)
    guard = Guard(args.anchor, set(args.allow))
    try:
        if args.action == "state":
            print(guard.state(args.rel))
        elif args.action == "read":
            sys.stdout.buffer.write(guard.read(args.rel))
        elif args.action == "dir":
            guard.ensure_dir(args.rel, args.mode, args.owner)
        elif args.action in ("file", "create"):
            guard.own_file(args.rel, args.mode, args.owner, create=args.action == "create")
        else:
            if args.source is None or args.mode is None:
                parser.error("install needs --from and --mode")
            guard.install(args.rel, args.source, args.mode, args.owner)
    except Refused as exc:
        print(f"[linkops-install] error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"[linkops-install] error: {args.anchor / args.rel}: {exc.strerror}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
