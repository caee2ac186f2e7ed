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
    scan = commands.add_parser("ble-scan", help="list the Bluetooth LE devices in reach: name, address, RSSI")
    scan.add_argument("--timeout", type=_seconds, default=10.0, help="seconds to listen (1-60, default 10)")
    send = commands.add_parser("ble-send", help="show one test card on the pupu device, TEXT")
    send.add_argument("text")
    send.add_argument("--device", help="name or address (default BIPUPU_BLE_DEVICE)")
    send.add_argument("--timeout", type=_seconds, default=10.0, help="seconds to look for the device (1-60, default 10)")
    return parser


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 1 <= value <= 60:
        raise argparse.ArgumentTypeError("between 1 and 60 seconds")
    return value


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
        if args.command == "ble-scan":
            return asyncio.run(ble_scan(args.timeout))
        if args.command == "ble-send":
            return asyncio.run(ble_send(args))
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
        access = {"access_log_class": RedactingAccessLogger} if config.access_log else {"access_log": None}
        server.run(app, app[keys.connections], config.host, config.port, loop=_event_loop(), listening=listening,
                   **access)
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





# The BLE relay's commands: bleak is imported only here and in the relay (a server without them never loads it).

async def ble_scan(timeout: float) -> int:
    from .relay.bluetooth import Unavailable, scan  # noqa: PLC0415

    try:
        seen = await scan(timeout)
    except Unavailable as exc:
        raise Failure(f"cannot scan: {exc}") from None
    if not seen:
        print(f"no Bluetooth LE device advertised within {timeout:g} s")
        return 0
    width = max(4, *(len(s.name) for s in seen))
    print(f"{'NAME':<{width}}  {'ADDRESS':<17}  RSSI")
    for s in seen:
        print(f"{s.name or '?':<{width}}  {s.address:<17}  {s.rssi if s.rssi is not None else '?'}")
    return 0


async def ble_send(args: argparse.Namespace, **relay_options) -> int:
    """Show one card; the relay's own settings (UUIDs, text limit) come from the environment."""
    from .clock import resolve_zone  # noqa: PLC0415
    from .relay.bluetooth import Bluetooth, NotFound, Unavailable  # noqa: PLC0415
    from bleak.exc import BleakError  # noqa: PLC0415

    from .relay.link import LinkLost  # noqa: PLC0415
    from .relay.relay import show_once  # noqa: PLC0415

    env = {k: v for k, v in os.environ.items() if k not in ("BIPUPU_BLE_DEVICE", "BIPUPU_BLE_OWNER")}
    config = from_environment(env, data_dir=args.data_dir)
    target = (args.device or os.environ.get("BIPUPU_BLE_DEVICE") or "").strip()
    if not target:
        raise Failure("which device? give --device NAME_OR_ADDRESS or set BIPUPU_BLE_DEVICE")
    if not args.text.strip():
        raise Failure("the test card needs some text")
    relay_options.setdefault("bluetooth", Bluetooth(scan_timeout_s=args.timeout))
    zone = await asyncio.to_thread(resolve_zone, config.timezone)
    try:
        card = await show_once(config, target, args.text, SystemClock(), zone, **relay_options)
    except Unavailable as exc:
        raise Failure(f"cannot send: {exc}") from None
    except NotFound as exc:
        raise Failure(f"{exc} (a device connected to a running relay does not advertise: send the test card "
                      "from the admin relay page instead)") from None
    except LinkLost as exc:
        raise Failure(f"the device did not take the card: {exc}") from None
    except (BleakError, EOFError, OSError, TimeoutError) as exc:  # a connect that failed
        raise Failure(f"could not connect to {target}: {exc or type(exc).__name__}") from None
    print(f"shown on {target}: {card.text!r}" + (" (cut to the device's limit)" if card.truncated else ""))
    return 0
