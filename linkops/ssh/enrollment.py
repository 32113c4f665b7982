"""Enrollment (SPEC §1): is the machine really ours? Read its client ID file and compare.

A link is *enrolled* iff the file at ``enrollment.clientIdPath`` (default
``/etc/linkops/client_id``), read over SSH, equals the link's ``enrollment.clientId`` after
stripping a UTF-8 BOM and surrounding whitespace (so ``echo … | tee`` newlines and CRLF are
fine); otherwise the comparison is exact, byte for byte.

The file is read with ``LC_ALL=C head -c 513 -- '<path>'``: the path is quoted with
:func:`shlex.quote`, so no inventory value can inject shell syntax, and at most 513 bytes come
back (a client ID is ~45 bytes; more than :data:`MAX_CLIENT_ID_BYTES` cannot be one).

Every failed verification says why, in ``error`` (for people) and ``reason`` (for code):

============== ===========================================================
reason         meaning
============== ===========================================================
missing        the file does not exist
unreadable     it exists but cannot be read (a directory, permissions, I/O)
mismatch       it was read but holds another ID (or garbage, or too much)
host_key       host key changed / unknown under strict / pin does not match
auth           the server refused our key
key            our key file is missing, unreadable or not mode 0600
timeout        no answer in time
connect        TCP / handshake / ProxyJump failure
closed         the connection dropped during the check
not_configured the inventory entry has no clientId
============== ===========================================================

*Cancellation*: a cancelled verification stores nothing.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Iterable
from typing import Any, Final

import attrs
import trio

from linkops.api_types import VerifyResult
from linkops.db import Database
from linkops.errors import ExecutionTimeoutError, NotFoundError
from linkops.models import Link
from linkops.ssh.bridge import Resolver, SshConnection, SshManager
from linkops.ssh.coalesce import Coalescer
from linkops.ssh.errors import SshError
from linkops.ssh.machines import load_links, store_enrollment
from linkops.timeutil import now_iso

log = logging.getLogger("linkops.ssh.enrollment")

MAX_CLIENT_ID_BYTES: Final = 512
BOM: Final = b"\xef\xbb\xbf"
READ_TIMEOUT: Final = 30.0


@attrs.frozen
class EnrollmentResult(VerifyResult):
    """One verification; its fields are those the API declares for it (``VerifyResult``)."""

    def to_dict(self) -> dict[str, Any]:
        """The API shape of ``POST /api/links/{id}/verify`` (plus ``target`` and ``reason``)."""
        return attrs.asdict(self)


def enrollment_required(*, global_required: bool, link_required: bool,
                        requested: bool = False) -> bool:
    """Whether a machine must be enrolled before anything runs on it: operations and
    terminals alike ask this one function (docs/decisions/enrollment.md).

    ``[security] enrollment_required`` OR the request's ``require_enrollment`` OR the
    link's own ``enrollment.required``: each of them can only make the gate stricter, never
    looser. A link's ``required: false`` therefore matters only where the global setting is
    off; a link marked ``required: true`` is never used unenrolled, whatever the setting.
    """
    return global_required or requested or link_required


def blocked_by_enrollment(*, global_required: bool, link_required: bool, enrolled: bool,
                          requested: bool = False) -> bool:
    """True when the gate refuses the machine (required and not enrolled)."""
    return enrollment_required(global_required=global_required, link_required=link_required,
                               requested=requested) and not enrolled


def normalize_client_id(raw: bytes) -> bytes:
    """Strip surrounding whitespace and a leading BOM (in either order)."""
    text = raw.strip()
    if text.startswith(BOM):
        text = text[len(BOM):].strip()
    return text


def read_command(path: str) -> str:
    """The remote command that prints at most ``MAX_CLIENT_ID_BYTES + 1`` bytes of ``path``."""
    return f"LC_ALL=C head -c {MAX_CLIENT_ID_BYTES + 1} -- {shlex.quote(path)}"


def _shown(raw: bytes) -> str:
    return repr(raw[:60].decode("utf-8", "replace")) + ("…" if len(raw) > 60 else "")


def evaluate(link: Link, exit_code: int, stdout: bytes, stderr: bytes,
             verified_at: str) -> EnrollmentResult:
    """Turn the output of :func:`read_command` into a result (pure; see the module table)."""
    path = link.enrollment.clientIdPath
    expected = link.enrollment.clientId.strip()

    def result(found: bool, matches: bool, error: str | None,
               reason: str | None) -> EnrollmentResult:
        return EnrollmentResult(target=link.id, enrolled=matches, client_id_found=found,
                                client_id_matches=matches, error=error, reason=reason,
                                verified_at=verified_at)

    if exit_code != 0:
        message = stderr.decode("utf-8", "replace").strip().splitlines()
        detail = message[-1][:200] if message else f"exit code {exit_code}"
        if b"No such file or directory" in stderr:
            return result(False, False, f"client ID file {path} not found on {link.id}",
                          "missing")
        return result(False, False,
                      f"client ID file {path} on {link.id} is unreadable: {detail}",
                      "unreadable")
    if not expected:
        return result(True, False, f"{link.id} has no enrollment.clientId in the inventory",
                      "not_configured")
    if len(stdout) > MAX_CLIENT_ID_BYTES:
        return result(True, False, f"client ID file {path} on {link.id} is larger than "
                      f"{MAX_CLIENT_ID_BYTES} bytes; it cannot hold a client ID", "mismatch")
    found = normalize_client_id(stdout)
    if not found:
        return result(True, False, f"client ID file {path} on {link.id} is empty", "mismatch")
    if found != expected.encode("utf-8"):
        return result(True, False, f"client ID on {link.id} does not match: found "
                      f"{_shown(found)}, expected {expected!r}", "mismatch")
    return result(True, True, None, None)


def failure(link: Link, exc: SshError | ExecutionTimeoutError,
            verified_at: str) -> EnrollmentResult:
    """A result for a verification that could not read the file at all."""
    reason = exc.reason if isinstance(exc, SshError) else "timeout"
    return EnrollmentResult(target=link.id, enrolled=False, client_id_found=False,
                            client_id_matches=False,
                            error=f"cannot verify {link.id}: {exc.message}", reason=reason,
                            verified_at=verified_at)


async def check_client_id(conn: SshConnection, link: Link,
                          timeout: float = READ_TIMEOUT) -> EnrollmentResult:  # noqa: ASYNC109
    """Read and compare the client ID over an existing connection (no DB write).

    Operations call this right before running scripts, on the connection they will use.

    *Errors*: :class:`SshError` / :class:`ExecutionTimeoutError` from the read itself.
    """
    result = await conn.run(read_command(link.enrollment.clientIdPath), timeout=timeout,
                            max_output=MAX_CLIENT_ID_BYTES + 1)
    return evaluate(link, result.exit_code, result.stdout, result.stderr, now_iso())


async def verify_link(ssh: SshManager, link: Link, resolve: Resolver,
                      timeout: float = READ_TIMEOUT) -> EnrollmentResult:  # noqa: ASYNC109
    """Connect (pooled) and check; connection failures become a result with a reason."""
    try:
        with trio.fail_after(timeout):
            async with ssh.connection(link, resolve) as conn:
                return await check_client_id(conn, link, timeout)
    except trio.TooSlowError:
        return failure(link, ExecutionTimeoutError(f"no answer within {timeout:g} s"),
                       now_iso())
    except (SshError, ExecutionTimeoutError) as exc:
        return failure(link, exc, now_iso())


class EnrollmentService:
    """Verification of links from the ``machines`` table, results stored there."""

    def __init__(self, db: Database, ssh: SshManager, *, concurrency: int = 10,
                 timeout: float = READ_TIMEOUT) -> None:
        self.db = db
        self.ssh = ssh
        self.concurrency = concurrency
        self.timeout = timeout
        # Concurrent verifications of one link share one attempt (see coalesce.py).
        self._flights: Coalescer[EnrollmentResult] = Coalescer()

    async def _record(self, result: EnrollmentResult) -> None:
        await self.db.write(lambda c: store_enrollment(c, result.target, result.enrolled,
                                                       result.verified_at, result.error))
        if result.error:
            log.warning("enrollment check failed", extra={
                "target": result.target, "reason": result.reason, "error": result.error})

    async def verify(self, link_id: str) -> EnrollmentResult:
        """Verify one link and store the outcome. *Errors*: NotFoundError for an unknown id."""
        return (await self.verify_many([link_id]))[0]

    async def verify_many(self, link_ids: Iterable[str] | None = None, *,
                          concurrency: int | None = None) -> list[EnrollmentResult]:
        """Verify ``link_ids`` (default: every link) concurrently; results in input order.

        *Errors*: :class:`NotFoundError` listing unknown ids (nothing is verified then).
        """
        links = await load_links(self.db)
        ids = list(links) if link_ids is None else list(dict.fromkeys(link_ids))
        unknown = [i for i in ids if i not in links]
        if unknown:
            raise NotFoundError(f"unknown link(s): {', '.join(unknown)}", code="LINK_NOT_FOUND",
                                details={"targets": unknown})
        results: dict[str, EnrollmentResult] = {}
        limiter = trio.CapacityLimiter(max(1, concurrency or self.concurrency))

        async def one(link_id: str) -> None:
            async def attempt() -> EnrollmentResult:
                async with limiter:
                    result = await verify_link(self.ssh, links[link_id], links, self.timeout)
                    await self._record(result)
                    return result

            results[link_id] = await self._flights.run(link_id, attempt)

        async with trio.open_nursery() as nursery:
            for link_id in ids:
                nursery.start_soon(one, link_id)
        return [results[i] for i in ids]
