"""How one script is started on a host, streamed, and — when stopped or timed out — killed.

*Launch* (decision): **one** exec channel per script runs ``exec bash -c WRAPPER linkops-op
ID_PATH ARG…`` (every argument through :func:`shlex.quote`, so a flag value is one literal
argument and can never inject shell). The wrapper:

1. makes sure it leads its own process group: sshd starts every session with ``setsid()``, so
   the wrapper's PID is its group's ID; if not (another SSH server, or no ``/proc`` to tell),
   it re-executes itself under ``setsid`` (without ``setsid`` it fails, having run nothing);
2. when ``ID_PATH`` is not empty, prints the enrollment file as hex between
   ``LINKOPS_ID`` / ``LINKOPS_ID_END <status>`` lines (``od``: at most 513 bytes, any bytes,
   errors such as "No such file" in place of the hex) — the client-ID check rides on the
   script's own channel instead of costing a second session (see docs/performance.md);
3. waits for ``LINKOPS_GO`` on stdin. The server sends it, followed by the script text and
   EOF, only once the client ID matched; on a mismatch it sends EOF alone and the wrapper
   exits 125 having run nothing;
4. prints ``LINKOPS_PGID <pid>`` and runs the rest of stdin — the script — as
   ``bash /dev/fd/3 "$@"`` with stdin ``/dev/null``: under **bash** (never its shebang's
   interpreter), the script's own stdin is not the script, and no temp file is written;
5. when the script exits, sends ``SIGTERM`` to what is left of the group (ignoring that
   signal itself) and exits with the script's status. Decision: a script's background jobs
   end with it — otherwise one that keeps stdout open would hold the task until its timeout.
   A script that must leave a daemon behind detaches it on purpose (``systemd-run``,
   ``setsid``).

*Kill*: a second exec (on the same connection, or a fresh one if that is gone) sends
``SIGTERM`` to the whole group, waits up to :data:`KILL_GRACE` seconds for it to go, then
``SIGKILL``, and confirms with ``kill -0`` that no member is left (``remote_killed``).
Processes that leave the group on purpose (``setsid``/daemons) are out of reach, by design of
process groups.

*Cancellation*: :meth:`RemoteScript.run` ends the remote group on any cancellation (stop) or
on its own deadline (timeout) inside a shielded, bounded cleanup, then re-raises Cancelled.
"""

from __future__ import annotations

import shlex
from collections.abc import Awaitable, Callable

import attrs
import trio

from linkops.errors import ExecutionTimeoutError, LinkOpsError
from linkops.ssh.bridge import ExecStream, SshConnection
from linkops.ssh.errors import SshError

KILL_GRACE = 2.0
PGID_PREFIX = b"LINKOPS_PGID "
PGID_LINE_MAX = 64
# After a stop/timeout: how long to wait for the PGID line if it had not arrived yet.
PGID_WAIT = 3.0
CLEANUP_DEADLINE = KILL_GRACE + 6.0
# After a stop, how long a launch already sent may still take to be answered before its
# connection is closed (a healthy host answers within a round trip or two).
LAUNCH_GRACE = 3.0

WRAPPER = r"""if [ -z "$LINKOPS_SETSID" ]; then
  read -r _ _ _ _ pg _ 2>/dev/null </proc/$$/stat
  [ "$pg" = "$$" ] ||
    LINKOPS_SETSID=1 exec setsid -w bash -c "$BASH_EXECUTION_STRING" "$0" "$@"
fi
unset LINKOPS_SETSID
if [ -n "$1" ]; then
  echo LINKOPS_ID
  LC_ALL=C od -An -v -tx1 -N 513 -- "$1" 2>&1
  echo "LINKOPS_ID_END $?"
fi
shift
IFS= read -r go && [ "$go" = LINKOPS_GO ] || exit 125
echo "LINKOPS_PGID $$"
bash /dev/fd/3 "$@" 3<&0 </dev/null
rc=$?
trap "" TERM; kill -TERM -- -$$ 2>/dev/null; exit $rc
"""
GO = b"LINKOPS_GO\n"
ID_BEGIN = b"LINKOPS_ID\n"
ID_END = b"LINKOPS_ID_END "
# The identity report is ~1.6 KB of hex (513 bytes) or one error line; more is not ours.
ID_REPORT_MAX = 8192


def script_command(args: tuple[str, ...] | list[str], client_id_path: str | None = None) -> str:
    """The remote command line for one script run (see the module docstring)."""
    quoted = " ".join(shlex.quote(a) for a in (client_id_path or "", *args))
    return f"exec bash -c {shlex.quote(WRAPPER)} linkops-op {quoted}"


@attrs.frozen
class IdentityReport:
    """What the host said about its client ID file, shaped like a command's result.

    ``exit_code`` 0: ``content`` holds the file's first bytes (at most 513); otherwise
    ``message`` says why it could not be read (``od``'s error, or the wrapper's).
    """

    exit_code: int
    content: bytes
    message: bytes


def parse_identity(report: bytes) -> IdentityReport | None:
    """The ``LINKOPS_ID`` block at the start of stdout; None while it is incomplete.

    *Errors*: ValueError when the block is malformed (not produced by our wrapper).
    """
    if not report.startswith(ID_BEGIN[:len(report)]):
        raise ValueError("the host did not start with the client ID report")
    end = report.find(b"\n" + ID_END)
    if end < 0:
        return None
    status_line, sep, _ = report[end + 1 + len(ID_END):].partition(b"\n")
    if not sep:
        return None
    code = int(status_line)
    body = report[len(ID_BEGIN):end + 1]
    if code != 0:
        return IdentityReport(code, b"", body)
    return IdentityReport(0, bytes.fromhex(body.decode("ascii")), b"")


def identity_length(report: bytes) -> int:
    """How many bytes of ``report`` the (complete) identity block takes."""
    end = report.index(b"\n" + ID_END)
    return report.index(b"\n", end + 1) + 1


def kill_command(pgid: int, grace: float = KILL_GRACE) -> str:
    """TERM the group, wait, KILL, confirm; prints LINKOPS_GONE or LINKOPS_ALIVE.

    Runs under bash: dash's ``kill`` builtin does not take ``--`` before a negative PGID.
    """
    ticks = max(1, int(grace * 10))
    script = f"""pg={int(pgid)}
alive() {{
  # A zombie is gone for our purpose (it waits for its reaper): look for live members.
  if [ -r /proc/self/stat ]; then
    for f in /proc/[0-9]*/stat; do
      read -r line < "$f" 2>/dev/null || continue
      set -- ${{line##*) }}
      [ "$3" = "$pg" ] && [ "$1" != Z ] && return 0
    done
    return 1
  fi
  kill -0 -- -$pg 2>/dev/null
}}
gone() {{ echo LINKOPS_GONE; exit 0; }}
alive || gone
kill -TERM -- -$pg 2>/dev/null
i=0; while [ $i -lt {ticks} ]; do alive || gone; sleep 0.1; i=$((i+1)); done
kill -KILL -- -$pg 2>/dev/null
i=0; while [ $i -lt 30 ]; do alive || gone; sleep 0.1; i=$((i+1)); done
echo LINKOPS_ALIVE
"""
    return f"exec bash -c {shlex.quote(script)}"


async def kill_group(conn: SshConnection | None,
                     reconnect: Callable[[], Awaitable[SshConnection]],
                     pgid: int) -> bool:
    """End remote process group ``pgid``; True when it is confirmed gone.

    Tries ``conn`` first and a fresh connection (closed afterwards) if that fails.
    *Errors*: none — a failure to reach the host is reported as False.
    """
    command = kill_command(pgid)
    attempts: list[SshConnection | None] = [conn, None]
    for candidate in attempts:
        fresh: SshConnection | None = None
        try:
            if candidate is None or not candidate.is_healthy():
                fresh = await reconnect()
                candidate = fresh
            result = await candidate.run(command, timeout=KILL_GRACE + 5.0)
            return b"LINKOPS_GONE" in result.stdout
        except (LinkOpsError, OSError):
            continue
        finally:
            if fresh is not None:
                await fresh.aclose()
    return False


@attrs.define
class RunOutcome:
    exit_code: int | None = None
    timed_out: bool = False
    pgid: int | None = None
    remote_killed: bool | None = None
    error: str | None = None


OutputSink = Callable[[str, bytes], Awaitable[None]]


class RemoteScript:
    """One run of one script on one connection (see the module docstring).

    ``sink(stream, chunk)`` receives raw output bytes as they arrive (stdout minus the
    wrapper's lines); ``on_pgid(pgid)`` is awaited once the process group is known.
    With ``client_id_path``, call :meth:`open` first and decide on its report: then
    :meth:`run` (the script starts) or :meth:`aclose` (nothing runs).
    """

    def __init__(self, conn: SshConnection, reconnect: Callable[[], Awaitable[SshConnection]],
                 content: str, args: tuple[str, ...], *, sink: OutputSink,
                 on_pgid: Callable[[int], Awaitable[None]],
                 client_id_path: str | None = None) -> None:
        self.conn = conn
        self.reconnect = reconnect
        self.content = content.encode("utf-8")
        self.args = args
        self.sink = sink
        self.on_pgid = on_pgid
        self.client_id_path = client_id_path
        self.outcome = RunOutcome()
        self._stream: ExecStream | None = None
        # A stop closed the connection while the host had the exec and the script but had
        # not answered: it may have started, and no process group is known.
        self.unconfirmed = False
        self._head = b""
        self._pgid_done = False
        self._pgid_seen = trio.Event()

    async def open(self, identity_timeout: float = 15.0) -> IdentityReport | None:
        """Open the channel; with ``client_id_path``, the host's report on its client ID.

        Nothing has run yet when this returns. *Errors*: :class:`SshError` when the channel
        cannot be opened or the connection dies; :class:`ExecutionTimeoutError` when the
        report does not arrive within ``identity_timeout`` seconds; :class:`SshError`
        (reason ``closed``) when the host sent something that is not a report.
        """
        # Without a client-ID check the script can go with the exec, in one worker hop.
        payload = GO + self.content if self.client_id_path is None else None
        stream = await self._launch(script_command(self.args, self.client_id_path), payload)
        if self.client_id_path is None:
            return None
        report = b""
        errors = b""
        with trio.move_on_after(identity_timeout) as scope:
            while (item := await stream.receive()) is not None:
                name, chunk = item
                if name == "stderr":
                    errors = (errors + chunk)[-ID_REPORT_MAX:]
                    continue
                report += chunk
                try:
                    parsed = parse_identity(report)
                    if parsed is None and len(report) > ID_REPORT_MAX:
                        raise ValueError("too long")
                except ValueError:
                    raise SshError("the host's client ID report is not one LinkOps wrote: "
                                   f"{report[:80]!r}", reason="closed") from None
                if parsed is not None:
                    self._head = report[identity_length(report):]
                    return parsed
            # The wrapper ended before reporting (no bash, no setsid…): say what it said.
            code = await stream.wait_exit()
            return IdentityReport(code if code != 0 else 125, b"",
                                  errors or b"the wrapper ended without a report")
        assert scope.cancelled_caught
        raise ExecutionTimeoutError(f"no client ID report within {identity_timeout:g} s")

    async def _launch(self, command: str, payload: bytes | None) -> ExecStream:
        """The exec hop, never abandoned: it may start the script, and a stop must then have
        the channel to kill it through. It runs shielded (bounded by the SSH layer's request
        deadline); a stop meanwhile only shortens the wait: :data:`LAUNCH_GRACE` seconds
        later the connection is closed, which ends the hop at once. The script's fate is
        then unknown (the host took the request and did not answer): :attr:`unconfirmed`.
        """
        done = trio.Event()
        result: list[ExecStream | SshError] = []
        progress: set[str] = set()

        async def hop() -> None:
            try:
                with trio.CancelScope(shield=True):
                    result.append(await self.conn.open_exec(command, stdin=payload,
                                                            progress=progress))
            except SshError as exc:
                result.append(exc)
            finally:
                done.set()

        async def close_on_stop() -> None:
            try:
                await done.wait()
            except trio.Cancelled:
                with trio.CancelScope(shield=True):
                    with trio.move_on_after(LAUNCH_GRACE):
                        await done.wait()
                    if not done.is_set():
                        # Still opening the channel: the exec was never sent, nothing ran.
                        self.unconfirmed = payload is not None and "request" in progress
                        self.conn.abort()
                        await done.wait()
                raise

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(hop)
                nursery.start_soon(close_on_stop)
        finally:
            if result and isinstance(result[0], ExecStream):
                self._stream = result[0]
        outcome = result[0]
        if isinstance(outcome, SshError):
            raise outcome
        return outcome

    @property
    def launched(self) -> bool:
        """``LINKOPS_GO`` went out: from here on the script may be running on the host."""
        return self._stream is not None and self._stream.stdin_done

    async def abandon(self) -> None:
        """Stopped (or failed) before :meth:`run`: leave nothing running.

        Not launched: closing the channel sends EOF and the wrapper exits 125 having run
        nothing. Launched: end its process group exactly as for a running script (the PGID
        line, then the kill and its confirmation: ``outcome.remote_killed``). Shielded.
        """
        stream = self._stream
        if stream is not None and stream.stdin_done:
            self.outcome.exit_code = None
            await self._cleanup(stream)
        await self.aclose()

    async def aclose(self) -> None:
        """Close the channel; a script that was not started never runs (stdin EOF)."""
        if self._stream is not None:
            with trio.CancelScope(shield=True):
                await self._stream.aclose()

    async def run(self, timeout: float) -> RunOutcome:  # noqa: ASYNC109 - the contract
        """Start the script and run it to completion, or until ``timeout`` seconds (then
        kill: ``timed_out``). Opens the channel first unless :meth:`open` did.

        *Cancellation*: on Cancelled the remote group is killed (shielded, bounded) and
        Cancelled propagates; ``outcome`` says whether the kill was confirmed.
        *Errors*: :class:`SshError` when the channel cannot be opened or the connection dies.
        """
        if self._stream is None:
            await self.open()
        stream = self._stream
        assert stream is not None
        payload = GO + self.content
        try:
            with trio.move_on_after(timeout) as deadline:
                if not stream.stdin_done and stream.can_send_now(len(payload)):
                    # It cannot wait for the window, so no reader is needed meanwhile; and it
                    # is never abandoned halfway (a stop then knows the script was sent).
                    with trio.CancelScope(shield=True):
                        stream.stdin_done = True
                        await self._feed(stream, payload)
                if stream.stdin_done:
                    await self._pump(stream)
                else:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._feed, stream, payload)
                        await self._pump(stream)
            if deadline.cancelled_caught:
                self.outcome.timed_out = True
                self.outcome.exit_code = None
                await self._cleanup(stream)
        except BaseException:
            if not self.outcome.timed_out:
                self.outcome.exit_code = None
                await self._cleanup(stream)
            raise
        finally:
            await self.aclose()
        return self.outcome

    async def _pump(self, stream: ExecStream) -> None:
        if self._head:
            head, self._head = self._head, b""
            await self._handle("stdout", head)
        while (item := await stream.receive()) is not None:
            await self._handle(*item)
        self.outcome.exit_code = await stream.wait_exit()

    async def _feed(self, stream: ExecStream, payload: bytes) -> None:
        try:
            await stream.send_stdin(payload, eof=True)
        except SshError:
            pass  # the wrapper ended early; its exit code and stderr say why

    async def _handle(self, name: str, chunk: bytes) -> None:
        if name == "stdout" and not self._pgid_done:
            self._head += chunk
            line, sep, rest = self._head.partition(b"\n")
            if not sep and len(self._head) < PGID_LINE_MAX:
                return
            self._pgid_done = True
            self._head = b""
            if sep and line.startswith(PGID_PREFIX):
                try:
                    self.outcome.pgid = int(line[len(PGID_PREFIX):].strip())
                except ValueError:
                    rest = line + sep + rest
                else:
                    self._pgid_seen.set()
                    await self.on_pgid(self.outcome.pgid)
            else:
                rest = line + sep + rest  # no wrapper line (setsid missing?): plain output
            if rest:
                await self.sink("stdout", rest)
            return
        await self.sink(name, chunk)

    async def _cleanup(self, stream: ExecStream) -> None:
        """Kill the remote group; shielded so that a stop cannot abandon it halfway."""
        with trio.CancelScope(shield=True), trio.move_on_after(CLEANUP_DEADLINE):
            if self.outcome.pgid is None:
                # Stopped before the PGID line arrived: read until it does (briefly).
                with trio.move_on_after(PGID_WAIT):
                    while not self._pgid_done:
                        item = await stream.receive()
                        if item is None:
                            break
                        await self._handle(*item)
            if self.outcome.pgid is None:
                self.outcome.remote_killed = False
                self.outcome.error = "the remote process group was never reported"
                return
            self.outcome.remote_killed = await kill_group(self.conn, self.reconnect,
                                                          self.outcome.pgid)
        if self.outcome.remote_killed is None:
            self.outcome.remote_killed = False
