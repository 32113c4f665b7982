"""How one script is started on a host, streamed, and — when stopped or timed out — killed.

*Launch* (decision): one exec channel runs ``exec bash -c WRAPPER linkops-op ARG…`` (every
argument through :func:`shlex.quote`, so a flag value is one literal argument and can never
inject shell). The script text is sent on the channel's stdin, then EOF. The wrapper:

1. ``cat``\\ s stdin into a private temp file (``umask 077``, ``mktemp``), opens it on fd 3 and
   deletes it at once — nothing is left behind even if everything is killed;
2. runs ``setsid -w bash -c 'echo "LINKOPS_PGID $$"; bash /dev/fd/3 "$@"; …'`` with stdin
   ``/dev/null``: the script runs under **bash** (never its shebang's interpreter), in a new
   session and process group whose id the group leader prints as the first stdout line, and
   its own stdin is not the script;
3. when the script exits, the group leader sends ``SIGTERM`` to what is left of the group
   (it ignores that signal itself) and exits with the script's status. Decision: a script's
   background jobs end with it — otherwise one that keeps stdout open would hold the task
   until its timeout. A script that must leave a daemon behind detaches it on purpose
   (``systemd-run``, ``setsid``).

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

from linkops.errors import LinkOpsError
from linkops.ssh.bridge import ExecStream, SshConnection
from linkops.ssh.errors import SshError

KILL_GRACE = 2.0
PGID_PREFIX = b"LINKOPS_PGID "
PGID_LINE_MAX = 64
# After a stop/timeout: how long to wait for the PGID line if it had not arrived yet.
PGID_WAIT = 3.0
CLEANUP_DEADLINE = KILL_GRACE + 6.0

WRAPPER = r"""umask 077
f=$(mktemp "${TMPDIR:-/tmp}/linkops-op.XXXXXXXXXX") ||
  { echo "linkops: mktemp failed" >&2; exit 125; }
if ! cat > "$f"; then rm -f "$f"; echo "linkops: cannot store the script" >&2; exit 125; fi
exec 3<"$f"
rm -f "$f"
setsid -w bash -c 'echo "LINKOPS_PGID $$"; bash /dev/fd/3 "$@"; rc=$?
trap "" TERM; kill -TERM -- -$$ 2>/dev/null; exit $rc' linkops-op "$@" </dev/null
"""


def script_command(args: tuple[str, ...] | list[str]) -> str:
    """The remote command line for one script run (see the module docstring)."""
    quoted = " ".join(shlex.quote(a) for a in args)
    return f"exec bash -c {shlex.quote(WRAPPER)} linkops-op {quoted}".rstrip()


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

    ``sink(stream, chunk)`` receives raw output bytes as they arrive (stdout minus the PGID
    line); ``on_pgid(pgid)`` is awaited once the process group is known.
    """

    def __init__(self, conn: SshConnection, reconnect: Callable[[], Awaitable[SshConnection]],
                 content: str, args: tuple[str, ...], *, sink: OutputSink,
                 on_pgid: Callable[[int], Awaitable[None]]) -> None:
        self.conn = conn
        self.reconnect = reconnect
        self.content = content.encode("utf-8")
        self.args = args
        self.sink = sink
        self.on_pgid = on_pgid
        self.outcome = RunOutcome()
        self._head = b""
        self._pgid_done = False
        self._pgid_seen = trio.Event()

    async def run(self, timeout: float) -> RunOutcome:  # noqa: ASYNC109 - the contract
        """Run to completion, or until ``timeout`` seconds (then kill: ``timed_out``).

        *Cancellation*: on Cancelled the remote group is killed (shielded, bounded) and
        Cancelled propagates; ``outcome`` says whether the kill was confirmed.
        *Errors*: :class:`SshError` when the channel cannot be opened or the connection dies.
        """
        stream = await self.conn.open_exec(script_command(self.args))
        try:
            with trio.move_on_after(timeout) as deadline:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._feed, stream)
                    while (item := await stream.receive()) is not None:
                        await self._handle(*item)
                    self.outcome.exit_code = await stream.wait_exit()
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
            with trio.CancelScope(shield=True):
                await stream.aclose()
        return self.outcome

    async def _feed(self, stream: ExecStream) -> None:
        try:
            await stream.send_stdin(self.content)
            await stream.close_stdin()
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
