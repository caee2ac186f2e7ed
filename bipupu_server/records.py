"""What an admin reads of the box's records: every stored card, filtered and paged, and the BLE relay's state."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from typing import Any, Protocol

import orjson

from .errors import Invalid
from .identity import BIPUPU_ID
from .ids import floor_id, is_message_id
from .mailbox import EFFECTS, FONTS, MSG_TYPES
from .services.catalog import SERVICE_ID
from .store import browse
from .store.db import Database

PAGE = 50
ADDRESS_MAX = 64  # characters of a sender or receiver filter (service ids are at most 64)
DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
FIRST_YEAR = 1970  # message ids count milliseconds from 1970: no card is older

# The refusals' English is also their message id in the admin pages' catalogue (web/admin/i18n.py).
BAD_SENDER = "The sender must be a bipupu_id (8 digits) or a service id such as cosmic.fortune."
BAD_RECEIVER = "The receiver must be a bipupu_id (8 digits) or a service id such as cosmic.fortune."
BAD_TYPE = "The type must be USER_POSTCARD, VOICE_TRANSCRIPT or COSMIC_BROADCAST."
BAD_DAY = "A day is written YYYY-MM-DD, from 1970 on."
BAD_RANGE = "The first day is after the last."
BAD_BEFORE = "This page link is broken: before must be a message id."


@dataclass(frozen=True)
class MessageFilter:
    """Which stored cards to show: all of them when every field is None; `day_to` is included."""

    sender: str | None = None
    receiver: str | None = None
    msg_type: str | None = None
    day_from: date | None = None
    day_to: date | None = None

    def form(self) -> dict[str, str]:
        """The filter as the page's query parameters, every one present ("" for none)."""
        return {"sender": self.sender or "", "receiver": self.receiver or "", "type": self.msg_type or "",
                "from": self.day_from.isoformat() if self.day_from else "",
                "to": self.day_to.isoformat() if self.day_to else ""}

    def query(self) -> dict[str, str]:
        """The parameters that are set: what a link to another page of the same filter carries."""
        return {name: value for name, value in self.form().items() if value}


@dataclass(frozen=True)
class MessagePage:
    """One page of stored cards, newest first; `next_before` asks for the older ones, when there are some."""

    messages: list[dict[str, Any]]
    next_before: str | None


def check_filter(*, sender: str | None = None, receiver: str | None = None, msg_type: str | None = None,
                 day_from: str | None = None, day_to: str | None = None) -> MessageFilter:
    """A filter from the page's text fields (blank ones mean "any"); Invalid names the field that is wrong."""
    sender, receiver = _address(sender, "sender", BAD_SENDER), _address(receiver, "receiver", BAD_RECEIVER)
    msg_type = _blank(msg_type)
    if msg_type is not None and msg_type not in MSG_TYPES:
        raise Invalid(BAD_TYPE, field="type")
    first, last = _day(day_from, "from"), _day(day_to, "to")
    if first is not None and last is not None and first > last:
        raise Invalid(BAD_RANGE, field="to")
    return MessageFilter(sender, receiver, msg_type, first, last)


async def browse_messages(db: Database, zone: tzinfo, filters: MessageFilter, *, before: str | None = None,
                          limit: int = PAGE) -> MessagePage:
    """Every stored card the filter takes (dropped ones too), newest first, below message id `before`."""
    if before is not None and not is_message_id(before):
        raise Invalid(BAD_BEFORE, field="before")
    low = _day_floor(filters.day_from, zone) if filters.day_from else None
    high = None
    if filters.day_to is not None and filters.day_to < date.max:  # `to` is included: up to the next day's start
        high = _day_floor(filters.day_to + timedelta(days=1), zone)
    if before is not None:
        high = before if high is None else min(high, before)
    rows = await db.read(browse.messages_page, sender=filters.sender, receiver=filters.receiver,
                         msg_type=filters.msg_type, low=low, high=high, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return MessagePage([record_view(row, zone) for row in rows], rows[-1]["id"] if more else None)


def record_view(row: dict[str, Any], zone: tzinfo) -> dict[str, Any]:
    """What an admin sees of one stored card in the list."""
    return {
        "id": row["id"],
        "created_at": row["created_at"],
        "local_time": _local(row["created_at"], zone),
        "sender_id": row["sender_id"],
        "sender_is_user": BIPUPU_ID.fullmatch(row["sender_id"]) is not None,
        "receiver_id": row["receiver_id"],
        "receiver_is_user": BIPUPU_ID.fullmatch(row["receiver_id"]) is not None,
        "msg_type": row["msg_type"],
        "content": row["content"],
        "pattern": pattern_parts(row["pattern"]),
        "dropped": bool(row["dropped"]),
    }


def pattern_parts(text: str) -> list[dict[str, Any]]:
    """A stored pattern as parts of text (#FF8800 · blink · 3 s): the page's CSP allows no coloured swatch."""
    try:
        pattern = orjson.loads(text)
    except orjson.JSONDecodeError:
        return []
    if not isinstance(pattern, dict):
        return []
    parts = []  # `label`, and `value` when `word` (one of a fixed list), are words of the pages' catalogue
    if "led_color" in pattern:
        parts.append({"label": None, "value": str(pattern["led_color"]), "word": False})
    if pattern.get("effect") in EFFECTS:
        parts.append({"label": None, "value": pattern["effect"], "word": True})
    if "duration_s" in pattern:
        parts.append({"label": None, "value": f"{pattern['duration_s']} s", "word": False})
    if pattern.get("font") in FONTS:
        parts.append({"label": "Font", "value": pattern["font"], "word": True})
    parts += [{"label": label, "value": str(pattern[key]), "word": False}
              for key, label in (("screensaver", "Screensaver"), ("sound", "Sound")) if key in pattern]
    if pattern.get("vibrate") is True:
        parts.append({"label": None, "value": "vibrate", "word": True})
    return parts


def _blank(raw: str | None) -> str | None:
    text = raw.strip() if raw is not None else ""
    return text or None


def _address(raw: str | None, field: str, message: str) -> str | None:
    text = _blank(raw)
    if text is not None and (len(text) > ADDRESS_MAX or not (BIPUPU_ID.fullmatch(text) or SERVICE_ID.fullmatch(text))):
        raise Invalid(message, field=field)
    return text


def _day(raw: str | None, field: str) -> date | None:
    text = _blank(raw)
    if text is None:
        return None
    if not DAY.fullmatch(text):  # fromisoformat alone would take 20260921 and 2026-W39 too
        raise Invalid(BAD_DAY, field=field)
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise Invalid(BAD_DAY, field=field) from None
    if day.year < FIRST_YEAR:
        raise Invalid(BAD_DAY, field=field)
    return day


def _day_floor(day: date, zone: tzinfo) -> str:
    """The smallest message id of the local day's first millisecond."""
    ms = int(datetime.combine(day, time(), tzinfo=zone).timestamp() * 1000)
    return floor_id(max(0, ms))  # 1970-01-01 east of Greenwich starts before the ids do


def _local(created_at: str, zone: tzinfo) -> str:
    try:
        utc = datetime.strptime(created_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return created_at
    return utc.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


# The BLE relay ---------------------------------------------------------------------------------

class RelayStatus(Protocol):
    """What the BLE relay (relay/relay.py) exposes for its admin page and /health."""

    state: str  # one of relay.STATES: off, unavailable, searching, connecting, connected
    detail: str  # why, in one line: "no D-Bus system bus…", "pupu-1 not found nearby"…
    device: str  # BIPUPU_BLE_DEVICE
    owner: str  # BIPUPU_BLE_OWNER, the bipupu_id whose cards it shows
    found: str | None  # the device as last found: "name (address)"
    shown: int  # cards the device acknowledged since start
    skipped: int  # cards left out since start: refused by the device, or beyond the catch-up bound
    waiting: int  # cards heard and not yet shown
    acked: str | None  # the newest card the device acknowledged (kept in relay_cursor)

    def last_frames(self) -> list[dict[str, Any]]:
        """The newest frames first: at, kind, message_id, sequence, bytes, outcome, acknowledged."""
        ...


OFF = {"state": "off", "detail": "BIPUPU_BLE_DEVICE and BIPUPU_BLE_OWNER are not set", "device": None,
       "owner": None, "found": None, "shown": 0, "skipped": 0, "waiting": 0, "acked": None, "frames": [],
       "can_send": False}


def relay_view(relay: RelayStatus | None = None) -> dict[str, Any]:
    """What the relay page shows of the app's relay; "off" when the relay is not configured."""
    if relay is None:
        return dict(OFF, frames=[])
    return {"state": relay.state, "detail": relay.detail, "device": relay.device, "owner": relay.owner,
            "found": relay.found, "shown": relay.shown, "skipped": relay.skipped, "waiting": relay.waiting,
            "acked": relay.acked, "frames": relay.last_frames(), "can_send": relay.state == "connected"}
