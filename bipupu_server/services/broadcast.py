"""Fan-out: a service's message to many mailboxes, in batches, each committed then pushed."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
from dataclasses import dataclass
from datetime import date, tzinfo
from typing import Any, Callable

import orjson

from ..clock import Clock, rfc3339
from .. import heap
from ..errors import Conflict, Invalid, NotFound
from ..hub import Hub
from ..ids import MessageIds
from ..mailbox import check_content, check_pattern
from ..store import messages, services as store
from ..store.db import Database, Tx
from .catalog import send_instant
from .fortune import daily_fortune

log = logging.getLogger(__name__)

BATCH = 500  # rows per transaction: big enough to amortise a commit, small enough to keep the loop responsive


@dataclass
class BroadcastStats:
    """The last fan-out, for /metrics and the admin dashboard."""

    service_id: str | None = None
    started_at: str | None = None
    duration_s: float = 0.0
    sent: int = 0


class Broadcaster:
    """Sends a service's messages to many users: the daily broadcast and "broadcast now"."""

    def __init__(self, db: Database, clock: Clock, zone: tzinfo, hub: Hub, ids: MessageIds,
                 on_stored: Callable[[str, int], None] = lambda msg_type, count: None):
        self.on_stored = on_stored  # counts stored messages by type (metrics)
        self.db = db
        self.clock = clock
        self.zone = zone
        self.hub = hub
        self.ids = ids
        self.last = BroadcastStats()
        self._lock = asyncio.Lock()  # one fan-out at a time; a second tick waits, then finds nothing to do

    def _row(self, service_id: str, receiver: str, content: str, pattern: str, now_text: str) -> dict[str, Any]:
        return {"id": self.ids.next(), "sender_id": service_id, "receiver_id": receiver, "content": content,
                "msg_type": "COSMIC_BROADCAST", "pattern": pattern, "created_at": now_text}

    def _publish(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            self.hub.publish(row["receiver_id"], {**row, "pattern": orjson.loads(row["pattern"])})

    async def _fan_out(self, service_id: str, batch: Callable[[Tx, str], list[dict[str, Any]]]) -> int:
        """Run `batch(tx, after)` until it returns a short batch; each batch is committed, then pushed."""
        started, started_at = self.clock.monotonic(), rfc3339(self.clock.time())
        sent, after = 0, ""
        # Thousands of open sockets are a million objects the garbage collector would scan in one
        # stop-the-world pass (0.8 s measured) once the fan-out's allocations set it off: keep
        # them out of its sight while the fan-out runs; they are given back to it afterwards.
        # Where the heap keeper runs (run.py's server) it keeps them frozen anyway: leave it be.
        own = not heap.managed()
        if own:
            gc.freeze()
        try:
            while True:
                rows = await self.db.write(functools.partial(batch, after=after))
                self.on_stored("COSMIC_BROADCAST", len(rows))
                self._publish(rows)
                sent += len(rows)
                if len(rows) < BATCH:
                    break
                after = rows[-1]["receiver_id"]
                await asyncio.sleep(0)  # let pings and requests in between batches
        finally:
            if own:
                gc.unfreeze()
        self.last = BroadcastStats(service_id, started_at, self.clock.monotonic() - started, sent)
        return sent

    async def run_daily(self, service: dict[str, Any], day: date) -> int:
        """Send `day`'s broadcast of `service` to every subscriber that has not had it; exactly once each."""
        day_text = day.isoformat()
        subscribed_by = rfc3339(send_instant(service, day, self.zone).timestamp())

        def batch(tx: Tx, after: str) -> list[dict[str, Any]]:
            pending = store.pending_daily(tx, service["id"], day_text, subscribed_by, after, BATCH)
            now_text = rfc3339(self.clock.time())
            rows = []
            for subscriber in pending:
                content, pattern = self._daily_message(service, day, subscriber)
                rows.append(self._row(service["id"], subscriber["bipupu_id"], content, pattern, now_text))
            messages.insert_many(tx, [_new(r) for r in rows])
            store.record_deliveries(tx, service["id"], day_text, [(r["receiver_id"], r["id"]) for r in rows])
            return rows

        async with self._lock:  # one fan-out at a time; a second tick waits, then finds the day done
            newest = await self.db.read(store.newest_run_day, service["id"])
            if newest is not None and day_text <= newest:  # done, or a day the clock jumped back into
                return 0
            sent = await self._fan_out(service["id"], batch)
            duration = self.last.duration_s

            def finish(tx: Tx) -> None:
                store.finish_run(tx, service["id"], day_text, rfc3339(self.clock.time()), sent, duration)

            await self.db.write(finish)
        log.info("daily broadcast of %s for %s: %d sent in %.2f s", service["id"], day_text, sent, duration)
        return sent

    def _daily_message(self, service: dict[str, Any], day: date, subscriber: dict[str, Any]) -> tuple[str, str]:
        if service["kind"] == "fortune":
            fortune = daily_fortune(day, subscriber["bipupu_id"], orjson.loads(subscriber["cosmic_profile"]))
            return fortune.content, orjson.dumps(fortune.pattern).decode()
        return service["daily_content"], "{}"

    async def broadcast_now(self, service_id: str, content: Any, pattern: Any = None) -> int:
        """Send one message now: to the service's subscribers, or to every active user for a notice service."""
        content = check_content(content)
        pattern_json = check_pattern(pattern)
        service = await self.db.read(store.by_id, service_id)
        if service is None:
            raise NotFound("no such service", code="service_not_found")
        if not service["is_active"]:
            raise Conflict("this service is switched off", code="service_inactive")
        audience = None if service["kind"] == "notice" else service_id

        def batch(tx: Tx, after: str) -> list[dict[str, Any]]:
            now_text = rfc3339(self.clock.time())
            rows = [self._row(service_id, receiver, content, pattern_json, now_text)
                    for receiver in store.recipients(tx, audience, after, BATCH)]
            messages.insert_many(tx, [_new(r) for r in rows])
            return rows

        async with self._lock:
            sent = await self._fan_out(service_id, batch)
        log.info("broadcast now from %s: %d sent in %.2f s", service_id, sent, self.last.duration_s)
        return sent


def _new(row: dict[str, Any]) -> messages.NewMessage:
    return messages.NewMessage(**row, client_msg_id=None, dropped=False)
