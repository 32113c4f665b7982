"""Shared fixtures live in one module per area (tests/fixtures_*.py), loaded here."""

pytest_plugins = [
    "tests.fixtures_browser",
    "tests.fixtures_core",
    "tests.fixtures_sandbox",
    "tests.fixtures_git",
    "tests.fixtures_terminal",
    "tests.fixtures_operations",
]
