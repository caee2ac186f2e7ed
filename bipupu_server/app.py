"""The app factory: middlewares, routes and cleanup contexts — wiring only."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, AsyncIterator, Callable, Coroutine

from aiohttp import web

from . import keys
from .accounts import Accounts
from .admin import AccountAdmin
from .clock import Clock, SystemClock, resolve_zone
from .config import Config
from .contacts import Contacts
from .heap import HeapKeeper
from .hub import Hub
from .ids import MessageIds
from .mailbox import Mailbox
from .metrics import Metrics
from .passwords import PasswordHasher
from .protocol import SIGNED_OUT
from .services.broadcast import Broadcaster
from .services.catalog import Services
from .services.scheduler import Scheduler
from .store import messages
from .store.db import Database, DatabaseError
from .web import auth, contacts, health, me, messages as messages_web, openapi, services as services_web, ws
from .web.admin import admin_app
from .web.middleware import cors, count_responses, error_middleware
from .web.server import SERVER_NAME, Connections

STATIC = resources.files("bipupu_server") / "static"  # package data: a wheel serves it too
log = logging.getLogger(__name__)

BCRYPT_THREADS = 2  # bcrypt is CPU-bound: more threads than cores only queues work elsewhere

# (method, path, handler); the OpenAPI document must describe exactly these (tests/test_openapi.py).
ROUTES = [
    ("POST", "/auth/register", auth.register),
    ("POST", "/auth/login", auth.login),
    ("POST", "/auth/refresh", auth.refresh),
    ("POST", "/auth/logout", auth.logout),
    ("GET", "/me", me.get_me),
    ("PUT", "/me", me.put_me),
    ("PUT", "/me/password", me.put_password),
    ("GET", "/users/{bipupu_id}", me.get_user),
    ("GET", "/services", services_web.listing),
    ("POST", "/messages", messages_web.send),
    ("GET", "/messages", messages_web.mailbox),
    ("GET", "/messages/{message_id}", messages_web.get_message),
    ("DELETE", "/messages/{message_id}", messages_web.delete_message),
    ("POST", "/contacts", contacts.add_contact),
    ("GET", "/contacts", contacts.list_contacts),
    ("PUT", "/contacts/{contact_id}", contacts.rename_contact),
    ("DELETE", "/contacts/{contact_id}", contacts.remove_contact),
    ("POST", "/blocks", contacts.add_block),
    ("GET", "/blocks", contacts.list_blocks),
    ("DELETE", "/blocks/{blocked_id}", contacts.remove_block),
    ("POST", "/services/{service_id}/broadcast", services_web.broadcast),
    ("GET", "/ws", ws.websocket),
    ("GET", "/health", health.health),
    ("GET", "/metrics", health.metrics),
    ("GET", "/openapi.json", openapi.openapi),
]


@asynccontextmanager
async def open_accounts(config: Config, clock: Clock) -> AsyncIterator[tuple[Database, Accounts]]:
    """Open the database (migrating it), bootstrap the first admin, and close everything after."""
    executor = ThreadPoolExecutor(max_workers=BCRYPT_THREADS, thread_name_prefix="bcrypt")
    db = Database(config.db_path, monotonic=clock.monotonic)
    try:
        await db.open()
        try:
            accounts = Accounts(db, clock, config, PasswordHasher(config.bcrypt_cost, executor))
            generated = await accounts.bootstrap_admin(config.admin_username, config.admin_password)
            if generated is not None:
                announce_admin_password(config.admin_username, generated)
            yield db, accounts
        finally:
            await db.close()
    finally:
        executor.shutdown(wait=False, cancel_futures=True)


def announce_admin_password(username: str, password: str) -> None:
    """Show the generated admin password once, on the console only (never in the log)."""
    rule = "=" * 64
    print(f"{rule}\nFirst start: created the admin account {username!r} (bipupu_id 00000001).\n"
          f"Its password, shown only this once: {password}\n"
          f"Log in and change it (PUT /me/password), or set BIPUPU_ADMIN_PASSWORD before first start.\n{rule}",
          file=sys.stdout, flush=True)


CleanupContext = Callable[[web.Application], AsyncIterator[None]]


def background(name: str, start: Callable[[web.Application], Coroutine[Any, Any, None]]) -> CleanupContext:
    """A cleanup context that runs `start(app)` as a task while the app runs and cancels it after.

    `start` is called before the app serves, so whatever it puts on the app is there from the first request.
    """
    async def context(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(start(app), name=f"bipupu-{name}")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    context.__name__ = context.__qualname__ = name.replace("-", "_")
    return context


async def database(app: web.Application) -> AsyncIterator[None]:
    """The SQLite file, the accounts over it, and their administration."""
    async with open_accounts(app[keys.config], app[keys.clock]) as (db, accounts):
        app[keys.db] = db
        app[keys.accounts] = accounts
        app[keys.admin] = AccountAdmin(db, app[keys.clock], accounts, app[keys.hub])
        yield


async def mailbox(app: web.Application) -> AsyncIterator[None]:
    """Postcards and services need the database open: message ids continue after the newest stored one."""
    db, clock, config = app[keys.db], app[keys.clock], app[keys.config]
    zone = app[keys.zone] = await asyncio.to_thread(resolve_zone, config.timezone)
    ids = MessageIds(clock, await db.read(messages.newest_id))
    services = app[keys.services] = Services(db, clock, zone, ids)
    stored = app[keys.metrics].stored
    app[keys.mailbox] = Mailbox(db, clock, app[keys.hub], ids, config, zone, services, on_stored=stored)
    app[keys.contacts] = Contacts(db, clock)
    app[keys.broadcaster] = Broadcaster(db, clock, zone, app[keys.hub], ids, on_stored=stored)
    yield


def run_scheduler(app: web.Application) -> Coroutine[Any, Any, None]:
    """The daily broadcasts: first tick at start-up (catching up a send time missed while off)."""
    scheduler = app[keys.scheduler] = Scheduler(app[keys.db], app[keys.broadcaster], app[keys.clock], app[keys.zone])
    return scheduler.run()


async def watch_sessions(app: web.Application) -> None:
    """Close the sockets of sessions ended outside this server's request handlers.

    A `run.py reset-password` in another process, or an account deactivated in the
    database, cannot reach the hub; every ws_session_check_s the live sockets' sessions are
    checked and the ended ones closed with 4003.
    """
    hub, accounts, clock = app[keys.hub], app[keys.accounts], app[keys.clock]
    while True:
        await clock.sleep(app[keys.config].ws_session_check_s)
        live = hub.session_ids()
        try:
            ended = await accounts.ended_sessions(live) if live else set()
        except (sqlite3.Error, DatabaseError) as exc:
            log.warning("session check skipped: database unavailable: %s", exc)
            continue
        if ended:
            hub.close_sessions(ended, SIGNED_OUT, "signed out")


def run_relay(app: web.Application) -> Coroutine[Any, Any, None]:
    """The BLE relay (SPEC §8), only when BIPUPU_BLE_DEVICE and BIPUPU_BLE_OWNER are set: bleak loads here."""
    from .relay.relay import Relay  # noqa: PLC0415 — a server without the relay never imports bleak

    options = app[keys.relay_options]
    relay = app[keys.relay] = Relay(
        app[keys.config], app[keys.db], app[keys.mailbox], app[keys.hub], app[keys.clock], app[keys.zone],
        app[keys.mailbox].ids, on_state=app[keys.metrics].ble_state, **options)
    return relay.run()


def keep_heap(app: web.Application) -> Coroutine[Any, Any, None]:
    """Freeze what survives, every tick, so that no garbage-collector pass stalls the loop (heap.py)."""
    return HeapKeeper(app[keys.clock], app[keys.zone]).run()


async def close_idle_sockets(app: web.Application) -> None:
    """Close the sockets silent for ws_idle_timeout_s: one sweep every quarter of it, at most 5 s apart (a
    silent socket goes 90 to 95 s after its last frame)."""
    hub, idle_s = app[keys.hub], app[keys.config].ws_idle_timeout_s
    while True:
        await asyncio.sleep(min(idle_s / 4, 5.0))  # real time, as a socket's silence is
        hub.close_idle(time.monotonic() - idle_s)


def watch_loop_lag(app: web.Application) -> Coroutine[Any, Any, None]:
    """Measure event-loop lag for /metrics while the server runs."""
    return app[keys.metrics].watch_loop()


def _last_broadcast(app: web.Application) -> tuple[float, int]:
    broadcaster = app.get(keys.broadcaster)
    return (broadcaster.last.duration_s, broadcaster.last.sent) if broadcaster is not None else (0.0, 0)


async def common_headers(request: web.Request, response: web.StreamResponse) -> None:
    """SPEC §4: a Server header that names no version; nothing cached (answers carry tokens, mailboxes)."""
    response.headers["Server"] = SERVER_NAME
    response.headers.setdefault("Cache-Control", "no-store")


async def close_sockets(app: web.Application) -> None:
    """On shutdown, before handlers are awaited: every socket is told 1001 and its handler ends."""
    await app[keys.hub].close_all()


def init_app(config: Config, *, clock: Clock | None = None, **relay_options: Any) -> web.Application:
    """Build the application; used by run.py and by every test.

    `relay_options` go to the BLE relay (relay/relay.py): tests pass `bluetooth=` (a fake device's
    backend) and a short `timing=`.
    """
    # CORS only when origins are listed: otherwise browsers on other origins are refused, at no cost per request.
    middlewares = [count_responses, *([cors] if config.cors_origins else []), error_middleware]
    app = web.Application(client_max_size=config.max_body_bytes, middlewares=middlewares)
    app[keys.config] = config
    app[keys.clock] = clock or SystemClock()
    app[keys.started_at] = app[keys.clock].monotonic()
    app[keys.hub] = Hub(max_per_user=config.ws_max_per_user, queue_size=config.ws_queue_size)
    app[keys.connections] = Connections(config.connections_per_address, config.trusted_proxies)
    app[keys.metrics] = Metrics(app[keys.hub], lambda: _last_broadcast(app))
    app.cleanup_ctx.extend([database, mailbox, background("scheduler", run_scheduler),
                            background("session-watch", watch_sessions), background("loop-lag", watch_loop_lag),
                            background("idle-sweep", close_idle_sockets)])
    app[keys.relay_options] = relay_options
    if config.gc_keeper:
        app.cleanup_ctx.append(background("gc-keeper", keep_heap))
    if config.ble_device and config.ble_owner:
        app.cleanup_ctx.append(background("ble-relay", run_relay))
    app.on_shutdown.append(close_sockets)
    app.on_response_prepare.append(common_headers)
    for method, path, handler in ROUTES:
        if method == "GET":
            app.router.add_get(path, handler)  # and HEAD: monitors ask `curl -I /health`
        else:
            app.router.add_route(method, path, handler)
    app.router.add_static("/static", str(STATIC))
    app.add_subapp("/admin", admin_app())
    return app
