"""Fixtures for the core: settings in a temp dir, database, a running service."""
