"""``linkops`` command line (SPEC §7b). Exit: 0 ok, 1 failure (one line on stderr), 2 usage."""

from __future__ import annotations

import argparse
import getpass
import sys
import uuid
from collections.abc import Callable, Sequence

import trio

from linkops import __version__, config
from linkops.errors import ConfigError, LinkOpsError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class CliError(Exception):
    """A failure the CLI reports as one line on stderr with exit code 1."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="linkops", description="LinkOps control plane")
    parser.add_argument("--version", action="version", version=f"linkops {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--config",
            metavar="FILE",
            help="config file (default: $LINKOPS_CONFIG or /etc/linkops/config.ini)",
        )
        return p

    with_config(sub.add_parser("serve", help="run the service (what systemd starts)"))
    with_config(sub.add_parser("check-config", help="validate config, keys and repository access"))
    doctor = with_config(sub.add_parser(
        "doctor", help="check config, keys, Git remote, known_hosts, frontend, database, unit"))
    doctor.add_argument("--unit", metavar="FILE", help="the installed unit to rate "
                        "(default: /etc/systemd/system/linkopsd.service)")
    with_config(sub.add_parser("sync", help="one Git sync of the configuration repository"))
    sub.add_parser("enroll-id", help="print a new LINKOPS-<uuid4> client ID")

    user = sub.add_parser("user", help="manage users")
    user_sub = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    add = with_config(user_sub.add_parser("add", help="create a user"))
    add.add_argument("name")
    # Least privilege: an admin is always asked for explicitly (SPEC §10.2).
    add.add_argument("--role", default="operator", choices=("admin", "operator", "viewer"))
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    passwd = with_config(user_sub.add_parser("passwd", help="change a user's password"))
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true")
    unlock = with_config(user_sub.add_parser(
        "unlock", help="clear a user's failed logins (ends a lockout from every client)"))
    unlock.add_argument("name")
    role = with_config(user_sub.add_parser(
        "role", help="change a user's role (their live sessions end at the next recheck)"))
    role.add_argument("name")
    role.add_argument("role", choices=("admin", "operator", "viewer"))

    token = sub.add_parser("token", help="API tokens for scripts and CI")
    token_sub = token.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = with_config(token_sub.add_parser("create", help="create a token (shown once)"))
    create.add_argument("name")
    create.add_argument("--user", required=True, help="the user the token acts as")
    create.add_argument("--role", choices=("admin", "operator", "viewer"),
                        help="at most the user's role (default: the user's role)")
    create.add_argument("--days", type=int, default=30, help="lifetime in days (1-366)")
    with_config(token_sub.add_parser("list", help="list tokens (never their secrets)"))
    revoke = with_config(token_sub.add_parser("revoke", help="revoke a token by its id"))
    revoke.add_argument("id")

    demo = sub.add_parser("demo", help="sandbox fleet + config repo + demo admin + the service")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--workdir", help="keep the demo's files here (default: a temp dir)")
    return parser


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat: ") != password:
            raise CliError("passwords do not match")
    if not password:
        raise CliError("empty password")
    return password


def cmd_serve(args: argparse.Namespace) -> int:
    from linkops import server
    from linkops.logs import setup_logging

    settings = config.load(args.config)
    setup_logging(settings.logging)
    trio.run(server.run, settings)
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    from linkops import checks

    settings = config.load(args.config)
    problems = trio.run(checks.check_all, settings)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return EXIT_FAILURE
    print(f"{settings.source}: ok")
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from linkops import doctor

    return doctor.main(args.config, args.unit)


def _open_db(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from linkops.db import Database

    settings = config.load(args.config)
    return Database(settings.database.path)


def cmd_user(args: argparse.Namespace) -> int:
    from linkops import auth

    if args.user_command == "unlock":
        db = _open_db(args)
        try:
            removed = db.write_sync(lambda c: auth.unlock_user(c, args.name))
        finally:
            db.close()
        print(f"unlocked {auth.normalize_username(args.name)} ({removed} failed logins cleared)")
        return EXIT_OK
    if args.user_command == "role":
        db = _open_db(args)
        try:
            user = db.write_sync(lambda c: auth.set_role(c, args.name, args.role))
        finally:
            db.close()
        print(f"{user.username} is now {user.role}")
        return EXIT_OK
    # Hashed here, outside the write transaction (see auth.NewPassword).
    password = auth.NewPassword.of(_read_password(args.password_stdin))
    db = _open_db(args)
    try:
        if args.user_command == "add":
            user = db.write_sync(lambda c: auth.add_user(c, args.name, password, args.role))
            print(f"created user {user.username} ({user.role})")
        else:
            user = db.write_sync(lambda c: auth.change_password(c, args.name, password))
            print(f"password changed for {user.username}; older tokens are no longer valid")
    finally:
        db.close()
    return EXIT_OK


def cmd_token(args: argparse.Namespace) -> int:
    from linkops import auth, auth_tokens

    db = _open_db(args)
    try:
        if args.action == "create":
            norm = auth.normalize_username(args.user)
            row = db.read_sync(lambda c: c.execute(
                "SELECT role FROM users WHERE username_norm = ?", (norm,)).fetchone())
            if row is None:
                raise CliError(f"no user {args.user!r}")
            token, secret = db.write_sync(lambda c: auth_tokens.create_token(
                c, username=norm, creator_role=str(row["role"]), name=args.name,
                role=args.role, days=args.days, created_by="cli"))
            print(f"{token.id} {token.role} expires {token.expires_at}", file=sys.stderr)
            print(secret)  # alone on stdout, so `TOKEN=$(linkops token create …)` works
        elif args.action == "list":
            for t in db.read_sync(lambda c: auth_tokens.list_tokens(c, None)):
                state = "revoked" if t.revoked_at else "active"
                print(f"{t.id}\t{t.name}\t{t.username}\t{t.role}\t{state}\t"
                      f"expires {t.expires_at}\tlast used {t.last_used_at or 'never'}")
        else:
            t = db.write_sync(lambda c: auth_tokens.revoke_token(c, args.id, None))
            print(f"revoked {t.id} ({t.name})")
    finally:
        db.close()
    return EXIT_OK


def cmd_enroll_id(args: argparse.Namespace) -> int:
    print(f"LINKOPS-{uuid.uuid4()}")
    return EXIT_OK


def _quiet_logging(settings: config.Settings) -> None:
    """One-shot commands log to the service's log file (if writable), never to the terminal:
    the terminal gets exactly one line per outcome."""
    import logging

    from linkops.logs import setup_logging

    try:
        setup_logging(settings.logging, stderr=False)
    except OSError:
        logging.getLogger("linkops").addHandler(logging.NullHandler())
        logging.getLogger("linkops").propagate = False


def cmd_sync(args: argparse.Namespace) -> int:
    from linkops import checks

    settings = config.load(args.config)
    _quiet_logging(settings)
    message = trio.run(checks.sync_once, settings)
    print(message)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from linkops import demo

    return demo.main(args)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "serve": cmd_serve,
    "check-config": cmd_check_config,
    "doctor": cmd_doctor,
    "user": cmd_user,
    "token": cmd_token,
    "enroll-id": cmd_enroll_id,
    "sync": cmd_sync,
    "demo": cmd_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code not in (0, None) else EXIT_OK
    try:
        return COMMANDS[args.command](args)
    except (ConfigError, CliError) as exc:
        print(f"linkops: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except LinkOpsError as exc:
        print(f"linkops: {exc.message}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_FAILURE
