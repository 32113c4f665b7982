"""The inventory: links and scripts from the configuration Git repository, kept in SQLite.

Public surface: :class:`InventoryService` (sync, status, reads; ``services.inventory``),
:func:`sync_once` (``linkops sync``), :class:`SyncResult` and :class:`LinkQuery`.
Modules: ``remote`` (URL and branch checks), ``git`` (the git CLI, hardened),
``yaml_loader`` (safe YAML with lines), ``validate`` (SPEC §2 rules), ``problems``
(file:line errors), ``secrets`` (secrets.ini), ``store`` (all-or-nothing apply), ``queries``
(API reads), ``sync`` (the service).
"""

from linkops.inventory.queries import LinkQuery
from linkops.inventory.sync import InventoryService, SyncResult, sync_once

__all__ = ["InventoryService", "LinkQuery", "SyncResult", "sync_once"]
