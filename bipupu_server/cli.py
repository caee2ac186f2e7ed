"""`python run.py` and `bipupu-server`: flags, subcommands and the environment, and nothing else."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import secrets
import sys
from pathlib import Path
from typing import Sequence

from . import __version__, keys
from .app import init_app, open_accounts
from .clock import SystemClock
from .config import Config, ConfigError, from_environment
from .errors import AppError, Invalid
from .identity import check_username
from .passwords import check_password
from .store.backup import BackupError, backup_database
from .store.db import DatabaseError
from .web import server
from .web.accesslog import RedactingAccessLogger, RedactingFormatter

log = logging.getLogger("bipupu")


class Failure(Exception):
    """Ends the command with one line on stderr and exit status 1."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not the usage block
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> Parser:
    parser = Parser(description="Bipupu server: postcards for pupu devices.")
    parser.add_argument("--version", action="version", version=f"bipupu-server {__version__}")
    parser.add_argument("--host", help="bind address (BIPUPU_HOST, default 0.0.0.0)")
    parser.add_argument("--port", type=int, help="port (BIPUPU_PORT, default 8080)")
    parser.add_argument("--data-dir", help="holds bipupu.db and the secret key (BIPUPU_DATA_DIR, default ./data)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    commands.add_parser("serve", help="serve HTTP and WebSocket (the default)")
    backup = commands.add_parser("backup", help="write a consistent hot backup of the database to FILE")
    backup.add_argument("file")
    create = commands.add_parser("create-user", help="create an account (works with registration closed)")
    create.add_argument("--username", help="asked for when omitted")
    create.add_argument("--nickname")
    create.add_argument("--admin", action="store_true", help="make the account an admin")
    _password_options(create)
    reset = commands.add_parser("reset-password", help="set a new password and sign out every session")
    reset.add_argument("username")
    _password_options(reset)
    return parser


def _password_options(parser: argparse.ArgumentParser) -> None:
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    how.add_argument("--generate", action="store_true", help="generate a password and print it")


def check_admin_settings(config: Config) -> None:
    """The first admin's credentials follow everyone's rules; refuse them before any work."""
    try:
        check_username(config.admin_username)
        if config.admin_password is not None:
            check_password(config.admin_password)
    except Invalid as exc:
        source = "BIPUPU_ADMIN_USERNAME" if exc.field == "username" else "BIPUPU_ADMIN_PASSWORD"
        raise ConfigError(f"{source}: {exc.message}") from None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.umask(0o077)  # the database holds password hashes; the secret key signs every token
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # whatever a library logs, no token or password is written
        handler.setFormatter(RedactingFormatter(handler.formatter))
    try:
        if args.command == "backup":
            return backup(args)
        config = from_environment(os.environ, host=args.host, port=args.port, data_dir=args.data_dir)
        check_admin_settings(config)
        if args.command in (None, "serve"):
            return serve(config)
        if args.command == "create-user":
            return asyncio.run(create_user(config, args))
        return asyncio.run(reset_password(config, args))
    except (ConfigError, DatabaseError, BackupError, Failure) as exc:
        print(f"bipupu: error: {exc}", file=sys.stderr)
        return 1
    except AppError as exc:
        print(f"bipupu: error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def serve(config: Config) -> int:
    app = init_app(config, clock=SystemClock())

    def listening() -> None:  # called once the socket is bound, not before
        log.info("bipupu-server %s on http://%s:%d, data in %s", __version__, config.host, config.port,
                 config.data_dir)

    try:
        server.run(app, app[keys.connections], config.host, config.port, loop=_event_loop(), listening=listening,
                   access_log_class=RedactingAccessLogger)
    except OSError as exc:
        raise Failure(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}") from None
    log.info("stopped cleanly")
    return 0


def _event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (much faster on a small board), else asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        log.info("uvloop is not installed: using asyncio's event loop")
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def backup(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir or os.environ.get("BIPUPU_DATA_DIR") or "./data").expanduser().resolve()
    size = backup_database(data_dir / "bipupu.db", Path(args.file))
    print(f"backup written to {Path(args.file).resolve()} ({size} bytes)")
    return 0


def _read_password(args: argparse.Namespace) -> str:
    if args.generate:
        return secrets.token_urlsafe(15)
    if args.password_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise Failure("no password on standard input")
        return line
    if not sys.stdin.isatty():
        raise Failure("no terminal to ask for a password: use --password-stdin or --generate")
    first = getpass.getpass("New password: ")
    if first != getpass.getpass("Again: "):
        raise Failure("the two passwords differ")
    return first


async def create_user(config: Config, args: argparse.Namespace) -> int:
    username = args.username
    if username is None:
        if not sys.stdin.isatty():
            raise Failure("no terminal to ask for a username: use --username")
        username = input("Username: ")
    password = _read_password(args)
    async with open_accounts(config, SystemClock()) as (_, accounts):
        user = await accounts.create_user(username, password, args.nickname, is_admin=args.admin)
    role = "admin " if args.admin else ""
    print(f"created {role}user {user['username']!r} with bipupu_id {user['bipupu_id']}")
    if args.generate:
        print(f"password: {password}")
    return 0


async def reset_password(config: Config, args: argparse.Namespace) -> int:
    password = _read_password(args)
    async with open_accounts(config, SystemClock()) as (_, accounts):
        ended = await accounts.reset_password(args.username, password)
    print(f"password of {args.username!r} reset; {len(ended)} session(s) signed out")
    if args.generate:
        print(f"password: {password}")
    return 0



