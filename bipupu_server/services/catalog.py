"""The service accounts users can write to, subscribe to, and read about (no HTTP here)."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any

import orjson

from ..identity import check_text
from ..clock import Clock, rfc3339
from ..errors import Conflict, Invalid, NotFound
from ..ids import MessageIds
from ..store import messages, services as store
from ..store.db import Database, Tx
from .commands import DEFAULT_WORDS, REPLY_PATTERN, action_for, check_commands, reply_text

SERVICE_ID = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")
SEND_TIME = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")
KINDS = ("fortune", "notice", "custom")
SUBSCRIBERS_PAGE = 50


def zone_name(zone: tzinfo) -> str:
    return getattr(zone, "key", None) or str(zone)


def send_instant(service: dict[str, Any], day: date, zone: tzinfo) -> datetime:
    """When the service's broadcast of `day` is due, in the broadcast zone."""
    hour, minute = map(int, service["send_time"].split(":"))
    return datetime.combine(day, time(hour, minute), zone)


def check_send_time(raw: Any) -> str:
    if not isinstance(raw, str) or not SEND_TIME.fullmatch(raw):
        raise Invalid("send_time must be HH:MM (24-hour)", field="send_time")
    return raw


class Services:
    """Service accounts: the catalogue, subscriptions by command, and admin edits."""

    def __init__(self, db: Database, clock: Clock, zone: tzinfo, ids: MessageIds):
        self.db = db
        self.clock = clock
        self.zone = zone
        self.ids = ids

    async def listing(self, bipupu_id: str) -> list[dict[str, Any]]:
        """GET /services: the active services and whether the caller is subscribed."""
        mine = await self.db.read(store.subscribed_ids, bipupu_id)
        return [{"id": s["id"], "name": s["name"], "description": s["description"],
                 "subscribed": s["kind"] == "notice" or s["id"] in mine}
                for s in await self.db.read(store.all_services) if s["is_active"]]

    def active_in(self, tx: Tx, service_id: str) -> dict[str, Any] | None:
        """The service a card is addressed to, if it exists and is switched on (inside a write job)."""
        row = store.by_id(tx, service_id) if SERVICE_ID.fullmatch(service_id) else None
        return row if row is not None and row["is_active"] else None

    def first_delivery(self, service: dict[str, Any], now: float) -> datetime:
        """When someone subscribing at `now` gets the first broadcast: today's, if still to come."""
        local = datetime.fromtimestamp(now, self.zone)
        due = send_instant(service, local.date(), self.zone)
        return due if due.timestamp() > now else send_instant(service, local.date() + timedelta(days=1), self.zone)

    def answer(self, tx: Tx, sender: str, service: dict[str, Any], text: str) -> dict[str, Any]:
        """Carry out the command in a card to `service` and store the service's reply (inside tx)."""
        action = action_for(service["commands"], text)
        now = self.clock.time()
        changed, first = False, None
        if service["kind"] != "notice":
            if action == "subscribe":
                changed = store.subscribe(tx, service["id"], sender, rfc3339(now))
                first = self.first_delivery(service, now)
            elif action == "unsubscribe":
                changed = store.unsubscribe(tx, service["id"], sender)
        row = {"id": self.ids.next(), "sender_id": service["id"], "receiver_id": sender,
               "content": reply_text(service, action, changed, first, zone_name(self.zone)),
               "msg_type": "COSMIC_BROADCAST", "pattern": orjson.dumps(REPLY_PATTERN).decode(),
               "created_at": rfc3339(now)}
        messages.insert(tx, messages.NewMessage(**row, client_msg_id=None, dropped=False))
        return row

    # admin views and edits

    async def admin_listing(self) -> list[dict[str, Any]]:
        """Every service, switched off ones too, with its subscribers and its newest daily run."""
        return await self.db.read(store.subscriber_counts)

    async def one(self, service_id: str) -> dict[str, Any]:
        """A service as an admin edits it: commands decoded, and how many people a broadcast now reaches."""
        row = await self.db.read(store.by_id, service_id) if SERVICE_ID.fullmatch(service_id) else None
        if row is None:
            raise NotFound("no such service", code="service_not_found")
        audience = None if row["kind"] == "notice" else service_id
        return {**row, "commands": orjson.loads(row["commands"]), "reaches_everyone": audience is None,
                "audience": await self.db.read(store.audience_size, audience)}

    async def subscribers(self, service_id: str, *, after: str | None = None,
                          limit: int = SUBSCRIBERS_PAGE) -> dict[str, Any]:
        """A page of the service's subscribers by bipupu_id; `next_after` continues it."""
        rows = await self.db.read(store.subscribers, service_id, after or "", limit + 1)
        return {"subscribers": rows[:limit], "next_after": rows[limit - 1]["bipupu_id"] if len(rows) > limit else None}

    async def create(self, service_id: Any, name: Any, description: Any, *, kind: Any = "custom",
                     commands: Any = None, send_time: Any = "00:00", daily_content: Any = None) -> dict[str, Any]:
        if not isinstance(service_id, str) or not SERVICE_ID.fullmatch(service_id) or len(service_id) > 64:
            raise Invalid("id must be lowercase dotted words, e.g. weather.daily", field="id")
        if kind not in KINDS:
            raise Invalid(f"kind must be one of {', '.join(KINDS)}", field="kind")
        row = {"id": service_id, "name": check_text(name, "name", 32),
               "description": check_text(description, "description", 200), "kind": kind,
               "commands": check_commands(commands if commands is not None else DEFAULT_WORDS),
               "send_time": check_send_time(send_time),
               "daily_content": None if daily_content is None else check_text(daily_content, "daily_content", 500),
               "is_active": 1, "created_at": rfc3339(self.clock.time())}

        def insert(tx: Tx) -> None:
            store.create(tx, row)

        try:
            await self.db.write(insert)
        except store.ServiceExists:
            raise Conflict("a service with this id exists", code="service_exists", field="id") from None
        return await self.db.read(store.by_id, service_id)

    async def update(self, service_id: str, **changes: Any) -> dict[str, Any]:
        """Edit name, description, commands, send_time, daily_content or is_active."""
        rules = {
            "name": lambda v: check_text(v, "name", 32),
            "description": lambda v: check_text(v, "description", 200),
            "commands": check_commands,
            "send_time": check_send_time,
            "daily_content": lambda v: None if v is None else check_text(v, "daily_content", 500),
            "is_active": lambda v: int(bool(v)),
        }
        unknown = set(changes) - set(rules)
        if unknown:
            raise Invalid(f"unknown field {sorted(unknown)[0]!r}", code="unknown_field", field=sorted(unknown)[0])
        clean = {name: rules[name](value) for name, value in changes.items()}
        if await self.db.read(store.by_id, service_id) is None:
            raise NotFound("no such service", code="service_not_found")

        def edit(tx: Tx) -> None:
            store.update(tx, service_id, clean)

        await self.db.write(edit)
        return await self.db.read(store.by_id, service_id)
