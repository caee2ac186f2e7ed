"""The BLE relay (SPEC §8): the owner's postcards shown on the pupu device, none lost, none twice.

How it keeps that promise:
- It listens to the hub (`Hub.subscribe`) before it reads anything, so a card committed while it
  reads the database is heard too; the listener only appends to a deque (BLE never delays a push).
- The newest card the device acknowledged is stored (`relay_cursor`). At start-up the relay reads
  the newest `ble_catch_up` cards after it (`Mailbox.since(..., newest=True)`), then goes on with
  what the hub brings, in id order, each id once. The first start ever begins at the owner's newest
  card: the device shows what comes from then on, not the whole inbox.
- Cards wait in memory while the device is away, the newest `ble_catch_up` of them; on reconnect
  they go in order. A card the device refuses for good is skipped and counted as relayed, so it
  cannot hold back the ones after it (docs/ble-protocol.md, "The exchange").
- A blocked sender's card is never stored for the owner, so the hub never brings it.

One connection at a time, a fresh client each time, reconnecting forever with capped exponential
backoff and jitter. Every expected failure (no adapter, no BlueZ, device away, link dropping) ends
in a state and one log line per change of state, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone, tzinfo
from typing import Any

from bleak.exc import BleakError

from ..clock import Clock, rfc3339
from ..config import Config
from ..hub import Hub
from ..ids import MessageIds
from ..mailbox import Mailbox
from ..store import relay as cursor_store
from ..store.db import Database, DatabaseError
from . import STATES, frames
from .bluetooth import Bluetooth, NotFound, Unavailable, describe
from .link import Link, LinkLost, Sent, Timing

log = logging.getLogger("bipupu.relay")

FRAMES_KEPT = 20  # the last frames the admin page shows
TEST_SENDER = "bipupu.relay"  # the sender a test card shows (a service id, as the frame wants)
TEST_PATTERN = {"led_color": "#00C8FF", "effect": "blink", "duration_s": 5, "vibrate": True}
TEST_TEXT = "Bipupu relay test ✓"


def backoff(attempt: int, timing: Timing, rng: Callable[[], float] = random.random) -> float:
    """Seconds to wait before connect attempt `attempt` + 1: doubling from backoff_first_s up to
    backoff_max_s, with jitter (half of it random) so a box of relays does not retry in step."""
    ceiling = min(timing.backoff_max_s, timing.backoff_first_s * 2 ** min(attempt, 30))
    return ceiling / 2 + rng() * ceiling / 2


def time_frame(seq: int, now: float, zone: tzinfo) -> frames.Time:
    """The TIME frame sent on every connect: Unix seconds and the zone's offset from UTC now."""
    offset = datetime.fromtimestamp(now, timezone.utc).astimezone(zone).utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    return frames.Time(seq=seq, unix_s=int(now), tz_offset_min=max(-1439, min(1439, minutes)))


def test_message(message_id: str, owner: str, text: str, created_at: str) -> dict[str, Any]:
    """The test card (admin page, `run.py ble-send`) as a message object: never stored, never in the cursor."""
    return {"id": message_id, "sender_id": TEST_SENDER, "receiver_id": owner, "content": text,
            "msg_type": "COSMIC_BROADCAST", "pattern": dict(TEST_PATTERN), "created_at": created_at}


async def open_link(client: Any, config: Config, timing: Timing, record: Callable[[Sent], None]) -> Link:
    """The pupu's characteristics on a connected client, as the configuration names them."""
    return await Link.open(client, service_uuid=config.ble_service_uuid, write_uuid=config.ble_write_uuid,
                           notify_uuid=config.ble_notify_uuid, timing=timing, record=record)


@dataclass(frozen=True)
class Logged:
    at: str
    sent: Sent


class Relay:
    """Owns the link to one pupu device and the queue of one owner's cards."""

    def __init__(self, config: Config, db: Database, mailbox: Mailbox, hub: Hub, clock: Clock, zone: tzinfo,
                 ids: MessageIds, *, bluetooth: Bluetooth | None = None, timing: Timing = Timing(),
                 on_state: Callable[[str], None] = lambda state: None, rng: Callable[[], float] = random.random):
        assert config.ble_device and config.ble_owner
        self.device: str = config.ble_device
        self.owner: str = config.ble_owner
        self.config = config
        self.db, self.mailbox, self.hub, self.clock, self.zone, self.ids = db, mailbox, hub, clock, zone, ids
        self.bluetooth = bluetooth or Bluetooth()
        self.timing = timing
        self.on_state = on_state
        self.rng = rng
        self.state, self.detail = "searching", "starting"
        self.found: str | None = None  # the device as found: name (address)
        self.shown = 0  # cards the device acknowledged since start
        self.skipped = 0  # cards left out: refused by the device, or older than the newest ble_catch_up
        self.acked: str | None = None  # the newest acknowledged card (also in relay_cursor)
        self._pending: deque[dict[str, Any]] = deque()  # the owner's cards to show, oldest first
        self._tests: deque[dict[str, Any]] = deque()  # test cards: first in line, never in the cursor
        self._loaded = False
        self._wake = asyncio.Event()
        self._frames: deque[Logged] = deque(maxlen=FRAMES_KEPT)
        self._link: Link | None = None
        on_state(self.state)

    # What others read and ask ------------------------------------------------------------------

    def last_frames(self) -> list[dict[str, Any]]:
        """The newest first, as the admin page shows them."""
        return [{"at": f.at, "kind": f.sent.kind, "message_id": f.sent.message_id, "sequence": f.sent.seq,
                 "bytes": f.sent.size, "outcome": f.sent.outcome, "acknowledged": f.sent.outcome == "acknowledged"}
                for f in reversed(self._frames)]

    @property
    def waiting(self) -> int:
        """Cards heard and not yet shown."""
        return len(self._pending)

    def send_test(self, text: str = TEST_TEXT) -> str | None:
        """Queue a test card for the connected device; its id, or None when not connected (nothing queued)."""
        if self.state != "connected":
            return None
        message = test_message(self.ids.next(), self.owner, text, rfc3339(self.clock.time()))
        self._tests.append(message)
        self._wake.set()
        return message["id"]

    # The hub's listener: enqueue only ----------------------------------------------------------

    def heard(self, message: dict[str, Any]) -> None:
        if self._loaded and self.acked is not None and message["id"] <= self.acked:
            return
        self._pending.append(message)
        self._trim()
        self._wake.set()

    def _trim(self) -> None:
        while len(self._pending) > self.config.ble_catch_up:
            self._pending.popleft()
            self.skipped += 1

    # The coroutine -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Forever: catch up from the database, then keep the device connected and fed."""
        unsubscribe = self.hub.subscribe(self.owner, self.heard)  # first: no card slips between read and listen
        try:
            await self._catch_up()
            attempt = 0
            while True:
                try:
                    connected = await self._connection()
                except Exception as exc:  # a bug, not a condition: say so with its traceback, then carry on
                    log.exception("BLE relay: unexpected error, reconnecting")
                    self._set("searching", f"unexpected error: {exc!r}")
                    connected = False
                attempt = 0 if connected else attempt + 1
                await asyncio.sleep(backoff(attempt, self.timing, self.rng))
        finally:
            unsubscribe()

    async def _catch_up(self) -> None:
        attempt = 0
        while True:
            try:
                now = rfc3339(self.clock.time())
                acked = await self.db.write(lambda tx: cursor_store.start_cursor(tx, self.owner, at=now))
                missed = await self.mailbox.since(self.owner, acked, self.config.ble_catch_up, newest=True)
                break
            except (sqlite3.Error, DatabaseError) as exc:
                self._set("searching", f"waiting for the database: {exc}")
                attempt += 1
                await asyncio.sleep(backoff(attempt, self.timing, self.rng))
        newest = missed[-1]["id"] if missed else acked
        heard = [m for m in self._pending if newest is None or m["id"] > newest]
        self.acked = acked
        self._pending = deque(missed + heard)
        self._trim()
        self._loaded = True
        if self._pending:
            log.info("relay: %d card(s) for %s to show", len(self._pending), self.owner)

    async def _connection(self) -> bool:
        """One connection, from finding the device to losing it; True if it got as far as connected."""
        client, connected = None, False
        try:
            async with self.bluetooth.lock:
                device = await self.bluetooth.find(self.device)
                self.found = describe(device)
                self._set("connecting", f"connecting to {self.found}")
                client = await self.bluetooth.connect(device, self._dropped)
            link = await open_link(client, self.config, self.timing, self._record)
            self._link = link
            if not client.is_connected:
                link.dropped()
            await link.send(self._time_frame)
            connected = True
            self._set("connected", f"{self.found}, writes of {link.write_size} bytes")
            await self._feed(link)
        except Unavailable as exc:
            self._set("unavailable", str(exc))
        except NotFound as exc:
            self._set("searching", str(exc))
        except LinkLost as exc:
            self._set("searching", f"lost {self.found}: {exc}; looking again" if connected
                      else f"could not talk to {self.found}: {exc}")
        except (BleakError, EOFError, OSError, TimeoutError) as exc:  # a connect that failed: device away, busy…
            self._set("searching", f"could not connect to {self.found or self.device}: "
                                   f"{str(exc) or type(exc).__name__}")
        finally:
            self._link = None
            if client is not None:
                await self.bluetooth.disconnect(client)
        return connected

    def _dropped(self) -> None:
        if self._link is not None:
            self._link.dropped()
        self._wake.set()

    def _time_frame(self, seq: int) -> frames.Time:
        return time_frame(seq, self.clock.time(), self.zone)

    async def _feed(self, link: Link) -> None:
        """Send what waits, oldest first, test cards before; then wait for more. Returns only by LinkLost."""
        while True:
            if link.lost is not None:
                raise LinkLost(link.lost)
            if self._tests:
                message = self._tests[0]
                await self._show(link, message)
                if self._tests and self._tests[0] is message:
                    self._tests.popleft()
            elif self._pending:
                message = self._pending[0]
                if await self._show(link, message):
                    self.shown += 1
                else:
                    self.skipped += 1
                await self._advance(message["id"])
                if self._pending and self._pending[0] is message:  # unless trimmed meanwhile
                    self._pending.popleft()
            else:
                self._wake.clear()
                await self._wake.wait()

    async def _show(self, link: Link, message: dict[str, Any]) -> bool:
        """One card to the device: True once acknowledged, False if refused for good or not encodable."""
        try:
            status = await link.send(lambda seq: frames.card(message, seq=seq,
                                                             max_text_bytes=self.config.ble_text_bytes),
                                     message["id"])
        except ValueError as exc:
            log.warning("relay: card %s cannot be framed, skipped: %s", message["id"], exc)
            return False
        if status != frames.Status.OK:
            log.warning("relay: the device refused card %s (%s), skipped", message["id"], status.name)
            return False
        return True

    async def _advance(self, message_id: str) -> None:
        if self.acked is not None and message_id <= self.acked:
            return
        self.acked = message_id
        at = rfc3339(self.clock.time())
        try:
            await self.db.write(lambda tx: cursor_store.advance(tx, self.owner, message_id, at=at))
        except (sqlite3.Error, DatabaseError) as exc:  # in memory it moved on; a restart may show it again
            log.warning("relay: could not store the cursor (%s); the device ignores a repeat", exc)

    def _record(self, sent: Sent) -> None:
        self._frames.append(Logged(rfc3339(self.clock.time()), sent))

    def _set(self, state: str, detail: str) -> None:
        """Move to a state; one log line when the state or its reason changes, never for the same again."""
        if (state, detail) == (self.state, self.detail):
            return
        self.state, self.detail = state, detail
        self.on_state(state)
        level = logging.WARNING if state == "unavailable" else logging.INFO
        log.log(level, "BLE relay %s: %s", state, detail)


async def show_once(config: Config, target: str, text: str, clock: Clock, zone: tzinfo, *,
                    bluetooth: Bluetooth | None = None, timing: Timing = Timing()) -> frames.ShowCard:
    """`run.py ble-send`: connect to the device, set its clock, show one test card, let go.

    Raises Unavailable (no Bluetooth), NotFound (not in reach, or held by a running relay: a connected
    device does not advertise) or LinkLost; returns the card the device acknowledged.
    """
    bluetooth = bluetooth or Bluetooth()
    device = await bluetooth.find(target)
    link: Link | None = None
    client = await bluetooth.connect(device, lambda: link.dropped() if link is not None else None)
    try:
        link = await open_link(client, config, timing, lambda sent: None)
        now = clock.time()
        await link.send(lambda seq: time_frame(seq, now, zone))
        message = test_message(MessageIds(clock).next(), config.ble_owner or "", text, rfc3339(now))
        card = frames.card(message, seq=0, max_text_bytes=config.ble_text_bytes)
        status = await link.send(lambda seq: replace(card, seq=seq), message["id"])
        if status != frames.Status.OK:
            raise LinkLost(f"the device refused the card ({status.name})")
        return card
    finally:
        await bluetooth.disconnect(client)
