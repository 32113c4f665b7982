"""Shared fixtures live in one module per area (tests/fixtures_*.py), loaded here.

Order matters: a fixtures module that imports another must come after it, so pytest can
rewrite the asserts of both.
"""

pytest_plugins = [
    "tests.fixtures_core",
    "tests.fixtures_sandbox",
    "tests.fixtures_git",
    "tests.fixtures_operations",
    "tests.fixtures_terminal",
    "tests.fixtures_browser",
    "tests.fixtures_package",
    "tests.fixtures_hostile",
]
