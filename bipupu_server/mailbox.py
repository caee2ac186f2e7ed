"""Sending and listing postcards: the rules of the design (receiver, blocks, privacy, quotas), no HTTP."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any, Callable

import orjson

from .clock import Clock, rfc3339
from .config import Config
from .errors import Forbidden, Invalid, NotFound, RateLimited
from .hub import Hub
from .identity import BIPUPU_ID
from .ids import MessageIds, floor_id, is_message_id
from .ratelimit import TokenBucket
from .services.catalog import SERVICE_ID
from .store import messages, social
from .store.db import Database, Tx
from .text import trim

if TYPE_CHECKING:
    from .accounts import Principal
    from .services.catalog import Services

CONTENT_MAX = 500
USER_MSG_TYPES = ("USER_POSTCARD", "VOICE_TRANSCRIPT")
MSG_TYPES = (*USER_MSG_TYPES, "COSMIC_BROADCAST")
DIRECTIONS = ("received", "sent", "all")
PATTERN_MAX_BYTES = 512
CLIENT_MSG_ID_MAX = 64
LIMIT_DEFAULT, LIMIT_MAX = 50, 200
DURATION_MIN_S, DURATION_MAX_S = 1, 60

EFFECTS = ("steady", "blink", "breathe", "flash", "rainbow")
FONTS = ("default", "neon", "pixel", "serif", "handwriting")
COLOR = re.compile(r"#[0-9A-Fa-f]{6}")
SHORT_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")


def _short_name(field: str):
    def check(value: Any) -> str:
        if not isinstance(value, str) or not SHORT_NAME.fullmatch(value):
            raise Invalid(f"pattern.{field} must be a short lowercase name (1-32 of a-z 0-9 _ . -)",
                          field=f"pattern.{field}")
        return value
    return check


def _choice(field: str, choices: tuple[str, ...]):
    def check(value: Any) -> str:
        if value not in choices:
            raise Invalid(f"pattern.{field} must be one of {', '.join(choices)}", field=f"pattern.{field}")
        return value
    return check


def _color(value: Any) -> str:
    if not isinstance(value, str) or not COLOR.fullmatch(value):
        raise Invalid("pattern.led_color must look like #RRGGBB", field="pattern.led_color")
    return value.upper()


def _duration(value: Any) -> int:
    # JSON Schema's "integer" takes 1.0 too (a number with no fraction), and so does the server.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not DURATION_MIN_S <= value <= DURATION_MAX_S:
        raise Invalid(f"pattern.duration_s must be a whole number of seconds from {DURATION_MIN_S} to "
                      f"{DURATION_MAX_S}", field="pattern.duration_s")
    return value


def _vibrate(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid("pattern.vibrate must be true or false", field="pattern.vibrate")
    return value


PATTERN_RULES = {
    "led_color": _color,
    "effect": _choice("effect", EFFECTS),
    "font": _choice("font", FONTS),
    "screensaver": _short_name("screensaver"),
    "duration_s": _duration,
    "vibrate": _vibrate,
    "sound": _short_name("sound"),
}


def check_pattern(raw: Any) -> str:
    """How the pupu device shows a card; returns the stored JSON text."""
    if raw is None:
        return "{}"
    if not isinstance(raw, dict):
        raise Invalid("pattern must be a JSON object", field="pattern")
    pattern = {}
    for key, value in raw.items():
        rule = PATTERN_RULES.get(key)
        if rule is None:
            raise Invalid(f"pattern has no key {key!r} (known: {', '.join(PATTERN_RULES)})", field=f"pattern.{key}")
        pattern[key] = rule(value)
    encoded = orjson.dumps(pattern)
    if len(encoded) > PATTERN_MAX_BYTES:
        raise Invalid(f"pattern must be at most {PATTERN_MAX_BYTES} bytes as JSON", field="pattern")
    return encoded.decode()


def check_content(raw: Any) -> str:
    if not isinstance(raw, str):
        raise Invalid("content must be a string", field="content")
    content = trim(raw)
    if not 1 <= len(content) <= CONTENT_MAX:
        raise Invalid(f"content must be 1 to {CONTENT_MAX} characters after trimming", field="content")
    return content


def check_msg_type(raw: Any) -> str:
    if raw is None:
        return "USER_POSTCARD"
    if raw == "COSMIC_BROADCAST":
        raise Forbidden("only service accounts send COSMIC_BROADCAST", code="msg_type_not_allowed", field="msg_type")
    if raw not in USER_MSG_TYPES:
        raise Invalid(f"msg_type must be one of {', '.join(USER_MSG_TYPES)}", field="msg_type")
    return raw


def check_client_msg_id(raw: Any) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or not 1 <= len(raw) <= CLIENT_MSG_ID_MAX:
        raise Invalid(f"client_msg_id must be a string of 1 to {CLIENT_MSG_ID_MAX} characters", field="client_msg_id")
    return raw


def is_address(value: Any) -> bool:
    """A bipupu_id or a service id: what receiver_id and peer may hold."""
    return isinstance(value, str) and bool(BIPUPU_ID.fullmatch(value) or SERVICE_ID.fullmatch(value))


def message_view(row: dict[str, Any]) -> dict[str, Any]:
    """The message object of the API and of WebSocket pushes."""
    return {
        "id": row["id"],
        "sender_id": row["sender_id"],
        "receiver_id": row["receiver_id"],
        "content": row["content"],
        "msg_type": row["msg_type"],
        "pattern": orjson.loads(row["pattern"]),
        "created_at": row["created_at"],
    }


class Mailbox:
    """Postcards between users: who may write to whom, and what each mailbox shows."""

    def __init__(self, db: Database, clock: Clock, hub: Hub, ids: MessageIds, config: Config, zone: tzinfo,
                 services: Services, on_stored: Callable[[str, int], None] = lambda msg_type, count: None):
        self.on_stored = on_stored  # counts stored messages by type (metrics)
        self.db = db
        self.clock = clock
        self.hub = hub
        self.ids = ids
        self.zone = zone
        self.services = services
        self.stranger_daily = config.stranger_daily_limit
        self.rate_limit = config.rate_limit
        self.send_bucket = TokenBucket(config.send_burst, config.send_refill_s, clock, enabled=config.rate_limit)

    async def send(self, authorize: Callable[[Tx], Principal], receiver_id: Any, content: Any, msg_type: Any = None,
                   pattern: Any = None, client_msg_id: Any = None) -> tuple[dict[str, Any], bool]:
        """Accept a card from whoever `authorize` finds the request's session to be; returns (message, created).

        Past the body's shape, every rule is checked inside the write itself, in one trip to the
        writer thread and atomically with the insert: the session, the idempotency key (a repeat
        returns the original), the receiver and its blocks and privacy, the send rate and the
        stranger quota. A card to a service is a command, answered in the same commit.
        """
        content = check_content(content)
        msg_type = check_msg_type(msg_type)
        pattern_json = check_pattern(pattern)
        pattern = orjson.loads(pattern_json)  # as stored: what a retry is compared with
        client_msg_id = check_client_msg_id(client_msg_id)
        if not isinstance(receiver_id, str):
            raise Invalid("receiver_id must be a string", field="receiver_id")

        def store(tx: Tx) -> tuple[str, dict[str, Any], dict[str, Any] | None]:
            sender = authorize(tx).bipupu_id
            if client_msg_id is not None:
                earlier = messages.by_client_id(tx, sender, client_msg_id)
                if earlier is not None:
                    # A retry repeats its card; another card under the same key is a client bug that
                    # would otherwise be swallowed (the IETF Idempotency-Key draft; Stripe).
                    if (earlier["receiver_id"], earlier["content"], earlier["msg_type"]) != (
                            receiver_id, content, msg_type) or orjson.loads(earlier["pattern"]) != pattern:
                        raise Invalid("this client_msg_id was already used for another card",
                                      code="idempotency_key_reused", field="client_msg_id")
                    return "earlier", earlier, None
            if receiver_id == sender:
                raise Invalid("a card cannot be sent to yourself", code="self_message", field="receiver_id")
            service, receiver = None, None
            if SERVICE_ID.fullmatch(receiver_id):
                service = self.services.active_in(tx, receiver_id)
            elif BIPUPU_ID.fullmatch(receiver_id):
                receiver = social.recipient(tx, receiver_id, sender)
            if service is None and (receiver is None or not receiver["is_active"]):
                raise NotFound("no such receiver", code="receiver_not_found", field="receiver_id")
            wait = self.send_bucket.take(sender)  # only ever touched on the writer thread
            if wait is not None:
                raise RateLimited("you are sending too fast; slow down", wait)
            dropped = False
            if receiver is not None:
                if not receiver["trusted"] and self.rate_limit:
                    self._check_stranger_quota(tx, sender, receiver_id)
                # A block or contacts-only privacy drops the card silently: the sender cannot tell.
                dropped = bool(receiver["blocked"]) or (receiver["privacy"] == "contacts_only"
                                                        and not receiver["trusted"])
            row = {"id": self.ids.next(), "sender_id": sender, "receiver_id": receiver_id, "content": content,
                   "msg_type": msg_type, "pattern": pattern_json, "created_at": rfc3339(self.clock.time())}
            messages.insert(tx, messages.NewMessage(**row, client_msg_id=client_msg_id, dropped=dropped,
                                                    from_stranger=receiver is not None and not receiver["trusted"]))
            reply = self.services.answer(tx, sender, service, content) if service is not None else None
            return ("dropped" if dropped else "stored"), row, reply

        outcome, row, reply = await self.db.write(store)
        message = message_view(row)
        if outcome == "earlier":
            return message, False
        self.on_stored(msg_type, 1)
        # Pushes come after the commit and before any other await, so they keep id order.
        if reply is not None:
            self.on_stored(reply["msg_type"], 1)
            self.hub.publish(row["sender_id"], message_view(reply))
        elif outcome == "stored":
            self.hub.publish(receiver_id, message)
        return message, True

    def _check_stranger_quota(self, tx: Tx, sender: str, receiver_id: str) -> None:
        now = datetime.fromtimestamp(self.clock.time(), self.zone)
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        sent_today = messages.count_sent_since(tx, sender, receiver_id, floor_id(int(midnight.timestamp() * 1000)))
        if sent_today >= self.stranger_daily:
            tomorrow = (midnight + timedelta(days=1, hours=1)).replace(hour=0)  # 25 h: safe across DST
            raise RateLimited(f"a stranger may send the same person at most {self.stranger_daily} cards a day",
                              tomorrow.timestamp() - now.timestamp(), code="stranger_quota_exceeded")

    async def list(self, me: str, *, direction: str = "received", limit: int = LIMIT_DEFAULT,
                   before: str | None = None, since: str | None = None, msg_type: str | None = None,
                   peer: str | None = None) -> dict[str, Any]:
        """One page of a mailbox: newest first; oldest first after `since` (with `before` too: between the two)."""
        if direction not in DIRECTIONS:
            raise Invalid(f"direction must be one of {', '.join(DIRECTIONS)}", field="direction")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= LIMIT_MAX:
            raise Invalid(f"limit must be a whole number from 1 to {LIMIT_MAX}", field="limit")
        for name, value in (("before", before), ("since", since)):
            if value is not None and not is_message_id(value):
                raise Invalid(f"{name} must be a message id", field=name)
        if msg_type is not None and msg_type not in MSG_TYPES:
            raise Invalid(f"msg_type must be one of {', '.join(MSG_TYPES)}", field="msg_type")
        if peer is not None and not is_address(peer):
            raise Invalid("peer must be a bipupu_id or a service id", field="peer")
        if since is not None:  # the same read as the /ws replay, one row more to tell has_more
            views = await self.since(me, since, limit + 1, direction=direction, before=before, msg_type=msg_type,
                                     peer=peer)
        else:
            rows = await self.db.read(messages.mailbox, me, direction=direction, limit=limit + 1, before=before,
                                      msg_type=msg_type, peer=peer)
            views = [message_view(r) for r in rows]
        return {"messages": views[:limit], "has_more": len(views) > limit}

    async def since(self, bipupu_id: str, after_id: str | None, limit: int = messages.MAX_REPLAY, *,
                    direction: str = "received", before: str | None = None, msg_type: str | None = None,
                    peer: str | None = None, newest: bool = False) -> list[dict[str, Any]]:
        """Up to `limit` cards of a mailbox after `after_id` (None: from the first), oldest first, as message views:
        the first `limit` of them, or with `newest` the last `limit` (the relay shows the newest N it missed).

        The one read of whoever catches up: the /ws replay and the BLE relay (the inbox as the hub
        pushes it: no dropped card, none the user deleted) and GET /messages?since=, whose filters
        are the keywords (list() checks them; the other callers pass ids they checked or made).
        """
        rows = await self.db.read(messages.since, bipupu_id, after_id, limit=limit, direction=direction, before=before,
                                  msg_type=msg_type, peer=peer, newest=newest)
        return [message_view(r) for r in rows]

    async def get(self, me: str, message_id: str) -> dict[str, Any]:
        row = await self.db.read(messages.visible_one, me, message_id) if is_message_id(message_id) else None
        if row is None:
            raise NotFound("no such message in your mailbox", code="message_not_found")
        return message_view(row)

    async def delete(self, me: str, message_id: str) -> None:
        def remove(tx: Tx) -> bool:
            return messages.remove_from_mailbox(tx, me, message_id)

        if not is_message_id(message_id) or not await self.db.write(remove):
            raise NotFound("no such message in your mailbox", code="message_not_found")
