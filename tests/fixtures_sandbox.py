"""Fixtures for the sandbox area."""
