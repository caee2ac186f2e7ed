"""Typed application state: every web.AppKey of the server, in one place."""

from __future__ import annotations

from datetime import tzinfo
from typing import TYPE_CHECKING

from aiohttp import web

from .accounts import Accounts
from .admin import AccountAdmin
from .clock import Clock
from .config import Config
from .contacts import Contacts
from .hub import Hub
from .mailbox import Mailbox
from .metrics import Metrics
from .services.broadcast import Broadcaster
from .services.catalog import Services
from .services.scheduler import Scheduler
from .store.db import Database
from .web.server import Connections

if TYPE_CHECKING:  # the relay module loads bleak: only when the relay runs
    from .relay.relay import Relay

config = web.AppKey("config", Config)
clock = web.AppKey("clock", Clock)
db = web.AppKey("db", Database)
accounts = web.AppKey("accounts", Accounts)
admin = web.AppKey("admin", AccountAdmin)  # account administration (admin pages)
started_at = web.AppKey("started_at", float)  # clock.monotonic() at start-up
hub = web.AppKey("hub", Hub)
mailbox = web.AppKey("mailbox", Mailbox)
contacts = web.AppKey("contacts", Contacts)
zone = web.AppKey("zone", tzinfo)  # BIPUPU_TIMEZONE, resolved at start-up: days of quotas and broadcasts
services = web.AppKey("services", Services)
broadcaster = web.AppKey("broadcaster", Broadcaster)
scheduler = web.AppKey("scheduler", Scheduler)
metrics = web.AppKey("metrics", Metrics)
connections = web.AppKey("connections", Connections)  # open connections per client address (web/server.py)
relay: web.AppKey[Relay] = web.AppKey("relay")  # the BLE relay, when BIPUPU_BLE_DEVICE and _OWNER are set
relay_options = web.AppKey("relay_options", dict)  # what init_app was given for the relay (tests: a fake device)
