"""The configuration repository through the ``git`` CLI, run with :func:`trio.run_process`.

One public operation, :meth:`GitCheckout.update`: bring the local checkout to the head of the
remote branch (first time: ``git init`` + fetch, i.e. a clone; later: fetch + ``reset --hard``
to the fetched commit, so a force-push simply moves us and is reported as ``forced``; there is
never a merge).

Hardening, because the repository's content is not trusted:

- The URL is checked before git runs (:mod:`.remote`). Only the URL's own protocol is
  allowed (``protocol.allow=never`` plus ``protocol.<scheme>.allow=always``).
- No hooks (``core.hooksPath=/dev/null``, ``init --template=``), no fsmonitor, no submodules,
  no system/global config (``GIT_CONFIG_NOSYSTEM``, ``GIT_CONFIG_GLOBAL=/dev/null``), ``HOME``
  is a private temporary directory, ssh reads no config file (``-F /dev/null``).
- Never a prompt: ``GIT_TERMINAL_PROMPT=0``, ``GIT_ASKPASS`` always set, ``BatchMode=yes``,
  stdin is ``/dev/null``.
- Every git call has a deadline (``[git] timeout_seconds``) and fetch/checkout a size limit
  (``[git] max_repo_mb``, watched while git runs). On either, the whole process group (git and
  its ssh) is killed.
- Secrets never reach argv, a URL, a log line or an error: a token travels in the
  environment to a tiny ``GIT_ASKPASS`` helper; credentials embedded in the configured URL are
  taken out of it; git's stderr is scrubbed before it is quoted.

*Cancellation*: cancelling :meth:`GitCheckout.update` kills the running git process group
and leaves the checkout wherever it was; the next update removes the ``*.lock`` files the
killed git left and repairs the tree with ``reset --hard``.

*Concurrency*: an ``flock`` on ``.<checkout>.lock`` next to the checkout keeps two processes
(the service and a ``linkops sync``) from running git on it at the same time.

*Errors*: :class:`~linkops.errors.UnavailableError` ``GIT_UNREACHABLE`` (remote problems;
``details.reason`` is ``auth``, ``not_found``, ``network``, ``timeout``, ``host_key``, ``tls``,
``branch_not_found`` or ``git_error``), ``GIT_REPO_TOO_LARGE``;
:class:`~linkops.errors.ValidationError` ``INVALID_BRANCH`` (from :mod:`.remote`);
:class:`~linkops.errors.ConflictError` ``SYNC_IN_PROGRESS`` (another process holds the lock);
:class:`~linkops.ssh.errors.SshKeyError` for a deploy key that is missing or not 0600;
:class:`~linkops.errors.LinkOpsError` ``GIT_ERROR`` (500) when git fails on the local
checkout, or ``[git] local_path`` holds files that are not ours (never deleted).
"""

from __future__ import annotations

import fcntl
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import trio

from linkops.errors import ConflictError, LinkOpsError, UnavailableError
from linkops.inventory.remote import (
    RemoteUrl,
    check_branch,
    parse_remote_url,
    strip_credentials,
)
from linkops.ssh.keys import check_key_file

# parse_remote_url and strip_credentials are re-exported for existing importers.
__all__ = ["ASKPASS_SCRIPT", "GitCheckout", "RemoteUrl", "UpdateResult", "parse_remote_url",
           "strip_credentials"]

SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
SIZE_POLL_SECONDS = 0.25

ASKPASS_SCRIPT = """#!/bin/sh
# Answers git's credential prompts from the environment; never prints anything else.
case "$1" in
    Username*) printf '%s\\n' "$LINKOPS_GIT_USERNAME" ;;
    *) printf '%s\\n' "$LINKOPS_GIT_TOKEN" ;;
esac
"""


@attrs.frozen
class UpdateResult:
    commit: str
    previous: str | None
    forced: bool


@attrs.frozen
class _Outcome:
    returncode: int
    stdout: str
    stderr: str


def _dir_size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue  # git removes temporary files while we walk
    return total


def _reason(stderr: str) -> tuple[str, str]:
    text = stderr.lower()
    table = (
        ("host_key", ("host key verification failed", "remote host identification has changed")),
        ("tls", ("ssl certificate problem", "certificate verify failed",
                 "server certificate verification failed")),
        ("auth", ("permission denied", "authentication failed", "could not read username",
                  "could not read password", "terminal prompts disabled", "invalid username",
                  "http basic: access denied", "403")),
        ("branch_not_found", ("couldn't find remote ref",)),
        ("not_found", ("does not appear to be a git repository", "repository not found",
                       "not found", "no such file or directory")),
        ("network", ("connection refused", "could not resolve", "timed out", "no route",
                     "network is unreachable", "connection reset", "connection closed",
                     "failed to connect", "unable to access")),
    )
    messages = {
        "host_key": "the server's host key was refused",
        "tls": "the server's TLS certificate was refused",
        "auth": "authentication failed",
        "branch_not_found": "the branch does not exist on the remote",
        "not_found": "repository not found",
        "network": "the remote could not be reached",
    }
    for reason, needles in table:
        if any(needle in text for needle in needles):
            return reason, messages[reason]
    return "git_error", "git failed"


class GitCheckout:
    """The local checkout of the configuration repository (see the module docstring).

    *Resource handling*: every call creates a private temporary directory next to
    ``checkout`` (``HOME`` and the askpass helper) and removes it before returning.
    """

    def __init__(
        self,
        *,
        remote: RemoteUrl,
        branch: str,
        checkout: Path,
        timeout: float,
        max_bytes: int,
        ssh_key: Path | None,
        known_hosts: Path,
        token: str | None,
        strict_host_keys: bool = False,
        ca_file: Path | None = None,
    ) -> None:
        self.remote = remote
        self.branch = check_branch(branch)
        self.checkout = checkout
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.ssh_key = ssh_key
        self.known_hosts = known_hosts
        # [ssh] host_key_policy: "accept-new" records unknown hosts, "strict" refuses them.
        # A changed key is refused either way.
        self.strict_host_keys = strict_host_keys
        self.ca_file = ca_file
        # A password embedded in the URL counts as the token when no token is configured.
        self._token = token or remote.password
        self._secrets = [s for s in (self._token,) if s]

    # -- environment ----------------------------------------------------------------------

    def _config_pairs(self) -> list[tuple[str, str]]:
        extra = [("http.sslCAInfo", str(self.ca_file))] if self.ca_file is not None else []
        return [*extra,
            ("core.hooksPath", "/dev/null"),
            ("core.fsmonitor", "false"),
            ("core.symlinks", "true"),
            ("credential.helper", ""),
            ("protocol.allow", "never"),
            (f"protocol.{self.remote.protocol}.allow", "always"),
            ("submodule.recurse", "false"),
            ("fetch.recurseSubmodules", "false"),
            ("transfer.fsckObjects", "true"),
            ("gc.auto", "0"),
            ("maintenance.auto", "false"),
            ("advice.detachedHead", "false"),
            ("init.defaultBranch", "main"),
            ("http.followRedirects", "initial"),
        ]

    def _ssh_command(self) -> str:
        connect = max(1, int(min(self.timeout, 30)))
        parts = [
            "ssh", "-F", "/dev/null",
            "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes",
            "-o", f"StrictHostKeyChecking={'yes' if self.strict_host_keys else 'accept-new'}",
            "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", f"ConnectTimeout={connect}",
            "-o", "ServerAliveInterval=15",
            "-o", "ServerAliveCountMax=2",
            "-o", "PasswordAuthentication=no",
            "-o", "KbdInteractiveAuthentication=no",
        ]
        if self.ssh_key is not None:
            parts += ["-i", str(self.ssh_key)]
        return shlex.join(parts)

    def _env(self, home: Path, askpass: Path) -> dict[str, str]:
        env = {
            "PATH": SAFE_PATH,
            "HOME": str(home),
            "LANG": "C",
            "LC_ALL": "C",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "GIT_ASKPASS": str(askpass),
            "SSH_ASKPASS": "/bin/false",
            "SSH_ASKPASS_REQUIRE": "never",
            "GIT_SSH_COMMAND": self._ssh_command(),
            "GIT_SSH_VARIANT": "ssh",
            "GIT_PROTOCOL_FROM_USER": "0",
            "GIT_ALLOW_PROTOCOL": self.remote.protocol,
            "GIT_NO_REPLACE_OBJECTS": "1",
            "LINKOPS_GIT_USERNAME": self.remote.username or "x-access-token",
            "LINKOPS_GIT_TOKEN": self._token or "",
        }
        pairs = self._config_pairs()
        env["GIT_CONFIG_COUNT"] = str(len(pairs))
        for index, (key, value) in enumerate(pairs):
            env[f"GIT_CONFIG_KEY_{index}"] = key
            env[f"GIT_CONFIG_VALUE_{index}"] = value
        return env

    def scrub(self, text: str) -> str:
        text = strip_credentials(text)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    # -- running git ----------------------------------------------------------------------

    async def _run(self, env: dict[str, str], args: Sequence[str], *, watch: bool = False,
                   what: str = "git") -> _Outcome:
        too_large = False

        async def kill_group(process: trio.Process) -> None:
            # git spawns ssh and helpers; kill the whole session we started, not just git.
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        async def watch_size(scope: trio.CancelScope) -> None:
            nonlocal too_large
            while True:
                await trio.sleep(SIZE_POLL_SECONDS)
                if await trio.to_thread.run_sync(_dir_size, self.checkout) > self.max_bytes:
                    too_large = True
                    scope.cancel()
                    return

        result: subprocess.CompletedProcess[bytes] | None = None
        try:
            with trio.fail_after(self.timeout):
                async with trio.open_nursery() as nursery:
                    if watch:
                        nursery.start_soon(watch_size, nursery.cancel_scope)
                    result = await trio.run_process(
                        ["git", *args], env=env, stdin=subprocess.DEVNULL,
                        capture_stdout=True, capture_stderr=True, check=False,
                        start_new_session=True, deliver_cancel=kill_group,
                    )
                    nursery.cancel_scope.cancel()
        except trio.TooSlowError:
            raise UnavailableError(
                f"git {what} from {self.remote.display} timed out after {self.timeout:g} s",
                code="GIT_UNREACHABLE",
                details={"repository": self.remote.display, "reason": "timeout"},
            ) from None
        if too_large or result is None:
            raise self._too_large()
        return _Outcome(result.returncode, result.stdout.decode("utf-8", "replace"),
                        result.stderr.decode("utf-8", "replace"))

    def _too_large(self) -> UnavailableError:
        limit_mb = self.max_bytes // (1024 * 1024)
        return UnavailableError(
            f"repository {self.remote.display} is larger than [git] max_repo_mb = {limit_mb}",
            code="GIT_REPO_TOO_LARGE",
            details={"repository": self.remote.display, "limit_mb": limit_mb},
        )

    async def _git(self, env: dict[str, str], *args: str, what: str,
                   watch: bool = False) -> str:
        outcome = await self._run(env, ["-C", str(self.checkout), *args], watch=watch,
                                  what=what)
        if outcome.returncode != 0:
            raise self._failure(what, outcome.stderr, local=what != "fetch")
        return outcome.stdout.strip()

    def _failure(self, what: str, stderr: str, *, local: bool) -> LinkOpsError:
        lines = [line for line in self.scrub(stderr).splitlines() if line.strip()]
        tail = " | ".join(lines[-3:])[:500]
        details = {"repository": self.remote.display, "stderr": tail}
        if local:
            return LinkOpsError(f"git {what} failed in {self.checkout}: {tail}",
                                code="GIT_ERROR", details=details)
        reason, summary = _reason(stderr)
        details["reason"] = reason
        return UnavailableError(f"git {what} from {self.remote.display}: {summary} ({tail})",
                                code="GIT_UNREACHABLE", details=details)

    # -- the operation --------------------------------------------------------------------

    async def update(self) -> UpdateResult:
        """Fetch the branch and move the checkout to its head (see the module docstring)."""
        if self.remote.protocol == "ssh":
            if self.ssh_key is not None:
                await trio.to_thread.run_sync(check_key_file, self.ssh_key)
            # ssh creates known_hosts on first contact but not its directory.
            await trio.to_thread.run_sync(
                lambda: self.known_hosts.parent.mkdir(parents=True, exist_ok=True))
        parent = self.checkout.parent
        await trio.to_thread.run_sync(lambda: parent.mkdir(parents=True, exist_ok=True))
        async with self._exclusive():
            await trio.to_thread.run_sync(self._remove_leftovers)
            private = Path(await trio.to_thread.run_sync(
                lambda: tempfile.mkdtemp(prefix=self._private_prefix, dir=parent)))
            try:
                askpass = private / "askpass.sh"
                home = private / "home"
                await trio.to_thread.run_sync(self._prepare_private, home, askpass)
                env = self._env(home, askpass)
                return await self._update(env)
            finally:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(
                        lambda: shutil.rmtree(private, ignore_errors=True))

    async def probe(self) -> str:
        """``git ls-remote`` of the branch with the same hardening, deploy key, known_hosts
        and credentials as :meth:`update` (``linkops doctor``); returns the branch's commit.
        Touches neither the checkout nor its lock, so it runs beside a live service."""
        if self.remote.protocol == "ssh":
            if self.ssh_key is not None:
                await trio.to_thread.run_sync(check_key_file, self.ssh_key)
            await trio.to_thread.run_sync(
                lambda: self.known_hosts.parent.mkdir(parents=True, exist_ok=True))
        private = Path(await trio.to_thread.run_sync(
            lambda: tempfile.mkdtemp(prefix="linkops-git-probe-")))
        try:
            askpass = private / "askpass.sh"
            home = private / "home"
            await trio.to_thread.run_sync(self._prepare_private, home, askpass)
            outcome = await self._run(
                self._env(home, askpass),
                ["ls-remote", "--heads", "--", self.remote.url, f"refs/heads/{self.branch}"],
                what="ls-remote")
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(lambda: shutil.rmtree(private, ignore_errors=True))
        if outcome.returncode != 0:
            raise self._failure("ls-remote", outcome.stderr, local=False)
        heads = outcome.stdout.split()
        if not heads:
            raise UnavailableError(
                f"git ls-remote from {self.remote.display}: branch {self.branch!r} does not "
                "exist on the remote", code="GIT_UNREACHABLE",
                details={"repository": self.remote.display, "reason": "branch_not_found"})
        return heads[0]

    @property
    def _private_prefix(self) -> str:
        return f".{self.checkout.name}-git-"

    @asynccontextmanager
    async def _exclusive(self) -> AsyncIterator[None]:
        """Hold ``.<checkout>.lock`` (flock) so a `linkops sync` run and the service never
        work on the checkout at the same time; gives up after ``timeout`` (409)."""
        path = self.checkout.parent / f".{self.checkout.name}.lock"
        fd = await trio.to_thread.run_sync(
            lambda: os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
        try:
            with trio.move_on_after(self.timeout) as waited:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        await trio.sleep(0.2)
            if waited.cancelled_caught:
                raise ConflictError(
                    f"another process is syncing {self.checkout}; try again later",
                    code="SYNC_IN_PROGRESS", details={"repository": self.remote.display})
            yield
        finally:
            os.close(fd)  # releases the flock

    def _remove_leftovers(self) -> None:
        """Blocking, under the lock: what a killed git or a crashed sync left behind.

        git takes ``*.lock`` files (index, refs, HEAD…) and a git we killed on a deadline
        cannot remove them; while we hold the lock nobody else runs git here, so every one of
        them is stale. Private directories of earlier syncs are stale for the same reason.
        """
        for leftover in self.checkout.parent.glob(f"{self._private_prefix}*"):
            shutil.rmtree(leftover, ignore_errors=True)
        git_dir = self.checkout / ".git"
        if not git_dir.is_dir():
            return
        for dirpath, dirnames, files in os.walk(git_dir):
            if Path(dirpath) == git_dir and "objects" in dirnames:
                dirnames.remove("objects")  # git never leaves *.lock files among objects
            for name in files:
                if name.endswith(".lock"):
                    Path(dirpath, name).unlink(missing_ok=True)

    @staticmethod
    def _prepare_private(home: Path, askpass: Path) -> None:
        home.mkdir(mode=0o700)
        askpass.write_text(ASKPASS_SCRIPT, encoding="utf-8")
        askpass.chmod(0o700)

    def _needs_init(self) -> bool:
        """Blocking: True for a missing or empty directory; refuses someone else's files."""
        if (self.checkout / ".git").is_dir():
            return False
        if self.checkout.exists() and any(self.checkout.iterdir()):
            raise LinkOpsError(
                f"[git] local_path {self.checkout} exists and is not a LinkOps checkout; "
                "remove it or choose another path", code="GIT_ERROR")
        return True

    async def _update(self, env: dict[str, str]) -> UpdateResult:
        if await trio.to_thread.run_sync(self._needs_init):
            outcome = await self._run(env, ["init", "-q", "--template=", str(self.checkout)],
                                      what="init")
            if outcome.returncode != 0:
                raise self._failure("init", outcome.stderr, local=True)
        head = await self._run(env, ["-C", str(self.checkout), "rev-parse", "-q", "--verify",
                                     "HEAD^{commit}"], what="rev-parse")
        previous = head.stdout.strip() if head.returncode == 0 else None
        tracking = f"refs/remotes/origin/{self.branch}"
        await self._git(env, "fetch", "--quiet", "--no-tags", "--no-recurse-submodules",
                        "--no-write-fetch-head", "--", self.remote.url,
                        f"+refs/heads/{self.branch}:{tracking}", what="fetch", watch=True)
        commit = await self._git(env, "rev-parse", "--verify", f"{tracking}^{{commit}}",
                                 what="rev-parse")
        forced = False
        if previous is not None and previous != commit:
            ancestor = await self._run(env, ["-C", str(self.checkout), "merge-base",
                                             "--is-ancestor", previous, commit],
                                       what="merge-base")
            forced = ancestor.returncode != 0
        await self._git(env, "reset", "-q", "--hard", commit, what="checkout", watch=True)
        await self._git(env, "clean", "-q", "-ffdx", what="clean")
        if await trio.to_thread.run_sync(_dir_size, self.checkout) > self.max_bytes:
            raise self._too_large()
        return UpdateResult(commit=commit, previous=previous, forced=forced)
