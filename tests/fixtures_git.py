"""Fixtures for the git area."""
