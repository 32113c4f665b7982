"""The inventory service: Git sync (one-shot and periodic), its status, and secrets.

A sync = fetch the branch head (:mod:`.git`), load and validate the checkout
(:mod:`.validate`, in a worker thread), read ``secrets.ini``, then write ``machines``,
``scripts`` and the ``git_sync_history`` row in ONE transaction (:mod:`.store`). Any failure
before that write leaves the previous inventory untouched; the failure is recorded in
``git_sync_history`` and returned as a :class:`SyncResult` carrying the structured error.

*Concurrency*: at most one sync runs at a time. A caller that arrives while a sync is running
waits for it and receives **that** sync's result instead of starting another one right after
(pressing "Sync" twice, or a manual sync during the scheduled one, costs one fetch). If the
running sync was cancelled, the waiter runs its own.

*Cancellation*: cancelling :meth:`InventoryService.sync` kills the git process group; the
database transaction is atomic, so the inventory is either the old one or the new one.

*Errors*: :meth:`InventoryService.sync` does not raise for sync failures (they are results);
:meth:`SyncResult.raise_for_error` re-raises the :class:`~linkops.errors.LinkOpsError` for the
web layer (400 ``YAML_PARSE_ERROR``/``VALIDATION_ERROR``/``NON_BASH_SCRIPT``, 503
``GIT_UNREACHABLE``, …).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import trio

from linkops.config import Settings
from linkops.db import Database, loads
from linkops.errors import LinkOpsError, UnavailableError, ValidationError
from linkops.inventory import queries, store
from linkops.inventory.git import GitCheckout
from linkops.inventory.remote import RemoteUrl, parse_remote_url
from linkops.inventory.secrets import (
    MAX_SECRETS_BYTES,
    Secrets,
    parse_secrets_bytes,
    read_secrets_file,
)
from linkops.inventory.validate import Inventory, load_inventory, read_repo_file
from linkops.models import Link, Script
from linkops.ssh.errors import SshKeyError
from linkops.ssh.keys import check_key_file, resolve_key_path
from linkops.timeutil import now_iso

log = logging.getLogger("linkops.inventory")


@attrs.frozen
class SyncResult:
    success: bool
    commit_hash: str | None
    timestamp: str
    changes: dict[str, Any]
    forced: bool = False
    error: LinkOpsError | None = None
    warnings: tuple[dict[str, Any], ...] = ()
    # The commit whose content is active after this sync (the previous one after a failure).
    active_commit: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "success": self.success,
            "commit_hash": self.commit_hash,
            "timestamp": self.timestamp,
            # The message as text (what a status line shows); code and details beside it.
            "error": self.error.message if self.error else None,
            "error_code": self.error.code if self.error else None,
            "error_details": self.error.details if self.error else None,
            "changes": self.changes,
            "forced": self.forced,
            "warnings": list(self.warnings),
            "active_commit": self.active_commit,
        }

    def raise_for_error(self) -> None:
        if self.error is not None:
            raise self.error


def _no_changes() -> dict[str, Any]:
    return {kind: {"added": [], "removed": [], "updated": []} for kind in ("links", "scripts")}


class InventoryService:
    """Owns the configuration repository checkout and the inventory tables.

    Construct with ``InventoryService(settings, db)``; run :meth:`run` in the root nursery for
    the periodic sync (``[git] sync_interval_minutes``, 0 = off).
    """

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self._lock = trio.Lock()
        self._generation = 0
        self._last_result: SyncResult | None = None
        self._secrets: Secrets | None = None

    # -- public ---------------------------------------------------------------------------

    @property
    def repository_display(self) -> str:
        raw = self.settings.git.repository_url
        try:
            return parse_remote_url(raw).display if raw else ""
        except LinkOpsError:
            return "(invalid repository URL)"

    @property
    def secrets(self) -> Secrets | None:
        """The ``secrets.ini`` of the last successful sync (never serve it)."""
        return self._secrets

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Sync at start and then every ``sync_interval_minutes`` (returns at once if 0)."""
        task_status.started()
        interval = self.settings.git.sync_interval_minutes
        if interval <= 0 or not self.settings.git.repository_url:
            return
        while True:
            try:
                await self.sync(trigger="scheduled")
            except Exception:  # a bug or a broken database must not end the loop
                log.exception("inventory.sync_loop_error",
                              extra={"context": {"repository": self.repository_display}})
            await trio.sleep(interval * 60)

    async def sync(self, *, trigger: str = "manual") -> SyncResult:
        """One sync, or the result of the sync already running (see the module docstring)."""
        seen = self._generation
        async with self._lock:
            if self._generation != seen and self._last_result is not None:
                return self._last_result
            result = await self._sync(trigger)
            self._last_result = result
            self._generation += 1
            return result

    async def status(self) -> dict[str, Any]:
        """``GET /api/git/status``: the last attempt, the active commit, no credentials."""
        def read(conn: Any) -> tuple[Any, Any]:
            last = conn.execute("SELECT * FROM git_sync_history ORDER BY id DESC LIMIT 1"
                                ).fetchone()
            good = conn.execute("SELECT * FROM git_sync_history WHERE status = 'success' "
                                "ORDER BY id DESC LIMIT 1").fetchone()
            return last, good

        last, good = await self.db.read(read)
        error = loads(last["error"]) if last is not None and last["error"] else None
        syncing = self._lock.locked()
        if syncing:
            status = "syncing"
        elif last is None:
            status = "never"
        else:
            status = last["status"]
        return {
            "last_sync": last["ended_at"] if last else None,
            "last_success": good["ended_at"] if good else None,
            "commit_hash": good["commit_hash"] if good else None,
            "status": status,
            "error": error["message"] if error else None,
            "error_code": error["code"] if error else None,
            "error_details": error["details"] if error else None,
            "branch": self.settings.git.branch,
            "repository": self.repository_display,
            "sync_interval_minutes": self.settings.git.sync_interval_minutes,
            "in_progress": syncing,
        }

    # -- reads (thin wrappers so routes call one service method) -------------------------

    async def list_links(self, query: queries.LinkQuery | None = None
                         ) -> list[dict[str, Any]]:
        return await queries.list_links(self.db, query or queries.LinkQuery())

    async def get_link(self, link_id: str) -> dict[str, Any]:
        return await queries.get_link(self.db, link_id)

    async def list_scripts(self) -> list[dict[str, Any]]:
        return await queries.list_scripts(self.db)

    async def get_script(self, script_id: str) -> dict[str, Any]:
        return await queries.get_script(self.db, script_id)

    async def link_models(self, ids: Sequence[str] | None = None) -> dict[str, Link]:
        """Validated links for the SSH/operations layers (unknown ids are absent)."""
        return await queries.link_models(self.db, ids)

    async def script_models(self, ids: Sequence[str] | None = None) -> dict[str, Script]:
        """Scripts with the vetted content and sha256 stored at the active commit."""
        return await queries.script_models(self.db, ids)

    # -- one sync -------------------------------------------------------------------------

    async def _sync(self, trigger: str) -> SyncResult:
        started = now_iso()
        previous_active = await self.db.read(store.active_commit)
        commit: str | None = None
        forced = False
        try:
            remote = self._remote()
            local_secrets = await trio.to_thread.run_sync(self._local_secrets)
            git = self._git_checkout(remote, local_secrets or self._secrets)
            update = await git.update()
            commit, forced = update.commit, update.forced
            inventory, repo_secrets = await trio.to_thread.run_sync(
                self._load, self.settings.git.local_path)
            warnings = await trio.to_thread.run_sync(self._key_warnings, inventory)
        except LinkOpsError as exc:
            return await self._record_failure(trigger, started, commit, previous_active,
                                              forced, exc)
        except Exception as exc:
            log.exception("inventory.sync_internal_error",
                          extra={"context": {"repository": self.repository_display}})
            error = LinkOpsError(f"inventory sync failed unexpectedly ({type(exc).__name__})")
            return await self._record_failure(trigger, started, commit, previous_active,
                                              forced, error)

        def write(conn: Any) -> dict[str, Any]:
            ended = now_iso()
            changes = store.apply_inventory(conn, inventory, ended)
            store.record_sync(conn, started_at=started, ended_at=ended, status="success",
                              trigger=trigger, commit_hash=commit,
                              previous_commit=previous_active, forced=forced,
                              changes=changes, error=None)
            return {"changes": changes, "ended": ended}

        written = await self.db.write(write)
        self._secrets = local_secrets or repo_secrets
        result = SyncResult(success=True, commit_hash=commit, timestamp=written["ended"],
                            changes=written["changes"], forced=forced,
                            warnings=tuple(warnings), active_commit=commit)
        counts = {kind: {k: len(v) for k, v in c.items()} for kind, c in result.changes.items()}
        log.info("inventory.synced", extra={"context": {
            "repository": remote.display, "branch": self.settings.git.branch,
            "commit": commit, "forced": forced, "trigger": trigger, "changes": counts,
            "links": len(inventory.links), "scripts": len(inventory.scripts)}})
        by_key: dict[str, list[str]] = {}
        for warning in warnings:
            by_key.setdefault(warning["keyRef"], []).append(warning["link"])
        for key_ref, link_ids in by_key.items():
            message = next(w["message"] for w in warnings if w["keyRef"] == key_ref)
            log.warning("inventory.key_warning", extra={"context": {
                "repository": remote.display, "keyRef": key_ref, "links": link_ids,
                "message": message}})
        return result

    def _remote(self) -> RemoteUrl:
        if not self.settings.git.repository_url:
            raise UnavailableError("[git] repository_url is not configured",
                                   code="GIT_NOT_CONFIGURED")
        return parse_remote_url(self.settings.git.repository_url)

    def configured_checkout(self) -> GitCheckout:
        """The checkout a sync would use, credentials included (``linkops doctor`` probes the
        remote with it). Raises GIT_NOT_CONFIGURED or the URL's validation error."""
        return self._git_checkout(self._remote(), self._local_secrets())

    def _git_checkout(self, remote: RemoteUrl, current: Secrets | None) -> GitCheckout:
        """The checkout with credentials: secrets.ini values win over config.ini's."""
        git = self.settings.git
        token = git.token or None
        if current is not None and current.git_token:
            token = current.git_token
        known_hosts = self.settings.ssh.known_hosts_path
        if current is not None and current.known_hosts_path:
            known_hosts = Path(current.known_hosts_path)
        return GitCheckout(
            remote=remote, branch=git.branch, checkout=git.local_path,
            timeout=git.timeout_seconds, max_bytes=git.max_repo_mb * 1024 * 1024,
            ssh_key=git.ssh_key_path, known_hosts=known_hosts, token=token,
            strict_host_keys=self.settings.ssh.host_key_policy == "strict",
            ca_file=git.ca_file,
        )

    def _secrets_path(self) -> Path:
        return Path(self.settings.git.secrets_file or "secrets.ini")

    def _local_secrets(self) -> Secrets | None:
        """secrets.ini from the server's disk (an absolute ``[git] secrets_file``), if any."""
        path = self._secrets_path()
        return read_secrets_file(path, str(path)) if path.is_absolute() else None

    def _load(self, root: Path) -> tuple[Inventory, Secrets | None]:
        """Blocking: validate the checkout and read its secrets.ini, if it has one there."""
        inventory = load_inventory(root)
        path = self._secrets_path()
        if path.is_absolute():
            return inventory, None
        try:
            _, raw = read_repo_file(root, str(path), MAX_SECRETS_BYTES)
        except FileNotFoundError:
            return inventory, None
        except ValueError as exc:
            raise ValidationError(f"{path}: {exc}", code="SECRETS_PARSE_ERROR",
                                  details={"file": str(path)}) from None
        return inventory, parse_secrets_bytes(raw, str(path))

    def _key_warnings(self, inventory: Inventory) -> list[dict[str, Any]]:
        """Key files that links name but that are missing or not 0600 (refused at use)."""
        keys_dir = self.settings.ssh.keys_directory
        warnings: list[dict[str, Any]] = []
        checked: dict[str, str | None] = {}
        for link in inventory.links.values():
            name = link.ssh.keyRef or self.settings.ssh.default_key
            if name not in checked:
                try:
                    check_key_file(resolve_key_path(keys_dir, name))
                    checked[name] = None
                except SshKeyError as exc:
                    checked[name] = exc.message
            problem = checked[name]
            if problem is not None:
                warnings.append({"link": link.id, "keyRef": name, "message": problem})
        return warnings

    async def _record_failure(self, trigger: str, started: str, commit: str | None,
                              previous_active: str | None, forced: bool,
                              error: LinkOpsError) -> SyncResult:
        error_dict = {"code": error.code, "message": error.message, "details": error.details}

        def write(conn: Any) -> str:
            ended = now_iso()
            store.record_sync(conn, started_at=started, ended_at=ended, status="failed",
                              trigger=trigger, commit_hash=commit,
                              previous_commit=previous_active, forced=forced,
                              changes=_no_changes(), error=error_dict)
            return ended

        ended = await self.db.write(write)
        log.warning("inventory.sync_failed", extra={"context": {
            "repository": self.repository_display, "branch": self.settings.git.branch,
            "trigger": trigger, "commit": commit, "code": error.code, "error": error.message,
            "details": {k: v for k, v in error.details.items() if k != "problems"}}})
        return SyncResult(success=False, commit_hash=commit, timestamp=ended,
                          changes=_no_changes(), forced=forced, error=error,
                          active_commit=previous_active)


async def sync_once(settings: Settings, db: Database, *, trigger: str = "cli") -> SyncResult:
    """One sync outside the server (``linkops sync``)."""
    return await InventoryService(settings, db).sync(trigger=trigger)
