"""Developer and CI entry points: `nox -s tests | lint | demo | package | bench`."""

from __future__ import annotations

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
    # Two workers, whole files each: the suite waits on sshd, git and Chromium far more than
    # it computes (16 min on one worker, 9 on two, on the 2-core CI machine). Files keep
    # their order and module fixtures; every fixture picks free ports and random names, so
    # two files never share a server, a namespace or a directory.
    session.run("pytest", "-n", "2", "--dist", "loadfile", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff (with the ASYNC rules) and mypy --strict."""
    session.install(".[lint]")
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
