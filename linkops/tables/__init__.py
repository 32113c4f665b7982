"""The table query engine ("Excel tables in a web app", SPEC §3 Tables).

- :mod:`.schema` — the declared tables and their typed columns (the allow-list).
- :mod:`.query` — request validation into a normalized query.
- :mod:`.compile` — a query → one parameterised SQL statement with a keyset predicate.
- :mod:`.cursor` — opaque HMAC-signed cursors.
- :mod:`.service` — :class:`TableService`, what ``services.tables`` is.
"""

from linkops.tables.schema import TABLES
from linkops.tables.service import TableService

__all__ = ["TABLES", "TableService"]
