"""Schema migrations, applied in order by :mod:`linkops.db` using ``PRAGMA user_version``.

Each migration is a file ``NNNN_name.sql``; its number is the user_version after it ran. Never
edit a migration that has shipped: add a new one.
"""
