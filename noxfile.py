"""Developer and CI entry points: `nox -s tests | lint | demo | package | bench`."""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True
PYTHON = "3.11"


def build_frontend(session: nox.Session) -> None:
    """xterm.js and its fit addon from the npm lock into frontend/vendor/ (before install)."""
    session.run("python", "frontend/build.py", external=True)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole test suite (real sshd, git, SQLite and Chromium)."""
    build_frontend(session)
    session.install(".[test]")
    if session.posargs:  # a developer's selection: exactly that, in-process
        session.run("pytest", *session.posargs)
        return
    # Everything but the browser tests on two workers, whole files each: those tests wait on
    # sshd, git and subprocesses far more than they compute (16 min for the whole suite on
    # one worker on the 2-core CI machine). Files keep their order and module fixtures; every
    # fixture picks free ports and random names, so two files never share a server, a
    # namespace or a directory. The browser tests then run alone, one file after another:
    # they measure the page (long tasks, live updates, polling) and flaked when a second
    # worker loaded the machine.
    browser = sorted(str(p) for p in Path("tests").glob("test_browser_*.py"))
    session.run("pytest", "-n", "2", "--dist", "loadfile",
                "--ignore-glob=tests/test_browser_*.py", "tests")
    session.run("pytest", *browser)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff (with the ASYNC rules) and mypy --strict (linkops and bench/, which imports the
    test fixtures: both extras are installed so that their imports are typed, not guessed)."""
    session.install(".[lint,test,bench]")
    session.run("ruff", "check", "linkops", "tests", "bench", "noxfile.py")
    session.run("mypy")


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """A sandbox fleet, a local config repo, a demo admin and the web UI on 127.0.0.1:8000."""
    build_frontend(session)
    session.install(".")
    session.run("linkops", "demo", *session.posargs)


@nox.session(python=PYTHON)
def package(session: nox.Session) -> None:
    """sdist and wheel (the wheel carries the frontend)."""
    build_frontend(session)
    session.install("build")
    session.run("python", "-m", "build", "--outdir", "dist")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks; prints ratios against baselines measured in the same run."""
    session.install(".[bench,test]")
    session.run("python", "-m", "bench", *session.posargs)
